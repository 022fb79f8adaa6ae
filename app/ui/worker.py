"""One worker thread per open instrument session: the QThread bridge to ``app.session``.

Thread contract (also in docs/architecture.md):

* A :class:`SessionWorker` lives in its own :class:`WorkerThread` and runs an
  ``app.session.SessionRunner``, the only code that touches its ``app.usbtmc.Instrument``.
  The GUI never calls the core.
* The GUI talks to it through :class:`Session`: ``submit()`` emits a queued
  signal carrying a frozen command from ``app.session.events``; the worker runs
  commands one at a time in order and answers with frozen events through its
  ``event`` signal (queued back to the GUI thread).
* The one object shared between threads is ``app.session.AbortFlags``: a
  ``threading.Event`` per command that the GUI sets and the core checks between
  transfers. A queued "abort" command would wait behind the transfer it is
  meant to stop.
* While idle the worker polls interrupt-IN for SRQ notifications (and, when asked,
  the status byte). Polls are timer events of the worker's own event loop, so they
  run only between commands and never collide with a transfer.
* ``Close`` closes the instrument, emits ``Closed`` and ends the thread.

What each command does is in ``app.session.handlers``; this module only moves commands and
events between threads and keeps the session's state for the GUI.
"""

from __future__ import annotations

import collections
import time
import weakref

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from app.session import AbortFlags, Origin, SessionData, SessionRunner, SessionState
from app.session.events import Close, Command, Event, Open
from app.session.tracker import CommandRecord, SessionTracker

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

    New command types are taught to every session with ``app.session.register()``.
    """

    event = Signal(object)  # an app.session.events.Event

    def __init__(self, backend, flags: AbortFlags, instrument_factory=None, trace=None) -> None:
        super().__init__()
        data = SessionData(backend=backend, instrument_factory=instrument_factory, trace=trace)
        self.runner = SessionRunner(data, self.event.emit, flags, polling_changed=self._apply_polling)
        self._srq_timer: QTimer | None = None
        self._stb_timer: QTimer | None = None

    @property
    def instrument(self):
        return self.runner.instrument

    # --- thread lifetime -------------------------------------------------------

    @Slot()
    def start(self) -> None:
        """Runs in the worker thread when it starts: create the idle-poll timers there."""
        self._srq_timer = QTimer(self)
        self._srq_timer.timeout.connect(self._poll_srq)
        self._stb_timer = QTimer(self)
        self._stb_timer.timeout.connect(self._poll_stb)

    @Slot()
    def _poll_srq(self) -> None:
        self.runner.poll_srq()

    @Slot()
    def _poll_stb(self) -> None:
        self.runner.poll_stb()

    def _apply_polling(self) -> None:
        """Start or stop the idle polls as the session's state now asks (after open, close,
        a settings change or a failed poll)."""
        data = self.runner.session
        for timer, interval_ms in ((self._srq_timer, data.srq_poll_ms), (self._stb_timer, data.stb_poll_ms)):
            if timer is None:
                continue
            if interval_ms:
                timer.start(interval_ms)
            else:
                timer.stop()

    def _finish_thread(self) -> None:
        """Stop polling and end the thread; the worker goes back to the GUI thread to be freed there."""
        for timer in (self._srq_timer, self._stb_timer):
            if timer is not None:
                timer.stop()
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
        try:
            self.runner.execute(command)
        finally:
            if isinstance(command, Close):
                self._finish_thread()


# The GUI thread handles a session's events for at most this long at a time, then lets the event
# loop run (timers, repaints, input) before the next slice: a burst of hundreds of queued commands
# answered at once would otherwise hold the loop until every event had been shown.
EVENT_SLICE_S = 0.015


class Session(QObject):
    """The GUI's handle on one instrument session and its worker thread.

    ``event`` re-emits every worker event in the GUI thread (panels connect to it), in order,
    in slices of EVENT_SLICE_S; ``state_changed`` follows the ``app.session.SessionState``
    members (opening, idle, busy, gone, failed, closing, closed), as its
    ``app.session.tracker.SessionTracker`` follows them from the commands and events.
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
        self._tracker = SessionTracker(self.state_changed.emit)
        self._flags = self._tracker.flags
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
        self._tracker.set_state(SessionState.OPENING)
        return self.submit(Open(self.resource, timeout_ms=self.timeout_ms, use_quirks=self.use_quirks),
                           origin=Origin.OPEN)

    def submit(self, command: Command, origin: str = "") -> int:
        """Queue ``command`` for the worker; returns its id (0 when the session is closing)."""
        if self._closing or not self.thread.isRunning():
            return 0
        return self._tracker.submit(command, origin, self._to_worker.emit)

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

    def _on_event(self, event: Event) -> None:
        self._tracker.handle(event, self.event.emit)

    @Slot()
    def _on_thread_finished(self) -> None:
        self.drain_events()  # the worker's last events (Closed, Finished) come before this
        self._closing = True
        self._tracker.forget_all()
        if self.state not in (SessionState.CLOSED, SessionState.GONE):
            self._tracker.set_state(SessionState.CLOSED)
