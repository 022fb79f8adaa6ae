"""Finding USBTMC interfaces on a bus, describing them, and claiming one for a session."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace

import usb.core
import usb.util

from . import doctor
from .constants import REQ_IN_CLASS_INTERFACE, USBTMC_CLASS, USBTMC_SUBCLASS, CAPABILITIES_BYTES, InterfaceProtocol, Request
from .errors import AccessError, DeviceGoneError, DeviceNotFoundError, ProtocolError, TmcError
from .framing import Capabilities, parse_capabilities
from .quirks import AppliedQuirk, QuirkDatabase, Quirks, default_database
from .resource import Resource, format_resource, parse_resource
from .transport import UsbTransport, default_backend, find_endpoints, translate

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
    # Set when the instrument sits in its firmware-update mode under this PID; ``pid`` and
    # ``resource`` already name the USBTMC mode that opening the resource switches it to.
    firmware_mode_pid: int | None = None
    # The driver doctor's finding (app.usbtmc.doctor.Diagnosis) when opening failed or a driver is in the way.
    diagnosis: doctor.Diagnosis | None = None

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
    bulk pair instead, even without the class triple; one in a firmware-update mode
    (``mode_switch_target_pid``) offers its first interface, whatever it is.
    """
    found = False
    for cfg in device:
        for intf in cfg:
            if intf.bInterfaceClass == USBTMC_CLASS and intf.bInterfaceSubClass == USBTMC_SUBCLASS:
                if intf.bAlternateSetting == 0:
                    found = True
                    yield cfg, intf
    if found:
        return
    quirks = db.lookup(device.idVendor, device.idProduct)
    if quirks.mode_switch_target_pid:
        for cfg in device:
            for intf in cfg:
                yield cfg, intf
                return
    if quirks.force_usbtmc:
        for cfg in device:
            for intf in cfg:
                if intf.bAlternateSetting == 0 and find_endpoints(intf) is not None:
                    yield cfg, intf
                    return


def situation(device, cfg, intf, strings: dict | None = None) -> doctor.Situation:
    """What the doctor knows about an interface without opening its device (sysfs on Linux),
    and ``strings`` already read from it."""
    platform = doctor.current_platform()
    facts = {}
    if platform.startswith("linux"):
        facts = doctor.sysfs_facts(getattr(device, "bus", None), getattr(device, "port_numbers", None),
                                   cfg.bConfigurationValue, intf.bInterfaceNumber)
    facts = {**(strings or {}), **{k: v for k, v in facts.items() if v}}
    driver = facts.get("driver") or None
    if driver is None and platform.startswith("linux"):
        try:
            # usbtmc is the only kernel driver that binds to class FE/03 interfaces.
            driver = "usbtmc" if device.is_kernel_driver_active(intf.bInterfaceNumber) else None
        except (usb.core.USBError, NotImplementedError):
            driver = None
    return doctor.Situation(
        vid=device.idVendor, pid=device.idProduct, interface_number=intf.bInterfaceNumber,
        composite=cfg.bNumInterfaces > 1, platform=platform,
        manufacturer=facts.get("manufacturer", ""), product=facts.get("product", ""), serial=facts.get("serial", ""),
        kernel_driver=driver, sysfs_interface=facts.get("interface", ""),
        usbdk_installed=doctor.usbdk_installed(),
    )


def _open_error(device) -> BaseException | None:
    """What opening ``device`` raises, or None when it opens.

    pyusb hides a failed open behind ``ValueError("The device has no langid")`` when
    reading strings; a GET_STATUS request (USB 2.0 9.4.5) opens it again and lets the
    real error through.
    """
    try:
        device.ctrl_transfer(0x80, 0, 0, 0, 2, timeout=500)
    except (usb.core.USBError, NotImplementedError) as exc:
        return exc
    return None


def _probe_capabilities(device, intf, usb488: bool) -> Capabilities:
    reply = device.ctrl_transfer(
        REQ_IN_CLASS_INTERFACE, Request.GET_CAPABILITIES, 0, intf.bInterfaceNumber, CAPABILITIES_BYTES, timeout=1000
    )
    return parse_capabilities(bytes(reply), usb488=usb488)


def describe_interface(device, cfg, intf, *, probe: bool, db: QuirkDatabase, strings: dict | None = None) -> DeviceInfo:
    """A :class:`DeviceInfo` for one USBTMC interface of a pyusb device."""
    problem = None
    diagnosis = None
    boot: Quirks = db.lookup(device.idVendor, device.idProduct)
    firmware_mode = bool(boot.mode_switch_target_pid) and not (
        intf.bInterfaceClass == USBTMC_CLASS and intf.bInterfaceSubClass == USBTMC_SUBCLASS
    )
    if strings is None and firmware_mode:
        # Some instruments cannot even give their serial number in this mode (U2741A).
        strings = {key: _string_or_empty(device, index) for key, index in (
            ("manufacturer", device.iManufacturer), ("product", device.iProduct), ("serial", device.iSerialNumber))}
    if strings is None:
        try:
            strings = {
                "manufacturer": _string(device, device.iManufacturer),
                "product": _string(device, device.iProduct),
                "serial": _string(device, device.iSerialNumber),
            }
        except (usb.core.USBError, ValueError, NotImplementedError) as exc:
            cause = (_open_error(device) or exc) if isinstance(exc, ValueError) else exc
            facts = situation(device, cfg, intf)
            diagnosis = doctor.diagnose(cause, facts)
            # sysfs (Linux) names the instrument even when it cannot be opened.
            strings = {"manufacturer": facts.manufacturer, "product": facts.product, "serial": facts.serial}
            problem = diagnosis.summary
    if firmware_mode and not boot.mode_switch_requests:
        problem = (
            f"The instrument is in its firmware-update mode (PID 0x{device.idProduct:04X}) and no sequence "
            f"to switch it to USBTMC mode (PID 0x{boot.mode_switch_target_pid:04X}) is known; "
            "add mode_switch_requests to your quirks file, or let the vendor's software switch it once."
        )
    usb488 = intf.bInterfaceProtocol == InterfaceProtocol.USB488
    endpoints = tuple(
        EndpointInfo(
            address=ep.bEndpointAddress,
            kind=_TYPE_NAMES[usb.util.endpoint_type(ep.bmAttributes)],
            direction="in" if usb.util.endpoint_direction(ep.bEndpointAddress) == usb.util.ENDPOINT_IN else "out",
            max_packet_bytes=ep.wMaxPacketSize & 0x7FF,
        )
        for ep in intf
    )
    if problem is None:
        problem = _descriptor_oddity(endpoints, strings["serial"])
    if find_endpoints(intf) is None and problem is None and not firmware_mode:
        problem = "The interface lacks the Bulk-IN/Bulk-OUT endpoint pair USBTMC requires."
    caps = None
    if probe and problem is None and not firmware_mode:
        try:
            caps = _probe_capabilities(device, intf, usb488)
        except usb.core.USBError as exc:
            err = translate(exc, "GET_CAPABILITIES")
            if isinstance(err, AccessError):
                diagnosis = doctor.diagnose(exc, situation(device, cfg, intf, strings))
                if diagnosis.blocking:
                    problem = diagnosis.summary
        except TmcError:
            caps = None  # a device with a broken GET_CAPABILITIES still opens
    quirks = db.lookup(device.idVendor, device.idProduct, strings["product"] or None)
    n_usbtmc = sum(1 for _ in _usbtmc_interfaces(device, db))
    # A device in firmware-update mode is listed under the PID it will have once switched.
    pid = boot.mode_switch_target_pid if firmware_mode else device.idProduct
    return DeviceInfo(
        resource=format_resource(
            device.idVendor, pid, strings["serial"], intf.bInterfaceNumber if n_usbtmc > 1 else None
        ),
        vid=device.idVendor,
        pid=pid,
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
        firmware_mode_pid=device.idProduct if firmware_mode else None,
        diagnosis=diagnosis,
    )


_TYPE_NAMES = {0: "control", 1: "isochronous", 2: "bulk", 3: "interrupt"}


def _descriptor_oddity(endpoints: tuple[EndpointInfo, ...], serial: str) -> str | None:
    """Why descriptors that no session can use cannot be opened, or None when they are fine."""
    seen: dict[int, str] = {}
    for ep in endpoints:
        if ep.address in seen:
            # USB 2.0 9.6.6: an endpoint address names one endpoint of the configuration.
            return (f"The interface describes endpoint 0x{ep.address:02X} twice ({seen[ep.address]} and {ep.kind}); "
                    "the host cannot tell which one a transfer goes to.")
        seen[ep.address] = ep.kind
    if "::" in serial:
        return (f"The serial number {serial!r} holds '::', which separates the fields of a VISA resource string, "
                "so no resource string can name this instrument.")
    return None


def _string_or_empty(device, index: int) -> str:
    try:
        return _string(device, index)
    except (usb.core.USBError, ValueError, NotImplementedError):
        return ""


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
    not_usbtmc = False
    for device in candidates:
        try:
            serial = _string(device, device.iSerialNumber)
        except (usb.core.USBError, ValueError) as exc:
            unreadable = exc
            continue
        if serial != resource.serial:
            continue
        interfaces = list(_usbtmc_interfaces(device, db))
        not_usbtmc = not_usbtmc or not interfaces
        for cfg, intf in interfaces:
            if resource.interface is None or intf.bInterfaceNumber == resource.interface:
                return device, cfg, intf
    serial = switch_firmware_mode(resource, backend, db)
    if serial is not None:
        return find_device(replace(resource, serial=serial), backend, QuirkDatabase(entries=[
            e for e in db.entries if not e.flags.get("mode_switch_target_pid")]))
    if unreadable is not None:
        raise AccessError(
            f"a device {resource.vid:04X}:{resource.pid:04X} is present but its serial number cannot be read "
            f"({unreadable}). {_access_advice()}."
        )
    what = f"{resource.vid:04X}:{resource.pid:04X} with serial {resource.serial!r}"
    if not_usbtmc:
        raise DeviceNotFoundError(
            f"the device {what} is connected but has no USBTMC interface (class FE/03) and no quirk entry lists it"
        )
    if resource.interface is not None:
        what += f" and USBTMC interface {resource.interface}"
    if candidates:
        raise DeviceNotFoundError(f"no USBTMC device {what}; {len(candidates)} device(s) with that VID:PID have other serials")
    raise DeviceNotFoundError(f"no USBTMC device {what} is connected")


@dataclass(frozen=True)
class OpenedInterface:
    """A USBTMC interface found and claimed, ready for a session (:class:`~app.usbtmc.Instrument`).

    Whoever holds it owns ``transport`` and closes it; an ``Instrument`` built on it takes that over.
    """

    resource: Resource  # as the caller named it
    transport: UsbTransport  # the claimed interface
    info: DeviceInfo  # as discovery describes it: descriptors and strings, no session's quirks yet

    @property
    def usb488(self) -> bool:
        return self.info.protocol == "USB488"


def open_interface(resource: Resource | str, backend=None, db: QuirkDatabase | None = None) -> OpenedInterface:
    """Find the instrument ``resource`` (a VISA resource string or its parsed form) names (switching it out of a firmware-update mode when
    ``db`` says how) and claim its USBTMC interface.

    Raises :class:`DeviceNotFoundError`, :class:`AccessError` (the fix in its text) or
    :class:`ProtocolError` for an interface without Bulk-IN/Bulk-OUT endpoints.
    """
    resource = parse_resource(resource) if isinstance(resource, str) else resource
    backend = backend if backend is not None else default_backend()
    db = db if db is not None else default_database()
    device, cfg, intf = find_device(resource, backend, db)
    info = describe_interface(device, cfg, intf, probe=False, db=db, strings=None)
    endpoints = find_endpoints(intf)
    if endpoints is None:
        raise ProtocolError(f"{resource}: the USBTMC interface lacks Bulk-IN/Bulk-OUT endpoints")
    transport = UsbTransport.open(device, cfg.bConfigurationValue, intf.bInterfaceNumber, endpoints)
    return OpenedInterface(resource, transport, info)


def reset_port(resource: Resource, backend=None, db: QuirkDatabase | None = None) -> None:
    """Reset the USB port of the instrument ``resource`` names (libusb_reset_device, through pyusb).

    The port reset (USB 2.0 §7.1.7.5) makes the device enumerate again as after a replug,
    without cutting its power: the way back for an instrument that stopped answering, where
    its firmware survives a reset. Any session on the device must be closed first; open a
    new one afterwards. Raises :class:`DeviceNotFoundError`, :class:`AccessError` or
    :class:`DeviceGoneError`. A device that comes back under a new address counts as reset.
    """
    backend = backend if backend is not None else default_backend()
    device, _cfg, _intf = find_device(resource, backend, db)
    try:
        device.reset()
    except usb.core.USBError as exc:
        error = translate(exc, "resetting the USB port")
        if not isinstance(error, DeviceGoneError):  # libusb: re-enumerated under a new address
            raise error from exc
    finally:
        usb.util.dispose_resources(device)


_REENUMERATION_POLL_S = 0.1


def switch_firmware_mode(resource: Resource, backend, db: QuirkDatabase) -> str | None:
    """Switch an instrument that sits in its firmware-update mode to the USBTMC mode ``resource`` names.

    The quirk entry of the firmware-mode PID holds the vendor control requests and the
    target PID (Agilent/Keysight U27xx modular instruments). Returns the serial number
    of the re-enumerated instrument, or None when no instrument in firmware-update mode
    fits ``resource``. Raises :class:`DeviceNotFoundError` when the switch does not
    bring the instrument back within ``mode_switch_wait_ms``.
    """
    try:
        candidates = list(usb.core.find(find_all=True, backend=backend, idVendor=resource.vid))
    except usb.core.USBError as exc:
        raise translate(exc, "enumerating USB devices") from exc
    for device in candidates:
        quirks = db.lookup(device.idVendor, device.idProduct)
        if quirks.mode_switch_target_pid != resource.pid:
            continue
        serial = _string_or_empty(device, device.iSerialNumber)
        if resource.serial and serial and serial != resource.serial:
            continue
        where = f"{resource.vid:04X}:{device.idProduct:04X}"
        if not quirks.mode_switch_requests:
            raise DeviceNotFoundError(
                f"the instrument {where} is in its firmware-update mode and no sequence to switch it to "
                f"{resource.vid:04X}:{resource.pid:04X} is known (quirk mode_switch_requests)"
            )
        present = set(_serials(backend, resource.vid, resource.pid))
        try:
            for request in quirks.mode_switch_requests:
                device.ctrl_transfer(request.request_type, request.request, request.value, request.index,
                                     request.length if request.is_in else request.data, timeout=1000)
        except usb.core.USBError as exc:
            error = translate(exc, f"switching {where} out of its firmware-update mode")
            if not isinstance(error, DeviceGoneError):  # it may reset while answering the last request
                raise error from exc
        finally:
            usb.util.dispose_resources(device)
        deadline = time.monotonic() + quirks.mode_switch_wait_ms / 1000
        while True:
            for found in _serials(backend, resource.vid, resource.pid):
                if (resource.serial and found == resource.serial) or (not resource.serial and found not in present):
                    return found
            if time.monotonic() >= deadline:
                raise DeviceNotFoundError(
                    f"the instrument {where} was switched out of its firmware-update mode but did not come back "
                    f"as {resource.vid:04X}:{resource.pid:04X} within {quirks.mode_switch_wait_ms / 1000:g} s"
                )
            time.sleep(_REENUMERATION_POLL_S)
    return None


def _serials(backend, vid: int, pid: int) -> list[str]:
    """Serial numbers of the devices with ``vid``:``pid`` (unreadable ones as '')."""
    found = []
    try:
        devices = list(usb.core.find(find_all=True, backend=backend, idVendor=vid, idProduct=pid))
    except usb.core.USBError:
        return found
    for device in devices:
        found.append(_string_or_empty(device, device.iSerialNumber))
        usb.util.dispose_resources(device)
    return found
