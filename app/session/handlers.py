"""What each command does: one handler per command type, run by a :class:`~.runner.SessionRunner`.

A handler is ``handler(ctx: CommandContext)``. It finds everything in ``ctx``: the session's
state (``ctx.session``, a :class:`SessionData`: the instrument and the settings kept across
reopenings), the command, its abort flag, and ``ctx.emit`` for its events. It raises an
``app.usbtmc`` error to fail; the runner turns that into a ``Failed`` event. New command types
plug in with :func:`register`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.usbtmc import errors as tmc_errors
from app.usbtmc import ieee488
from app.waveforms import ABORT_LATENCY_MS

from app.session import scpi
from .events import (
    CheckErrors,
    Close,
    Closed,
    Configure,
    Configured,
    Control,
    Disconnect,
    Done,
    ErrorEntry,
    ErrorReport,
    Event,
    Open,
    Opened,
    Progress,
    Query,
    Read,
    Reply,
    Sent,
    SetIdlePolling,
    StatusByte,
    Write,
    WriteStream,
)
from .states import FailureKind

DEFAULT_SRQ_POLL_MS = 100
PROGRESS_INTERVAL_S = 0.05  # at most 20 Progress events a second: the GUI repaints from timers anyway
PROGRESS_FIRST_AFTER_S = 0.2  # short transfers report no progress at all


@dataclass
class SessionData:
    """The state a session keeps between commands; only the thread running the session touches it.

    ``instrument_factory(resource, backend, timeout_ms)`` replaces ``app.usbtmc.Instrument``
    (tests wrap it); ``trace`` is the I/O trace ``Recorder`` the instrument reports to.
    """

    backend: Any = None
    instrument_factory: Callable[[str, Any, int], Any] | None = None
    trace: Any = None
    instrument: Any = None
    timeout_ms: int = 5000
    term_char: int | None = None
    srq_interval_ms: int = DEFAULT_SRQ_POLL_MS
    stb_interval_ms: int = 0
    srq_poll_failed: bool = False  # a failed poll stays off until the session is reopened
    stb_poll_failed: bool = False

    @property
    def srq_poll_ms(self) -> int:
        """How often to read interrupt-IN while idle now (0: not at all)."""
        inst = self.instrument
        if inst is None or self.srq_poll_failed or not inst.has_interrupt_in:
            return 0
        return self.srq_interval_ms

    @property
    def stb_poll_ms(self) -> int:
        """How often to read the status byte while idle now (0: not at all; USB488 only)."""
        inst = self.instrument
        # USB488 has READ_STATUS_BYTE; a LAN session says whether its protocol reads the STB itself.
        if inst is None or self.stb_poll_failed or not (inst.info.protocol == "USB488"
                                                        or getattr(inst.info, "reads_stb", False)):
            return 0
        return self.stb_interval_ms


def _ignore() -> None:
    return None


@dataclass
class CommandContext:
    """What a command handler gets: the session's state, the command, its abort flag and a way to report.

    ``between_transfers()`` is called by long transfers' progress (it picks up SRQ
    notifications); ``polling_changed()`` tells whoever schedules the idle polls that
    ``session.srq_poll_ms`` or ``stb_poll_ms`` may have changed.
    """

    session: SessionData
    command: Any
    abort: threading.Event
    emit: Callable[[Event], None]
    started: float = field(default_factory=time.perf_counter)  # time.perf_counter() at the start
    between_transfers: Callable[[], None] = _ignore
    polling_changed: Callable[[], None] = _ignore

    @property
    def instrument(self):
        return self.session.instrument

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
                self.between_transfers()

        return report


Handler = Callable[[CommandContext], None]


@dataclass(frozen=True)
class HandlerEntry:
    handler: Handler
    needs_instrument: bool  # False: runs on a closed session too (open, close, settings)


_handlers: dict[type, HandlerEntry] = {}


def register(command_type: type, handler: Handler, *, needs_instrument: bool = True) -> None:
    """Teach every session a new command type."""
    _handlers[command_type] = HandlerEntry(handler, needs_instrument)


def handler_for(command_type: type) -> HandlerEntry | None:
    return _handlers.get(command_type)


def failure_kind(exc: BaseException) -> FailureKind:
    """The ``Failed.kind`` for a core error."""
    for cls, kind in (
        (tmc_errors.TmcTimeoutError, FailureKind.TIMEOUT),
        (tmc_errors.DeviceGoneError, FailureKind.GONE),
        (tmc_errors.AbortedError, FailureKind.ABORTED),
        (tmc_errors.NotSupportedError, FailureKind.NOT_SUPPORTED),
        (tmc_errors.AccessError, FailureKind.ACCESS),
        (tmc_errors.DeviceNotFoundError, FailureKind.NOT_FOUND),
        (tmc_errors.BackendUnavailableError, FailureKind.NO_BACKEND),
        (tmc_errors.ProtocolError, FailureKind.PROTOCOL),
    ):
        if isinstance(exc, cls):
            return kind
    return FailureKind.ERROR


def close_instrument(session: SessionData, *, quiet: bool) -> None:
    """Close and forget the session's instrument; ``quiet``: a core error (a gone device) is ignored."""
    if session.instrument is None:
        return
    try:
        session.instrument.close()
    except tmc_errors.TmcError:
        if not quiet:
            raise
    finally:
        session.instrument = None


# --- the built-in command handlers ---------------------------------------------------


def _open(ctx: CommandContext) -> None:
    session, cmd = ctx.session, ctx.command
    if session.instrument is not None:
        try:
            close_instrument(session, quiet=False)
        finally:
            ctx.polling_changed()
    session.timeout_ms = cmd.timeout_ms
    if session.instrument_factory is not None:
        inst = session.instrument_factory(cmd.resource, session.backend, cmd.timeout_ms)
    else:
        from app.lan import open_session  # USB, or a LAN session for TCPIP resources (docs/lan.md)

        inst = open_session(cmd.resource, session.backend, cmd.timeout_ms, use_quirks=cmd.use_quirks,
                            trace=session.trace)
    session.instrument = inst
    caps = getattr(inst, "capabilities", None)
    if session.term_char is not None and caps is not None and not caps.term_char:
        session.term_char = None  # a setting kept from another device: this one ends replies at EOM
    inst.term_char = session.term_char
    ctx.emit(Opened(cmd.id, inst.info, inst.has_interrupt_in, bool(getattr(inst, "pipelined", False))))
    session.srq_poll_failed = session.stb_poll_failed = False
    ctx.polling_changed()


def _close(ctx: CommandContext) -> None:
    try:
        close_instrument(ctx.session, quiet=False)
    finally:
        ctx.polling_changed()
    ctx.emit(Closed(ctx.command.id, ctx.command.reason))


def _disconnect(ctx: CommandContext) -> None:
    cmd = ctx.command
    close_instrument(ctx.session, quiet=True)  # a gone device has nothing left to release
    ctx.polling_changed()
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
    session, cmd = ctx.session, ctx.command
    if cmd.timeout_ms is not None:
        session.timeout_ms = cmd.timeout_ms
    if cmd.term_char is not None:
        session.term_char = None if cmd.term_char < 0 else cmd.term_char
    if session.instrument is not None:
        session.instrument.timeout_ms = session.timeout_ms
        session.instrument.term_char = session.term_char
    ctx.emit(Configured(cmd.id, session.timeout_ms, session.term_char))


def _set_idle_polling(ctx: CommandContext) -> None:
    session, cmd = ctx.session, ctx.command
    if cmd.srq_interval_ms is not None:
        session.srq_interval_ms = max(0, cmd.srq_interval_ms)
    if cmd.stb_interval_ms is not None:
        session.stb_interval_ms = max(0, cmd.stb_interval_ms)
    session.srq_poll_failed = session.stb_poll_failed = False
    ctx.polling_changed()
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
    register(_type, _handler, needs_instrument=_needs)
