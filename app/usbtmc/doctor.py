"""The driver doctor: what stands between the user and an instrument, and how to remove it.

The cause is read from what the open attempt raised (pyusb over libusb 1.0), which
differs by platform:

==============================  ===========================================  ==================
cause                           what pyusb raises                            where
==============================  ===========================================  ==================
libusb not loadable             ``BackendUnavailableError`` (no backend)     everywhere
not WinUSB                      ``NotImplementedError`` from                 Windows
                                LIBUSB_ERROR_NOT_SUPPORTED (-12): libusb's
                                WinUSB back end cannot open a device that
                                another driver owns
access denied                   ``USBError`` code -3 (LIBUSB_ERROR_ACCESS),  Linux, macOS;
                                errno EACCES                                 Windows: another
                                                                             program has it open
busy                            ``USBError`` code -6 (LIBUSB_ERROR_BUSY),    everywhere
                                errno EBUSY
kernel usbtmc driver bound      busy, with the kernel's ``usbtmc`` driver    Linux
                                bound to the interface (sysfs)
==============================  ===========================================  ==================

No Qt and no pyusb here: exceptions are read by type and by the ``backend_error_code``
and ``errno`` attributes pyusb gives them. Linux's sysfs gives the strings and the
bound driver without opening the device.
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

SYSFS_USB_DEVICES = Path("/sys/bus/usb/devices")
PLATFORM = sys.platform  # tests set another platform's rules here


def current_platform() -> str:
    return PLATFORM

# libusb.h error codes
LIBUSB_ERROR_ACCESS = -3
LIBUSB_ERROR_BUSY = -6
LIBUSB_ERROR_NOT_SUPPORTED = -12

ZADIG_URL = "https://zadig.akeo.ie/"
USBDK_URL = "https://github.com/daynix/UsbDk/releases"


class Cause(str, Enum):
    NO_LIBUSB = "no_libusb"
    NOT_WINUSB = "not_winusb"
    ACCESS_DENIED = "access_denied"
    BUSY = "busy"
    KERNEL_DRIVER = "kernel_driver"
    OTHER = "other"


@dataclass(frozen=True)
class Fix:
    """One way out, its steps in order; ``copy_text`` is a line the user copies verbatim."""

    title: str
    steps: tuple[str, ...]
    copy_text: str = ""
    warning: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """What stands between the user and one instrument, with the fixes, least invasive first.

    ``blocking`` is False for a finding that does not stop TMC Console (the kernel's
    usbtmc driver, which it detaches on opening).
    """

    cause: Cause
    device: str
    summary: str
    explanation: str
    fixes: tuple[Fix, ...] = ()
    error: str = ""
    blocking: bool = True

    @property
    def copy_texts(self) -> tuple[str, ...]:
        return tuple(fix.copy_text for fix in self.fixes if fix.copy_text)


@dataclass(frozen=True)
class Situation:
    """What is known about the device without opening it."""

    vid: int
    pid: int
    interface_number: int = 0
    composite: bool = False  # more than one interface: Windows names each "MI_xx"
    platform: str = field(default_factory=current_platform)
    manufacturer: str = ""
    product: str = ""
    serial: str = ""
    kernel_driver: str | None = None  # Linux: the driver bound to the interface, from sysfs
    sysfs_interface: str = ""  # Linux: e.g. "1-2:1.0", for unbinding
    usbdk_installed: bool = False

    @property
    def vid_pid(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}"

    @property
    def name(self) -> str:
        words = " ".join(w for w in (self.manufacturer, self.product) if w)
        where = self.vid_pid + (f", interface {self.interface_number}" if self.composite else "")
        return f"{words} ({where})" if words else f"USB device {where}"

    @property
    def windows_hardware_id(self) -> str:
        hid = f"USB\\VID_{self.vid:04X}&PID_{self.pid:04X}"
        return hid + (f"&MI_{self.interface_number:02X}" if self.composite else "")


def classify(exc: BaseException | None, situation: Situation) -> Cause:
    """The cause behind ``exc``, raised by an attempt to open (or talk to) the device."""
    from .errors import BackendUnavailableError

    if exc is None or isinstance(exc, BackendUnavailableError):
        return Cause.NO_LIBUSB
    if isinstance(exc, NotImplementedError):
        # pyusb turns LIBUSB_ERROR_NOT_SUPPORTED into NotImplementedError; on Windows
        # it means the device's driver is not one libusb can use (not WinUSB).
        return Cause.NOT_WINUSB if situation.platform.startswith("win") else Cause.OTHER
    code = getattr(exc, "backend_error_code", None)
    err = getattr(exc, "errno", None)
    if code == LIBUSB_ERROR_NOT_SUPPORTED:
        return Cause.NOT_WINUSB if situation.platform.startswith("win") else Cause.OTHER
    if code == LIBUSB_ERROR_BUSY or err == errno.EBUSY:
        if situation.platform.startswith("linux") and situation.kernel_driver:
            return Cause.KERNEL_DRIVER
        return Cause.BUSY
    if code == LIBUSB_ERROR_ACCESS or err == errno.EACCES:
        # On Windows WinUSB allows one handle: access is refused while another program has it.
        return Cause.BUSY if situation.platform.startswith("win") else Cause.ACCESS_DENIED
    return Cause.OTHER


def udev_rule(vid: int) -> str:
    """The udev rule line that gives every local user access to devices of vendor ``vid``."""
    return f'SUBSYSTEM=="usb", ATTR{{idVendor}}=="{vid:04x}", MODE="0666"'


def usbdk_installed() -> bool:
    """True when the UsbDk filter driver is installed (Windows)."""
    if not current_platform().startswith("win"):
        return False
    root = os.environ.get("SystemRoot", r"C:\Windows")
    return os.path.isfile(os.path.join(root, "System32", "drivers", "UsbDk.sys"))


def _error_text(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return f"{type(exc).__name__}: {exc}"


def diagnose(exc: BaseException | None, situation: Situation) -> Diagnosis:
    """The diagnosis for the open attempt on ``situation``'s device that raised ``exc``."""
    cause = classify(exc, situation)
    builder = {
        Cause.NO_LIBUSB: _no_libusb,
        Cause.NOT_WINUSB: _not_winusb,
        Cause.ACCESS_DENIED: _access_denied,
        Cause.BUSY: _busy,
        Cause.KERNEL_DRIVER: _kernel_driver,
        Cause.OTHER: _other,
    }[cause]
    return builder(situation, _error_text(exc))


def _no_libusb(s: Situation, error: str) -> Diagnosis:
    if s.platform.startswith("win"):
        fixes = (Fix("Restore the libusb DLL", (
            "TMC Console ships libusb-1.0.dll in its folder (_internal). Unzip the whole download again "
            "into a new folder and start tmc-console.exe from there.",
            "If it disappears again, your antivirus quarantined it: restore it and allow the TMC Console folder.",
        )),)
    elif s.platform == "darwin":
        fixes = (Fix("Install libusb", ("brew install libusb", "Restart TMC Console.")),)
    else:
        fixes = (Fix("Install libusb", (
            "Debian/Ubuntu: sudo apt install libusb-1.0-0 (Fedora: sudo dnf install libusb1).",
            "Restart TMC Console.",
        ), copy_text="sudo apt install libusb-1.0-0"),)
    return Diagnosis(
        Cause.NO_LIBUSB, "every USB instrument", "libusb cannot be loaded, so no USB instrument can be reached.",
        "TMC Console talks to instruments through libusb. The virtual instruments still work.", fixes, error)


def _zadig_fix(s: Situation) -> Fix:
    pick = f"the entry whose USB ID reads {s.vid:04X} {s.pid:04X}"
    if s.composite:
        pick += (f" {s.interface_number:02X} (the instrument is a composite device: choose its interface "
                 f"{s.interface_number}, named \"(Interface {s.interface_number})\", hardware ID "
                 f"{s.windows_hardware_id}; leave the other interfaces alone)")
    return Fix(
        "Install WinUSB with Zadig",
        (
            "Close every program that uses the instrument (vendor software, VISA, LabVIEW).",
            f"Download Zadig from {ZADIG_URL} and run it (it asks for administrator rights).",
            "Options > List All Devices.",
            f"In the device list pick {pick}.",
            "Set the driver to the right of the green arrow to WinUSB and press Replace Driver.",
            "Unplug the instrument and plug it in again; it appears here within a few seconds.",
        ),
        copy_text=s.windows_hardware_id,
        warning=(
            "A vendor VISA (NI-VISA, Keysight IO Libraries, R&S VISA, ...) reaches this instrument through "
            "the driver WinUSB replaces: it loses the instrument until that driver is restored. To restore it: "
            "Device Manager > Universal Serial Bus devices > the instrument > Properties > Driver > Roll Back "
            "Driver (or Uninstall device, tick \"Attempt to remove the driver for this device\", then replug "
            "and let Windows or the vendor's installer put its driver back)."
        ),
    )


def _not_winusb(s: Situation, error: str) -> Diagnosis:
    fixes = []
    if s.usbdk_installed:
        fixes.append(Fix(
            "Use UsbDk (installed here), which keeps the vendor driver",
            (
                "UsbDk is a filter driver: libusb reaches the instrument through it while the vendor's "
                "driver stays, so a vendor VISA keeps working when TMC Console is closed.",
                "Set the environment variable TMC_LIBUSB_USBDK=1 for your user (the command below, in a "
                "command prompt), then start TMC Console again.",
            ),
            copy_text="setx TMC_LIBUSB_USBDK 1",
        ))
    fixes.append(_zadig_fix(s))
    if not s.usbdk_installed:
        fixes.append(Fix(
            "Or install UsbDk, which keeps the vendor driver",
            (
                f"Install UsbDk from {USBDK_URL} (UsbDk_x.y.z_x64.msi), then restart Windows.",
                "Then set TMC_LIBUSB_USBDK=1 for your user (the command below) and start TMC Console again.",
            ),
            copy_text="setx TMC_LIBUSB_USBDK 1",
        ))
    return Diagnosis(
        Cause.NOT_WINUSB, s.name,
        f"Windows has not given {s.name} a driver libusb can use: it needs WinUSB.",
        "libusb answered \"not supported\" when asked to open it: the instrument is bound to its vendor's "
        "driver (or none), not to WinUSB. This is not a fault of the instrument or of TMC Console.",
        tuple(fixes), error)


def _access_denied(s: Situation, error: str) -> Diagnosis:
    if s.platform == "darwin":
        return _busy(s, error)
    rule = udev_rule(s.vid)
    extra = ()
    if s.kernel_driver == "usbtmc":
        extra = ("The kernel's usbtmc driver is bound as well; TMC Console detaches it when it opens the "
                 "instrument, once it has access.",)
    return Diagnosis(
        Cause.ACCESS_DENIED, s.name,
        f"Your user may not open {s.name}: Linux gives USB devices to root unless a udev rule says otherwise.",
        "libusb was refused access to the device file under /dev/bus/usb.",
        (Fix(
            f"Add a udev rule for vendor {s.vid:04x}",
            (
                "Copy the rule line below into /etc/udev/rules.d/99-tmc-console.rules (as root), e.g. "
                f"echo '{rule}' | sudo tee -a /etc/udev/rules.d/99-tmc-console.rules",
                "sudo udevadm control --reload-rules && sudo udevadm trigger",
                "Unplug the instrument and plug it in again.",
                *extra,
            ),
            copy_text=rule,
        ),),
        error)


def _busy(s: Situation, error: str) -> Diagnosis:
    if s.platform.startswith("win"):
        how = ("WinUSB lets one program at a time open a device. Close the other program (vendor software, "
               "a VISA session, another TMC Console) and the instrument appears here again.")
    elif s.platform == "darwin":
        how = ("Quit the other program (vendor software, a VISA session, another TMC Console); if none runs, "
               "a vendor driver extension may hold it: unplug and replug the instrument.")
    else:
        how = ("Close the other program (another TMC Console, a script using libusb, a VISA session); "
               "lsof /dev/bus/usb/* shows who has USB devices open.")
    return Diagnosis(
        Cause.BUSY, s.name, f"Another program is using {s.name}.",
        "The device (or its USBTMC interface) is held by another program or driver.",
        (Fix("Close the other program", (how,)),), error)


def _kernel_driver(s: Situation, error: str) -> Diagnosis:
    unbind = (f"echo '{s.sysfs_interface}' | sudo tee /sys/bus/usb/drivers/{s.kernel_driver}/unbind"
              if s.sysfs_interface else "")
    return Diagnosis(
        Cause.KERNEL_DRIVER, s.name,
        f"The kernel's {s.kernel_driver} driver is bound to {s.name}; TMC Console detaches it when it opens "
        "the instrument.",
        f"While the kernel's {s.kernel_driver} driver holds the interface (as /dev/usbtmcN), libusb cannot "
        "send it class requests, so its capabilities are not shown yet. Opening a session detaches the driver; "
        "programs using /dev/usbtmcN then lose the instrument until it is replugged.",
        (
            Fix("Open it: nothing else is needed", ("Double-click the instrument.",)),
            Fix("Or keep the kernel driver off it", (
                *(("Detach it now: the command below.",) if unbind else ()),
                f"For good: echo 'blacklist {s.kernel_driver}' | sudo tee /etc/modprobe.d/no-{s.kernel_driver}.conf, "
                "then replug.",
            ), copy_text=unbind),
        ),
        error, blocking=False)


def _other(s: Situation, error: str) -> Diagnosis:
    return Diagnosis(
        Cause.OTHER, s.name, f"{s.name} cannot be opened ({error or 'no reason given'}).",
        "libusb reported an error the doctor does not know; unplugging and replugging the instrument often helps.",
        (Fix("Replug the instrument", ("Unplug it, wait two seconds, plug it in again.",)),), error)


# --- what Linux's sysfs says without opening the device ---------------------------------------


def sysfs_name(bus: int | None, port_numbers) -> str:
    """The sysfs name of a device, e.g. "1-2.3" for bus 1, ports (2, 3); "" when unknown."""
    if not bus or not port_numbers:
        return ""
    return f"{bus}-{'.'.join(str(p) for p in port_numbers)}"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def sysfs_facts(bus: int | None, port_numbers, configuration: int, interface: int,
                root: Path | None = None) -> dict[str, str]:
    """Strings and the bound driver, as Linux's sysfs shows them to any user (no open).

    Keys: manufacturer, product, serial, driver, interface (its sysfs name); missing or
    unreadable entries are "". Empty on other platforms.
    """
    root = root if root is not None else SYSFS_USB_DEVICES
    name = sysfs_name(bus, port_numbers)
    if not name or not root.is_dir():
        return {}
    device = root / name
    intf_name = f"{name}:{configuration}.{interface}"
    driver = root / intf_name / "driver"
    try:
        driver_name = os.path.basename(os.readlink(driver)) if driver.is_symlink() else ""
    except OSError:
        driver_name = ""
    return {
        "manufacturer": _read(device / "manufacturer"),
        "product": _read(device / "product"),
        "serial": _read(device / "serial"),
        "driver": driver_name,
        "interface": intf_name,
    }
