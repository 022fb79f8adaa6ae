"""What every LAN session shares: the interface of :class:`app.usbtmc.Instrument` that the console,
the CLI and the waveform uploads use, over a protocol that subclasses supply.

One thread owns a session (it is not thread-safe); another thread may set only the ``abort``
events given to long transfers, which are checked between slices of at most 50 ms.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.usbtmc import ieee488
from app.usbtmc import trace as tr
from app.usbtmc.text import TextMessages
from app.usbtmc.trace import MESSAGE_CAP_BYTES
from app.usbtmc.errors import AbortedError, NotSupportedError, ProtocolError, TmcError, TmcTimeoutError, UsageError

from .errors import ConnectionLostError, LanRecovery, SendTimeoutError
from .resource import LanAddress

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LanCapabilities:
    """What a LAN session offers, under the names the console reads from USBTMC capabilities."""

    trigger: bool = True  # VXI-11 device_trigger, HiSLIP Trigger, *TRG on a raw socket
    term_char: bool = False  # reads end at a TermChar (VXI-11 device_read's termChar)
    indicator_pulse: bool = False
    ren_control: bool = False
    scpi: bool | None = None  # not announced on LAN: *IDN? decides

    def describe(self) -> list[tuple[str, bool]]:
        return [("Trigger", self.trigger), ("TermChar", self.term_char)]


@dataclass(frozen=True)
class LanInfo:
    """What the console shows about an open LAN session (the USB side's DeviceInfo has VID/PID)."""

    resource: str
    protocol: str  # "SOCKET", "VXI-11" or "HiSLIP"
    host: str
    port: int | None
    manufacturer: str = ""
    product: str = ""
    serial: str = ""
    capabilities: object = None
    quirks: tuple = field(default=())
    problem: str | None = None
    diagnosis: object = None
    address: int | None = None  # what the browser compares to see an instrument re-appear
    bus: str = "LAN"
    # The fields a USB DeviceInfo has that LAN has not: kept so views of either need no type test.
    vid: int = 0
    pid: int = 0
    interface_number: int = 0
    endpoints: tuple = ()
    firmware_mode_pid: int | None = None
    #: The status byte can be read (the protocol's own read, or *STB? on a raw socket), as on USB488.
    reads_stb: bool = True

    @property
    def vid_pid(self) -> str:
        """Where the USB side shows VID:PID: the host and port."""
        return f"{self.host}:{self.port}" if self.port else self.host

    @property
    def speed(self) -> str:
        return "TCP"


class LanSession(TextMessages):
    """A session with one LAN instrument; subclasses implement the protocol's ``_send``,
    ``_receive``, ``_read_stb``, ``_clear``, ``_connect`` and ``_disconnect``."""

    protocol = ""
    #: Whether the protocol signals service requests itself (VXI-11 interrupt channel, HiSLIP
    #: AsyncServiceRequest); the console polls :meth:`poll_srq` only then.
    has_interrupt_in = False
    pipelined = False
    capabilities = LanCapabilities()

    def __init__(self, address: LanAddress, timeout_ms: int = 5000, *, open_timeout_ms: int | None = None,
                 write_termination: str = "\n", read_termination: str = "\n", encoding: str = "utf-8",
                 trace=None) -> None:
        self.address = address
        self.resource = str(address)
        self.timeout_ms = timeout_ms
        self.open_timeout_ms = open_timeout_ms if open_timeout_ms is not None else min(timeout_ms, 5000)
        self.write_termination = write_termination
        self.read_termination = read_termination
        self.encoding = encoding
        self.term_char: int | None = None
        self._srq: deque[int] = deque()
        self._notes: list[str] = []
        self._closed = False
        self.info = LanInfo(self.resource, self.protocol, address.host, address.port,
                            capabilities=self.capabilities)
        # The I/O trace (app.usbtmc.trace Recorder): a LAN session records its messages (what was
        # sent, the reply, the error and the recovery) and, under them, every send and receive
        # of its connections (app.lan.stream.Stream.traced), as a USB session its transfers.
        self._trace = trace.open_session(f"{self.resource} ({self.protocol})", timeout_ms=timeout_ms) \
            if trace is not None else None
        if self._trace is not None:
            self._trace.info.resource = self.resource  # what a script export opens
        self._connect()

    # --- lifetime ---

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._disconnect()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionLostError(f"{self.resource}: the session is closed")

    @property
    def trace(self):
        """The session's :class:`~app.usbtmc.trace.SessionTrace`, or None when not traced."""
        return self._trace

    def _message(self, op: str, sent=b""):
        return contextlib.nullcontext() if self._trace is None else self._trace.message(op, sent)

    def _traced(self, op: str, sent, call):
        """``call()`` inside the trace's record of ``op``; a bytes result is recorded as the reply."""
        if self._trace is None:
            return call()
        with self._trace.message(op, sent) as entry:
            result = call()
            if entry is not None:
                if isinstance(result, bytes | bytearray):
                    entry.reply, entry.actual = bytes(result[:MESSAGE_CAP_BYTES]), len(result)
                elif isinstance(result, int):
                    entry.reply, entry.actual = bytes([result & 0xFF]), 1
            return result

    def note(self, text: str) -> None:
        self._notes.append(text)

    def take_notes(self) -> list[str]:
        notes, self._notes = self._notes, []
        return notes

    def active_term_char(self) -> int | None:
        return self.term_char

    def _recovering(self, why: str):
        """The I/O trace's record of a recovery (``why``: which one, after what), yielding its entry
        (None when not traced, or inside another recovery, which it then joins). The sends and
        receives inside are marked as its steps, as a USB session's aborts and clears are; the
        caller ends it with :meth:`_outcome`."""
        return contextlib.nullcontext() if self._trace is None else self._trace.recovery(why)

    @staticmethod
    def _outcome(entry, recovery: LanRecovery) -> LanRecovery:
        """``recovery`` as the outcome of the trace's recovery ``entry`` (what ran, and whether
        the session is usable); returns it."""
        if entry is not None:
            entry.detail = str(recovery)
            entry.status = tr.OK if recovery.usable else tr.ERROR
        return recovery

    def _reconnect(self, what: str, why: str) -> LanRecovery:
        """Drop the connection and open a new one: the recovery of a stream that is out of step.
        ``what`` says what the failure left behind, ``why`` names the recovery in the trace."""
        with self._recovering(why) as entry:
            self._disconnect()
            try:
                self._connect()
            except TmcError as exc:
                self._closed = True
                return self._outcome(entry, LanRecovery(f"{what}; reconnecting failed ({exc})", usable=False))
            return self._outcome(entry, LanRecovery(f"{what}; the connection was reopened", usable=True))

    def _fail(self, exc: TmcError, what: str) -> TmcError:
        """``exc`` with the recovery that ran after it: a new connection (subclasses may do better)."""
        recovery = self._reconnect(what, f"reconnect, {after(exc)}")
        return with_recovery(exc, recovery)

    def _cleared(self, exc: TmcError, what: str, name: str, clear: Callable[[], None]) -> TmcError:
        """``exc`` with the recovery that ran after it: ``clear()``, the protocol's device clear
        (``name`` in texts), or a new connection when the clear fails."""
        with self._recovering(f"{name}, {after(exc)}") as entry:
            try:
                clear()
                recovery = LanRecovery(f"{what}; {name} discarded it", usable=True)
            except TmcError as clear_exc:
                recovery = self._reconnect(f"{what}; {name} failed ({clear_exc})", "reconnect")  # joins this record
            self._outcome(entry, recovery)
        return with_recovery(exc, recovery)

    # --- writing ---

    def write_raw(self, data, *, abort: threading.Event | None = None, progress: Progress | None = None) -> None:
        """Send ``data`` (bytes-like) as one program message."""
        self._check_open()
        view = memoryview(data).cast("B")
        if not len(view):
            raise UsageError("a message holds at least one byte; nothing was sent")
        self._traced("write", view, lambda: self._send((view,), len(view), abort, progress))

    def write_stream(self, pieces: Iterable, total_bytes: int | None = None, *, abort: threading.Event | None = None,
                     progress: Progress | None = None, abort_latency_ms: int | None = None) -> None:
        """Send the concatenation of ``pieces`` as one message without joining them in memory."""
        self._check_open()
        views = [memoryview(p).cast("B") for p in pieces]
        total = sum(len(v) for v in views) if total_bytes is None else total_bytes
        if not total:
            raise UsageError("a message holds at least one byte; nothing was sent")
        with self._message("write") as entry:
            if entry is not None:
                entry.requested, entry.text = total, f"write {total} bytes (streamed)"
            self._send(views, total, abort, progress)

    # --- reading ---

    def read_raw(self, max_bytes: int | None = None, *, abort=None, progress: Progress | None = None) -> bytes:
        """One response message (``max_bytes``: stop after that many bytes)."""
        self._check_open()
        if max_bytes is not None and max_bytes <= 0:
            raise UsageError(f"a read asks for at least one byte, got max_bytes={max_bytes}")
        return self._traced("read", b"", lambda: self._receive(max_bytes, abort, progress))

    def query_raw(self, data, *, abort=None, progress: Progress | None = None,
                  on_sent: Callable[[], None] | None = None, read_progress: Progress | None = None) -> bytes:
        """Write ``data`` as one message and read the reply; ``on_sent()`` once it has gone out."""
        def query() -> bytes:
            self.write_raw(data, abort=abort, progress=progress)
            if on_sent is not None:
                on_sent()
            return self.read_raw(abort=abort, progress=read_progress)

        return self._traced("query", memoryview(data).cast("B"), query)

    def read_block(self) -> bytes:
        return ieee488.decode_block(self.read_raw())

    def query_block(self, message: str) -> bytes:
        self.write(message)
        return self.read_block()

    # --- status, SRQ, clear, trigger ---

    def read_stb(self) -> int:
        """The status byte: the protocol's own read where it has one, else ``*STB?``."""
        self._check_open()
        return self._traced("stb", b"", self._read_stb)

    def poll_srq(self) -> list[int]:
        """Status bytes of the service requests signalled so far (none on protocols without SRQ)."""
        self._check_open()
        self._collect_srq()
        found = list(self._srq)
        self._srq.clear()
        return found

    def wait_srq(self, timeout_ms: int | None = None) -> int:
        """Wait for the next service request (at most ``timeout_ms``, default the session's timeout)
        and return its status byte."""
        self._check_open()
        wait_ms = self.timeout_ms if timeout_ms is None else timeout_ms
        with self._message("wait_srq") as entry:
            if entry is not None:
                entry.requested = wait_ms  # a script export waits as long
            if not self.has_interrupt_in:
                raise NotSupportedError(f"{self.protocol} has no service request signal; poll *STB? instead")
            deadline = time.monotonic() + wait_ms / 1000
            while not self._srq:
                if time.monotonic() >= deadline:
                    raise TmcTimeoutError("no service request arrived in time")
                self._collect_srq(min(0.05, max(0.0, deadline - time.monotonic())))
            stb = self._srq.popleft()
            if entry is not None:
                entry.reply, entry.actual = bytes([stb]), 1
            return stb

    def clear(self) -> None:
        self._check_open()
        self._traced("clear", b"", self._clear)

    def trigger(self) -> None:
        self._check_open()
        self._traced("trigger", b"", self._trigger)

    def indicator_pulse(self) -> None:
        raise NotSupportedError(f"{self.protocol} has no indicator pulse (a USBTMC request)")

    def remote(self) -> None:
        raise NotSupportedError(f"{self.protocol}: remote/local control is not offered on this session")

    local = lockout = remote

    def ren(self, enabled: bool) -> None:
        self.remote()

    # --- what a protocol supplies ---

    def _connect(self) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError

    def _send(self, views: list, total: int, abort, progress) -> None:
        raise NotImplementedError

    def _receive(self, max_bytes: int | None, abort, progress) -> bytes:
        raise NotImplementedError

    def _read_stb(self) -> int:
        return ieee488.parse_register_value(self.query("*STB?"))

    def _collect_srq(self, wait_s: float = 0.0) -> None:
        """Move signalled service requests into ``self._srq`` (waiting up to ``wait_s``)."""

    def _clear(self) -> None:
        raise NotSupportedError(f"{self.protocol} has no device clear")

    def _trigger(self) -> None:
        self.write("*TRG")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.resource}{' closed' if self._closed else ''}>"


def after(exc: BaseException) -> str:
    """The failure a recovery answers, as its record in the trace names it ("after the reply
    timed out"); the trace adds the failed send or receive when there is one."""
    if isinstance(exc, AbortedError):
        return "after the user aborted"
    if getattr(exc, "in_step", False):
        return "after the instrument reported an I/O timeout"
    if isinstance(exc, SendTimeoutError):
        return "after the instrument stopped taking data"
    if isinstance(exc, TmcTimeoutError):
        return "after the reply timed out"
    if isinstance(exc, ConnectionLostError):
        return "after the connection was lost"
    if isinstance(exc, ProtocolError):
        return "after a protocol error"
    return f"after {type(exc).__name__}"


def with_recovery(exc: TmcError, recovery: LanRecovery) -> TmcError:
    """A copy of ``exc`` that carries ``recovery`` (and what ``exc`` had received)."""
    if isinstance(exc, AbortedError):
        return AbortedError(exc.args[0], exc.transferred_bytes, recovery)
    result = type(exc)(exc.args[0] if exc.args else str(exc), recovery)
    result.received = exc.received
    return result
