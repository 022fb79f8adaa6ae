"""The USBTMC/USB488 host protocol core (no Qt).

Public API::

    from app.usbtmc import list_resources, Instrument
    for info in list_resources():
        print(info.resource, info.product)
    with Instrument("USB0::0x1209::0x0001::SAM7-0001::INSTR", timeout_ms=2000) as inst:
        print(inst.query("*IDN?"))

``open_instrument(resource, backend)`` is the same as ``Instrument(resource, backend)``; a
caller that must hold the transport itself opens it with ``open_interface(resource, backend)``
and passes that to ``Instrument``.

``backend`` arguments take any pyusb backend; None means libusb through
libusb-package. The virtual instruments' backend is ``app.sim.backend()``.
"""

from .discovery import DeviceInfo, EndpointInfo, OpenedInterface, list_resources, open_interface
from .errors import (
    AbortedError,
    AccessError,
    BackendUnavailableError,
    BlockFormatError,
    DeviceGoneError,
    DeviceNotFoundError,
    NotSupportedError,
    ProtocolError,
    QuirksFileError,
    ResourceError,
    TmcError,
    TmcTimeoutError,
)
from .framing import Capabilities
from .instrument import Instrument, open_instrument
from .quirks import AppliedQuirk, Quirks, default_database, load_database
from .resource import Resource, format_resource, parse_resource
from .transport import TransferError, default_backend

__all__ = [
    "AbortedError",
    "AccessError",
    "AppliedQuirk",
    "BackendUnavailableError",
    "BlockFormatError",
    "Capabilities",
    "DeviceGoneError",
    "DeviceInfo",
    "DeviceNotFoundError",
    "EndpointInfo",
    "Instrument",
    "NotSupportedError",
    "OpenedInterface",
    "ProtocolError",
    "Quirks",
    "QuirksFileError",
    "Resource",
    "ResourceError",
    "TmcError",
    "TmcTimeoutError",
    "TransferError",
    "default_backend",
    "default_database",
    "format_resource",
    "list_resources",
    "load_database",
    "open_instrument",
    "open_interface",
    "parse_resource",
]
