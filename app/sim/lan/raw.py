"""Raw SCPI over TCP (the "socket" or port-5025 interface of LXI instruments).

A program message ends at a newline (IEEE 488.2 7.5: NL is a program message terminator), but
not one inside a quoted string or a definite-length arbitrary block (488.2 7.7.6): those are
passed through, so binary waveform data is safe. An indefinite block (``#0``) ends at the
newline that ends the message. Replies are sent as they become ready.

Standard library only.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading

from .port import MessagePort
from .server import TcpServer

_SPECIAL = re.compile(rb"[\n#\"']")
RECV_BYTES = 1 << 20
REPLY_CHUNK_BYTES = 1 << 20


class MessageSplitter:
    """Cuts a byte stream into program-message chunks: ``feed`` returns ``(chunk, ends_message)``.

    A chunk that does not end a message is the start of a long one (a block still arriving).
    """

    def __init__(self) -> None:
        self._mode = "text"
        self._quote = b""
        self._digits_needed = 0
        self._digits = bytearray()
        self._block_left = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[bytes, bool]]:
        view = memoryview(data)
        out: list[tuple[bytes, bool]] = []
        start = i = 0
        n = len(view)
        while i < n:
            mode = self._mode
            if mode == "block":
                step = min(self._block_left, n - i)
                i += step
                self._block_left -= step
                if not self._block_left:
                    self._mode = "text"
            elif mode == "quote":
                found = _find(view, self._quote, i)
                if found < 0:
                    i = n
                else:
                    i = found + 1
                    self._mode = "text"
            elif mode == "hash":
                byte = view[i]
                if 0x31 <= byte <= 0x39:  # '#<n>' with n in 1..9: n length digits follow
                    self._digits_needed, self._digits = byte - 0x30, bytearray()
                    self._mode = "length"
                    i += 1
                elif byte == 0x30:  # '#0': indefinite block, ends with the message
                    self._mode = "text"
                    i += 1
                else:  # '#H', '#Q', '#B' non-decimal numbers (488.2 7.7.4): ordinary text
                    self._mode = "text"
            elif mode == "length":
                byte = view[i]
                i += 1
                if not 0x30 <= byte <= 0x39:
                    self._mode = "text"  # not a block header after all; the parser will say so
                    continue
                self._digits.append(byte)
                if len(self._digits) == self._digits_needed:
                    self._block_left = int(self._digits)
                    self._mode = "block" if self._block_left else "text"
            else:
                match = _SPECIAL.search(view, i)
                if match is None:
                    i = n
                    break
                i = match.end()
                char = match.group()
                if char == b"\n":
                    out.append((bytes(view[start:i]), True))
                    start = i
                elif char == b"#":
                    self._mode = "hash"
                else:
                    self._mode, self._quote = "quote", char
        if start < n:
            out.append((bytes(view[start:n]), False))
        return out


_QUOTES = {b'"': re.compile(b'"'), b"'": re.compile(b"'")}


def _find(view: memoryview, quote: bytes, start: int) -> int:
    match = _QUOTES[quote].search(view, start)
    return -1 if match is None else match.start()


class _Handler(socketserver.BaseRequestHandler):
    server: RawServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = self.server.port
        done = threading.Event()
        sender = threading.Thread(target=self._send_replies, args=(sock, port, done), daemon=True,
                                  name="raw-socket replies")
        sender.start()
        splitter = MessageSplitter()
        try:
            while not self.server.closing.is_set():
                try:
                    data = sock.recv(RECV_BYTES)
                except OSError:
                    break
                if not data:
                    break
                for chunk, eom in splitter.feed(data):
                    port.write(chunk, eom, owner=sock)
        finally:
            done.set()
            sender.join(timeout=2)

    def _send_replies(self, sock: socket.socket, port: MessagePort, done: threading.Event) -> None:
        while not done.is_set() and not self.server.closing.is_set():
            reply = port.read(REPLY_CHUNK_BYTES, 0.5, stop=done, owner=sock)
            if reply is None:
                continue
            try:
                sock.sendall(reply[0])
            except OSError:
                return


class RawServer(TcpServer):
    """One instrument's raw SCPI socket."""

    def __init__(self, port: MessagePort, host: str = "127.0.0.1", tcp_port: int = 0) -> None:
        self.port = port
        super().__init__(_Handler, host, tcp_port)
