"""A VXI-11 instrument server (VXI-11 rev 1.0 over ONC RPC, RFC 5531) and its portmapper (RFC 1833).

One core channel serves several instruments by device name (``inst0``, ``inst1``...), each
link a :class:`~app.sim.lan.port.MessagePort`. The abort channel (DEVICE_ASYNC) stops a
device_read that waits; service requests go out on the interrupt channel the client made
with create_intr_chan, as a one-way device_intr_srq call (VXI-11 B.6.x). The portmapper
answers GETPORT over TCP and UDP (so a broadcast finds the server).

Standard library only.
"""

from __future__ import annotations

import itertools
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field

from app.protocol import oncrpc, vxi11
from app.protocol.oncrpc import AcceptStat, Packer, Unpacker, XdrError
from app.protocol.vxi11 import CoreProc, Error, Flags, Reason

from .port import MessagePort
from .server import TcpServer

MAX_RECV_BYTES = 1 << 20  # what create_link offers the client per device_write (VXI-11 B.6.1)
MAX_RECORD_BYTES = 64 << 20


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes, or ConnectionError when the peer closes first."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if not n:
            raise ConnectionError("the peer closed the connection")
        got += n
    return bytes(buf)


def recv_record(sock: socket.socket) -> bytes:
    """One RPC record (RFC 5531 section 11): its fragments joined."""
    parts = []
    total = 0
    while True:
        size, last = oncrpc.parse_mark(recv_exact(sock, 4))
        total += size
        if total > MAX_RECORD_BYTES:
            raise ConnectionError(f"an RPC record over {MAX_RECORD_BYTES} bytes")
        parts.append(recv_exact(sock, size))
        if last:
            return b"".join(parts)


def send_record(sock: socket.socket, body: bytes) -> None:
    sock.sendall(oncrpc.pack_mark(len(body), True) + body)


@dataclass(eq=False)  # compared and hashed by identity: a link is the owner of its replies
class _Link:
    link_id: int
    port: MessagePort
    name: str
    abort: threading.Event = field(default_factory=threading.Event)
    srq_enabled: bool = False
    srq_handle: bytes = b""


class Vxi11Server:
    """The core channel, the abort channel and the portmapper for ``devices`` (name -> port)."""

    def __init__(self, devices: dict[str, MessagePort], host: str = "127.0.0.1", *, pmap_port: int = 0) -> None:
        self.devices = devices
        self.host = host
        self._links: dict[int, _Link] = {}
        self._link_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._intr: dict[int, tuple[str, int]] = {}  # connection key -> the client's interrupt server
        self.pmap_tcp = TcpServer(_PmapTcpHandler, host, pmap_port)  # first: the port most likely taken
        self.pmap_tcp.vxi = self
        self.core = TcpServer(_CoreHandler, host)
        self.core.vxi = self
        self.abort = TcpServer(_AbortHandler, host)
        self.abort.vxi = self
        for server in (self.pmap_tcp, self.core, self.abort):
            server.start()
        self.pmap_udp = _UdpPortmapper(self, host, self.pmap_tcp.tcp_port)
        self._stop_listening = [port.listen_srq(self._make_listener(port)) for port in devices.values()]

    @property
    def core_port(self) -> int:
        return self.core.tcp_port

    @property
    def pmap_port(self) -> int:
        return self.pmap_tcp.tcp_port

    def close(self) -> None:
        for stop in self._stop_listening:
            stop()
        for server in (self.core, self.abort, self.pmap_tcp):
            server.close()
        self.pmap_udp.close()

    # --- the portmapper (RFC 1833 section 3.2) ---

    def getport(self, prog: int, vers: int, prot: int) -> int:
        if prog == vxi11.DEVICE_CORE_PROG and vers == vxi11.DEVICE_VERS and prot == oncrpc.IPPROTO_TCP:
            return self.core_port
        if prog == vxi11.DEVICE_ASYNC_PROG and vers == vxi11.DEVICE_VERS and prot == oncrpc.IPPROTO_TCP:
            return self.abort.tcp_port
        return 0

    def pmap_call(self, body: bytes) -> bytes | None:
        try:
            call = oncrpc.parse_call(body)
        except XdrError:
            return None
        if call.prog != oncrpc.PMAP_PROG:
            return oncrpc.pack_accepted(call.xid, AcceptStat.PROG_UNAVAIL)
        if call.vers != oncrpc.PMAP_VERS:
            return oncrpc.pack_accepted(call.xid, AcceptStat.PROG_MISMATCH, mismatch=(2, 2))
        if call.proc == oncrpc.PmapProc.NULL:
            return oncrpc.pack_accepted(call.xid)
        if call.proc != oncrpc.PmapProc.GETPORT:
            return oncrpc.pack_accepted(call.xid, AcceptStat.PROC_UNAVAIL)
        try:
            u = Unpacker(call.args)
            prog, vers, prot, _ = u.uint(), u.uint(), u.uint(), u.uint()
        except XdrError:
            return oncrpc.pack_accepted(call.xid, AcceptStat.GARBAGE_ARGS)
        return oncrpc.pack_accepted(call.xid, results=Packer().uint(self.getport(prog, vers, prot)).bytes())

    # --- service requests on the interrupt channel ---

    def _make_listener(self, port: MessagePort):
        def on_srq(_stb: int) -> None:
            with self._lock:
                targets = [(link, self._intr.get(link.link_id)) for link in self._links.values()
                           if link.port is port and link.srq_enabled]
            for link, address in targets:
                if address is not None:
                    threading.Thread(target=_send_intr_srq, args=(address, link.srq_handle), daemon=True,
                                     name="vxi11 intr").start()
        return on_srq

    # --- the core channel (VXI-11 B.6) ---

    def core_call(self, call: oncrpc.Call, conn_links: set[int], peer_host: str) -> bytes:
        if call.prog != vxi11.DEVICE_CORE_PROG:
            return oncrpc.pack_accepted(call.xid, AcceptStat.PROG_UNAVAIL)
        if call.vers != vxi11.DEVICE_VERS:
            return oncrpc.pack_accepted(call.xid, AcceptStat.PROG_MISMATCH, mismatch=(1, 1))
        u = Unpacker(call.args)
        try:
            results = self._dispatch(call.proc, u, conn_links, peer_host)
        except XdrError:
            return oncrpc.pack_accepted(call.xid, AcceptStat.GARBAGE_ARGS)
        if results is None:
            return oncrpc.pack_accepted(call.xid, AcceptStat.PROC_UNAVAIL)
        return oncrpc.pack_accepted(call.xid, results=results)

    def _link(self, link_id: int) -> _Link | None:
        with self._lock:
            return self._links.get(link_id)

    def _dispatch(self, proc: int, u: Unpacker, conn_links: set[int], peer_host: str) -> bytes | None:
        error = Packer().uint
        if proc == CoreProc.CREATE_LINK:
            parms = vxi11.parse_create_link(u)
            port = self.devices.get(parms.device.lower())
            if port is None:
                return vxi11.pack_create_link_resp(vxi11.CreateLinkResp(Error.INVALID_ADDRESS, 0, 0, 0))
            link = _Link(next(self._link_ids), port, parms.device)
            with self._lock:
                self._links[link.link_id] = link
            conn_links.add(link.link_id)
            return vxi11.pack_create_link_resp(
                vxi11.CreateLinkResp(Error.NO_ERROR, link.link_id, self.abort.tcp_port, MAX_RECV_BYTES))
        if proc == CoreProc.DEVICE_WRITE:
            parms = vxi11.parse_write(u)
            link = self._link(parms.link_id)
            if link is None:
                return Packer().uint(Error.INVALID_LINK_IDENTIFIER).uint(0).bytes()
            link.port.write(parms.data, bool(parms.flags & Flags.END), owner=link)
            return Packer().uint(Error.NO_ERROR).uint(len(parms.data)).bytes()
        if proc == CoreProc.DEVICE_READ:
            parms = vxi11.parse_read(u)
            link = self._link(parms.link_id)
            if link is None:
                return vxi11.pack_read_resp(Error.INVALID_LINK_IDENTIFIER, 0, b"")
            link.abort.clear()
            term = parms.term_char if parms.flags & Flags.TERMCHRSET else None
            reply = link.port.read(max(1, parms.request_size), parms.io_timeout_ms / 1000, term_char=term,
                                   stop=link.abort, owner=link)
            if reply is None:
                code = Error.ABORT if link.abort.is_set() else Error.IO_TIMEOUT
                return vxi11.pack_read_resp(code, 0, b"")
            data, eom = reply
            reason = Reason.END if eom else 0
            if term is not None and data.endswith(bytes([term])):
                reason |= Reason.CHR
            if len(data) == parms.request_size:
                reason |= Reason.REQCNT
            return vxi11.pack_read_resp(Error.NO_ERROR, reason, data)
        if proc in (CoreProc.DEVICE_READSTB, CoreProc.DEVICE_TRIGGER, CoreProc.DEVICE_CLEAR,
                    CoreProc.DEVICE_REMOTE, CoreProc.DEVICE_LOCAL, CoreProc.DEVICE_LOCK, CoreProc.DEVICE_UNLOCK,
                    CoreProc.DESTROY_LINK, CoreProc.DEVICE_ENABLE_SRQ):
            link = self._link(u.int())
            if link is None:
                bad = error(Error.INVALID_LINK_IDENTIFIER)
                return bad.uint(0).bytes() if proc == CoreProc.DEVICE_READSTB else bad.bytes()
            if proc == CoreProc.DEVICE_READSTB:
                return Packer().uint(Error.NO_ERROR).uint(link.port.status_byte()).bytes()
            if proc == CoreProc.DEVICE_TRIGGER:
                link.port.trigger()
            elif proc == CoreProc.DEVICE_CLEAR:
                link.port.clear()
            elif proc == CoreProc.DEVICE_ENABLE_SRQ:
                link.srq_enabled = bool(u.uint())
                link.srq_handle = u.opaque()[:40]
            elif proc == CoreProc.DESTROY_LINK:
                with self._lock:
                    self._links.pop(link.link_id, None)
                    self._intr.pop(link.link_id, None)
                conn_links.discard(link.link_id)
            return error(Error.NO_ERROR).bytes()
        if proc == CoreProc.CREATE_INTR_CHAN:
            addr, port = u.uint(), u.uint()
            host = socket.inet_ntoa(struct.pack(">I", addr)) if addr else peer_host
            with self._lock:
                for link_id in conn_links:
                    self._intr[link_id] = (host, port)
            return error(Error.NO_ERROR).bytes()
        if proc == CoreProc.DESTROY_INTR_CHAN:
            with self._lock:
                for link_id in conn_links:
                    self._intr.pop(link_id, None)
            return error(Error.NO_ERROR).bytes()
        if proc == CoreProc.DEVICE_DOCMD:
            return Packer().uint(Error.OPERATION_NOT_SUPPORTED).opaque(b"").bytes()
        return None

    def drop(self, conn_links: set[int]) -> None:
        with self._lock:
            links = [self._links.pop(link_id, None) for link_id in conn_links]
            for link_id in conn_links:
                self._intr.pop(link_id, None)
        for link in links:
            if link is not None:
                link.port.release(link)

    def abort_call(self, call: oncrpc.Call) -> bytes:
        if call.prog != vxi11.DEVICE_ASYNC_PROG or call.proc != CoreProc.DEVICE_ABORT:
            return oncrpc.pack_accepted(call.xid, AcceptStat.PROC_UNAVAIL)
        link = self._link(Unpacker(call.args).int())
        if link is None:
            return oncrpc.pack_accepted(call.xid, results=Packer().uint(Error.INVALID_LINK_IDENTIFIER).bytes())
        link.abort.set()
        link.port.device.notify()
        return oncrpc.pack_accepted(call.xid, results=Packer().uint(Error.NO_ERROR).bytes())


def _send_intr_srq(address: tuple[str, int], handle: bytes) -> None:
    """device_intr_srq on the client's interrupt server: one-way, no reply awaited (VXI-11 B.6.x)."""
    body = oncrpc.pack_call(1, vxi11.DEVICE_INTR_PROG, vxi11.DEVICE_VERS, CoreProc.DEVICE_INTR_SRQ,
                            Packer().opaque(handle).bytes())
    try:
        with socket.create_connection(address, timeout=2) as sock:
            send_record(sock, body)
    except OSError:
        pass  # the client went away; an instrument does not retry either


class _CoreHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        vxi: Vxi11Server = self.server.vxi
        links: set[int] = set()
        try:
            while not self.server.closing.is_set():
                body = recv_record(sock)
                try:
                    call = oncrpc.parse_call(body)
                except XdrError:
                    return  # not RPC: drop the connection
                send_record(sock, vxi.core_call(call, links, self.client_address[0]))
        except (ConnectionError, OSError):
            pass
        finally:
            vxi.drop(links)


class _AbortHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        vxi: Vxi11Server = self.server.vxi
        try:
            while not self.server.closing.is_set():
                call = oncrpc.parse_call(recv_record(sock))
                send_record(sock, vxi.abort_call(call))
        except (ConnectionError, OSError, XdrError):
            pass


class _PmapTcpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        vxi: Vxi11Server = self.server.vxi
        try:
            while not self.server.closing.is_set():
                reply = vxi.pmap_call(recv_record(sock))
                if reply is None:
                    return
                send_record(sock, reply)
        except (ConnectionError, OSError):
            pass


class _UdpPortmapper:
    """GETPORT over UDP (RFC 1833; no record marks on UDP), for broadcast discovery."""

    def __init__(self, vxi: Vxi11Server, host: str, port: int) -> None:
        self._vxi = vxi
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.bind((host, 0))  # the TCP port's number is taken for UDP: any other
        self.sock.settimeout(0.2)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="vxi11 pmap udp")
        self._thread.start()

    @property
    def udp_port(self) -> int:
        return self.sock.getsockname()[1]

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._vxi.pmap_call(data)
            if reply is not None:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=1)
        self.sock.close()
