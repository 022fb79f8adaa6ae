"""Finding USBTMC interfaces on a bus and describing them."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import usb.core
import usb.util

from .constants import REQ_IN_CLASS_INTERFACE, USBTMC_CLASS, USBTMC_SUBCLASS, CAPABILITIES_BYTES, InterfaceProtocol, Request
from .errors import AccessError, DeviceNotFoundError, TmcError
from .framing import Capabilities, parse_capabilities
from .quirks import AppliedQuirk, QuirkDatabase, default_database
from .resource import Resource, format_resource
from .transport import default_backend, find_endpoints, translate

_SPEEDS = {
    1: "low (1.5 Mbit/s)",
    2: "full (12 Mbit/s)",
    3: "high (480 Mbit/s)",
    4: "super (5 Gbit/s)",
    5: "super+ (10 Gbit/s)",
}


@dataclass(frozen=True)
class EndpointInfo:
    address: int
    kind: str  # "bulk" or "interrupt"
    direction: str  # "in" or "out"
    max_packet_bytes: int


@dataclass(frozen=True)
class DeviceInfo:
    """What the bus says about one USBTMC interface, and what can be learnt without a session."""

    resource: str
    vid: int
    pid: int
    serial: str
    manufacturer: str
    product: str
    interface_number: int
    configuration_value: int
    protocol: str  # "USB488" or "USBTMC"
    speed: str
    bus: int | None
    address: int | None
    endpoints: tuple[EndpointInfo, ...]
    capabilities: Capabilities | None
    quirks: tuple[AppliedQuirk, ...]
    problem: str | None = None  # why it cannot be opened, and what to do

    @property
    def vid_pid(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}"


def _access_advice() -> str:
    if sys.platform.startswith("win"):
        return (
            "Windows needs the WinUSB driver on this interface: install it with Zadig "
            "(Options > List All Devices, pick the instrument, choose WinUSB, Replace Driver)"
        )
    if sys.platform == "darwin":
        return "another program may hold the device; close it and try again"
    return (
        "add a udev rule giving your user access, e.g. /etc/udev/rules.d/99-usbtmc.rules with "
        'SUBSYSTEM=="usb", ATTR{idVendor}=="VVVV", MODE="0666" (then replug), or run as a member of the group that owns it'
    )


def _string(device, index: int) -> str:
    if not index:
        return ""
    text = usb.util.get_string(device, index)
    # Some devices pad their string descriptors with NULs.
    return (text or "").rstrip("\x00").strip()


def _usbtmc_interfaces(device, db: QuirkDatabase):
    """(configuration, interface) pairs that carry the USBTMC class triple (USBTMC 1.0 Table 43).

    A device whose quirks set ``force_usbtmc`` offers its first interface with a
    bulk pair instead, even without the class triple.
    """
    found = False
    for cfg in device:
        for intf in cfg:
            if intf.bInterfaceClass == USBTMC_CLASS and intf.bInterfaceSubClass == USBTMC_SUBCLASS:
                if intf.bAlternateSetting == 0:
                    found = True
                    yield cfg, intf
    if not found and db.lookup(device.idVendor, device.idProduct).force_usbtmc:
        for cfg in device:
            for intf in cfg:
                if intf.bAlternateSetting == 0 and find_endpoints(intf) is not None:
                    yield cfg, intf
                    return


def _probe_capabilities(device, intf, usb488: bool) -> Capabilities:
    reply = device.ctrl_transfer(
        REQ_IN_CLASS_INTERFACE, Request.GET_CAPABILITIES, 0, intf.bInterfaceNumber, CAPABILITIES_BYTES, timeout=1000
    )
    return parse_capabilities(bytes(reply), usb488=usb488)


def describe_interface(device, cfg, intf, *, probe: bool, db: QuirkDatabase, strings: dict | None = None) -> DeviceInfo:
    """A :class:`DeviceInfo` for one USBTMC interface of a pyusb device."""
    problem = None
    if strings is None:
        try:
            strings = {
                "manufacturer": _string(device, device.iManufacturer),
                "product": _string(device, device.iProduct),
                "serial": _string(device, device.iSerialNumber),
            }
        except (usb.core.USBError, ValueError, NotImplementedError) as exc:
            strings = {"manufacturer": "", "product": "", "serial": ""}
            problem = f"The device's strings cannot be read ({exc}). {_access_advice()}."
    usb488 = intf.bInterfaceProtocol == InterfaceProtocol.USB488
    endpoints = tuple(
        EndpointInfo(
            address=ep.bEndpointAddress,
            kind={2: "bulk", 3: "interrupt", 1: "isochronous", 0: "control"}[usb.util.endpoint_type(ep.bmAttributes)],
            direction="in" if usb.util.endpoint_direction(ep.bEndpointAddress) == usb.util.ENDPOINT_IN else "out",
            max_packet_bytes=ep.wMaxPacketSize & 0x7FF,
        )
        for ep in intf
    )
    if find_endpoints(intf) is None and problem is None:
        problem = "The interface lacks the Bulk-IN/Bulk-OUT endpoint pair USBTMC requires."
    caps = None
    if probe and problem is None:
        try:
            caps = _probe_capabilities(device, intf, usb488)
        except usb.core.USBError as exc:
            err = translate(exc, "GET_CAPABILITIES")
            if isinstance(err, AccessError):
                problem = f"{err}. {_access_advice()}."
        except TmcError:
            caps = None  # a device with a broken GET_CAPABILITIES still opens
    quirks = db.lookup(device.idVendor, device.idProduct, strings["product"] or None)
    n_usbtmc = sum(1 for _ in _usbtmc_interfaces(device, db))
    return DeviceInfo(
        resource=format_resource(
            device.idVendor, device.idProduct, strings["serial"], intf.bInterfaceNumber if n_usbtmc > 1 else None
        ),
        vid=device.idVendor,
        pid=device.idProduct,
        serial=strings["serial"],
        manufacturer=strings["manufacturer"],
        product=strings["product"],
        interface_number=intf.bInterfaceNumber,
        configuration_value=cfg.bConfigurationValue,
        protocol="USB488" if usb488 else "USBTMC",
        speed=_SPEEDS.get(getattr(device, "speed", None), "unknown"),
        bus=getattr(device, "bus", None),
        address=getattr(device, "address", None),
        endpoints=endpoints,
        capabilities=caps,
        quirks=quirks.applied,
        problem=problem,
    )


def list_resources(backend=None, *, probe: bool = True, db: QuirkDatabase | None = None) -> list[DeviceInfo]:
    """Every USBTMC interface on the bus reached through ``backend`` (None: libusb).

    ``probe`` also asks each interface for its capabilities. A device that cannot
    be read is listed with ``problem`` saying why and what to do, not hidden.
    Raises :class:`BackendUnavailableError` when libusb cannot be loaded.
    """
    backend = backend if backend is not None else default_backend()
    db = db if db is not None else default_database()
    infos = []
    try:
        devices = list(usb.core.find(find_all=True, backend=backend))
    except usb.core.USBError as exc:
        raise translate(exc, "enumerating USB devices") from exc
    for device in devices:
        try:
            for cfg, intf in _usbtmc_interfaces(device, db):
                infos.append(describe_interface(device, cfg, intf, probe=probe, db=db))
        except usb.core.USBError:
            continue  # unplugged while we looked at it
        finally:
            usb.util.dispose_resources(device)
    return infos


def find_device(resource: Resource, backend, db: QuirkDatabase | None = None):
    """The pyusb device, configuration and interface for ``resource``.

    Raises :class:`DeviceNotFoundError` naming what was searched for.
    """
    db = db if db is not None else default_database()
    try:
        candidates = list(usb.core.find(find_all=True, backend=backend, idVendor=resource.vid, idProduct=resource.pid))
    except usb.core.USBError as exc:
        raise translate(exc, "enumerating USB devices") from exc
    unreadable = None
    for device in candidates:
        try:
            serial = _string(device, device.iSerialNumber)
        except (usb.core.USBError, ValueError) as exc:
            unreadable = exc
            continue
        if serial != resource.serial:
            continue
        for cfg, intf in _usbtmc_interfaces(device, db):
            if resource.interface is None or intf.bInterfaceNumber == resource.interface:
                return device, cfg, intf
    if unreadable is not None:
        raise AccessError(
            f"a device {resource.vid:04X}:{resource.pid:04X} is present but its serial number cannot be read "
            f"({unreadable}). {_access_advice()}."
        )
    what = f"{resource.vid:04X}:{resource.pid:04X} with serial {resource.serial!r}"
    if resource.interface is not None:
        what += f" and USBTMC interface {resource.interface}"
    if candidates:
        raise DeviceNotFoundError(f"no USBTMC device {what}; {len(candidates)} device(s) with that VID:PID have other serials")
    raise DeviceNotFoundError(f"no USBTMC device {what} is connected")
