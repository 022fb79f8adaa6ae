"""Device quirks as data.

Many instruments break the USBTMC spec in small ways. Which workaround applies to
which device lives in the ``[[quirk]]`` entries of the instrument table
(``app/instruments/instruments.toml``, shipped with the package) and an optional user
file of the same entries merged over it; code reads named flags of a :class:`Quirks`
record and never tests vendor IDs itself. The table's other entries (command sets,
instruments, waveform templates) are read by :mod:`app.instruments`; the quirk entries are
validated here, against the flags the core has.

Entry format::

    [[quirk]]
    name = "Rigol DS1000Z"            # shown to users
    vid = 0x1AB1
    pid = [0x04CE]                     # or pid_range = [lo, hi]; omit for every PID
    product = "DS1[0-9]{3}Z"           # optional regex on the USB product string
    idn = "RIGOL.*,00\\.04\\.0[0-3]"   # optional regex on the *IDN? reply
    reason = "why this entry exists"
    source = "where it was reported"
    [quirk.flags]
    single_request_per_reply = true
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.instruments import SECTIONS, shipped_table

from .errors import QuirksFileError

MIB = 1 << 20


@dataclass(frozen=True, repr=False)
class VendorRequest:
    """One control transfer of a vendor sequence, written in TOML as
    ``[bmRequestType, bRequest, wValue, wIndex, wLength]`` (an IN request: that many bytes
    are read and ignored) or ``[bmRequestType, bRequest, wValue, wIndex, [data bytes]]``
    (an OUT request). Only vendor-type requests (bmRequestType bits 6..5 = 2) are allowed,
    so a quirks file can never send standard or class requests."""

    request_type: int
    request: int
    value: int
    index: int
    length: int = 0  # IN: bytes to read
    data: bytes = b""  # OUT: the data stage

    @property
    def is_in(self) -> bool:
        return bool(self.request_type & 0x80)

    def __repr__(self) -> str:
        return self.as_toml()

    def as_toml(self) -> str:
        last = str(self.length) if self.is_in else "[" + ", ".join(f"0x{b:02X}" for b in self.data) + "]"
        return f"[0x{self.request_type:02X}, 0x{self.request:02X}, 0x{self.value:04X}, 0x{self.index:04X}, {last}]"


class VendorSequence(tuple):
    """The requests of ``mode_switch_requests``, in order; shown briefly (device browser, reasons)."""

    def __repr__(self) -> str:
        return f"{len(self)} vendor control requests"


def parse_vendor_requests(value: Any) -> tuple[VendorRequest, ...]:
    """Validate the TOML form of ``mode_switch_requests``; raises ValueError saying what is wrong."""
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of [bmRequestType, bRequest, wValue, wIndex, wLength or [data]]")
    requests = []
    for number, item in enumerate(value, 1):
        if not isinstance(item, list) or len(item) != 5:
            raise ValueError(f"request {number} must have 5 items: bmRequestType, bRequest, wValue, wIndex, wLength or [data]")
        head, last = item[:4], item[4]
        limits = (0xFF, 0xFF, 0xFFFF, 0xFFFF)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top for v, top in zip(head, limits)):
            raise ValueError(f"request {number}: bmRequestType/bRequest are bytes, wValue/wIndex 16-bit numbers")
        request_type = head[0]
        if (request_type >> 5) & 0x03 != 2:
            raise ValueError(f"request {number}: bmRequestType 0x{request_type:02X} is not a vendor request")
        if request_type & 0x80:
            if not isinstance(last, int) or isinstance(last, bool) or not 0 <= last <= 0xFFFF:
                raise ValueError(f"request {number}: an IN request ends with wLength, a number")
            requests.append(VendorRequest(*head, length=last))
        else:
            if not isinstance(last, list) or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 0xFF for b in last):
                raise ValueError(f"request {number}: an OUT request ends with its data, a list of bytes")
            requests.append(VendorRequest(*head, data=bytes(last)))
    return VendorSequence(requests)


@dataclass(frozen=True)
class AppliedQuirk:
    """One flag set by a database entry, with the entry's explanation."""

    flag: str
    value: Any
    reason: str
    source: str
    entry: str


@dataclass(frozen=True)
class Quirks:
    """The workarounds in force for one device. Defaults describe a compliant device."""

    # Payload bytes per Bulk-OUT transfer: a long write becomes large transfers, EOM on the last.
    max_out_transfer_bytes: int = MIB
    # TransferSize asked for in each REQUEST_DEV_DEP_MSG_IN.
    max_in_transfer_bytes: int = MIB
    # Size of the first Bulk-IN read of a reply (rounded to wMaxPacketSize); the rest is
    # read with a buffer sized from the header's TransferSize.
    read_buffer_bytes: int = 4096
    # Send INITIATE_CLEAR when a session opens (resynchronises a device left mid-message).
    clear_on_open: bool = True
    # Assert REN when a session opens (locks the front panel: off unless a device needs it).
    remote_on_open: bool = False
    # A repeated REQUEST_DEV_DEP_MSG_IN restarts the reply: send one request per reply.
    single_request_per_reply: bool = False
    # Only the first Bulk-IN transfer of a reply carries a USBTMC header.
    header_in_first_transfer_only: bool = False
    # The EOM bit cannot be trusted: the reply ends when TransferSize bytes have arrived.
    eom_unreliable: bool = False
    # For an IEEE 488.2 block reply the header's TransferSize is wrong: use the block's length.
    block_length_from_block_header: bool = False
    # The device never sets EOM: a reply is complete after one transfer.
    no_eom: bool = False
    # The device answers only while locked by a vendor request (bRequest 0xA0) around each query.
    vendor_lock_around_query: bool = False
    # The device does not end a transfer that fills whole packets with a zero-length packet,
    # so reads are sized from TransferSize and never wait for a short packet.
    no_zlp: bool = False
    # The device advertises RL1/REN_CONTROL but does not implement REN, GTL or LLO.
    ren_control_broken: bool = False
    # Clear the halt of both bulk endpoints when a session closes.
    clear_halt_on_close: bool = False
    # Accept a Bulk-IN header that echoes an older bTag.
    tolerate_stale_btag: bool = False
    # Accept a wrong MsgID in the first Bulk-IN transfer of a reply.
    tolerate_bad_first_msgid: bool = False
    # TransferSize counts the alignment bytes too: strip the NUL padding from the data.
    transfer_size_includes_padding: bool = False
    # TransferSize does not match the bytes sent: take what arrives until the short packet.
    transfer_size_unreliable: bool = False
    # Remove trailing NUL bytes from replies.
    strip_trailing_nuls: bool = False
    # A device clear also halts Bulk-IN: clear its halt after INITIATE_CLEAR.
    clear_halts_bulk_in: bool = False
    # Never read Bulk-IN while a device clear is pending (some devices hang on it).
    no_drain_on_clear: bool = False
    # List the device as USBTMC although its interface does not carry class FE/03.
    force_usbtmc: bool = False
    # Slowest rate the device is expected to sustain: a transfer of n bytes gets
    # timeout_ms + n / min_bytes_per_s. 0 means a fixed timeout per transfer.
    min_bytes_per_s: int = 0
    # INITIATE_CLEAR hangs or wedges the device: never send it (not on open, not to recover
    # from an error); clear() raises NotSupportedError instead.
    no_initiate_clear: bool = False
    # TransferSize never exceeds this many bytes although the device sends more: a transfer
    # announcing at least this many is read on until a short packet (0: no cap).
    transfer_size_cap: int = 0
    # Read Bulk-IN until a short packet after INITIATE_ABORT_BULK_IN (USBTMC 1.0 4.2.1.4).
    # The spec requires it; devices such as the Tektronix FCA3000 never recover without it.
    abort_in_drain: bool = True
    # Run every transfer to its end before the next: no query submitted as one batch of
    # command, read request and first read, no second upload transfer queued behind the
    # first (for a device that loses a transfer arriving right behind another).
    no_pipelining: bool = False
    # This PID is a firmware-update (boot) mode: after the vendor control requests in
    # mode_switch_requests the instrument re-enumerates as USBTMC under this PID (0: none).
    mode_switch_target_pid: int = 0
    # The vendor control requests that leave the boot mode, sent in order.
    mode_switch_requests: tuple[VendorRequest, ...] = ()
    # How long to wait for the instrument to re-enumerate after the switch, in ms.
    mode_switch_wait_ms: int = 20000

    applied: tuple[AppliedQuirk, ...] = ()


def _flag_type(annotation) -> type:
    if annotation in ("int", int):
        return int
    if annotation in ("bool", bool):
        return bool
    return tuple  # a list of vendor requests


FLAG_TYPES: dict[str, type] = {f.name: _flag_type(f.type) for f in fields(Quirks) if f.name != "applied"}
DEFAULTS = Quirks()
# Bounds of the numeric flags, inclusive. Transfer sizes stay far below USBTMC's 32-bit
# TransferSize (USBTMC 1.0 Table 3) and within what a host can sensibly allocate per transfer:
# the first read of a reply allocates read_buffer_bytes whatever the reply's size.
FLAG_BOUNDS: dict[str, tuple[int, int]] = {
    "max_out_transfer_bytes": (1, 64 * MIB),
    "max_in_transfer_bytes": (1, 64 * MIB),
    "read_buffer_bytes": (1, 16 * MIB),
    "min_bytes_per_s": (0, 0xFFFF_FFFF),
    "transfer_size_cap": (0, 0xFFFF_FFFF),
    "mode_switch_target_pid": (0, 0xFFFF),
    "mode_switch_wait_ms": (0, 600_000),
}
_ENTRY_KEYS = {"name", "vid", "pid", "pid_range", "product", "idn", "reason", "source", "flags"}


@dataclass(frozen=True)
class QuirkEntry:
    """One database entry: which devices it matches and which flags it sets."""

    name: str
    vid: int
    pids: tuple[int, ...] | None
    pid_range: tuple[int, int] | None
    product: re.Pattern[str] | None
    idn: re.Pattern[str] | None
    flags: dict[str, Any]
    reason: str
    source: str
    origin: str  # file:line, for messages

    def matches_ids(self, vid: int, pid: int) -> bool:
        """Whether VID and PID fit, ignoring the text patterns."""
        if vid != self.vid:
            return False
        if self.pids is not None and pid not in self.pids:
            return False
        return self.pid_range is None or self.pid_range[0] <= pid <= self.pid_range[1]

    def matches(self, vid: int, pid: int, product: str | None, idn: str | None) -> bool:
        if not self.matches_ids(vid, pid):
            return False
        if self.product is not None and not (product and self.product.search(product)):
            return False
        if self.idn is not None and not (idn and self.idn.search(idn)):
            return False
        return True


@dataclass
class QuirkDatabase:
    """Entries in precedence order (later entries override earlier ones)."""

    entries: list[QuirkEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # e.g. a broken user file that was skipped

    def lookup(self, vid: int, pid: int, product: str | None = None, idn: str | None = None) -> Quirks:
        """The quirks in force for a device; entries with an ``idn`` pattern need ``idn``."""
        values: dict[str, Any] = {}
        applied: dict[str, AppliedQuirk] = {}
        for entry in self.entries:
            if entry.matches(vid, pid, product, idn):
                for flag, value in entry.flags.items():
                    values[flag] = value
                    applied[flag] = AppliedQuirk(flag, value, entry.reason, entry.source, entry.name)
        return dataclasses.replace(DEFAULTS, **values, applied=tuple(applied.values()))

    def needs_idn(self, vid: int, pid: int) -> bool:
        """Whether some entry for this device depends on its *IDN? reply."""
        return any(e.idn is not None and e.matches_ids(vid, pid) for e in self.entries)


def _blank_strings_and_comments(text: str) -> str:
    """``text`` with the inside of every string and every comment replaced by spaces, newlines
    kept, so brackets and keys can be found by position without a TOML parser of our own."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "\'\'\'") else c
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                if text[i] == "\\" and quote[0] == '"' and i + 1 < n:
                    out[i] = " "
                    i += 1
                if text[i] != "\n":
                    out[i] = " "
                elif len(quote) == 1:
                    break  # an unterminated one-line string: tomllib reports it
                i += 1
            i += len(quote)
            continue
        i += 1
    return "".join(out)


def _is_quirk_key(raw: str) -> bool:
    return raw.replace(" ", "").replace("\t", "").strip("\"'") == "quirk"


def _entry_spans(text: str) -> list[tuple[int, int]]:
    """(first line, last line) of each quirk entry, 1-based, in file order, for every TOML form:
    ``[[quirk]]`` headers however spaced or quoted, and inline tables in ``quirk = [{...}, ...]``."""
    clean = _blank_strings_and_comments(text)
    spans: list[tuple[int, int]] = []
    header_open = False  # the last [[quirk]] entry runs until the next header of any kind
    depth = 0
    in_quirk_array = False
    inline_start = 0
    line = 1
    i, n = 0, len(clean)
    at_line_start = True
    while i < n:
        c = clean[i]
        if c == "\n":
            line += 1
            at_line_start = True
            i += 1
            continue
        if c in " \t\r":
            i += 1
            continue
        if at_line_start and depth == 0 and c == "[":
            close = clean.find("\n", i)
            close = n if close < 0 else close
            header = clean[i:close].strip()
            if header.startswith("[[") and "]]" in header and _is_quirk_key(text[i + 2:i + header.index("]]")]):
                if header_open:
                    spans[-1] = (spans[-1][0], line - 1)
                spans.append((line, line))
                header_open = True
            elif header_open and not header.startswith("[quirk") and not header.startswith("[ quirk"):
                spans[-1] = (spans[-1][0], line - 1)
                header_open = False
            i = close
            continue
        at_line_start = False
        if depth == 0 and not in_quirk_array:
            eq = clean.find("=", i)
            newline = clean.find("\n", i)
            if eq >= 0 and (newline < 0 or eq < newline) and _is_quirk_key(text[i:eq]):
                rest = clean[eq + 1:].lstrip(" \t")
                if rest.startswith("["):
                    in_quirk_array = True
                    i = eq + 1
                    continue
        if c in "[{":
            if in_quirk_array and depth == 1 and c == "{":
                inline_start = line
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
            if in_quirk_array and depth == 1 and c == "}":
                spans.append((inline_start, line))
            if in_quirk_array and depth == 0:
                in_quirk_array = False
        i += 1
    if header_open:
        last = len(text.splitlines()) or 1
        spans[-1] = (spans[-1][0], max(spans[-1][0], last))
    return spans


def _key_line(clean_lines: list[str], start: int, end: int, key: str) -> int:
    """The line where ``key`` is set inside an entry (``key =``, ``flags.key =``, ``{key = ``)."""
    pattern = re.compile(rf"(?:^|[\s{{,.\[])[\"']?{re.escape(key)}[\"']?\s*=")
    for number in range(start, min(end, len(clean_lines)) + 1):
        if pattern.search(clean_lines[number - 1]):
            return number
    return start


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_database(text: str, origin: str = "quirks.toml", problems: list[str] | None = None, *,
                   table: bool = False) -> list[QuirkEntry]:
    """Parse and validate quirks TOML; every message names ``origin:line``.

    Without ``problems`` the first problem raises :class:`QuirksFileError`. With a list,
    each broken entry is skipped and its problem appended there, so the others still load.
    With ``table`` the text is the instrument table, whose other top-level arrays are
    :mod:`app.instruments`'s; a user's file holds ``[[quirk]]`` entries only.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"\(at line (\d+)", str(exc))
        raise QuirksFileError(f"{origin}{':' + at.group(1) if at else ''}: not valid TOML: {exc}") from None

    def report(error: QuirksFileError) -> None:
        if problems is None:
            raise error
        problems.append(f"{error}; entry skipped" if "entry" in str(error) else str(error))

    unknown_top = sorted(set(doc) - (set(SECTIONS) if table else {"quirk"}))
    if unknown_top:
        report(QuirksFileError(f"{origin}: unknown top-level keys {unknown_top}; entries are [[quirk]] tables"))
    raw_entries = doc.get("quirk", [])
    if not isinstance(raw_entries, list):
        report(QuirksFileError(f"{origin}: 'quirk' must be an array of tables ([[quirk]])"))
        return []
    spans = _entry_spans(text)
    clean_lines = _blank_strings_and_comments(text).splitlines()
    entries = []
    for index, raw in enumerate(raw_entries):
        start, end = spans[index] if index < len(spans) else (1, len(clean_lines))
        try:
            entries.append(_parse_entry(raw, index + 1, origin, start, lambda key, s=start, e=end: _key_line(clean_lines, s, e, key)))
        except QuirksFileError as exc:
            report(exc)
    return entries


def _parse_entry(raw: Any, number: int, origin: str, line: int, key_line) -> QuirkEntry:
    where = f"{origin}:{line}"

    def fail(message: str, key: str | None = None) -> QuirksFileError:
        return QuirksFileError(f"{origin}:{key_line(key) if key else line}: {message}")

    if not isinstance(raw, dict):
        raise fail(f"entry {number} is {type(raw).__name__} {_short(raw)}, not a table of keys")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail(f"entry {number} needs a 'name' (text)", "name" if "name" in raw else None)
    for key in raw:
        if key not in _ENTRY_KEYS:
            raise fail(f"entry {name!r}: unknown key {key!r} (known: {', '.join(sorted(_ENTRY_KEYS))})", key)
    vid = raw.get("vid")
    if not _is_int(vid) or not 0 <= vid <= 0xFFFF:
        raise fail(f"entry {name!r}: 'vid' must be a 16-bit number", "vid" if "vid" in raw else None)
    pids = raw.get("pid")
    if pids is not None:
        if _is_int(pids):
            pids = [pids]
        if not isinstance(pids, list) or not pids or not all(_is_int(p) and 0 <= p <= 0xFFFF for p in pids):
            raise fail(f"entry {name!r}: 'pid' must be a 16-bit number or a list of them", "pid")
        pids = tuple(pids)
    pid_range = raw.get("pid_range")
    if pid_range is not None:
        if (
            not isinstance(pid_range, list)
            or len(pid_range) != 2
            or not all(_is_int(p) and 0 <= p <= 0xFFFF for p in pid_range)
            or pid_range[0] > pid_range[1]
        ):
            raise fail(f"entry {name!r}: 'pid_range' must be [low, high] 16-bit numbers", "pid_range")
        pid_range = (pid_range[0], pid_range[1])
    patterns = {}
    for key in ("product", "idn"):
        value = raw.get(key)
        if value is None:
            patterns[key] = None
            continue
        if not isinstance(value, str):
            raise fail(f"entry {name!r}: {key!r} must be a regular expression (text)", key)
        try:
            patterns[key] = re.compile(value)
        except (re.error, RecursionError, OverflowError) as exc:
            raise fail(f"entry {name!r}: {key!r} is not a valid regular expression: {exc}", key) from None
    for key in ("reason", "source"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise fail(f"entry {name!r}: needs a {key!r} (text)", key if key in raw else None)
    flags = raw.get("flags", {})
    if not isinstance(flags, dict) or not flags:
        raise fail(f"entry {name!r}: needs a [quirk.flags] table with at least one flag", "flags" if "flags" in raw else None)
    flags = dict(flags)
    for flag, value in flags.items():
        expected = FLAG_TYPES.get(flag)
        if expected is None:
            raise fail(f"entry {name!r}: unknown flag {flag!r} (known: {', '.join(sorted(FLAG_TYPES))})", flag)
        if expected is tuple:
            try:
                flags[flag] = parse_vendor_requests(value)
            except ValueError as exc:
                raise fail(f"entry {name!r}: flag {flag!r} {exc}", flag) from None
            continue
        if expected is bool and not isinstance(value, bool):
            raise fail(f"entry {name!r}: flag {flag!r} must be true or false", flag)
        if expected is int:
            low, high = FLAG_BOUNDS.get(flag, (0, 0xFFFF_FFFF))
            if not _is_int(value) or not low <= value <= high:
                raise fail(f"entry {name!r}: flag {flag!r} must be a whole number from {low:,} to {high:,}", flag)
    return QuirkEntry(
        name=name,
        vid=vid,
        pids=pids,
        pid_range=pid_range,
        product=patterns["product"],
        idn=patterns["idn"],
        flags=flags,
        reason=raw["reason"].strip(),
        source=raw["source"].strip(),
        origin=where,
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def shipped_entries() -> list[QuirkEntry]:
    """The ``[[quirk]]`` entries of the instrument table shipped with the package."""
    shipped = shipped_table()
    return parse_database(shipped.text, f"{shipped.origin} (shipped)", table=True)


def user_quirks_path() -> Path:
    """Where the user's own quirks file lives (merged over the shipped one)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("tmc-console", appauthor=False)) / "quirks.toml"


def load_database(user_file: Path | None = None) -> QuirkDatabase:
    """Shipped entries, then the user file's. A user file that is not TOML is skipped whole; in
    one that is, each broken entry is skipped and the others load. ``problems`` says what was
    skipped, with file and line."""
    db = QuirkDatabase(entries=shipped_entries())
    db.problems.extend(shipped_table().problems)  # the table's other entries: shown where quirk problems are
    if user_file is not None and user_file.exists():
        try:
            text = user_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            db.problems.append(f"user quirks file ignored: {user_file}: {exc}")
            return db
        try:
            db.entries.extend(parse_database(text, str(user_file), db.problems))
        except QuirksFileError as exc:  # not TOML at all: nothing in it can be trusted
            db.problems.append(f"user quirks file ignored: {exc}")
    return db


@lru_cache(maxsize=1)
def default_database() -> QuirkDatabase:
    """The database used when a session is opened without an explicit one."""
    return load_database(user_quirks_path())
