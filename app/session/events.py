"""Commands to a session worker and the events it answers with (no Qt here).

A GUI panel builds a command, hands it to ``Session.submit()`` and gets the
command's id back. The worker thread runs commands one at a time, in order, and
answers with frozen event dataclasses carrying that id:

* first ``Started``;
* then what the command produced (``Sent``, ``Reply``, ``StatusByte``, ``Done``,
  ``ErrorReport``, ``Progress``..., or ``Failed``);
* last ``Finished``, always, so a panel can count what is outstanding without
  knowing every command type.

Events not caused by a command (``Srq``, status polled while idle) carry
``command_id = 0``. Both sets are open: a new panel adds its own command
dataclass and registers a handler (``app.session.register``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from .states import FailureKind


def _now() -> float:
    return time.time()


# --- commands (GUI -> worker) -------------------------------------------------


@dataclass(frozen=True)
class Command:
    """Base of every command; ``id`` is set by ``Session.submit()``."""

    id: int = field(default=0, kw_only=True)

    def with_id(self, command_id: int) -> Command:
        """A copy of this command carrying ``command_id`` (what ``dataclasses.replace`` gives,
        without running the dataclass machinery on every command a session sends)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        object.__setattr__(copy, "id", command_id)
        return copy

    def describe(self) -> str:
        """A short label for status lines and transcripts."""
        return type(self).__name__


@dataclass(frozen=True)
class Open(Command):
    """Open (or reopen) the session's instrument."""

    resource: str
    timeout_ms: int = 5000
    use_quirks: bool = True

    def describe(self) -> str:
        return f"open {self.resource}"


@dataclass(frozen=True)
class Close(Command):
    """Close the instrument and end the worker thread."""

    reason: str = "closed by the user"

    def describe(self) -> str:
        return "close"


@dataclass(frozen=True)
class Disconnect(Command):
    """Close the instrument but keep the worker thread, so ``Open`` can reconnect later."""

    reason: str = "disconnected"
    gone: bool = False

    def describe(self) -> str:
        return "disconnect"


@dataclass(frozen=True)
class Write(Command):
    """Send ``data`` as one program message (termination already included)."""

    data: bytes
    label: str = ""

    def describe(self) -> str:
        return self.label or repr(self.data)


@dataclass(frozen=True)
class Query(Command):
    """Send ``data`` then read one response message."""

    data: bytes
    label: str = ""
    max_bytes: int | None = None

    def describe(self) -> str:
        return self.label or repr(self.data)


@dataclass(frozen=True)
class Read(Command):
    """Read one response message."""

    max_bytes: int | None = None

    def describe(self) -> str:
        return "read"


@dataclass(frozen=True)
class WriteStream(Command):
    """Send the concatenation of ``pieces`` as one message, reporting ``Progress``.

    For long uploads: the pieces (bytes-like, e.g. a block header, a NumPy
    buffer and the terminator) are never joined in memory. The abort flag is
    checked between transfers.
    """

    pieces: tuple[Any, ...]
    total_bytes: int
    label: str = ""

    def describe(self) -> str:
        return self.label or f"upload of {self.total_bytes} bytes"


ControlAction = Literal["clear", "read_stb", "trigger", "indicator_pulse", "remote", "local", "lockout"]

CONTROL_LABELS: dict[str, str] = {
    "clear": "device clear",
    "read_stb": "read status byte",
    "trigger": "trigger",
    "indicator_pulse": "indicator pulse",
    "remote": "remote (REN)",
    "local": "go to local",
    "lockout": "local lockout",
}


@dataclass(frozen=True)
class Control(Command):
    """A USBTMC/USB488 request that is not a message: clear, READ_STATUS_BYTE, TRIGGER, ..."""

    action: ControlAction

    def describe(self) -> str:
        return CONTROL_LABELS.get(self.action, self.action)


ErrorCheckMethod = Literal["syst_err", "esr"]


@dataclass(frozen=True)
class CheckErrors(Command):
    """Ask the instrument what went wrong with command ``after``.

    ``syst_err`` drains ``SYST:ERR?`` until it answers 0 (at most ``max_entries``);
    ``esr`` reads ``*ESR?`` (which clears the register) and decodes it.
    """

    after: int
    method: ErrorCheckMethod
    termination: bytes = b"\n"
    max_entries: int = 32

    def describe(self) -> str:
        return "SYST:ERR?" if self.method == "syst_err" else "*ESR?"


@dataclass(frozen=True)
class Configure(Command):
    """Change session settings; None leaves a setting alone.

    ``term_char`` is the byte that ends reads when the device supports TermChar
    (-1 turns it off).
    """

    timeout_ms: int | None = None
    term_char: int | None = None

    def describe(self) -> str:
        return "configure"


@dataclass(frozen=True)
class SetIdlePolling(Command):
    """What the worker does while idle: read SRQ notifications from interrupt-IN
    every ``srq_interval_ms`` and the status byte (READ_STATUS_BYTE) every
    ``stb_interval_ms``; 0 turns either off. Polls run only between commands,
    so they never collide with a transfer."""

    srq_interval_ms: int | None = None
    stb_interval_ms: int | None = None

    def describe(self) -> str:
        return "idle polling"


# --- events (worker -> GUI) ---------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Base of every event."""

    command_id: int
    at: float = field(default_factory=_now, kw_only=True)  # wall-clock time, seconds


@dataclass(frozen=True)
class Started(Event):
    what: str


@dataclass(frozen=True)
class Finished(Event):
    """The last event of every command, whatever happened."""

    ok: bool
    duration_ms: float


@dataclass(frozen=True)
class Opened(Event):
    """The session is open. ``info`` is an ``app.usbtmc.DeviceInfo`` with capabilities and quirks;
    ``pipelined``: a query's transfers are submitted together (``Instrument.pipelined``)."""

    info: Any
    has_interrupt_in: bool
    pipelined: bool = False


@dataclass(frozen=True)
class Closed(Event):
    """The instrument is closed. ``gone``: because the device disappeared."""

    reason: str
    gone: bool = False


@dataclass(frozen=True)
class Sent(Event):
    nbytes: int
    duration_ms: float


@dataclass(frozen=True)
class Reply(Event):
    data: bytes
    duration_ms: float  # the read alone
    round_trip_ms: float  # write + read for a query, the read otherwise


@dataclass(frozen=True)
class StatusByte(Event):
    """The status byte from USB488 READ_STATUS_BYTE; ``polled`` when read by idle polling."""

    value: int
    polled: bool = False


@dataclass(frozen=True)
class Srq(Event):
    """A USB488 SRQ notification from interrupt-IN, with its status byte."""

    status_byte: int


@dataclass(frozen=True)
class Done(Event):
    """A command with no data to return completed."""

    what: str
    duration_ms: float


@dataclass(frozen=True)
class Configured(Event):
    timeout_ms: int
    term_char: int | None


@dataclass(frozen=True)
class Progress(Event):
    """A long transfer moved on. ``total_bytes`` is 0 when unknown (reads)."""

    done_bytes: int
    total_bytes: int
    elapsed_s: float


@dataclass(frozen=True)
class Learned(Event):
    """Something the session learned about the device while it worked (said once)."""

    text: str


@dataclass(frozen=True)
class Failed(Event):
    """The command failed. ``message`` says what happened, ``recovery`` what the session did about it."""

    kind: FailureKind
    message: str
    recovery: str = ""
    duration_ms: float = 0.0


@dataclass(frozen=True)
class ErrorEntry:
    """One error the instrument reported: ``code`` 0 means none."""

    code: int
    message: str
    severe: bool = True  # False for informational ESR bits (PON, URQ, OPC, RTL)


@dataclass(frozen=True)
class ErrorReport(Event):
    """What the automatic error check after command ``after`` found."""

    after: int
    method: ErrorCheckMethod
    entries: tuple[ErrorEntry, ...]
    esr: int | None = None
    problem: str = ""  # the check itself could not run (e.g. the device does not answer it)
