"""The typed errors of the protocol core.

Every error's ``str()`` is one sentence a person can act on. The tree is small on
purpose: callers decide by kind (timeout, device gone, protocol violation,
not supported, bad resource, access problem, user abort), not by message text.
"""

from __future__ import annotations


class TmcError(Exception):
    """Base of every error raised by :mod:`app.usbtmc`."""


class TmcTimeoutError(TmcError, TimeoutError):
    """The device did not complete a transfer in time.

    ``recovery`` says what the session did afterwards (for example which abort
    sequence it ran) so a console can tell the user whether the session is usable.
    """

    def __init__(self, message: str, recovery: str = "") -> None:
        super().__init__(message)
        self.recovery = recovery

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.recovery})" if self.recovery else base


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

    def __init__(self, message: str, transferred_bytes: int = 0) -> None:
        super().__init__(message)
        self.transferred_bytes = transferred_bytes


class BackendUnavailableError(TmcError):
    """No USB backend (libusb) could be loaded on this machine."""


class QuirksFileError(TmcError, ValueError):
    """A quirks database file is invalid; the message names the file and line."""


class SaveError(TmcError, OSError):
    """A file could not be saved; the file it was to replace is unchanged."""
