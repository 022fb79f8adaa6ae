"""Text helpers for the SCPI console: escapes, raw views, blocks, error replies."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.usbtmc import ieee488

from .events import ErrorEntry

_SIMPLE_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\", "0": b"\x00"}
_HEX = set("0123456789abcdefABCDEF")


class EscapeError(ValueError):
    """The input line holds a malformed escape; the message names the column."""


def decode_escapes(text: str, encoding: str = "utf-8") -> bytes:
    r"""The bytes of an input line: ``\n \r \t \0 \\`` and ``\xNN`` become those bytes.

    An unknown escape such as ``\d`` (think ``C:\data``) stays as typed, so paths
    survive; a ``\x`` without two hex digits is an error.
    """
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 >= len(text):
            out += ch.encode(encoding)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[nxt]
            i += 2
        elif nxt == "x":
            digits = text[i + 2 : i + 4]
            if len(digits) != 2 or not set(digits) <= _HEX:
                raise EscapeError(f"\\x at column {i + 1} needs two hex digits, e.g. \\x0A")
            out.append(int(digits, 16))
            i += 4
        else:
            out += ch.encode(encoding)
            i += 1
    return bytes(out)


def escape_bytes(data: bytes) -> str:
    r"""``data`` as printable ASCII with ``\n \r \t \\`` and ``\xNN`` for everything else."""
    names = {10: "\\n", 13: "\\r", 9: "\\t", 92: "\\\\"}
    return "".join(names.get(b, chr(b) if 32 <= b < 127 else f"\\x{b:02X}") for b in data)


def hexdump(data: bytes, width: int = 16, limit_bytes: int | None = None) -> str:
    """Offset, hex bytes and ASCII, one line per ``width`` bytes."""
    shown = data if limit_bytes is None else data[:limit_bytes]
    lines = []
    for offset in range(0, len(shown), width):
        row = shown[offset : offset + width]
        hex_part = " ".join(f"{b:02X}" for b in row).ljust(width * 3 - 1)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{offset:08X}  {hex_part}  {text}")
    if limit_bytes is not None and len(data) > limit_bytes:
        lines.append(f"... {len(data) - limit_bytes} more bytes")
    return "\n".join(lines)


def strip_termination(data: bytes, termination: bytes) -> bytes:
    """``data`` without one trailing ``termination`` (and a CR before an LF)."""
    if termination and data.endswith(termination):
        data = data[: -len(termination)]
        if termination == b"\n" and data.endswith(b"\r"):
            data = data[:-1]
    return data


def display_text(data: bytes, termination: bytes = b"\n") -> str:
    """A reply as the transcript shows it: text, with control characters made visible."""
    body = strip_termination(data, termination)
    text = body.decode("utf-8", errors="backslashreplace")
    return "".join(ch if ch.isprintable() or ch == " " else escape_bytes(ch.encode("utf-8")) for ch in text)


@dataclass(frozen=True)
class BlockSummary:
    """An IEEE 488.2 arbitrary block found in a reply."""

    prefix: bytes  # what came before the block, e.g. b":CURV "
    header: bytes  # e.g. b"#41024"
    payload_bytes: int
    first_bytes: bytes
    indefinite: bool

    def payload(self, data: bytes) -> bytes:
        start = len(self.prefix) + len(self.header)
        end = None if self.indefinite else start + self.payload_bytes
        body = data[start:end]
        return body[:-1] if self.indefinite and body.endswith(b"\n") else body


def find_block(data: bytes, first: int = 16) -> BlockSummary | None:
    """The block in a reply such as ``#3512...`` or ``:CURV #41024...``, or None."""
    try:
        header = ieee488.find_block(data)
    except ieee488.BlockFormatError:
        return None
    if header is None:
        return None
    start = header.payload_start
    if header.payload_bytes is None:
        payload_bytes = len(data) - start - (1 if data.endswith(b"\n") else 0)
    else:
        payload_bytes = header.payload_bytes
    return BlockSummary(
        prefix=bytes(data[: header.start]),
        header=bytes(data[header.start : start]),
        payload_bytes=payload_bytes,
        first_bytes=bytes(data[start : start + min(first, payload_bytes)]),
        indefinite=header.payload_bytes is None,
    )


# --- error checks ---------------------------------------------------------------

_ERR_QUERY = re.compile(r"^\s*:?(\*ESR\?|SYST(EM)?:ERR(OR)?(:NEXT|:ALL|:COUN(T)?)?\?)", re.IGNORECASE)
_QUEUE_ENTRY = re.compile(r'^\s*([+-]?\d+)\s*(?:,\s*"?(.*?)"?\s*)?$', re.DOTALL)

# The ESR bits that mean something went wrong (IEEE 488.2-1992 section 11.5.1.1).
ESR_ERROR_BITS = (5, 4, 3, 2)  # CME, EXE, DDE, QYE


def asks_for_errors(line: str) -> bool:
    """True when the line itself reads the error state (``*ESR?``, ``SYST:ERR?``): no check after it."""
    return any(_ERR_QUERY.match(unit) for unit in ieee488.split_compound(line))


def parse_error_entry(text: str) -> ErrorEntry:
    """One ``SYST:ERR?`` answer, e.g. ``-113,"Undefined header"`` (SCPI-99 21.8)."""
    match = _QUEUE_ENTRY.match(text.strip())
    if not match:
        raise ValueError(f"not an error-queue entry: {text.strip()!r}")
    code = int(match.group(1))
    message = (match.group(2) or "").strip()
    return ErrorEntry(code=code, message=message or ("No error" if code == 0 else "(no description)"))


def esr_entries(value: int) -> tuple[ErrorEntry, ...]:
    """The bits of an ESR value as entries; error bits are severe, the others informational."""
    entries = []
    for bit in sorted(ieee488.ESR_BITS, reverse=True):
        if value >> bit & 1:
            name, description = ieee488.ESR_BITS[bit]
            entries.append(ErrorEntry(code=1 << bit, message=f"{name} ({description.lower()})", severe=bit in ESR_ERROR_BITS))
    return tuple(entries)
