"""The session's vocabularies: its states, where a command came from, how a command failed.

They are ``StrEnum`` members, so they compare equal to the strings they replace
(``session.state == "busy"``) and print as those strings in logs and tooltips.
"""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    """Where a session is in its life (``Session.state``, ``Session.state_changed``)."""

    NEW = "new"  # created, never opened
    OPENING = "opening"  # an Open command is outstanding
    IDLE = "idle"  # open, nothing of the user's outstanding
    BUSY = "busy"  # open, a command of the user's outstanding (Abort acts on it)
    GONE = "gone"  # the device left the bus; a reconnect may find it again
    FAILED = "failed"  # the open failed; ``Session.last_problem`` says why
    CLOSING = "closing"  # Close is queued; the worker thread ends after it
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self in (SessionState.IDLE, SessionState.BUSY)

    @property
    def is_ended(self) -> bool:
        """Not open, and nothing under way: a reconnect is what the user can do."""
        return self in (SessionState.GONE, SessionState.FAILED, SessionState.CLOSED)


class Origin(StrEnum):
    """Which part of the application submitted a command (``CommandRecord.origin``).

    The set is open: a panel may pass any string; one ending in ``-poll`` marks that panel's
    periodic reads as background work (see :func:`is_background`).
    """

    OPEN = "open"  # the session's Open
    CONSOLE = "console"  # a line the user typed
    SCRIPT = "script"  # a line of a script the user runs
    ACTION = "action"  # a button of a panel (control requests, status and SAM7 panels)
    IDENTIFY = "identify"  # the browser's indicator pulse
    WAVEFORM = "waveform"  # the waveform panel's uploads
    SMOKE_TEST = "smoke-test"  # the frozen bundle's self-test
    RESET = "reset"  # the user's USB port reset lets go of the interface first
    CHECK = "check"  # the automatic error check after a command: part of that command
    CONFIG = "config"  # a settings change (timeout, TermChar)
    SRQ = "srq"  # the follow-up queries after a service request
    CLOSE = "close"
    DISCOVERY = "discovery"  # the device left the bus
    STATUS_POLL = "status-poll"  # the status panel's periodic register reads
    SAM7_POLL = "sam7-poll"  # the SAM7 panel's periodic reads


# Work the application does by itself, not on the user's behalf.
_BACKGROUND = frozenset({Origin.CONFIG, Origin.SRQ, Origin.CLOSE, Origin.DISCOVERY})


def is_background(origin: str) -> bool:
    """True for the application's own work: settings changes, SRQ follow-ups, close, a device
    leaving, and any panel's periodic reads (an origin ending in ``-poll``).

    Background commands never make the session "busy", are never named as the cause of a
    service request, and are not listed as commands in the status history. The error check
    after a command (``Origin.CHECK``) is *not* background: it keeps the session busy (a
    script waits for it, and Abort must reach it), but it belongs to the command it follows,
    so see :func:`is_follow_up` for the places that attribute events to commands.
    """
    return origin in _BACKGROUND or origin.endswith("-poll")


def is_follow_up(origin: str) -> bool:
    """True for a command that belongs to the command before it (the automatic error check)."""
    return origin == Origin.CHECK


def is_users_command(origin: str) -> bool:
    """A command the user asked for: one that can cause a service request or a status change."""
    return not is_background(origin) and not is_follow_up(origin)


class FailureKind(StrEnum):
    """``Failed.kind``: what kind of error ended a command (the core's error classes, named)."""

    TIMEOUT = "timeout"
    GONE = "gone"  # the device left the bus; the session closes
    PROTOCOL = "protocol"
    NOT_SUPPORTED = "not_supported"
    ABORTED = "aborted"  # the user's Cancel/Abort, or cancelled before it started
    ACCESS = "access"
    NOT_FOUND = "not_found"
    NO_BACKEND = "no_backend"
    ERROR = "error"  # any other error of the core
    INTERNAL = "internal"  # a bug in a handler; the session goes on
