"""VXI-11 sessions (``TCPIP::host[,port]::instN::INSTR``): ONC RPC calls on the core channel,
device_abort on the abort channel, service requests on an interrupt channel this session serves.

The core channel's port comes from the portmapper (RFC 1833 GETPORT on port 111) unless the
resource names it. Writes go out as device_write calls of at most the link's maxRecvSize
with END on the last (VXI-11 B.6.3); reads are device_read calls until END or the TermChar.
"""

from __future__ import annotations

import itertools
import random
import select
import socket
import struct
import time

from app.protocol import oncrpc, vxi11
from app.protocol.oncrpc import Packer, Unpacker, XdrError
from app.protocol.vxi11 import CoreProc, Error, Flags, Reason
from app.usbtmc import trace as tr
from app.usbtmc.errors import AbortedError, DeviceNotFoundError, TmcError

from .errors import ConnectionLostError, LanProtocolError, ReplyTimeoutError, SendTimeoutError
from .session import LanCapabilities, LanSession, after
from .stream import Stream

RPC_MARGIN_MS = 2000  # how much longer than the io_timeout a reply may take to come back
READ_REQUEST_BYTES = 1 << 24
SRQ_HANDLE = b"tmc-console"


class RpcChannel:
    """ONC RPC calls on one TCP stream (RFC 5531 section 11 record marking)."""

    def __init__(self, stream: Stream, prog: int, vers: int) -> None:
        self.stream = stream
        self.prog = prog
        self.vers = vers
        self._xids = itertools.count(random.getrandbits(24))

    def send_call(self, proc: int, args: bytes, timeout_ms: int, abort=None) -> int:
        xid = next(self._xids) & 0xFFFF_FFFF
        body = oncrpc.pack_call(xid, self.prog, self.vers, proc, args)
        self.stream.send_all(oncrpc.pack_mark(len(body), True) + body, timeout_ms, abort=abort, what="an RPC call")
        return xid

    def receive_reply(self, xid: int, deadline: float, abort=None) -> Unpacker:
        while True:
            parts = []
            while True:
                size, last = oncrpc.parse_mark(self.stream.recv_exact(4, deadline, abort=abort, what="an RPC reply"))
                parts.append(self.stream.recv_exact(size, deadline, what="an RPC reply"))
                if last:
                    break
            try:
                return oncrpc.parse_reply(b"".join(parts), xid)
            except XdrError as exc:
                if "expected" in str(exc):
                    continue  # the reply to an earlier call that was given up on: skip it
                raise LanProtocolError(f"{self.stream.name}: {exc}") from None

    def send_call_with_data(self, proc: int, head: bytes, data, timeout_ms: int, abort=None) -> int:
        """A call whose arguments end in opaque ``data`` (device_write): the data is sent from the
        caller's buffer, not copied into the record (RFC 4506 4.10 layout: length, bytes, padding)."""
        xid = next(self._xids) & 0xFFFF_FFFF
        view = memoryview(data).cast("B")
        prefix = oncrpc.pack_call(xid, self.prog, self.vers, proc, head) + Packer().uint(len(view)).bytes()
        pad = b"\0" * oncrpc.pad4(len(view))
        size = len(prefix) + len(view) + len(pad)
        self.stream.send_all(oncrpc.pack_mark(size, True) + prefix, timeout_ms, abort=abort, what="an RPC call")
        self.stream.send_all(view, timeout_ms, abort=abort, what="an RPC call")
        if pad:
            self.stream.send_all(pad, timeout_ms, abort=abort, what="an RPC call")
        return xid

    def call(self, proc: int, args: bytes, timeout_ms: int, abort=None) -> Unpacker:
        xid = self.send_call(proc, args, timeout_ms, abort)
        return self.receive_reply(xid, time.monotonic() + timeout_ms / 1000, abort)


def getport(host: str, prog: int, vers: int, timeout_ms: int, pmap_port: int = oncrpc.PMAP_PORT,
            trace: tr.SessionTrace | None = None) -> int:
    """The TCP port the portmapper on ``host`` has for ``prog``/``vers`` (0: not registered);
    the exchange is recorded in ``trace`` when one is given."""
    stream = Stream.open(host, pmap_port, timeout_ms, f"the portmapper on {host}").traced(trace, tr.LAN_PORTMAP)
    try:
        u = RpcChannel(stream, oncrpc.PMAP_PROG, oncrpc.PMAP_VERS).call(
            oncrpc.PmapProc.GETPORT, oncrpc.pack_mapping(prog, vers, oncrpc.IPPROTO_TCP, 0), timeout_ms)
        return u.uint()
    finally:
        stream.close()


class Vxi11Session(LanSession):
    protocol = "VXI-11"
    capabilities = LanCapabilities(term_char=True)

    def _connect(self) -> None:
        host, port = self.address.host, self.address.port
        if port is None:
            port = getport(host, vxi11.DEVICE_CORE_PROG, vxi11.DEVICE_VERS, self.open_timeout_ms, trace=self._trace)
            if not port:
                raise DeviceNotFoundError(f"{host}: the portmapper knows no VXI-11 server (DEVICE_CORE)")
        self._core = RpcChannel(Stream.open(host, port, self.open_timeout_ms, self.resource).traced(
                                    self._trace, tr.LAN_VXI11_CORE), vxi11.DEVICE_CORE_PROG, vxi11.DEVICE_VERS)
        self._abort_channel: RpcChannel | None = None
        self._intr_listener: socket.socket | None = None
        self._intr_conns: list[socket.socket] = []
        self._intr_buffers: dict[socket.socket, bytearray] = {}
        try:
            u = self._core.call(CoreProc.CREATE_LINK, vxi11.pack_create_link(
                vxi11.CreateLinkParms(random.getrandbits(31), False, 0, self.address.device)), self.open_timeout_ms)
            resp = vxi11.parse_create_link_resp(u)
            if resp.error == Error.INVALID_ADDRESS:
                raise DeviceNotFoundError(f"{host} has no VXI-11 device named {self.address.device!r}")
            self._check(resp.error, "create_link")
            self._link = resp.link_id
            self._abort_port = resp.abort_port
            self._max_write = max(1024, min(resp.max_recv_size, 1 << 26))
            self.has_interrupt_in = self._open_intr_channel()
        except BaseException:
            self._core.stream.close()
            raise

    def _disconnect(self) -> None:
        if self._core.stream.closed:
            return
        try:
            if self._intr_listener is not None:
                self._core.call(CoreProc.DESTROY_INTR_CHAN, b"", 500)
            self._core.call(CoreProc.DESTROY_LINK, Packer().int(self._link).bytes(), 500)
        except TmcError:
            pass  # the instrument frees a link whose connection closes (VXI-11 B.4.2)
        for sock in [*self._intr_conns, self._intr_listener]:
            if sock is not None:
                sock.close()
        if self._abort_channel is not None:
            self._abort_channel.stream.close()
        self._core.stream.close()

    # --- calls ---

    def _check(self, error: int, what: str, *, timeout_exc=ReplyTimeoutError) -> None:
        if error == Error.NO_ERROR:
            return
        text = vxi11.ERROR_TEXT.get(error, f"error {error}")
        if error == Error.IO_TIMEOUT:
            exc = timeout_exc(f"{self.resource}: {what}: the instrument reported an I/O timeout")
            exc.in_step = True  # the RPC reply came: the stream is in step
            raise exc
        if error == Error.ABORT:
            raise AbortedError(f"{self.resource}: {what} was aborted")
        if error in (Error.INVALID_LINK_IDENTIFIER, Error.CHANNEL_NOT_ESTABLISHED):
            raise ConnectionLostError(f"{self.resource}: {what}: {text} (the instrument dropped the link)")
        raise LanProtocolError(f"{self.resource}: {what} failed: {text} (VXI-11 error {error})")

    def _call(self, proc: int, args: bytes, io_timeout_ms: int, abort=None, data=None) -> Unpacker:
        """A core call whose reply may take the io_timeout plus a margin; an abort while waiting
        sends device_abort on the abort channel (VXI-11 B.5.1) and waits for the aborted reply.
        ``data``: opaque bytes that end the arguments, sent without copying."""
        if data is None:
            xid = self._core.send_call(proc, args, io_timeout_ms, abort)
        else:
            xid = self._core.send_call_with_data(proc, args, data, io_timeout_ms, abort)
        deadline = time.monotonic() + (io_timeout_ms + RPC_MARGIN_MS) / 1000
        try:
            return self._core.receive_reply(xid, deadline, abort)
        except AbortedError as exc:
            with self._recovering(f"device_abort on the abort channel, {after(exc)}") as entry:
                self._device_abort()
                reply = self._core.receive_reply(xid, time.monotonic() + RPC_MARGIN_MS / 1000)
                if entry is not None:
                    entry.detail = "device_abort sent; the aborted call was answered"
            return reply

    def _device_abort(self) -> None:
        if self._abort_channel is None:
            stream = Stream.open(self.address.host, self._abort_port, self.open_timeout_ms,
                                 f"{self.resource} abort").traced(self._trace, tr.LAN_VXI11_ABORT)
            self._abort_channel = RpcChannel(stream, vxi11.DEVICE_ASYNC_PROG, vxi11.DEVICE_VERS)
        u = self._abort_channel.call(CoreProc.DEVICE_ABORT, Packer().int(self._link).bytes(), 1000)
        self._check(u.uint(), "device_abort")

    def _generic(self, proc: int, what: str) -> Unpacker:
        u = self._call(proc, vxi11.pack_generic(self._link, 0, 0, self.timeout_ms), self.timeout_ms)
        self._check(u.uint(), what)
        return u

    def _recovered(self, exc: TmcError, what: str) -> TmcError:
        """After a failed transfer: device_clear when the stream is still in step, else reconnect."""
        if not (isinstance(exc, AbortedError) or getattr(exc, "in_step", False)):
            return self._fail(exc, what)  # the RPC stream is out of step: a new connection and link
        return self._cleared(exc, what, "device_clear",
                             lambda: self._generic(CoreProc.DEVICE_CLEAR, "device_clear"))

    # --- the session interface ---

    def _send(self, views, total, abort, progress) -> None:
        done = 0

        def write(chunk, last: bool) -> None:
            nonlocal done
            if abort is not None and abort.is_set():
                raise AbortedError(f"the write was aborted by the user after {done} of {total} bytes", done)
            head = (Packer().int(self._link).uint(self.timeout_ms).uint(0)
                    .uint(Flags.END if last else 0).bytes())  # Device_WriteParms before its data
            u = self._call(CoreProc.DEVICE_WRITE, head, self.timeout_ms + len(chunk) // 1000, abort, data=chunk)
            self._check(u.uint(), "device_write", timeout_exc=SendTimeoutError)
            done += u.uint()
            if progress is not None:
                progress(done, total)

        try:
            # Chunks of at most maxRecvSize, END on the message's last (VXI-11 B.6.3); pieces are
            # joined only where one chunk spans two of them.
            chunks = []
            pending: list = []
            size = 0
            for view in views:
                offset = 0
                while offset < len(view):
                    take = min(self._max_write - size, len(view) - offset)
                    pending.append(view[offset:offset + take])
                    size += take
                    offset += take
                    if size == self._max_write:
                        chunks.append(pending[0] if len(pending) == 1 else b"".join(pending))
                        pending, size = [], 0
            if pending:
                chunks.append(pending[0] if len(pending) == 1 else b"".join(pending))
            for i, chunk in enumerate(chunks):
                write(chunk, i == len(chunks) - 1)
        except TmcError as exc:
            raise self._recovered(exc, "the instrument may hold part of the message") from None

    def _receive(self, max_bytes, abort, progress) -> bytes:
        out = bytearray()
        term = self.term_char
        flags = Flags.TERMCHRSET if term is not None else 0
        try:
            while True:
                if abort is not None and abort.is_set():
                    raise AbortedError(f"the read was aborted by the user after {len(out)} bytes", len(out))
                ask = READ_REQUEST_BYTES if max_bytes is None else max_bytes - len(out)
                args = vxi11.pack_read(vxi11.ReadParms(self._link, ask, self.timeout_ms, 0, flags, term or 0))
                u = self._call(CoreProc.DEVICE_READ, args, self.timeout_ms, abort)
                error, reason = u.uint(), u.uint()
                data = u.opaque()
                out += data
                self._check(error, "device_read")
                if progress is not None:
                    progress(len(out), 0)
                if reason & (Reason.END | Reason.CHR) or (max_bytes is not None and len(out) >= max_bytes):
                    return bytes(out)
        except TmcError as exc:
            exc.received = bytes(out)
            raise self._recovered(exc, "a late reply would be taken for the next one's") from None

    def _read_stb(self) -> int:
        """device_readstb (VXI-11 B.6.5): the status byte without touching the output queue."""
        try:
            u = self._generic(CoreProc.DEVICE_READSTB, "device_readstb")
        except TmcError as exc:
            raise self._fail(exc, "the status byte read failed") from None
        return u.uint() & 0xFF

    def _clear(self) -> None:
        try:
            self._generic(CoreProc.DEVICE_CLEAR, "device_clear")
        except TmcError as exc:
            raise self._fail(exc, "device_clear failed") from None

    def _trigger(self) -> None:
        self._generic(CoreProc.DEVICE_TRIGGER, "device_trigger")

    # --- service requests: the interrupt channel (VXI-11 B.6.13, B.6.14, B.6.15) ---

    def _open_intr_channel(self) -> bool:
        local_host = self._core.stream.sock.getsockname()[0]
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((local_host, 0))
            listener.listen(4)
            listener.setblocking(False)
            addr = struct.unpack(">I", socket.inet_aton(local_host))[0]
            u = self._core.call(CoreProc.CREATE_INTR_CHAN,
                                vxi11.pack_create_intr_chan(addr, listener.getsockname()[1]), self.open_timeout_ms)
            if u.uint() != Error.NO_ERROR:
                raise OSError("create_intr_chan refused")
            u = self._core.call(CoreProc.DEVICE_ENABLE_SRQ, vxi11.pack_enable_srq(self._link, True, SRQ_HANDLE),
                                self.open_timeout_ms)
            if u.uint() != Error.NO_ERROR:
                raise OSError("device_enable_srq refused")
        except (OSError, TmcError) as exc:
            listener.close()
            self.note(f"{self.resource}: no service requests on this link ({exc}); poll the status byte instead")
            return False
        self._intr_listener = listener
        return True

    def _collect_srq(self, wait_s: float = 0.0) -> None:
        if self._intr_listener is None:
            return
        socks = [self._intr_listener, *self._intr_conns]
        readable, _, _ = select.select(socks, [], [], wait_s)
        signalled = False
        for sock in readable:
            if sock is self._intr_listener:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                if self._trace is not None:
                    self._trace.connection(tr.LAN_VXI11_INTR, conn)
                self._intr_conns.append(conn)
                self._intr_buffers[conn] = bytearray()
                continue
            start = tr.SessionTrace.now()
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if self._trace is not None and data:  # the instrument's device_intr_srq calls (VXI-11 B.7)
                self._trace.packet(tr.LAN_VXI11_INTR, "in", 65536, len(data), tr.OK, data, start)
            if not data:
                sock.close()
                self._intr_conns.remove(sock)
                signalled |= self._parse_intr(self._intr_buffers.pop(sock))
                continue
            self._intr_buffers[sock] += data
            signalled |= self._parse_intr(self._intr_buffers[sock])
        if signalled:
            self._srq.append(self._read_stb())  # the SRQ names no status byte: a serial poll reads it

    def _parse_intr(self, buf: bytearray) -> bool:
        """Consume whole device_intr_srq records from ``buf``; True if one carried our handle."""
        found = False
        while len(buf) >= 4:
            size, _last = oncrpc.parse_mark(bytes(buf[:4]))
            if len(buf) < 4 + size:
                break
            body = bytes(buf[4:4 + size])
            del buf[:4 + size]
            try:
                call = oncrpc.parse_call(body)
            except XdrError:
                continue
            if call.prog == vxi11.DEVICE_INTR_PROG and call.proc == CoreProc.DEVICE_INTR_SRQ:
                found = True
        return found
