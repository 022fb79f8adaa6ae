"""LAN instruments: sessions on raw SCPI sockets, VXI-11 and HiSLIP behind the interface of
:class:`app.usbtmc.Instrument`, and :func:`open_session`, which picks USB or LAN by resource.

No Qt (the console runs these in its worker thread, the CLI directly). docs/lan.md.
"""

from __future__ import annotations

from .resource import LanAddress, is_lan_resource, parse_lan_resource
from .session import LanCapabilities, LanInfo, LanSession

__all__ = ["LanAddress", "LanCapabilities", "LanInfo", "LanSession", "is_lan_resource", "open_lan", "open_session",
           "parse_lan_resource"]


def open_lan(resource: str, timeout_ms: int = 5000, **options) -> LanSession:
    """A session on the LAN instrument ``resource`` names (SOCKET, VXI-11 or HiSLIP)."""
    address = parse_lan_resource(resource)
    if address.protocol == "SOCKET":
        from .raw import RawSocketSession as cls
    elif address.protocol == "HiSLIP":
        from .hislip import HislipSession as cls
    else:
        from .vxi11 import Vxi11Session as cls
    return cls(address, timeout_ms, **options)


def open_session(resource: str, backend=None, timeout_ms: int = 5000, *, trace=None, **options):
    """A session on ``resource``: :class:`app.usbtmc.Instrument` for USB strings (``backend`` is
    its pyusb backend), a LAN session for ``TCPIP...`` strings."""
    if is_lan_resource(resource):
        return open_lan(resource, timeout_ms, trace=trace)  # quirks are USB's
    from app.usbtmc import Instrument

    return Instrument(resource, backend=backend, timeout_ms=timeout_ms, trace=trace, **options)
