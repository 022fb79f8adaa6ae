"""The typed errors of LAN sessions: the core's :class:`~app.usbtmc.errors.TmcError` tree, with the
network's own causes named, so callers that decide by kind (timeout, gone, not found) need
nothing new."""

from __future__ import annotations

from dataclasses import dataclass

from app.usbtmc.errors import DeviceGoneError, DeviceNotFoundError, ProtocolError, TmcTimeoutError


@dataclass(frozen=True)
class LanRecovery:
    """What a LAN session did after a failure, and whether it is in a known state afterwards."""

    text: str
    usable: bool

    def what_ran(self) -> str:
        """The recovery, without the verdict on the session (for a command that ends with the error)."""
        return self.text

    def __str__(self) -> str:
        return f"{self.text}; the session is usable" if self.usable else f"{self.text}; the session is not usable"


class HostUnreachableError(DeviceNotFoundError):
    """No answer from the host within the open timeout (no route, host down, or filtered)."""


class RefusedError(DeviceNotFoundError):
    """The host answered, but nothing listens on the port (TCP RST to the SYN)."""


class ConnectionLostError(DeviceGoneError):
    """The connection was reset or closed by the instrument during a transfer."""


class SendTimeoutError(TmcTimeoutError):
    """The instrument stopped taking data: the send did not finish within the timeout."""


class ReplyTimeoutError(TmcTimeoutError):
    """No (complete) reply within the timeout: the instrument is busy, has no answer, or the
    connection is half-open (the host went away without closing it)."""


class LanProtocolError(ProtocolError):
    """The peer broke VXI-11, ONC RPC or HiSLIP framing."""
