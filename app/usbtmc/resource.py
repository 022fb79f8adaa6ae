"""VISA resource strings for USBTMC instruments.

Grammar (VISA 5.x, section 4.3.1.3): ``USB[board]::vid::pid::serial[::interface][::INSTR]``,
with the IDs in hex (``0x1AB1``) or decimal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ResourceError

_BOARD = re.compile(r"^USB(\d*)$", re.IGNORECASE)


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
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise ResourceError(f"{what} {text!r} in {original!r} is not a hex (0x...) or decimal number") from None
    if not 0 <= value <= 0xFFFF:
        raise ResourceError(f"{what} {text!r} in {original!r} does not fit 16 bits")
    return value


def parse_resource(text: str) -> Resource:
    """Parse a USB INSTR resource string; a malformed one raises :class:`ResourceError` saying why."""
    original = text
    parts = text.strip().split("::")
    example = "USB0::0x1209::0x0001::SERIAL::INSTR"
    if len(parts) < 4:
        raise ResourceError(f"{original!r} is not a USB resource string (expected e.g. {example})")
    board_match = _BOARD.match(parts[0])
    if not board_match:
        raise ResourceError(f"{original!r} does not start with USB[board] (expected e.g. {example})")
    board = int(board_match.group(1) or 0)
    if parts[-1].upper() == "RAW":
        raise ResourceError(f"{original!r} names a USB RAW resource; only USBTMC INSTR resources are supported")
    if parts[-1].upper() == "INSTR":
        parts = parts[:-1]
    if len(parts) not in (4, 5):
        raise ResourceError(f"{original!r} has {len(parts)} fields; expected {example}")
    vid = _parse_id(parts[1], "vendor ID", original)
    pid = _parse_id(parts[2], "product ID", original)
    serial = parts[3]
    interface = None
    if len(parts) == 5:
        if not parts[4].isdigit():
            raise ResourceError(f"interface number {parts[4]!r} in {original!r} is not a number")
        interface = int(parts[4])
    return Resource(vid, pid, serial, interface, board)
