"""One worker thread per open instrument session.

Thread contract (also in docs/ui.md):

* A :class:`SessionWorker` lives in its own :class:`WorkerThread` and is the only
  code that touches its ``app.usbtmc.Instrument``. The GUI never calls the core.
* The GUI talks to it through :class:`Session`: ``submit()`` emits a queued
  signal carrying a frozen command from ``app.ui.events``; the worker runs
  commands one at a time in order and answers with frozen events through its
  ``event`` signal (queued back to the GUI thread).
* The one object shared between threads is :class:`AbortFlags`: a
  ``threading.Event`` per command that the GUI sets and the core checks between
  transfers. A queued "abort" command would wait behind the transfer it is
  meant to stop.
* While idle the worker polls interrupt-IN for SRQ notifications (and, when asked,
  the status byte). Polls are timer events of the worker's own event loop, so they
  run only between commands and never collide with a transfer.
* ``Close`` closes the instrument, emits ``Closed`` and ends the thread.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from app.usbtmc import errors as tmc_errors
from app.usbtmc import ieee488
from app.waveforms import ABORT_LATENCY_MS

from . import scpi
from .events import (
    CheckErrors,
    Close,
    Closed,
    Command,
    Configure,
    Configured,
    Control,
    Disconnect,
    Done,
    ErrorEntry,
    ErrorReport,
    Event,
    Failed,
    Learned,
    Finished,
    Open,
    Opened,
    Progress,
    Query,
    Read,
    Reply,
    Sent,
    SetIdlePolling,
    Srq,
    Started,
    StatusByte,
    Write,
    WriteStream,
)

log = logging.getLogger(__name__)

DEFAULT_SRQ_POLL_MS = 100
PROGRESS_INTERVAL_S = 0.05  # at most 20 Progress events a second: the GUI repaints from timers anyway
PROGRESS_FIRST_AFTER_S = 0.2  # short transfers report no progress at all

_threads: weakref.WeakSet[QThread] = weakref.WeakSet()


class WorkerThread(QThread):
    """A QThread the UI started; :func:`live_threads` finds the ones still running."""

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        _threads.add(self)


def live_threads() -> list[QThread]:
    """Worker and discovery threads that are still running (tests and shutdown check this)."""
    running = []
    for thread in list(_threads):
        try:
            if thread.isRunning():
                running.append(thread)
        except RuntimeError:
            pass  # its C++ object went with its parent widget: nothing is left to run
    return running


class AbortFlags:
    """A ``threading.Event`` per outstanding command, shared by the GUI and the worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[int, threading.Event] = {}

    def register(self, command_id: int) -> threading.Event:
        with self._lock:
            return self._flags.setdefault(command_id, threading.Event())

    def get(self, command_id: int) -> threading.Event:
        with self._lock:
            return self._flags.setdefault(command_id, threading.Event())

    def abort(self, command_id: int | None = None) -> None:
        """Abort one command, or every outstanding one (None)."""
        with self._lock:
            flags = self._flags.values() if command_id is None else [self._flags.get(command_id)]
            for flag in flags:
                if flag is not None:
                    flag.set()

    def release(self, command_id: int) -> None:
        with self._lock:
            self._flags.pop(command_id, None)


@dataclass
class CommandContext:
    """What a command handler gets: the instrument, the command, its abort flag and a way to report."""

    worker: SessionWorker
    command: Any
    abort: threading.Event
    started: float  # time.perf_counter() when the command started

    @property
    def instrument(self):
        return self.worker.instrument

    def emit(self, event: Event) -> None:
        self.worker.event.emit(event)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def progress_reporter(self, total_bytes: int = 0) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callable for the core that emits rate-limited ``Progress``
        events, and between transfers of long writes also picks up SRQ notifications."""
        last = [0.0]
        started = time.perf_counter()

        def report(done: int, total: int) -> None:
            now = time.perf_counter()
            final = bool(total_bytes) and done >= total_bytes
            if not final and (now - started < PROGRESS_FIRST_AFTER_S or now - last[0] < PROGRESS_INTERVAL_S):
                return
            last[0] = now
            self.emit(Progress(self.command.id, done, total or total_bytes, now - started))
            if not final:  # after the last transfer the idle SRQ poll takes over
                self.worker.poll_srq_between_transfers()

        return report


Handler = Callable[[CommandContext], None]


class SessionWorker(QObject):
    """Runs one session's commands in its thread. Only this object touches the Instrument.

    Extending it: ``SessionWorker.register(MyCommand, handler)`` where
    ``handler(ctx: CommandContext)`` uses ``ctx.instrument`` and emits events with
    ``ctx.emit``; raising an ``app.usbtmc`` error becomes a ``Failed`` event.
    """

    event = Signal(object)  # an app.ui.events.Event

    _handlers: dict[type, Handler] = {}
    _needs_instrument: dict[type, bool] = {}

    def __init__(self, backend, flags: AbortFlags, instrument_factory=None, trace=None) -> None:
        super().__init__()
        self._backend = backend
        self._trace = trace  # the window's I/O trace Recorder, or None
        self._flags = flags
        self._factory = instrument_factory
        self.instrument = None
        self._timeout_ms = 5000
        self._term_char: int | None = None
        self._srq_interval_ms = DEFAULT_SRQ_POLL_MS
        self._stb_interval_ms = 0
        self._srq_timer: QTimer | None = None
        self._stb_timer: QTimer | None = None
        self._poll_failed = False

    # --- extension point -------------------------------------------------------

    @classmethod
    def register(cls, command_type: type, handler: Handler, *, needs_instrument: bool = True) -> None:
        """Teach every worker a new command type."""
        cls._handlers[command_type] = handler
        cls._needs_instrument[command_type] = needs_instrument

    # --- thread lifetime -------------------------------------------------------

    @Slot()
    def start(self) -> None:
        """Runs in the worker thread when it starts: create the idle-poll timers there."""
        self._srq_timer = QTimer(self)
        self._srq_timer.timeout.connect(self._poll_srq)
        self._stb_timer = QTimer(self)
        self._stb_timer.timeout.connect(self._poll_stb)

    def _stop_timers(self) -> None:
        for timer in (self._srq_timer, self._stb_timer):
            if timer is not None:
                timer.stop()

    def _restart_timers(self) -> None:
        if self._srq_timer is None or self.instrument is None:
            return
        self._poll_failed = False
        if self._srq_interval_ms and self.instrument.has_interrupt_in:
            self._srq_timer.start(self._srq_interval_ms)
        else:
            self._srq_timer.stop()
        if self._stb_interval_ms and (self.instrument.info.protocol == "USB488"
                                      or getattr(self.instrument.info, "reads_stb", False)):
            self._stb_timer.start(self._stb_interval_ms)
        else:
            self._stb_timer.stop()

    def _finish_thread(self) -> None:
        """Stop polling and end the thread; the worker goes back to the GUI thread to be freed there."""
        self._stop_timers()
        for timer in (self._srq_timer, self._stb_timer):
            if timer is not None:
                timer.setParent(None)
                timer.deleteLater()
        self._srq_timer = self._stb_timer = None
        app = QCoreApplication.instance()
        if app is not None:
            self.moveToThread(app.thread())
        QThread.currentThread().quit()

    # --- running commands ------------------------------------------------------

    @Slot(object)
    def execute(self, command: Command) -> None:
        cid = command.id
        abort = self._flags.get(cid)
        started = time.perf_counter()
        self.event.emit(Started(cid, command.describe()))
        ok = False
        try:
            handler = self._handlers.get(type(command))
            if handler is None:
                raise TypeError(f"no handler for {type(command).__name__}")
            if abort.is_set():
                raise tmc_errors.AbortedError("cancelled before it started")
            if self._needs_instrument.get(type(command), True) and self.instrument is None:
                raise tmc_errors.DeviceGoneError("the session is not open")
            self._trace_command(cid)
            handler(CommandContext(self, command, abort, started))
            ok = True
        except tmc_errors.TmcError as exc:
            self._report_failure(cid, exc, started)
        except Exception as exc:  # a bug in one handler must not end the session thread
            log.exception("command %r failed", command)
            self.event.emit(Failed(cid, "internal", f"internal error: {exc!r}", duration_ms=_ms_since(started)))
        finally:
            self._trace_command(0)
            self._flags.release(cid)
            take_notes = getattr(self.instrument, "take_notes", None)
            for text in (take_notes() if take_notes is not None else ()):
                self.event.emit(Learned(cid, text))
            self.event.emit(Finished(cid, ok, _ms_since(started)))
            if isinstance(command, Close):
                self._finish_thread()

    def _trace_command(self, cid: int) -> None:
        """Tag the trace's entries with the command they serve (the trace dock links them to the transcript)."""
        trace = getattr(self.instrument, "trace", None)
        if trace is not None:
            trace.command_id = cid

    def _report_failure(self, cid: int, exc: tmc_errors.TmcError, started: float) -> None:
        kind = failure_kind(exc)
        message = exc.args[0] if exc.args else str(exc)
        recovery = getattr(exc, "recovery", "")
        self.event.emit(Failed(cid, kind, str(message), recovery, duration_ms=_ms_since(started)))
        if kind == "gone" and self.instrument is not None:
            self._device_gone(str(message))

    def _device_gone(self, message: str) -> None:
        self._stop_timers()
        if self.instrument is not None:
            try:
                self.instrument.close()
            except tmc_errors.TmcError:
                pass  # the device is gone; there is nothing left to release
            self.instrument = None
        self.event.emit(Closed(0, message, gone=True))

    # --- idle polling ------------------------------------------------------------

    def poll_srq_between_transfers(self) -> None:
        if self.instrument is not None and self._srq_interval_ms and self.instrument.has_interrupt_in:
            try:
                for stb in self.instrument.poll_srq():
                    self.event.emit(Srq(0, stb))
            except tmc_errors.DeviceGoneError:
                raise
            except tmc_errors.TmcError as exc:
                log.debug("SRQ poll between transfers failed: %s", exc)

    @Slot()
    def _poll_srq(self) -> None:
        if self.instrument is None:
            return
        try:
            for stb in self.instrument.poll_srq():
                self.event.emit(Srq(0, stb))
        except tmc_errors.DeviceGoneError as exc:
            self._device_gone(str(exc))
        except tmc_errors.TmcError as exc:
            self._polling_failed("SRQ", exc, self._srq_timer)

    @Slot()
    def _poll_stb(self) -> None:
        if self.instrument is None:
            return
        try:
            self.event.emit(StatusByte(0, self.instrument.read_stb(), polled=True))
        except tmc_errors.DeviceGoneError as exc:
            self._device_gone(str(exc))
        except tmc_errors.TmcError as exc:
            self._polling_failed("status byte", exc, self._stb_timer)

    def _polling_failed(self, what: str, exc: tmc_errors.TmcError, timer: QTimer | None) -> None:
        # Report once and stop that poll: a broken endpoint would otherwise flood the transcript.
        if timer is not None:
            timer.stop()
        self.event.emit(
            Failed(0, failure_kind(exc), f"idle {what} polling stopped: {exc}", "polling is off until the session is reopened")
        )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def failure_kind(exc: BaseException) -> str:
    """The ``Failed.kind`` for a core error."""
    for cls, kind in (
        (tmc_errors.TmcTimeoutError, "timeout"),
        (tmc_errors.DeviceGoneError, "gone"),
        (tmc_errors.AbortedError, "aborted"),
        (tmc_errors.NotSupportedError, "not_supported"),
        (tmc_errors.AccessError, "access"),
        (tmc_errors.DeviceNotFoundError, "not_found"),
        (tmc_errors.BackendUnavailableError, "no_backend"),
        (tmc_errors.ProtocolError, "protocol"),
    ):
        if isinstance(exc, cls):
            return kind
    return "error"


# --- the built-in command handlers ---------------------------------------------------


def _open(ctx: CommandContext) -> None:
    worker, cmd = ctx.worker, ctx.command
    if worker.instrument is not None:
        worker._stop_timers()
        worker.instrument.close()
        worker.instrument = None
    worker._timeout_ms = cmd.timeout_ms
    if worker._factory is not None:
        inst = worker._factory(cmd.resource, worker._backend, cmd.timeout_ms)
    else:
        from app.lan import open_session  # USB, or a LAN session for TCPIP resources (docs/lan.md)

        inst = open_session(cmd.resource, worker._backend, cmd.timeout_ms, use_quirks=cmd.use_quirks,
                            trace=worker._trace)
    worker.instrument = inst
    caps = getattr(inst, "capabilities", None)
    if worker._term_char is not None and caps is not None and not caps.term_char:
        worker._term_char = None  # a setting kept from another device: this one ends replies at EOM
    inst.term_char = worker._term_char
    ctx.emit(Opened(cmd.id, inst.info, inst.has_interrupt_in, bool(getattr(inst, "pipelined", False))))
    worker._restart_timers()


def _close(ctx: CommandContext) -> None:
    worker = ctx.worker
    worker._stop_timers()
    if worker.instrument is not None:
        try:
            worker.instrument.close()
        finally:
            worker.instrument = None
    ctx.emit(Closed(ctx.command.id, ctx.command.reason))


def _disconnect(ctx: CommandContext) -> None:
    worker, cmd = ctx.worker, ctx.command
    worker._stop_timers()
    if worker.instrument is not None:
        try:
            worker.instrument.close()
        except tmc_errors.TmcError:
            pass  # a gone device has nothing left to release
        worker.instrument = None
    ctx.emit(Closed(cmd.id, cmd.reason, gone=cmd.gone))


def _write(ctx: CommandContext) -> None:
    ctx.instrument.write_raw(ctx.command.data, abort=ctx.abort)
    ctx.emit(Sent(ctx.command.id, len(ctx.command.data), ctx.elapsed_ms()))


def _query(ctx: CommandContext) -> None:
    inst, cmd = ctx.instrument, ctx.command
    if cmd.max_bytes is not None:
        # A read cut at max_bytes is not a whole reply: written and read apart.
        inst.write_raw(cmd.data, abort=ctx.abort)
        sent_ms = ctx.elapsed_ms()
        ctx.emit(Sent(cmd.id, len(cmd.data), sent_ms))
        data = inst.read_raw(cmd.max_bytes, abort=ctx.abort, progress=ctx.progress_reporter())
        total_ms = ctx.elapsed_ms()
        ctx.emit(Reply(cmd.id, data, total_ms - sent_ms, total_ms))
        return
    # The core's fast path (on libusb the command, read request and first read go out as one
    # batch); the line shows as sent the moment the command has left, however long the
    # instrument then takes to answer.
    sent = []

    def on_sent() -> None:
        sent.append(ctx.elapsed_ms())
        ctx.emit(Sent(cmd.id, len(cmd.data), sent[0]))

    data = inst.query_raw(cmd.data, abort=ctx.abort, on_sent=on_sent, read_progress=ctx.progress_reporter())
    total_ms = ctx.elapsed_ms()
    if not sent:  # a core or instrument double that reports no send
        on_sent()
    ctx.emit(Reply(cmd.id, data, total_ms - sent[0], total_ms))


def _read(ctx: CommandContext) -> None:
    data = ctx.instrument.read_raw(ctx.command.max_bytes, abort=ctx.abort, progress=ctx.progress_reporter())
    ctx.emit(Reply(ctx.command.id, data, ctx.elapsed_ms(), ctx.elapsed_ms()))


def _write_stream(ctx: CommandContext) -> None:
    cmd = ctx.command
    # Every stream from the GUI can be cancelled: paced as the waveform panel's uploads are,
    # so that Cancel acts within one transfer (the core keeps two small ones in flight).
    ctx.instrument.write_stream(
        cmd.pieces, cmd.total_bytes, abort=ctx.abort, progress=ctx.progress_reporter(cmd.total_bytes),
        abort_latency_ms=ABORT_LATENCY_MS,
    )
    ctx.emit(Sent(cmd.id, cmd.total_bytes, ctx.elapsed_ms()))


_CONTROL_METHODS = {
    "clear": "clear",
    "trigger": "trigger",
    "indicator_pulse": "indicator_pulse",
    "remote": "remote",
    "local": "local",
    "lockout": "lockout",
}


def _control(ctx: CommandContext) -> None:
    cmd, inst = ctx.command, ctx.instrument
    if cmd.action == "read_stb":
        ctx.emit(StatusByte(cmd.id, inst.read_stb()))
        return
    method = _CONTROL_METHODS.get(cmd.action)
    if method is None:
        raise tmc_errors.NotSupportedError(f"unknown control action {cmd.action!r}")
    getattr(inst, method)()
    ctx.emit(Done(cmd.id, cmd.describe(), ctx.elapsed_ms()))


def _check_errors(ctx: CommandContext) -> None:
    cmd, inst = ctx.command, ctx.instrument
    entries: list[ErrorEntry] = []
    esr = None
    try:
        if cmd.method == "esr":
            answer = inst.query_raw(b"*ESR?" + cmd.termination).decode("ascii", errors="replace")
            esr = ieee488.parse_register_value(answer)
            entries.extend(scpi.esr_entries(esr))
        else:
            for _ in range(cmd.max_entries):
                entry = scpi.parse_error_entry(inst.query_raw(b"SYST:ERR?" + cmd.termination).decode("utf-8", errors="replace"))
                if entry.code == 0:
                    break
                entries.append(entry)
            else:
                entries.append(ErrorEntry(0, f"stopped after {cmd.max_entries} entries; more may be queued", severe=False))
    except tmc_errors.DeviceGoneError:
        raise
    except tmc_errors.TmcError as exc:
        ctx.emit(ErrorReport(cmd.id, cmd.after, cmd.method, tuple(entries), esr, problem=str(exc)))
        return
    except ValueError as exc:
        ctx.emit(ErrorReport(cmd.id, cmd.after, cmd.method, tuple(entries), esr, problem=f"unexpected answer: {exc}"))
        return
    ctx.emit(ErrorReport(cmd.id, cmd.after, cmd.method, tuple(entries), esr))


def _configure(ctx: CommandContext) -> None:
    worker, cmd = ctx.worker, ctx.command
    if cmd.timeout_ms is not None:
        worker._timeout_ms = cmd.timeout_ms
    if cmd.term_char is not None:
        worker._term_char = None if cmd.term_char < 0 else cmd.term_char
    if worker.instrument is not None:
        worker.instrument.timeout_ms = worker._timeout_ms
        worker.instrument.term_char = worker._term_char
    ctx.emit(Configured(cmd.id, worker._timeout_ms, worker._term_char))


def _set_idle_polling(ctx: CommandContext) -> None:
    worker, cmd = ctx.worker, ctx.command
    if cmd.srq_interval_ms is not None:
        worker._srq_interval_ms = max(0, cmd.srq_interval_ms)
    if cmd.stb_interval_ms is not None:
        worker._stb_interval_ms = max(0, cmd.stb_interval_ms)
    worker._restart_timers()
    ctx.emit(Done(cmd.id, cmd.describe(), ctx.elapsed_ms()))


for _type, _handler, _needs in (
    (Open, _open, False),
    (Close, _close, False),
    (Disconnect, _disconnect, False),
    (Write, _write, True),
    (Query, _query, True),
    (Read, _read, True),
    (WriteStream, _write_stream, True),
    (Control, _control, True),
    (CheckErrors, _check_errors, True),
    (Configure, _configure, False),
    (SetIdlePolling, _set_idle_polling, False),
):
    SessionWorker.register(_type, _handler, needs_instrument=_needs)


# --- the GUI side ----------------------------------------------------------------------


def is_background(origin: str) -> bool:
    """Commands from origins ending in "-poll" (a panel's periodic reads) never make the session "busy"."""
    return origin.endswith("-poll")


@dataclass(frozen=True)
class CommandRecord:
    """What the GUI submitted, so any panel can tell what an event belongs to."""

    id: int
    command: Command
    origin: str  # which panel sent it: "console", "open", "script", "poll", ...
    submitted: float


# The GUI thread handles a session's events for at most this long at a time, then lets the event
# loop run (timers, repaints, input) before the next slice: a burst of hundreds of queued commands
# answered at once would otherwise hold the loop until every event had been shown.
EVENT_SLICE_S = 0.015


class Session(QObject):
    """The GUI's handle on one instrument session and its worker thread.

    ``event`` re-emits every worker event in the GUI thread (panels connect to it), in order,
    in slices of EVENT_SLICE_S; ``state_changed`` follows "opening", "idle", "busy", "gone",
    "failed", "closing", "closed".
    """

    event = Signal(object)
    state_changed = Signal(str)
    _to_worker = Signal(object)

    def __init__(
        self,
        resource: str,
        backend=None,
        *,
        source: str = "usb",
        timeout_ms: int = 5000,
        instrument_factory=None,
        use_quirks: bool = True,
        trace=None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.resource = resource
        self.source = source
        self.backend = backend  # the worker's pyusb backend; a virtual bus's has .bus (its device models)
        self.timeout_ms = timeout_ms
        self.use_quirks = use_quirks  # False: open as if the device were compliant (no quirk flags)
        self.info = None  # DeviceInfo once opened
        self.state = "new"
        self.last_problem = ""
        self._ids = itertools.count(1)
        self._records: dict[int, CommandRecord] = {}
        self._flags = AbortFlags()
        self._closing = False
        self.thread = WorkerThread(f"session {resource}")
        self.trace = trace  # the I/O trace Recorder its transfers go to, or None
        self.worker = SessionWorker(backend, self._flags, instrument_factory, trace)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.start)
        self._to_worker.connect(self.worker.execute)
        self._arrived: collections.deque = collections.deque()  # events from the worker, not yet handled
        self._draining = False
        self._slice_end = 0.0  # monotonic time at which the current slice of event handling ends
        self._drain_timer = QTimer(self)
        self._drain_timer.setSingleShot(True)
        self._drain_timer.setInterval(0)
        self._drain_timer.timeout.connect(self._next_slice)
        self.worker.event.connect(self._arrive)
        self.thread.finished.connect(self._on_thread_finished)

    # --- commands ---

    def open(self) -> int:
        """Start the worker thread (once) and open, or reopen, the instrument."""
        if not self.thread.isRunning() and not self._closing:
            self.thread.start()
        self._set_state("opening")
        return self.submit(Open(self.resource, timeout_ms=self.timeout_ms, use_quirks=self.use_quirks), origin="open")

    def submit(self, command: Command, origin: str = "") -> int:
        """Queue ``command`` for the worker; returns its id (0 when the session is closing)."""
        if self._closing or not self.thread.isRunning():
            return 0
        cid = next(self._ids)
        command = dataclasses.replace(command, id=cid)
        self._flags.register(cid)
        self._records[cid] = CommandRecord(cid, command, origin, time.time())
        self._to_worker.emit(command)
        if self.state == "idle" and not is_background(origin):
            self._set_state("busy")
        return cid

    def abort(self, command_id: int | None = None) -> None:
        """Abort one command, or everything outstanding; takes effect between transfers."""
        self._flags.abort(command_id)

    def close(self, reason: str = "closed by the user") -> None:
        """Abort what is outstanding, close the instrument and end the thread (asynchronously)."""
        if self._closing:
            return
        if not self.thread.isRunning():
            self._closing = True
            self._set_state("closed")
            return
        self.abort()
        self.submit(Close(reason=reason), origin="close")
        self._closing = True
        self._set_state("closing")

    def wait(self, timeout_ms: int) -> bool:
        """Block until the worker thread has ended (True) or ``timeout_ms`` passed."""
        return self.thread.wait(timeout_ms) if self.thread.isRunning() else True

    def record(self, command_id: int) -> CommandRecord | None:
        return self._records.get(command_id)

    @property
    def outstanding(self) -> int:
        return len(self._records)

    @property
    def is_open(self) -> bool:
        return self.state in ("idle", "busy")

    @property
    def closing(self) -> bool:
        return self._closing

    # --- events ---

    @Slot(object)
    def _arrive(self, event: Event) -> None:
        self._arrived.append(event)
        if self._draining or self._drain_timer.isActive():
            return  # handled in order by the drain under way or the next slice
        if time.monotonic() < self._slice_end:
            self._drain(new_slice=False)  # within the current slice: at once
        else:
            self._drain_timer.start()  # a new slice, once the event loop has had its turn

    @Slot()
    def _next_slice(self) -> None:
        self._drain(new_slice=True)

    def _drain(self, new_slice: bool) -> None:
        # Not re-entered: a slot that spins the event loop must not handle later events before
        # the one it is handling is done.
        if new_slice:
            self._slice_end = time.monotonic() + EVENT_SLICE_S
        self._draining = True
        try:
            while self._arrived:
                if time.monotonic() >= self._slice_end:
                    self._drain_timer.start()  # the rest after the event loop has had its turn
                    return
                self._on_event(self._arrived.popleft())
        finally:
            self._draining = False

    def drain_events(self) -> None:
        """Handle every event that has arrived from the worker now (for shutdown)."""
        self._drain_timer.stop()
        while self._arrived:
            self._on_event(self._arrived.popleft())

    @Slot(object)
    def _on_event(self, event: Event) -> None:
        if isinstance(event, Opened):
            self.info = event.info
            self._set_state("busy" if self._foreground_outstanding(besides=event.command_id) else "idle")
        elif isinstance(event, Closed):
            if event.gone:
                self.last_problem = event.reason
            self._set_state("gone" if event.gone else "closed")
        elif isinstance(event, Failed) and self.state == "opening":
            self.last_problem = event.message
            self._set_state("failed")
        self.event.emit(event)
        if isinstance(event, Finished):
            self._records.pop(event.command_id, None)
            if self.state == "busy" and not self._foreground_outstanding():
                self._set_state("idle")

    def _foreground_outstanding(self, besides: int = 0) -> bool:
        return any(cid != besides and not is_background(r.origin) for cid, r in self._records.items())

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    @Slot()
    def _on_thread_finished(self) -> None:
        self.drain_events()  # the worker's last events (Closed, Finished) come before this
        self._closing = True
        self._records.clear()
        if self.state not in ("closed", "gone"):
            self._set_state("closed")
