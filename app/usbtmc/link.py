"""The channel a session and the compliance probe share: one claimed interface, its
endpoints, the bTag counters and the class-specific control requests.

Everything that talks USBTMC over a :class:`~app.usbtmc.transport.UsbTransport`
goes through a :class:`Link`, so bTags and control requests are written once.
"""

from __future__ import annotations

from . import framing
from .constants import REQ_IN_CLASS_ENDPOINT, REQ_IN_CLASS_INTERFACE, Request
from .errors import NotSupportedError, ProtocolError
from .transport import Endpoints, StallError, UsbTransport

#: Timeout of one class-specific control request (USBTMC 1.0 section 4.2.1: the device
#: answers a control request within the USB 2.0 limits, 500 ms for data stages).
CONTROL_TIMEOUT_MS = 1000


class Link:
    """One claimed USBTMC interface with its bTag counters. Not thread-safe."""

    def __init__(self, transport: UsbTransport, endpoints: Endpoints, *, usb488: bool) -> None:
        self.transport = transport
        self.ep = endpoints
        self.usb488 = usb488
        self._btag = 0
        self._stb_tag = 1
        #: bTag of the newest Bulk-OUT transfer that carried message bytes (0: none yet).
        self.last_out_btag = 0

    @property
    def btag(self) -> int:
        """The bTag most recently handed out (0 before the first)."""
        return self._btag

    def next_btag(self) -> int:
        """The next Bulk-OUT bTag, 1..255 (USBTMC 1.0 Table 1)."""
        self._btag = framing.next_btag(self._btag)
        return self._btag

    def next_stb_tag(self) -> int:
        """The next READ_STATUS_BYTE bTag, 2..127 (USB488 1.0 section 4.3.1)."""
        self._stb_tag = self._stb_tag + 1 if self._stb_tag < 127 else 2
        return self._stb_tag

    def control(self, request: Request, value: int, length: int, *, endpoint: int | None = None,
                timeout_ms: int = CONTROL_TIMEOUT_MS) -> bytes:
        """A class-specific IN control request to the interface, or to ``endpoint``.

        A STALL becomes :class:`NotSupportedError`; an empty reply a :class:`ProtocolError`.
        """
        try:
            reply = self.control_raw(request, value, length, endpoint=endpoint, timeout_ms=timeout_ms)
        except StallError:
            raise NotSupportedError(f"the device refused {request.name} (STALL)") from None
        if not reply:
            raise ProtocolError(f"{request.name}: the device sent an empty control reply")
        return reply

    def control_raw(self, request: Request | int, value: int, length: int, *, endpoint: int | None = None,
                    timeout_ms: int = CONTROL_TIMEOUT_MS) -> bytes:
        """The same request with the reply as it came; a STALL raises :class:`StallError`
        (the compliance probe tells refusals apart from failures)."""
        if endpoint is None:
            rtype, index = REQ_IN_CLASS_INTERFACE, self.transport.interface_number
        else:
            rtype, index = REQ_IN_CLASS_ENDPOINT, endpoint
        return self.transport.control_in(rtype, request, value, index, length, timeout_ms)
