"""The typed errors of the protocol core.

Every error's ``str()`` is one sentence a person can act on. The tree is small on
purpose: callers decide by kind (timeout, device gone, protocol violation,
not supported, bad resource, access problem, user abort), not by message text.
"""

from __future__ import annotations


class TmcError(Exception):
    """Base of every error raised by :mod:`app.usbtmc`.

    ``recovery`` says what the session did after the failure (which abort or clear it
    ran) as text; when it came from a :class:`~app.usbtmc.recovery.RecoveryReport`,
    :attr:`usable` says whether that recovery left the session in a known state.
    ``received`` holds the bytes that arrived before a transfer failed (for a raw view).
    """

    def __init__(self, message: str = "", recovery: object = "", *, received: bytes = b"") -> None:
        super().__init__(message)
        self.report = None if isinstance(recovery, str) else recovery
        self.recovery = str(recovery) if recovery else ""
        self.received = bytes(received)

    @property
    def usable(self) -> bool | None:
        """True or False when a recovery ran and said so; None when none ran."""
        return getattr(self.report, "usable", None)

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.recovery})" if self.recovery else base


class TmcTimeoutError(TmcError, TimeoutError):
    """The device did not complete a transfer in time."""


class DeviceGoneError(TmcError):
    """The device was unplugged or stopped answering on the bus."""


class ProtocolError(TmcError):
    """The device broke the USBTMC/USB488 protocol (wrong bTag, bad header, ...)."""


class BlockFormatError(ProtocolError, ValueError):
    """An IEEE 488.2 block is malformed."""


class NotSupportedError(TmcError):
    """The device does not support the request (per its capabilities or a STALL)."""


class ResourceError(TmcError, ValueError):
    """A resource string is malformed."""


class DeviceNotFoundError(TmcError):
    """No device matches the resource string."""


class AccessError(TmcError):
    """The device is present but cannot be opened (permissions, driver)."""


class AbortedError(TmcError):
    """The caller aborted the transfer; the session ran the abort sequence."""

    def __init__(self, message: str, transferred_bytes: int = 0, recovery: object = "") -> None:
        super().__init__(message, recovery)
        self.transferred_bytes = transferred_bytes


class UsageError(TmcError, ValueError):
    """The caller asked for something USBTMC cannot carry (an empty message, a TermChar
    on a device without the capability); nothing was sent."""


class BackendUnavailableError(TmcError):
    """No USB backend (libusb) could be loaded on this machine."""


class QuirksFileError(TmcError, ValueError):
    """A quirks database file is invalid; the message names the file and line."""


class SaveError(TmcError, OSError):
    """A file could not be saved; the file it was to replace is unchanged."""
