"""Running a session's commands, with no Qt: :class:`SessionRunner` and :class:`DirectSession`.

:class:`SessionRunner` is what a session's thread does. ``execute(command)`` runs one command
and emits its events through the ``emit`` callable it was given: ``Started``, what the handler
produced (or ``Failed``), any ``Learned`` notes, ``Finished``. ``poll_srq()`` and ``poll_stb()``
are the idle polls; whoever owns the thread calls them on a timer, at the intervals
``SessionData.srq_poll_ms`` / ``stb_poll_ms`` name, and is told by ``polling_changed`` when
those change. In the GUI the owner is ``app.ui.worker.SessionWorker`` (a QObject in a QThread
that forwards events by signal); :class:`DirectSession` runs the same runner in the calling
thread, for scripts and tests.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable

from app.usbtmc import errors as tmc_errors

from .events import Closed, Command, Event, Failed, Finished, Learned, Srq, Started, StatusByte
from .handlers import CommandContext, SessionData, close_instrument, failure_kind, handler_for
from .states import FailureKind

log = logging.getLogger(__name__)


class AbortFlag:
    """One command's abort request: set by any thread, read by the one running the command
    between transfers. The core asks only ``is_set()``; nobody waits on it, so it needs no
    lock or condition (a ``threading.Event`` would cost a lock and a condition per command)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True  # one attribute store: atomic for the reading thread

    def is_set(self) -> bool:
        return self._set


class AbortFlags:
    """An :class:`AbortFlag` per outstanding command, shared by the submitting thread and the runner.

    No lock: each method is one dict operation, which the interpreter lock makes atomic, and
    ``abort()`` walks a copy of the flags, taken in one step. A command's flag is registered
    before the command is sent and released by the runner when it is done, on every command.
    """

    def __init__(self) -> None:
        self._flags: dict[int, AbortFlag] = {}

    def register(self, command_id: int) -> AbortFlag:
        flag = self._flags.get(command_id)
        if flag is None:
            flag = self._flags.setdefault(command_id, AbortFlag())
        return flag

    def get(self, command_id: int) -> AbortFlag:
        return self.register(command_id)

    def abort(self, command_id: int | None = None) -> None:
        """Abort one command, or every outstanding one (None)."""
        flags = list(self._flags.values()) if command_id is None else [self._flags.get(command_id)]
        for flag in flags:
            if flag is not None:
                flag.set()

    def release(self, command_id: int) -> None:
        self._flags.pop(command_id, None)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class SessionRunner:
    """Runs one session's commands, one at a time, in the thread that calls it."""

    def __init__(
        self,
        session: SessionData,
        emit: Callable[[Event], None],
        flags: AbortFlags | None = None,
        polling_changed: Callable[[], None] | None = None,
    ) -> None:
        self.session = session
        self.emit = emit
        self.flags = flags if flags is not None else AbortFlags()
        self._polling_changed = polling_changed

    @property
    def instrument(self):
        return self.session.instrument

    def polling_changed(self) -> None:
        if self._polling_changed is not None:
            self._polling_changed()

    def execute(self, command: Command) -> bool:
        """Run ``command``; True when it succeeded. Never raises for the command's own failures."""
        cid = command.id
        abort = self.flags.get(cid)
        started = time.perf_counter()
        self.emit(Started(cid, command.describe()))
        ok = False
        try:
            entry = handler_for(type(command))
            if entry is None:
                raise TypeError(f"no handler for {type(command).__name__}")
            if abort.is_set():
                raise tmc_errors.AbortedError("cancelled before it started")
            if entry.needs_instrument and self.session.instrument is None:
                raise tmc_errors.DeviceGoneError("the session is not open")
            self._trace_command(cid)
            entry.handler(CommandContext(self.session, command, abort, self.emit, started,
                                         between_transfers=self.poll_srq_between_transfers,
                                         polling_changed=self.polling_changed))
            ok = True
        except tmc_errors.TmcError as exc:
            self._report_failure(cid, exc, started)
        except Exception as exc:  # a bug in one handler must not end the session thread
            log.exception("command %r failed", command)
            self.emit(Failed(cid, FailureKind.INTERNAL, f"internal error: {exc!r}", duration_ms=_ms_since(started)))
        finally:
            self._trace_command(0)
            self.flags.release(cid)
            take_notes = getattr(self.session.instrument, "take_notes", None)
            for text in (take_notes() if take_notes is not None else ()):
                self.emit(Learned(cid, text))
            self.emit(Finished(cid, ok, _ms_since(started)))
        return ok

    def _trace_command(self, cid: int) -> None:
        """Tag the trace's entries with the command they serve (the trace dock links them to the transcript)."""
        trace = getattr(self.session.instrument, "trace", None)
        if trace is not None:
            trace.command_id = cid

    def _report_failure(self, cid: int, exc: tmc_errors.TmcError, started: float) -> None:
        kind = failure_kind(exc)
        message = exc.args[0] if exc.args else str(exc)
        recovery = getattr(exc, "recovery", "")
        self.emit(Failed(cid, kind, str(message), recovery, duration_ms=_ms_since(started)))
        if kind == FailureKind.GONE and self.session.instrument is not None:
            self.device_gone(str(message))

    def device_gone(self, message: str) -> None:
        """The device left the bus: close what is left of the session and say so (``Closed``, gone)."""
        close_instrument(self.session, quiet=True)  # the device is gone; there is nothing left to release
        self.polling_changed()
        self.emit(Closed(0, message, gone=True))

    # --- idle polling ------------------------------------------------------------

    def poll_srq_between_transfers(self) -> None:
        """Pick up SRQ notifications during a long transfer (a device-gone error goes to the transfer)."""
        inst = self.session.instrument
        if inst is not None and self.session.srq_interval_ms and inst.has_interrupt_in:
            try:
                for stb in inst.poll_srq():
                    self.emit(Srq(0, stb))
            except tmc_errors.DeviceGoneError:
                raise
            except tmc_errors.TmcError as exc:
                log.debug("SRQ poll between transfers failed: %s", exc)

    def poll_srq(self) -> None:
        """The idle SRQ poll: read interrupt-IN and emit an ``Srq`` per notification."""
        inst = self.session.instrument
        if inst is None:
            return
        try:
            for stb in inst.poll_srq():
                self.emit(Srq(0, stb))
        except tmc_errors.DeviceGoneError as exc:
            self.device_gone(str(exc))
        except tmc_errors.TmcError as exc:
            self.session.srq_poll_failed = True
            self._polling_failed("SRQ", exc)

    def poll_stb(self) -> None:
        """The idle status-byte poll: READ_STATUS_BYTE, emitted as a polled ``StatusByte``."""
        inst = self.session.instrument
        if inst is None:
            return
        try:
            self.emit(StatusByte(0, inst.read_stb(), polled=True))
        except tmc_errors.DeviceGoneError as exc:
            self.device_gone(str(exc))
        except tmc_errors.TmcError as exc:
            self.session.stb_poll_failed = True
            self._polling_failed("status byte", exc)

    def _polling_failed(self, what: str, exc: tmc_errors.TmcError) -> None:
        # Report once and stop that poll: a broken endpoint would otherwise flood the transcript.
        self.polling_changed()
        self.emit(Failed(0, failure_kind(exc), f"idle {what} polling stopped: {exc}",
                         "polling is off until the session is reopened"))


class DirectSession:
    """A session run in the calling thread, with no Qt: ``run(command)`` returns its events.

    Commands get ids as ``Session.submit()`` gives them; events not caused by a command (an
    SRQ picked up between transfers, ``Closed`` of a gone device) are returned with the
    command during which they arrived. Idle polls run only when called (``poll()``).
    """

    def __init__(self, backend=None, *, instrument_factory=None, trace=None) -> None:
        self._ids = itertools.count(1)
        self._events: list[Event] = []
        self.data = SessionData(backend=backend, instrument_factory=instrument_factory, trace=trace)
        self.runner = SessionRunner(self.data, self._events.append)

    @property
    def instrument(self):
        return self.data.instrument

    def run(self, command: Command) -> list[Event]:
        """Run ``command`` (its id assigned here) and return every event emitted meanwhile."""
        command = command.with_id(next(self._ids))
        self.runner.flags.register(command.id)
        self._events.clear()
        self.runner.execute(command)
        events, self._events[:] = list(self._events), []
        return events

    def poll(self) -> list[Event]:
        """One round of the idle polls that apply now."""
        self._events.clear()
        if self.data.srq_poll_ms:
            self.runner.poll_srq()
        if self.data.stb_poll_ms:
            self.runner.poll_stb()
        events, self._events[:] = list(self._events), []
        return events
