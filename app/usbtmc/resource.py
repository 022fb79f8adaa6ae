"""VISA resource strings for USBTMC instruments.

Grammar (VISA 5.x, section 4.3.1.3): ``USB[board]::vid::pid::serial[::interface][::INSTR]``,
with the IDs in hex (``0x1AB1``) or decimal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ResourceError

# ASCII digits only: str.isdigit() and int() also take other scripts' digits ("١٢", "²").
_BOARD = re.compile(r"^USB([0-9]{0,5})$", re.IGNORECASE | re.ASCII)
_DECIMAL = re.compile(r"0*[0-9]{1,5}", re.ASCII)
_HEX = re.compile(r"0[xX]0*[0-9A-Fa-f]{1,4}", re.ASCII)
_SHOWN_CHARS = 60  # a field or resource quoted in an error is cut to this many characters


def _quote(text: str) -> str:
    """``text`` for an error message: repr()'d, cut when long (a 5,000-digit number stays one short line)."""
    if len(text) <= _SHOWN_CHARS:
        return repr(text)
    return repr(text[:_SHOWN_CHARS]) + f"… ({len(text):,} characters)"


@dataclass(frozen=True)
class Resource:
    """A parsed USB INSTR resource. ``interface`` is None when the string did not name one."""

    vid: int
    pid: int
    serial: str
    interface: int | None = None
    board: int = 0

    def __str__(self) -> str:
        intf = "" if self.interface is None else f"::{self.interface}"
        return f"USB{self.board}::0x{self.vid:04X}::0x{self.pid:04X}::{self.serial}{intf}::INSTR"

    def matches(self, vid: int, pid: int, serial: str, interface: int) -> bool:
        """Whether a device's identity fits this resource (serial compared as given)."""
        return (
            self.vid == vid
            and self.pid == pid
            and self.serial == serial
            and (self.interface is None or self.interface == interface)
        )


def format_resource(vid: int, pid: int, serial: str, interface: int | None = None, board: int = 0) -> str:
    """The resource string of a device; the interface is named only when given."""
    return str(Resource(vid, pid, serial, interface, board))


def _parse_id(text: str, what: str, original: str) -> int:
    text = text.strip()
    if _HEX.fullmatch(text):
        return int(text, 16)
    if not _DECIMAL.fullmatch(text):
        digits = text[2:] if text.lower().startswith("0x") else text
        if digits and digits.isascii() and all(c in "0123456789abcdefABCDEF" for c in digits):
            raise ResourceError(f"{what} {_quote(text)} in {_quote(original)} does not fit 16 bits")
        raise ResourceError(f"{what} {_quote(text)} in {_quote(original)} is not a hex (0x...) or decimal number")
    value = int(text, 10)
    if value > 0xFFFF:
        raise ResourceError(f"{what} {_quote(text)} in {_quote(original)} does not fit 16 bits")
    return value


def parse_resource(text: str) -> Resource:
    """Parse a USB INSTR resource string; a malformed one raises :class:`ResourceError` saying why."""
    original = text
    parts = text.strip().split("::")
    example = "USB0::0x1209::0x0001::SERIAL::INSTR"
    if len(parts) < 4:
        raise ResourceError(f"{_quote(original)} is not a USB resource string (expected e.g. {example})")
    board_match = _BOARD.match(parts[0])
    if not board_match:
        raise ResourceError(f"{_quote(original)} does not start with USB[board] (expected e.g. {example})")
    board = int(board_match.group(1) or 0)
    if parts[-1].upper() == "RAW":
        raise ResourceError(f"{_quote(original)} names a USB RAW resource; only USBTMC INSTR resources are supported")
    if parts[-1].upper() == "INSTR":
        parts = parts[:-1]
    if len(parts) not in (4, 5):
        raise ResourceError(f"{_quote(original)} has {len(parts)} fields; expected {example}")
    vid = _parse_id(parts[1], "vendor ID", original)
    pid = _parse_id(parts[2], "product ID", original)
    serial = parts[3]
    interface = None
    if len(parts) == 5:
        if not _DECIMAL.fullmatch(parts[4]) or int(parts[4]) > 0xFF:  # bInterfaceNumber is one byte
            raise ResourceError(f"interface number {_quote(parts[4])} in {_quote(original)} is not a number from 0 to 255")
        interface = int(parts[4])
    return Resource(vid, pid, serial, interface, board)
