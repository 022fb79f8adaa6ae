"""The session layer: what an open instrument session does, with no Qt.

* ``events``: the commands a session runs and the events it answers with (frozen dataclasses);
* ``handlers``: one handler per command type, over an explicit ``SessionData`` and an ``emit``
  callable; ``register()`` plugs in new command types;
* ``runner``: ``SessionRunner`` (runs commands and idle polls in the calling thread) and
  ``DirectSession`` (a session driven without Qt);
* ``tracker``: ``SessionTracker``, the owner's view: command ids and records, and the session's
  state (busy, idle, gone, ...) followed from the events;
* ``states``: the session's states, command origins and failure kinds as enums;
* ``upload``: the waveform upload command (``UploadWaveform``) and its events;
* ``scpi``: text helpers for SCPI lines, replies and error entries;
* ``catalog``, ``device_profile``: what the instrument table says of the instrument at hand
  (command completion; status registers and demo panels);
* ``status_history``: the status byte over time, the model behind the status view's strip.

The GUI (``app.ui.worker``) runs a ``SessionRunner`` in a QThread and forwards its events by
signal. This package imports the core (``app.usbtmc``) and ``app.waveforms``, never PySide6
(``tests/session`` checks it, and the import-linter contracts in pyproject.toml).
"""

from .handlers import CommandContext, SessionData, failure_kind, register
from .runner import AbortFlags, DirectSession, SessionRunner
from .states import FailureKind, Origin, SessionState, is_background, is_follow_up, is_users_command
from .tracker import CommandRecord, SessionTracker

from . import upload  # noqa: E402,F401  (registers UploadWaveform with every session)

__all__ = [
    "AbortFlags",
    "CommandContext",
    "CommandRecord",
    "DirectSession",
    "FailureKind",
    "Origin",
    "SessionData",
    "SessionRunner",
    "SessionState",
    "SessionTracker",
    "failure_kind",
    "is_background",
    "is_follow_up",
    "is_users_command",
    "register",
]
