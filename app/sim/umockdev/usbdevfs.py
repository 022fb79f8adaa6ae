"""The Linux usbdevfs ABI: ioctl request numbers and struct layouts (linux/usbdevice_fs.h).

ABI assumption: a 64-bit little-endian Linux with the asm-generic ioctl encoding
and LP64 types (x86_64, aarch64, riscv64): ``int``/``unsigned int`` are 4 bytes,
pointers 8, and the compiler pads a pointer to an 8-byte boundary. Other ABIs
(32-bit, powerpc/mips/sparc ioctl bits) would need their own numbers and layouts.
``tests/libusb/test_usbdevfs_abi.py`` checks every number and offset here against
the kernel header with a C compiler where one is installed.

Standard library only: this module runs under the system Python.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag

# asm-generic/ioctl.h
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
_IOC_NRSHIFT, _IOC_TYPESHIFT, _IOC_SIZESHIFT, _IOC_DIRSHIFT = 0, 8, 16, 30


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT) | (ord("U") << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT)


# Struct layouts, explicit padding ("<" disables implicit alignment, so every hole is written out).
URB = struct.Struct("<BBxxiIxxxxQiiiiiIQ")  # struct usbdevfs_urb, without the iso_frame_desc[] tail
URB_STATUS_OFFSET = 4
URB_BUFFER_OFFSET = 16
URB_ACTUAL_LENGTH_OFFSET = 28
CTRLTRANSFER = struct.Struct("<BBHHHIxxxxQ")  # struct usbdevfs_ctrltransfer
CTRLTRANSFER_DATA_OFFSET = 16
BULKTRANSFER = struct.Struct("<IIIxxxxQ")  # struct usbdevfs_bulktransfer
BULKTRANSFER_DATA_OFFSET = 16
SETINTERFACE = struct.Struct("<II")  # struct usbdevfs_setinterface
GETDRIVER = struct.Struct("<I256s")  # struct usbdevfs_getdriver
CONNECTINFO = struct.Struct("<IBxxx")  # struct usbdevfs_connectinfo
IOCTL = struct.Struct("<iiQ")  # struct usbdevfs_ioctl
DISCONNECT_CLAIM = struct.Struct("<II256s")  # struct usbdevfs_disconnect_claim
UINT = struct.Struct("<I")
POINTER = struct.Struct("<Q")
SETUP = struct.Struct("<BBHHH")  # USB 2.0 Table 9-2, the 8-byte SETUP packet at the start of a control URB


class Request(IntEnum):
    """usbdevfs ioctl request numbers (linux/usbdevice_fs.h)."""

    CONTROL = _ioc(_IOC_READ | _IOC_WRITE, 0, CTRLTRANSFER.size)
    BULK = _ioc(_IOC_READ | _IOC_WRITE, 2, BULKTRANSFER.size)
    RESETEP = _ioc(_IOC_READ, 3, UINT.size)
    SETINTERFACE = _ioc(_IOC_READ, 4, SETINTERFACE.size)
    SETCONFIGURATION = _ioc(_IOC_READ, 5, UINT.size)
    GETDRIVER = _ioc(_IOC_WRITE, 8, GETDRIVER.size)
    SUBMITURB = _ioc(_IOC_READ, 10, URB.size)
    DISCARDURB = _ioc(_IOC_NONE, 11, 0)
    REAPURB = _ioc(_IOC_WRITE, 12, POINTER.size)
    REAPURBNDELAY = _ioc(_IOC_WRITE, 13, POINTER.size)
    CLAIMINTERFACE = _ioc(_IOC_READ, 15, UINT.size)
    RELEASEINTERFACE = _ioc(_IOC_READ, 16, UINT.size)
    CONNECTINFO = _ioc(_IOC_WRITE, 17, CONNECTINFO.size)
    IOCTL = _ioc(_IOC_READ | _IOC_WRITE, 18, IOCTL.size)
    RESET = _ioc(_IOC_NONE, 20, 0)
    CLEAR_HALT = _ioc(_IOC_READ, 21, UINT.size)
    DISCONNECT = _ioc(_IOC_NONE, 22, 0)
    CONNECT = _ioc(_IOC_NONE, 23, 0)
    GET_CAPABILITIES = _ioc(_IOC_READ, 26, UINT.size)
    DISCONNECT_CLAIM = _ioc(_IOC_READ, 27, DISCONNECT_CLAIM.size)
    DROP_PRIVILEGES = _ioc(_IOC_WRITE, 30, UINT.size)
    GET_SPEED = _ioc(_IOC_NONE, 31, 0)


class UrbType(IntEnum):
    ISO = 0
    INTERRUPT = 1
    CONTROL = 2
    BULK = 3


class UrbFlag(IntFlag):
    SHORT_NOT_OK = 0x01
    ISO_ASAP = 0x02
    BULK_CONTINUATION = 0x04
    ZERO_PACKET = 0x40
    NO_INTERRUPT = 0x80


class Capability(IntFlag):
    """USBDEVFS_CAP_*: what GET_CAPABILITIES reports."""

    ZERO_PACKET = 0x01
    BULK_CONTINUATION = 0x02
    NO_PACKET_SIZE_LIM = 0x04
    BULK_SCATTER_GATHER = 0x08
    REAP_AFTER_DISCONNECT = 0x10
    MMAP = 0x20
    DROP_PRIVILEGES = 0x40
    CONNINFO_EX = 0x80
    SUSPEND = 0x100


# What we offer: with BULK_SCATTER_GATHER libusb submits every bulk transfer as one URB
# whatever its size (no 16 KiB splitting), which is what a modern xHCI kernel offers too.
CAPABILITIES = (
    Capability.ZERO_PACKET
    | Capability.BULK_CONTINUATION
    | Capability.NO_PACKET_SIZE_LIM
    | Capability.BULK_SCATTER_GATHER
    | Capability.REAP_AFTER_DISCONNECT
)


class KernelSpeed(IntEnum):
    """enum usb_device_speed (linux/usb/ch9.h), as USBDEVFS_GET_SPEED returns it."""

    UNKNOWN = 0
    LOW = 1
    FULL = 2
    HIGH = 3
    WIRELESS = 4
    SUPER = 5
    SUPER_PLUS = 6


# The sysfs "speed" attribute, in Mbit/s as the kernel writes it.
SYSFS_SPEED = {KernelSpeed.LOW: "1.5", KernelSpeed.FULL: "12", KernelSpeed.HIGH: "480", KernelSpeed.SUPER: "5000"}


def request_name(request: int) -> str:
    """A readable name for an ioctl request number, for logs."""
    try:
        return Request(request).name
    except ValueError:
        return f"0x{request:08X}"
