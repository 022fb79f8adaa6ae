"""A TCP connection with deadlines, abort checks and typed errors: what every LAN session sends on.

Waits are cut into slices of at most :data:`ABORT_SLICE_S` so that a set ``abort`` event
stops a transfer between slices (the core's rule: an abort is a ``threading.Event`` checked
between chunks). Every failure is one of :mod:`app.lan.errors`.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time

from app.usbtmc import trace as tr
from app.usbtmc.errors import AbortedError, TmcError

from .errors import ConnectionLostError, HostUnreachableError, RefusedError, ReplyTimeoutError, SendTimeoutError

ABORT_SLICE_S = 0.05
SEND_CHUNK_BYTES = 1 << 20
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def connect(host: str, port: int, timeout_ms: int) -> socket.socket:
    """A connected TCP socket with TCP_NODELAY and keepalive (so a half-open connection is found
    by the kernel on long waits); :class:`RefusedError` or :class:`HostUnreachableError` else."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout_ms / 1000)
    except ConnectionRefusedError:
        raise RefusedError(f"{host} refused a connection on port {port}: nothing listens there "
                           "(wrong port, or the instrument's LAN service is off)") from None
    except TimeoutError:
        raise HostUnreachableError(f"{host}:{port} did not answer within {timeout_ms} ms "
                                   "(host off, wrong address, or a firewall drops the packets)") from None
    except socket.gaierror as exc:
        raise HostUnreachableError(f"{host}: the name does not resolve ({exc.strerror})") from None
    except OSError as exc:
        if exc.errno in _UNREACHABLE:
            raise HostUnreachableError(f"{host}:{port} is unreachable ({exc.strerror})") from None
        raise HostUnreachableError(f"{host}:{port}: {exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setblocking(False)
    return sock


class Stream:
    """One non-blocking TCP socket read and written with deadlines. ``name`` goes in error texts."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self._closed = False
        #: The I/O trace this connection records its sends and receives in (None: not traced),
        #: and its channel there (app.usbtmc.trace.LAN_RAW, ...).
        self.trace: tr.SessionTrace | None = None
        self.channel = 0

    def traced(self, trace: tr.SessionTrace | None, channel: int) -> Stream:
        """Record every send and receive of this connection in ``trace`` as ``channel``
        (nothing when ``trace`` is None); returns the stream."""
        if trace is not None:
            self.trace, self.channel = trace, channel
            trace.connection(channel, self.sock)
        return self

    @classmethod
    def open(cls, host: str, port: int, timeout_ms: int, name: str) -> Stream:
        return cls(connect(host, port, timeout_ms), name)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    def _wait(self, readable: bool, deadline: float, abort: threading.Event | None, what: str, done: int,
              total: int) -> None:
        while True:
            if abort is not None and abort.is_set():
                raise AbortedError(f"{what} was aborted by the user after {done} of {total} bytes", done)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if readable:
                    got = f"after {done} of {total} bytes" if total else f"with {done} bytes received"
                    raise ReplyTimeoutError(f"{self.name}: {what} timed out {got}")
                raise SendTimeoutError(f"{self.name}: the instrument stopped taking data after {done} of "
                                       f"{total} bytes ({what})")
            wait = min(remaining, ABORT_SLICE_S) if abort is not None else remaining
            try:
                r, w, _ = select.select([self.sock] if readable else [], [] if readable else [self.sock], [], wait)
            except (OSError, ValueError):
                raise ConnectionLostError(f"{self.name}: the connection is closed") from None
            if r or w:
                return

    def send_all(self, data, timeout_ms: int, *, abort: threading.Event | None = None,
                 progress=None, what: str = "the write", done_before: int = 0, total: int | None = None) -> None:
        """Send ``data`` (bytes-like); the timeout restarts whenever the peer takes bytes."""
        view = memoryview(data).cast("B")
        total = len(view) if total is None else total
        sent = 0
        while sent < len(view):
            trace = self.trace
            start = trace.now() if trace is not None else 0
            try:
                self._wait(False, time.monotonic() + timeout_ms / 1000, abort, what, done_before + sent, total)
                try:
                    n = self.sock.send(view[sent:sent + SEND_CHUNK_BYTES])
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise ConnectionLostError(f"{self.name}: the connection broke during {what} after "
                                              f"{done_before + sent} of {total} bytes ({exc.strerror or exc})") from None
            except TmcError as exc:
                if trace is not None:
                    trace.packet(self.channel, "out", min(len(view) - sent, SEND_CHUNK_BYTES), 0, tr.status_of(exc),
                                 None, start)
                raise
            if trace is not None:
                trace.packet(self.channel, "out", min(len(view) - sent, SEND_CHUNK_BYTES), n, tr.OK,
                             view[sent:sent + n], start)
            sent += n
            if progress is not None:
                progress(done_before + sent, total)

    def recv_some(self, max_bytes: int, deadline: float, *, abort: threading.Event | None = None,
                  what: str = "the read", done: int = 0, total: int = 0) -> bytes:
        """At least one byte (at most ``max_bytes``) by ``deadline`` (time.monotonic seconds)."""
        while True:
            data = self._receive(self.sock.recv, max_bytes, max_bytes, deadline, abort, what, done, total)
            if data is not None:
                return data

    def recv_exact(self, size: int, deadline: float, *, abort: threading.Event | None = None,
                   what: str = "the read") -> bytes:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            got += self._receive(self.sock.recv_into, view[got:], size - got, deadline, abort, what, got, size) or 0
        return bytes(buf)

    def _receive(self, receive, target, want: int, deadline: float, abort, what: str, done: int, total: int):
        """One traced receive by ``deadline``: ``receive(target)`` is ``sock.recv`` with a size
        (giving bytes) or ``sock.recv_into`` with a view (giving a count). None when the socket
        turned out to have nothing after all; a closed or broken connection raises."""
        trace = self.trace
        start = trace.now() if trace is not None else 0
        try:
            self._wait(True, deadline, abort, what, done, total)
            try:
                result = receive(target)
            except BlockingIOError:
                return None
            except OSError as exc:
                raise ConnectionLostError(f"{self.name}: the connection broke during {what} "
                                          f"({exc.strerror or exc})") from None
            if not result:
                raise ConnectionLostError(f"{self.name}: the instrument closed the connection during {what}")
        except TmcError as exc:
            if trace is not None:
                trace.packet(self.channel, "in", want, 0, tr.status_of(exc), None, start)
            raise
        if trace is not None:
            data = result if isinstance(result, bytes) else target[:result]
            trace.packet(self.channel, "in", want, len(data), tr.OK, data, start)
        return result

    def pending(self) -> bool:
        """Whether bytes (or an end of stream) wait to be read now."""
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(r)
