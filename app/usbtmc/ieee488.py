"""IEEE 488.2 helpers: arbitrary blocks, status-register bits, query detection."""

from __future__ import annotations

from dataclasses import dataclass

# The register bits and their names are the protocol leaf's (IEEE 488.2-1992 sections 11.2, 11.5.1).
from app.protocol.ieee488 import ESR_BITS, ESR_ERROR_MASK, STB_BITS, EsrBit, StbBit, set_bit_names

from .errors import BlockFormatError


def parse_register_value(text: str) -> int:
    """An 8-bit register value as instruments print it: ``32``, ``+32``, ``#H20``, ``#B100000``, ``#Q40``.

    Raises ValueError naming the text when it is none of these.
    """
    s = text.strip()
    try:
        if s[:2].upper() == "#H":
            value = int(s[2:], 16)
        elif s[:2].upper() == "#B":
            value = int(s[2:], 2)
        elif s[:2].upper() == "#Q":
            value = int(s[2:], 8)
        else:
            value = int(float(s)) if any(c in s for c in ".eE") else int(s)
    except (ValueError, OverflowError):
        raise ValueError(f"not a register value: {text!r}") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"register value out of range: {text!r}")
    return value


# --- Arbitrary block program/response data (IEEE 488.2 sections 7.7.6 and 8.7.9) ---


def block_header(length: int) -> bytes:
    """The definite-length block header ``#<n><length>`` for ``length`` payload bytes."""
    if length < 0:
        raise ValueError("block length cannot be negative")
    digits = str(length).encode()
    if len(digits) > 9:
        raise ValueError(f"a definite-length block holds at most 999999999 bytes, got {length}")
    return b"#" + str(len(digits)).encode() + digits


def encode_block(payload: bytes) -> bytes:
    """A definite-length arbitrary block holding ``payload``."""
    return block_header(len(payload)) + bytes(payload)


def encode_indefinite_block(payload: bytes) -> bytes:
    """An indefinite-length block: ``#0``, the payload, then NL (sent with END/EOM)."""
    return b"#0" + bytes(payload) + b"\n"


@dataclass(frozen=True)
class BlockHeader:
    """Where a block sits: header bytes and payload length (None: indefinite, runs to the end)."""

    start: int
    header_bytes: int
    payload_bytes: int | None

    @property
    def payload_start(self) -> int:
        return self.start + self.header_bytes

    @property
    def end(self) -> int | None:
        """Index just past the payload, or None for an indefinite block."""
        return None if self.payload_bytes is None else self.payload_start + self.payload_bytes


def parse_block_header(data: bytes, start: int = 0) -> BlockHeader | None:
    """Decode the block header at ``data[start]``.

    Returns None when ``data`` ends before the header does (read more and try
    again); raises :class:`BlockFormatError` when the bytes cannot be a header.
    """
    if len(data) <= start:
        return None
    if data[start] != 0x23:  # '#'
        raise BlockFormatError(f"expected '#' to start a block, found byte 0x{data[start]:02X}")
    if len(data) < start + 2:
        return None
    n = data[start + 1]
    if not 0x30 <= n <= 0x39:
        raise BlockFormatError(f"block header digit count must be 0-9, found byte 0x{n:02X}")
    ndigits = n - 0x30
    if ndigits == 0:
        return BlockHeader(start, 2, None)
    if len(data) < start + 2 + ndigits:
        return None
    digits = bytes(data[start + 2 : start + 2 + ndigits])
    if not digits.isdigit():
        raise BlockFormatError(f"block length {digits!r} is not {ndigits} decimal digits")
    return BlockHeader(start, 2 + ndigits, int(digits))


def find_block(data: bytes) -> BlockHeader | None:
    """Locate a complete block header in a reply such as ``:CURV #41234...``.

    The block must start the reply or follow a header/comma and a space; returns
    None when the reply holds no block.
    """
    view = bytes(data[:64]) if len(data) > 64 else bytes(data)
    idx = view.find(b"#")
    while idx != -1:
        before = view[:idx]
        if idx == 0 or before.endswith((b" ", b",")):
            try:
                header = parse_block_header(data, idx)
            except BlockFormatError:
                header = None
            if header is not None and (header.end is None or header.end <= len(data)):
                return header
        idx = view.find(b"#", idx + 1)
    return None


def decode_block(data: bytes) -> bytes:
    """The payload of a reply that is one arbitrary block, optionally followed by NL.

    Leading whitespace is allowed. Raises :class:`BlockFormatError` when the reply
    is not a block, is truncated, or has bytes after the block other than the
    message terminator.
    """
    stripped = bytes(data).lstrip(b" \t\r\n")
    offset = len(data) - len(stripped)
    header = parse_block_header(data, offset)
    if header is None:
        raise BlockFormatError(f"reply of {len(data)} bytes ends inside the block header")
    if header.payload_bytes is None:
        payload = bytes(data[header.payload_start :])
        return payload[:-1] if payload.endswith(b"\n") else payload
    end = header.payload_start + header.payload_bytes
    if end > len(data):
        raise BlockFormatError(
            f"block announces {header.payload_bytes} bytes but only {len(data) - header.payload_start} arrived"
        )
    tail = bytes(data[end:])
    if tail not in (b"", b"\n", b"\r\n"):
        raise BlockFormatError(f"{len(tail)} unexpected bytes follow the block")
    return bytes(data[header.payload_start : end])


# --- Program messages ---


def split_compound(line: str) -> list[str]:
    """Split a program message at the ``;`` separators that are not inside quotes."""
    parts, current, quote = [], [], ""
    for ch in line:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == ";":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def is_query(line: str) -> bool:
    """True when any unit of a program message is a query: its header ends in ``?``."""
    for unit in split_compound(line):
        header = unit.split(None, 1)[0] if unit.split() else ""
        if header.endswith("?"):
            return True
    return False

__all__ = ["ESR_BITS", "ESR_ERROR_MASK", "STB_BITS", "BlockHeader", "EsrBit", "StbBit", "block_header", "decode_block",
           "encode_block", "encode_indefinite_block", "find_block", "is_query", "parse_block_header",
           "parse_register_value", "set_bit_names", "split_compound"]
