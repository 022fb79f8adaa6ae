"""Which libusb shared library TMC Console loads, and what it is (no pyusb here).

pyusb's default lookup searches the system's library path, so it misses the libusb
that libusb-package ships on Windows (pyusb issue #549) and, in a frozen bundle, loads
whatever libusb the machine happens to have. :func:`bundled_library_path` names the
file explicitly and :func:`app.usbtmc.transport.default_backend` hands it to pyusb.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# libusb.h: enum libusb_option. Tells libusb on Windows to use the UsbDk filter driver
# (which sits beside the vendor driver) instead of WinUSB; ignored elsewhere.
LIBUSB_OPTION_USE_USBDK = 1

USBDK_ENV = "TMC_LIBUSB_USBDK"


def library_file_name(platform: str | None = None) -> str:
    """libusb's file name as libusb-package ships it on ``platform`` (``sys.platform``)."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        return "libusb-1.0.dll"
    if platform == "darwin":
        return "libusb-1.0.dylib"
    return "libusb-1.0.so"


def bundle_dir() -> Path | None:
    """The folder of a frozen (PyInstaller) bundle's files, or None when not frozen."""
    if not getattr(sys, "frozen", False):
        return None
    return Path(getattr(sys, "_MEIPASS", Path(sys.executable).resolve().parent))


def bundled_library_path() -> Path | None:
    """The libusb that ships with TMC Console, or None when there is none.

    In a frozen bundle libusb-package's PyInstaller hook puts the library at the top of
    the bundle; otherwise it is libusb-package's own copy.
    """
    base = bundle_dir()
    if base is not None:
        candidate = base / library_file_name()
        if candidate.is_file():
            return candidate
    try:
        import libusb_package
    except ImportError:
        return None
    path = libusb_package.get_library_path()
    return Path(path) if path else None


def usbdk_requested() -> bool:
    """True when the user asked for libusb's UsbDk backend (``TMC_LIBUSB_USBDK=1``)."""
    return os.environ.get(USBDK_ENV, "").strip().lower() in ("1", "on", "yes", "true")


def prepare(path: Path) -> None:
    """Set libusb's process-wide defaults before pyusb creates its context.

    With UsbDk requested, libusb >= 1.0.27 applies an option set on the NULL context to
    every context created afterwards (libusb.h, libusb_set_option), so pyusb's
    ``libusb_init`` picks it up. Loading the same path again returns the same module.
    """
    if not usbdk_requested() or not sys.platform.startswith("win"):
        return
    lib = ctypes.CDLL(str(path))
    lib.libusb_set_option(None, LIBUSB_OPTION_USE_USBDK)


class _Version(ctypes.Structure):
    # libusb.h: struct libusb_version
    _fields_ = [
        ("major", ctypes.c_uint16),
        ("minor", ctypes.c_uint16),
        ("micro", ctypes.c_uint16),
        ("nano", ctypes.c_uint16),
        ("rc", ctypes.c_char_p),
        ("describe", ctypes.c_char_p),
    ]


@dataclass(frozen=True)
class LoadedLibrary:
    """The libusb a pyusb backend runs on: its file and version."""

    path: str
    version: str

    def inside(self, folder: Path) -> bool:
        try:
            return Path(self.path).resolve().is_relative_to(folder.resolve())
        except (OSError, ValueError):
            return False


def describe(lib) -> LoadedLibrary:
    """The file and version of a loaded libusb (a ``ctypes.CDLL``, as pyusb's backend holds it)."""
    path = getattr(lib, "_name", "") or ""
    try:
        get_version = lib.libusb_get_version
    except AttributeError:
        return LoadedLibrary(path, "unknown")
    get_version.restype = ctypes.POINTER(_Version)
    get_version.argtypes = []
    v = get_version().contents
    rc = (v.rc or b"").decode("ascii", "replace")
    return LoadedLibrary(path, f"{v.major}.{v.minor}.{v.micro}.{v.nano}{rc}")
