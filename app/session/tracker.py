"""What the owner of a session knows about it: its state and the commands still outstanding.

:class:`SessionTracker` gives each submitted command its id, remembers where it came from
(:class:`CommandRecord`), and follows the session's :class:`~.states.SessionState` from the
events coming back. It does no I/O and holds no thread: the GUI's ``app.ui.worker.Session``
feeds it from the GUI thread and passes its state changes on as a signal.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from .events import Closed, Command, Event, Failed, Finished, Opened
from .runner import AbortFlags
from .states import SessionState, is_background


@dataclass(frozen=True)
class CommandRecord:
    """What was submitted, so any panel can tell what an event belongs to."""

    id: int
    command: Command
    origin: str  # which panel sent it: an Origin, or a panel's own string
    submitted: float  # wall-clock time, seconds


class SessionTracker:
    """A session's state and outstanding commands, followed from what is submitted and what comes back.

    The session is busy while a command that is not background work (:func:`~.states.is_background`)
    is outstanding; ``on_state(state)`` is called on every change.
    """

    def __init__(self, on_state: Callable[[SessionState], None] | None = None) -> None:
        self.state = SessionState.NEW
        self.info = None  # the DeviceInfo of the last Opened
        self.last_problem = ""  # why the session failed to open or went away
        self.flags = AbortFlags()
        self._on_state = on_state
        self._ids = itertools.count(1)
        self._records: dict[int, CommandRecord] = {}

    def set_state(self, state: SessionState) -> None:
        if state != self.state:
            self.state = state
            if self._on_state is not None:
                self._on_state(state)

    # --- commands ---

    def submit(self, command: Command, origin: str, send: Callable[[Command], None]) -> int:
        """Give ``command`` its id, record it, ``send`` it (with the id) and return the id."""
        cid = next(self._ids)
        command = command.with_id(cid)
        self.flags.register(cid)  # before it is sent: the runner releases it when done
        # Sent before the bookkeeping: the thread that runs it wakes meanwhile. Its events are
        # handled in this thread, after this returns.
        send(command)
        self._records[cid] = CommandRecord(cid, command, origin, time.time())
        if self.state == SessionState.IDLE and not is_background(origin):
            self.set_state(SessionState.BUSY)
        return cid

    def record(self, command_id: int) -> CommandRecord | None:
        return self._records.get(command_id)

    @property
    def outstanding(self) -> int:
        return len(self._records)

    def forget_all(self) -> None:
        """Nothing is outstanding any more (the session's thread has ended)."""
        self._records.clear()

    # --- events ---

    def handle(self, event: Event, deliver: Callable[[Event], None]) -> None:
        """Follow ``event``, calling ``deliver(event)`` in between: a panel sees the new state when it
        gets Opened, Closed or a failed open, and the command still outstanding when it gets Finished."""
        if isinstance(event, Opened):
            self.info = event.info
            busy = self._foreground_outstanding(besides=event.command_id)
            self.set_state(SessionState.BUSY if busy else SessionState.IDLE)
        elif isinstance(event, Closed):
            if event.gone:
                self.last_problem = event.reason
            self.set_state(SessionState.GONE if event.gone else SessionState.CLOSED)
        elif isinstance(event, Failed) and self.state == SessionState.OPENING:
            self.last_problem = event.message
            self.set_state(SessionState.FAILED)
        deliver(event)
        if isinstance(event, Finished):
            self._records.pop(event.command_id, None)
            if self.state == SessionState.BUSY and not self._foreground_outstanding():
                self.set_state(SessionState.IDLE)

    def _foreground_outstanding(self, besides: int = 0) -> bool:
        return any(cid != besides and not is_background(r.origin) for cid, r in self._records.items())
