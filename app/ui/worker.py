"""One worker thread per open instrument session: the thread bridge to ``app.session``.

Thread contract (also in docs/architecture.md):

* A :class:`SessionWorker` runs in its own :class:`SessionThread` an
  ``app.session.SessionRunner``, the only code that touches its ``app.usbtmc.Instrument``.
  The GUI never calls the core.
* The GUI talks to it through :class:`Session`: ``submit()`` puts a frozen command from
  ``app.session.events`` in the worker's inbox (a ``queue.SimpleQueue``); the worker runs
  commands one at a time in order and answers with frozen events in its outbox.
* Events reach the GUI thread in batches: the worker wakes it (one queued signal, never two
  outstanding) when a command has ended, for the progress of a long transfer, and for events
  no command caused (SRQ, idle status polls). While a command runs, the GUI collects its
  other events (Started, Sent...) once a frame (:data:`FRAME_MS`). A sub-millisecond query so
  costs one wake each way instead of one queued signal per event.
* The one object shared between threads besides the two queues is ``app.session.AbortFlags``:
  a flag per command that the GUI sets and the core checks between transfers. A queued
  "abort" command would wait behind the transfer it is meant to stop.
* While idle the worker polls interrupt-IN for SRQ notifications (and, when asked, the
  status byte) at the intervals the session asks for. Polls run only between commands and
  never collide with a transfer.
* ``Close`` closes the instrument, emits ``Closed`` and ends the thread.

What each command does is in ``app.session.handlers``; this module only moves commands and
events between threads and keeps the session's state for the GUI.
"""

from __future__ import annotations

import collections
import logging
import queue
import time
import weakref
from collections.abc import Callable

import shiboken6
from PySide6.QtCore import SIGNAL, QObject, QThread, QTimer, Signal, Slot

from app.session import AbortFlags, Origin, SessionData, SessionRunner, SessionState
from app.session.events import Close, Command, Event, Open, Progress
from app.session.tracker import CommandRecord, SessionTracker

log = logging.getLogger(__name__)

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


class SessionWorker(QObject):
    """Runs one session's commands in its thread through an ``app.session.SessionRunner``.

    The thread runs :meth:`serve`: it takes commands from ``inbox`` (a ``queue.SimpleQueue``
    the GUI thread puts them in) and, while none is waiting, runs the idle polls when they are
    due. A command costs one wake of this thread and (see :meth:`_post`) one of the GUI
    thread; a Qt event loop here would add a queued signal's delivery to every command.

    New command types are taught to every session with ``app.session.register()``.
    """

    wake = Signal()  # the outbox has events the GUI thread has not been woken for

    def __init__(self, backend, flags: AbortFlags, instrument_factory=None, trace=None) -> None:
        super().__init__()
        data = SessionData(backend=backend, instrument_factory=instrument_factory, trace=trace)
        self.inbox: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self.outbox: collections.deque[Event] = collections.deque()
        self.wake_pending = False
        self.runner = SessionRunner(data, self._post, flags, polling_changed=self._apply_polling)
        # When each idle poll is next due (time.monotonic()), or None while it is off.
        self._srq_due: float | None = None
        self._stb_due: float | None = None

    @property
    def instrument(self):
        return self.runner.instrument

    # --- the thread's loop -----------------------------------------------------

    def serve(self) -> None:
        """The session thread's body: run commands in order until ``Close``, polling while idle."""
        while True:
            try:
                command = self.inbox.get(timeout=self._until_next_poll())
            except queue.Empty:
                try:
                    self._run_due_polls()
                except Exception:  # the runner reports failed polls; this is a bug in it
                    log.exception("session thread: idle poll")
                self._wake_gui()
                continue
            try:
                self.runner.execute(command)
            except Exception:  # the runner reports a command's own failures; this is a bug in it
                log.exception("session thread: command %r", command)
            closing = isinstance(command, Close)
            if closing:
                self._srq_due = self._stb_due = None
            # The command's events go to the GUI thread as this one is about to wait: woken any
            # earlier, the GUI thread would wait for this thread's last lines to take the interpreter.
            self._wake_gui()
            if closing:
                return

    def _until_next_poll(self) -> float | None:
        due = [t for t in (self._srq_due, self._stb_due) if t is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _run_due_polls(self) -> None:
        # The next due time is set before a poll runs: a poll that fails turns polling off
        # (polling_changed -> _apply_polling) and that must stand.
        data = self.runner.session
        now = time.monotonic()
        if self._srq_due is not None and now >= self._srq_due:
            self._srq_due = _due(now, data.srq_poll_ms)
            self.runner.poll_srq()
        if self._stb_due is not None and now >= self._stb_due:
            self._stb_due = _due(now, data.stb_poll_ms)
            self.runner.poll_stb()

    def _apply_polling(self) -> None:
        """Start or stop the idle polls as the session's state now asks (after open, close,
        a settings change or a failed poll); a poll that goes on restarts its interval."""
        data = self.runner.session
        now = time.monotonic()
        self._srq_due, self._stb_due = _due(now, data.srq_poll_ms), _due(now, data.stb_poll_ms)

    # --- events to the GUI thread ------------------------------------------------

    def _post(self, event: Event) -> None:
        """Put ``event`` in the outbox; wake the GUI thread at once only for the progress of a long
        transfer or an event no command caused (an SRQ, an idle poll's status byte).

        A command's other events (Started, Sent, Reply, Finished...) go when the command has
        ended (:meth:`serve`), or reach the GUI by its frame timer while the command runs:
        waking the GUI thread for each would make it take the interpreter lock from this thread
        four times in a sub-millisecond query.
        """
        self.outbox.append(event)
        if _wakes(event):
            self._wake_gui()

    def _wake_gui(self) -> None:
        if self.outbox and not self.wake_pending:
            self.wake_pending = True
            self.wake.emit()


def _due(now: float, interval_ms: int) -> float | None:
    """When a poll every ``interval_ms`` (0: off) is next due, counted from ``now``."""
    return now + interval_ms / 1000 if interval_ms else None


def _wakes(event: Event) -> bool:
    """Whether ``event`` should reach the GUI thread at once, not when its command ends
    (see ``SessionWorker._post``): progress of a long transfer, and what no command caused."""
    if isinstance(event, Progress):
        # The last one (all bytes moved) comes just before its command's Finished: it waits for it.
        return not event.total_bytes or event.done_bytes < event.total_bytes
    return not event.command_id


class SessionThread(WorkerThread):
    """The thread a :class:`SessionWorker` serves in (no Qt event loop: see ``SessionWorker``)."""

    def __init__(self, name: str, worker: SessionWorker, parent: QObject | None = None) -> None:
        super().__init__(name, parent)
        self._worker = worker

    def run(self) -> None:
        self._worker.serve()


# The GUI thread handles a session's events for at most this long at a time, then lets the event
# loop run (timers, repaints, input) before the next slice: a burst of hundreds of queued commands
# answered at once would otherwise hold the loop until every event had been shown.
EVENT_SLICE_S = 0.015
# While a command runs, its events that did not wake the GUI thread reach it within this long (one
# frame at 60 Hz): a typed query's line shows as sent before a person could tell the difference.
FRAME_MS = 16


class Session(QObject):
    """The GUI's handle on one instrument session and its worker thread.

    Every worker event is handed, in the GUI thread, in order and in slices of
    EVENT_SLICE_S, to the session's panels (:meth:`listen`) and then re-emitted as ``event``
    for anything connected to the signal; ``state_changed`` follows the
    ``app.session.SessionState`` members (opening, idle, busy, gone, failed, closing, closed),
    as its ``app.session.tracker.SessionTracker`` follows them from the commands and events.
    """

    event = Signal(object)
    state_changed = Signal(str)

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
        self._tracker = SessionTracker(self.state_changed.emit)
        self._flags = self._tracker.flags
        self._closing = False
        self._started = False  # the thread was started (it ends only on Close, after _closing is set)
        self.trace = trace  # the I/O trace Recorder its transfers go to, or None
        # The worker object stays in this thread (its wake signal is queued here from the
        # session thread); only its serve() runs in the session thread.
        self.worker = SessionWorker(backend, self._flags, instrument_factory, trace)
        self.thread = SessionThread(f"session {resource}", self.worker)
        self._arrived: collections.deque = collections.deque()  # events from the worker, not yet handled
        self._draining = False
        self._slice_end = 0.0  # monotonic time at which the current slice of event handling ends
        self._drain_timer = QTimer(self)
        self._drain_timer.setSingleShot(True)
        self._drain_timer.setInterval(0)
        self._drain_timer.timeout.connect(self._next_slice)
        # While commands are outstanding, events that woke nobody are collected once a frame.
        self._frame_timer = QTimer(self)
        self._frame_timer.setInterval(FRAME_MS)
        self._frame_timer.timeout.connect(self._collect)
        self._framing = False  # the frame timer runs
        self._put = self.worker.inbox.put
        # Panels' event handlers, called directly (see listen()); whether the ``event`` signal
        # has receivers is asked once per slice of events, not per event.
        self._listeners: list[tuple[Callable[[Event], None], QObject | None]] = []
        self._signal_receivers = 0
        self.worker.wake.connect(self._on_wake)
        self.thread.finished.connect(self._on_thread_finished)

    def listen(self, handler: Callable[[Event], None]) -> None:
        """Have ``handler(event)`` called for every event, in order, in the GUI thread.

        What connecting to ``event`` does, for a panel that lives as long as the session's tab:
        a direct call per event instead of a signal emission, which costs several times as
        much for every panel on every event of every command. A handler that is a method of a
        QObject is forgotten once that object is deleted; an exception in one is logged and
        the other handlers still get the event.
        """
        owner = getattr(handler, "__self__", None)
        self._listeners.append((handler, owner if isinstance(owner, QObject) else None))

    def unlisten(self, handler: Callable[[Event], None]) -> None:
        self._listeners = [(h, o) for h, o in self._listeners if h != handler]

    # --- commands ---

    def open(self) -> int:
        """Start the worker thread (once) and open, or reopen, the instrument."""
        if not self._started and not self._closing:
            self._started = True
            self.thread.start()
        self._tracker.set_state(SessionState.OPENING)
        return self.submit(Open(self.resource, timeout_ms=self.timeout_ms, use_quirks=self.use_quirks),
                           origin=Origin.OPEN)

    def submit(self, command: Command, origin: str = "") -> int:
        """Queue ``command`` for the worker; returns its id (0 when the session is closing)."""
        # Python flags, not the thread's and timer's own state: a typed query's round trip pays
        # for every call here, and each call into Qt costs more than the test it makes.
        if self._closing or not self._started:
            return 0
        if not self._framing:
            self._framing = True
            self._frame_timer.start()
        return self._tracker.submit(command, origin, self._put)

    def abort(self, command_id: int | None = None) -> None:
        """Abort one command, or everything outstanding; takes effect between transfers."""
        self._flags.abort(command_id)

    def close(self, reason: str = "closed by the user") -> None:
        """Abort what is outstanding, close the instrument and end the thread (asynchronously)."""
        if self._closing:
            return
        if not self.thread.isRunning():
            self._closing = True
            self._tracker.set_state(SessionState.CLOSED)
            return
        busy = self._tracker.outstanding > 0
        self.abort()
        if busy:
            # A command under way may be inside a transfer that waits out a long timeout; the
            # abort flags are only read between transfers, so the transfer itself is cancelled.
            self.cancel_transfers()
        self.submit(Close(reason=reason), origin=Origin.CLOSE)
        self._closing = True
        self._tracker.set_state(SessionState.CLOSING)

    def cancel_transfers(self) -> None:
        """Cancel the instrument's transfer in flight and fail its later ones at once (the
        session is going away). Called from the GUI thread while the worker may be blocked."""
        cancel = getattr(self.worker.instrument, "cancel_transfers", None)
        if cancel is not None:
            cancel()

    def wait(self, timeout_ms: int) -> bool:
        """Block until the worker thread has ended (True) or ``timeout_ms`` passed."""
        return self.thread.wait(timeout_ms) if self.thread.isRunning() else True

    def record(self, command_id: int) -> CommandRecord | None:
        return self._tracker.record(command_id)

    @property
    def outstanding(self) -> int:
        return self._tracker.outstanding

    @property
    def state(self) -> SessionState:
        return self._tracker.state

    @property
    def info(self):
        """The ``app.usbtmc.DeviceInfo`` once opened, else None."""
        return self._tracker.info

    @property
    def last_problem(self) -> str:
        return self._tracker.last_problem

    @property
    def is_open(self) -> bool:
        return self.state.is_open

    @property
    def closing(self) -> bool:
        return self._closing

    # --- events ---

    @Slot()
    def _on_wake(self) -> None:
        # Cleared before the outbox is taken: an event posted meanwhile either is taken now or wakes again.
        self.worker.wake_pending = False
        self._collect()

    @Slot()
    def _collect(self) -> None:
        """Take the worker's events into this thread and handle them (in slices)."""
        outbox = self.worker.outbox
        if not outbox:
            if self._framing and not self._tracker.outstanding:
                self._framing = False
                self._frame_timer.stop()
            return
        while outbox:
            self._arrived.append(outbox.popleft())
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
        self._count_receivers()
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
        self._count_receivers()
        outbox = self.worker.outbox
        while outbox:
            self._arrived.append(outbox.popleft())
        while self._arrived:
            self._on_event(self._arrived.popleft())

    def _on_event(self, event: Event) -> None:
        self._tracker.handle(event, self._deliver)

    def _deliver(self, event: Event) -> None:
        for handler, owner in self._listeners:
            if owner is not None and not shiboken6.isValid(owner):
                self.unlisten(handler)  # its panel is gone (the list iterated is the old one)
                continue
            try:
                handler(event)
            except Exception:  # one panel's bug must not keep the event from the others
                log.exception("event handler %r failed on %r", handler, event)
        if self._signal_receivers:
            self.event.emit(event)

    def _count_receivers(self) -> None:
        self._signal_receivers = self.receivers(SIGNAL("event(PyObject)"))

    @Slot()
    def _on_thread_finished(self) -> None:
        self.drain_events()  # the worker's last events (Closed, Finished) come before this
        self._closing = True
        self._tracker.forget_all()
        if self.state not in (SessionState.CLOSED, SessionState.GONE):
            self._tracker.set_state(SessionState.CLOSED)
