"""VISA resource strings of LAN instruments (VPP-4.3 section 4.3.1.1, and IVI-6.1 for HiSLIP).

- ``TCPIP[board]::host::port::SOCKET``: raw SCPI on a TCP port (5025 on most instruments);
- ``TCPIP[board]::host[::instN][::INSTR]``: VXI-11 (``inst0`` when the device name is left out);
  ``host,port`` skips the portmapper and names the core channel's port;
- ``TCPIP[board]::host::hislipN[,port]::INSTR``: HiSLIP (port 4880 unless given).

``host`` is a name, an IPv4 address, or an IPv6 address in brackets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.usbtmc.errors import ResourceError

HISLIP_PORT = 4880  # IVI-6.1 section 2.2
_BOARD = re.compile(r"^TCPIP(\d*)$", re.IGNORECASE)
_HISLIP = re.compile(r"^hislip\d+(?:,(\d+))?$", re.IGNORECASE)
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-_]*)(?:,(\d+))?$")


@dataclass(frozen=True)
class LanAddress:
    """A parsed LAN resource. ``protocol`` is "SOCKET", "VXI-11" or "HiSLIP"; ``port`` is the
    TCP port to connect to, or None for VXI-11 through the portmapper."""

    protocol: str
    host: str
    port: int | None
    device: str = ""
    board: int = 0

    def __str__(self) -> str:
        board = str(self.board) if self.board else ""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if self.protocol == "SOCKET":
            return f"TCPIP{board}::{host}::{self.port}::SOCKET"
        if self.protocol == "HiSLIP":
            port = "" if self.port == HISLIP_PORT else f",{self.port}"
            return f"TCPIP{board}::{host}::{self.device}{port}::INSTR"
        port = "" if self.port is None else f",{self.port}"
        return f"TCPIP{board}::{host}{port}::{self.device}::INSTR"


def is_lan_resource(text: str) -> bool:
    """Whether ``text`` names a LAN instrument (starts with TCPIP)."""
    return text.strip().upper().startswith("TCPIP")


def _port(text: str, original: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ResourceError(f"{original!r}: port {value} is outside 1..65535")
    return value


def parse_lan_resource(text: str) -> LanAddress:
    """Parse ``text``; :class:`~app.usbtmc.errors.ResourceError` names what is wrong."""
    original = text
    parts = [p.strip() for p in _split(text.strip())]
    if len(parts) < 2 or not parts[1]:
        raise ResourceError(f"{original!r}: a LAN resource is TCPIP::host::..., e.g. TCPIP::192.168.1.5::INSTR")
    board_match = _BOARD.match(parts[0])
    if board_match is None:
        raise ResourceError(f"{original!r} does not start with TCPIP")
    board = int(board_match.group(1) or 0)
    host_match = _HOST.match(parts[1])
    if host_match is None:
        raise ResourceError(f"{original!r}: {parts[1]!r} is not a host name or address")
    host = host_match.group(1).strip("[]")
    host_port = _port(host_match.group(2), original) if host_match.group(2) else None
    rest = parts[2:]
    if rest and rest[-1].upper() == "SOCKET":
        if len(rest) != 2 or not rest[0].isdigit():
            raise ResourceError(f"{original!r}: a socket resource is TCPIP::host::port::SOCKET")
        return LanAddress("SOCKET", host, _port(rest[0], original), "", board)
    if rest and rest[-1].upper() == "INSTR":
        rest = rest[:-1]
    if len(rest) > 1:
        raise ResourceError(f"{original!r}: expected TCPIP::host[::device][::INSTR]")
    device = rest[0] if rest else "inst0"
    hislip = _HISLIP.match(device)
    if hislip is not None:
        port = _port(hislip.group(1), original) if hislip.group(1) else HISLIP_PORT
        return LanAddress("HiSLIP", host, port, device.split(",")[0].lower(), board)
    if not re.match(r"^[A-Za-z][A-Za-z0-9_,]*$", device):
        raise ResourceError(f"{original!r}: {device!r} is not a LAN device name (inst0, gpib0,5, hislip0...)")
    return LanAddress("VXI-11", host, host_port, device, board)


def _split(text: str) -> list[str]:
    """Split at ``::`` except inside an IPv6 address's brackets."""
    parts, depth, current, i = [], 0, [], 0
    while i < len(text):
        char = text[i]
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if depth == 0 and text.startswith("::", i):
            parts.append("".join(current))
            current = []
            i += 2
            continue
        current.append(char)
        i += 1
    parts.append("".join(current))
    return parts
