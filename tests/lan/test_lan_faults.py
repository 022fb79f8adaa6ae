"""Network faults: each a typed error, raised in bounded time, with a truthful recovery statement."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from app.lan import open_session
from app.lan.errors import (
    ConnectionLostError,
    HostUnreachableError,
    RefusedError,
    ReplyTimeoutError,
    SendTimeoutError,
)


class Peer:
    """A TCP peer on 127.0.0.1 that misbehaves as told: ``mode`` is "reset" (reads ``after``
    bytes, then resets the connection), "deaf" (accepts, never reads), "mute" (reads, never answers)."""

    def __init__(self, mode: str, after: int = 65536) -> None:
        self.mode, self.after = mode, after
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # "deaf": fill up quickly
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            if self.mode == "reset":
                got = 0
                conn.settimeout(2)
                try:
                    while got < self.after:
                        data = conn.recv(65536)
                        if not data:
                            break
                        got += len(data)
                except OSError:
                    pass
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # linger 0: an RST, as a crashed instrument's stack sends
            elif self.mode == "mute":
                threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        while not self.stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.listener.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def peer(request):
    p = Peer(*request.param)
    yield p
    p.close()


def test_connection_refused_is_a_refused_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RefusedError, match=f"refused a connection on port {port}"):
        open_session(f"TCPIP::127.0.0.1::{port}::SOCKET", timeout_ms=500)


def test_an_unreachable_host_is_a_host_unreachable_error(monkeypatch):
    def no_answer(address, timeout=None):
        assert timeout == 0.5  # the open timeout bounds the connect
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", no_answer)
    with pytest.raises(HostUnreachableError, match="did not answer within 500 ms"):
        open_session("TCPIP::192.0.2.1::5025::SOCKET", timeout_ms=500)


@pytest.mark.parametrize("peer", [("reset",)], indirect=True)
def test_a_reset_mid_upload_is_connection_lost_and_the_session_reconnects(peer):
    with open_session(f"TCPIP::127.0.0.1::{peer.port}::SOCKET", timeout_ms=2000) as session:
        with pytest.raises(ConnectionLostError) as info:
            session.write_raw(b"MEM:DATA #8" + b"16777216" + bytes(16 << 20) + b"\n")
        assert info.value.usable is True  # the peer still accepts: a new connection was made
        assert "reopened" in info.value.recovery and "part of the message" in info.value.recovery


@pytest.mark.parametrize("peer", [("deaf",)], indirect=True)
def test_a_peer_that_stops_reading_is_a_send_timeout(peer):
    with open_session(f"TCPIP::127.0.0.1::{peer.port}::SOCKET", timeout_ms=300) as session:
        with pytest.raises(SendTimeoutError, match="stopped taking data") as info:
            session.write_raw(bytes(64 << 20) + b"\n")
        assert 0 < info.value.args[0].count("bytes")


@pytest.mark.parametrize("peer", [("mute",)], indirect=True)
def test_a_half_open_connection_is_a_reply_timeout(peer):
    with open_session(f"TCPIP::127.0.0.1::{peer.port}::SOCKET", timeout_ms=300) as session:
        session.write("*IDN?")
        with pytest.raises(ReplyTimeoutError, match="timed out with 0 bytes") as info:
            session.read_raw()
        assert "reopened" in info.value.recovery


@pytest.mark.parametrize("peer", [("mute",)], indirect=True)
@pytest.mark.parametrize("device", ["inst0", "hislip0"])
def test_a_peer_that_never_answers_the_handshake_fails_the_open_in_time(peer, device):
    name = f"127.0.0.1,{peer.port}::inst0" if device == "inst0" else f"127.0.0.1::hislip0,{peer.port}"
    with pytest.raises(ReplyTimeoutError):
        open_session(f"TCPIP::{name}::INSTR", timeout_ms=300)
