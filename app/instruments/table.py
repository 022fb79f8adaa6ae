"""The loader of the instrument table: one TOML format, validated entry by entry (no Qt).

:func:`parse_table` reads the ``[[commands]]``, ``[[instrument]]`` and ``[[template]]``
entries (docs/instruments.md); the ``[[quirk]]`` entries of the same file are the protocol
core's, validated by :func:`app.usbtmc.quirks.parse_database` against its own flags. Every
problem names ``file:line``. With a ``problems`` list a broken entry is skipped and reported
there and the others load; without one the first problem raises :class:`TableError`.

Nothing in the table is executed: it is parsed as data, and its regular expressions are
only compiled.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from app.protocol import ieee488

from .model import (
    BitGroup,
    Catalog,
    CatalogEntry,
    DemoStep,
    DeviceProfile,
    DeviceRegister,
    TemplateChoice,
    TemplateSpec,
    header_forms,
)

SHIPPED = "instruments.toml"
SECTIONS = ("commands", "instrument", "template", "quirk")  # the table's top-level arrays
DEMO_MODES = ("send", "query", "control")
TEMPLATE_KINDS = ("block", "chained", "raw")
BYTE_ORDERS = ("little", "big")
# The keys of a [[template]] and their TOML types (list: a list of strings).
TEMPLATE_KEYS: dict[str, type] = {
    "key": str, "label": str, "kind": str, "prefix": str, "sample_type": str, "byte_order": str,
    "byte_orders": list, "sample_types": list, "terminator": str, "chunk_points": int, "continue_flag": str,
    "end_flag": str, "opc": bool, "errors": bool, "verify": str, "select": str, "editable_prefix": bool,
    "note": str,
}
_TEMPLATE_REQUIRED = ("key", "label", "kind", "prefix", "sample_type")
_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z_]+)\s*\]\]\s*(#.*)?$")


class TableError(ValueError):
    """The instrument table, or an entry of it, is not valid; the message names the file and line."""


class EntryError(TableError):
    """One entry is not valid (the others may be)."""


@dataclass(frozen=True)
class Table:
    """The instrument table as the application uses it."""

    origin: str  # the file's name, for messages
    text: str  # the whole file (the core reads its [[quirk]] entries)
    catalogs: tuple[Catalog, ...]
    profiles: tuple[DeviceProfile, ...]
    templates: tuple[TemplateSpec, ...]
    template_choices: tuple[TemplateChoice, ...]
    problems: tuple[str, ...] = ()  # entries skipped, with file and line

    def profile(self, profile_id: str) -> DeviceProfile | None:
        return next((p for p in self.profiles if p.id == profile_id), None)


class _Entry:
    """One entry being validated: its keys, and where in the file they are."""

    def __init__(self, raw: Any, kind: str, number: int, origin: str, lines: list[str], span: tuple[int, int]) -> None:
        self.raw, self.kind, self.number, self.origin = raw, kind, number, origin
        self.lines, self.first, self.last = lines, span[0], span[1]
        self.name = f"{kind} {number}"
        if isinstance(raw, dict) and isinstance(raw.get("id", raw.get("key")), str):
            self.name = f"{kind} {raw.get('id', raw.get('key'))!r}"

    def line_of(self, *path: str) -> int:
        """The line that sets ``path`` (its last key after the ones before it), else the entry's first."""
        at = self.first
        for key in path:
            pattern = re.compile(rf"(?:^|[\s{{,.\[])[\"']?{re.escape(key)}[\"']?\s*(=|\]|\.)")
            found = next((n for n in range(at, min(self.last, len(self.lines)) + 1)
                          if pattern.search(self.lines[n - 1].split("#", 1)[0])), None)
            if found is None:
                return at
            at = found
        return at

    def fail(self, message: str, *path: str) -> EntryError:
        return EntryError(f"{self.origin}:{self.line_of(*path) if path else self.first}: {self.name}: {message}")

    def keys(self, table: Any, allowed: tuple[str, ...], *path: str) -> dict:
        where = ".".join(path) or self.kind
        if not isinstance(table, dict):
            raise self.fail(f"{where} must be a table of keys", *path)
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(f"unknown key {unknown[0]!r} in {where} (known: {', '.join(allowed)})", *path, unknown[0])
        return table

    def text(self, table: dict, key: str, *path: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if value is None:
            raise self.fail(f"needs {'.'.join((*path, key))} (text)", *path)
        if not isinstance(value, str):
            raise self.fail(f"{'.'.join((*path, key))} must be text", *path, key)
        return value

    def flag(self, table: dict, key: str, *path: str) -> bool | None:
        value = table.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.fail(f"{'.'.join((*path, key))} must be true or false", *path, key)
        return value

    def pattern(self, table: dict, key: str, *path: str) -> re.Pattern[str] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(f"{'.'.join((*path, key))} must be a regular expression (text)", *path, key)
        try:
            return re.compile(value, re.IGNORECASE)
        except (re.error, RecursionError, OverflowError) as exc:
            raise self.fail(f"{'.'.join((*path, key))} is not a valid regular expression: {exc}", *path, key) from None

    def strings(self, table: dict, key: str, *path: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{'.'.join((*path, key))} must be a list of text", *path, key)
        return tuple(value)


def _spans(lines: list[str]) -> dict[str, list[tuple[int, int]]]:
    """(first line, last line) of each ``[[section]]`` entry, per section, in file order."""
    starts: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        match = _HEADER.match(line)
        if match:
            starts.append((number, match.group(1)))
    spans: dict[str, list[tuple[int, int]]] = {}
    for index, (first, section) in enumerate(starts):
        last = starts[index + 1][0] - 1 if index + 1 < len(starts) else len(lines)
        spans.setdefault(section, []).append((first, last))
    return spans


def _commands(entry: _Entry, table: dict, *path: str) -> tuple[tuple[str, str, str], ...]:
    """The ``list`` of a command set: (header, parameters, description) for each command."""
    items = table.get("list")
    if not isinstance(items, list) or not items:
        raise entry.fail(f"{'.'.join((*path, 'list'))} must be a list of [command, description]", *path, "list")
    rows = []
    for number, item in enumerate(items, 1):
        if (not isinstance(item, list) or len(item) != 2 or not all(isinstance(v, str) for v in item)
                or not item[0].strip()):
            raise entry.fail(f"command {number} of {'.'.join((*path, 'list'))} must be [command, description]",
                             *path, "list")
        header, _, params = item[0].strip().partition(" ")
        rows.append((header, params.strip(), item[1].strip()))
    return tuple(rows)


def _catalog(catalog_id: str, name: str, rows, **options) -> Catalog:
    return Catalog(id=catalog_id, name=name, entries=tuple(CatalogEntry(h, p, d, name, header_forms(h))
                                                           for h, p, d in rows), **options)


def _parse_command_set(entry: _Entry) -> Catalog:
    raw = entry.keys(entry.raw, ("id", "name", "requires", "list"))
    catalog_id = entry.text(raw, "id")
    requires = entry.text(raw, "requires", default="")
    if requires not in ("", "scpi"):
        raise entry.fail("requires may only be \"scpi\"", "requires")
    return _catalog(catalog_id, entry.text(raw, "name", default=catalog_id), _commands(entry, raw),
                    requires_scpi=requires == "scpi")


def _bits(entry: _Entry, table: Any, width: int, *path: str) -> dict[int, tuple[str, str]]:
    if not isinstance(table, dict):
        raise entry.fail(f"{'.'.join(path)} must be a table of bit = [name, description]", *path)
    bits = {}
    for key, value in table.items():
        if not str(key).isdigit() or not 0 <= int(key) < width:
            raise entry.fail(f"{'.'.join(path)}: {key!r} is not a bit number 0..{width - 1}", *path, str(key))
        if not isinstance(value, list) or not 1 <= len(value) <= 2 or not all(isinstance(v, str) for v in value):
            raise entry.fail(f"{'.'.join(path)}.{key} must be [name, description]", *path, str(key))
        bits[int(key)] = (value[0], value[1] if len(value) > 1 else "")
    return bits


def _registers(entry: _Entry, items: Any) -> tuple[DeviceRegister, ...]:
    path = ("status", "registers")
    if not isinstance(items, list):
        raise entry.fail("status.registers must be an array of tables ([[instrument.status.registers]])", *path)
    registers = []
    for number, reg in enumerate(items, 1):
        reg = entry.keys(reg, ("name", "query", "width", "clears", "bits", "groups"), *path)
        name, query = entry.text(reg, "name", *path), entry.text(reg, "query", *path)
        width = reg.get("width", 8)
        if not name or not query or not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 64:
            raise entry.fail(f"register {number} needs a name, a query and a width of 1..64 bits", *path)
        groups = []
        spans = reg.get("groups", {})
        if not isinstance(spans, dict):
            raise entry.fail(f"register {name!r}: groups must be a table of name = [first bit, last bit]",
                             *path, "groups")
        for group_name, span in spans.items():
            if (not isinstance(span, list) or len(span) != 2 or not all(isinstance(b, int) for b in span)
                    or not 0 <= span[0] <= span[1] < width):
                raise entry.fail(f"register {name!r}: group {group_name!r} must be [first bit, last bit]",
                                 *path, "groups", group_name)
            groups.append(BitGroup(group_name, span[0], span[1]))
        registers.append(DeviceRegister(name, query, width, _bits(entry, reg.get("bits", {}), width, *path, "bits"),
                                        entry.text(reg, "clears", *path, default=""), tuple(groups)))
    return tuple(registers)


def _demo(entry: _Entry, items: Any) -> tuple[DemoStep, ...]:
    path = ("panel", "demo")
    if not isinstance(items, list):
        raise entry.fail("panel.demo must be a list of steps", *path)
    steps = []
    for number, step in enumerate(items, 1):
        if not isinstance(step, dict):
            raise entry.fail(f"demo step {number} must be a table", *path)
        unknown = sorted(set(step) - {*DEMO_MODES, "explain", "reads"})
        modes = [mode for mode in DEMO_MODES if mode in step]
        if unknown or len(modes) != 1:
            raise entry.fail(f"demo step {number} needs exactly one of {', '.join(DEMO_MODES)}, an explain and "
                             f"optionally reads" + (f" (not {unknown[0]!r})" if unknown else ""), *path)
        values = [step[modes[0]], step.get("explain"), step.get("reads", "")]
        if not all(isinstance(v, str) for v in values) or not values[0] or not values[1]:
            raise entry.fail(f"demo step {number}: {modes[0]}, explain and reads are text", *path)
        steps.append(DemoStep(values[0], modes[0], values[1], values[2]))
    return tuple(steps)


def _limits(entry: _Entry, table: Any) -> dict[str, int]:
    if not isinstance(table, dict):
        raise entry.fail("panel.limits must be a table of whole numbers", "panel", "limits")
    for key, value in table.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise entry.fail(f"panel.limits.{key} must be a whole number", "panel", "limits", key)
    return dict(table)


def _parse_instrument(entry: _Entry) -> tuple[Catalog | None, DeviceProfile | None, str]:
    """An instrument's command set, its profile (status registers, panel) and its template key."""
    raw = entry.keys(entry.raw, ("id", "name", "idn", "commands", "status", "panel", "upload"))
    instrument_id, name = entry.text(raw, "id"), entry.text(raw, "name")
    idn = entry.pattern(raw, "idn")
    if idn is None:
        raise entry.fail("needs idn, a regular expression on the *IDN? answer")
    catalog = None
    if "commands" in raw:
        commands = entry.keys(raw["commands"], ("name", "scpi", "replaces", "list"), "commands")
        catalog_name = entry.text(commands, "name", "commands", default=name)
        catalog = _catalog(instrument_id, catalog_name, _commands(entry, commands, "commands"), idn=idn,
                           scpi=entry.flag(commands, "scpi", "commands"),
                           replaces=entry.strings(commands, "replaces", "commands"))
    status = entry.keys(raw.get("status", {}), ("ese_query", "sre_command", "sre_query", "stb", "esr", "registers"),
                        "status")
    panel = entry.keys(raw.get("panel", {}), ("key", "limits", "demo"), "panel")
    upload = entry.keys(raw.get("upload", {}), ("template", "refuse"), "upload")
    profile = None
    if "status" in raw or "panel" in raw or "refuse" in upload:
        stb = dict(ieee488.STB_BITS)
        stb.update(_bits(entry, status.get("stb", {}), 8, "status", "stb"))
        esr = dict(ieee488.ESR_BITS)
        esr.update(_bits(entry, status.get("esr", {}), 8, "status", "esr"))
        profile = DeviceProfile(
            id=instrument_id, name=name, idn=idn, stb_bits=stb, esr_bits=esr,
            ese_query=entry.text(status, "ese_query", "status", default="*ESE?"),
            sre_command=entry.text(status, "sre_command", "status", default="*SRE"),
            sre_query=entry.text(status, "sre_query", "status", default="*SRE?"),
            registers=_registers(entry, status.get("registers", [])),
            panel=entry.text(panel, "key", "panel", default="" if "panel" not in raw else None),
            no_waveform=entry.text(upload, "refuse", "upload", default=""),
            limits=_limits(entry, panel.get("limits", {})),
            demo=_demo(entry, panel.get("demo", [])),
        )
    return catalog, profile, entry.text(upload, "template", "upload", default="")


def _parse_template(entry: _Entry) -> TemplateSpec:
    raw = entry.keys(entry.raw, tuple(TEMPLATE_KEYS))
    for key in _TEMPLATE_REQUIRED:
        if key not in raw:
            raise entry.fail(f"needs {key}")
    for key, value in raw.items():
        expected = TEMPLATE_KEYS[key]
        if expected is list:
            ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:
            ok = isinstance(value, expected)
        if not ok:
            kind = {str: "text", bool: "true or false", int: "a whole number", list: "a list of text"}[expected]
            raise entry.fail(f"{key} must be {kind}", key)
    if raw["kind"] not in TEMPLATE_KINDS:
        raise entry.fail(f"kind must be one of {', '.join(TEMPLATE_KINDS)}", "kind")
    orders = raw.get("byte_orders", list(BYTE_ORDERS))
    if not set(orders) <= set(BYTE_ORDERS) or raw.get("byte_order", "little") not in orders:
        raise entry.fail(f"byte orders are {' or '.join(BYTE_ORDERS)}, and byte_order one of byte_orders",
                         "byte_order" if "byte_order" in raw else "byte_orders")
    if raw["sample_type"] not in raw.get("sample_types", ("int16", "float32")):
        raise entry.fail("sample_type must be one of sample_types", "sample_type")
    fields = {key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()}
    return TemplateSpec(raw["key"], fields)


def parse_table(text: str, origin: str = SHIPPED, problems: list[str] | None = None) -> Table:
    """The instrument table in ``text``; see the module's description for ``problems``."""

    def report(error: TableError) -> None:
        if problems is None:
            raise error
        problems.append(f"{error}; entry skipped" if isinstance(error, EntryError) else str(error))

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"\(at line (\d+)", str(exc))
        raise TableError(f"{origin}{':' + at.group(1) if at else ''}: not valid TOML: {exc}") from None
    lines = text.splitlines()
    spans = _spans(lines)
    for key in sorted(set(doc) - set(SECTIONS)):
        report(TableError(f"{origin}: unknown top-level key {key!r} (known: {', '.join(SECTIONS)})"))

    def entries(section: str):
        items = doc.get(section, [])
        if not isinstance(items, list):
            report(TableError(f"{origin}: {section!r} must be an array of tables ([[{section}]])"))
            return
        section_spans = spans.get(section, [])
        for index, raw in enumerate(items):
            span = section_spans[index] if index < len(section_spans) else (1, len(lines))
            yield _Entry(raw, section, index + 1, origin, lines, span)

    catalogs: list[Catalog] = []
    profiles: list[DeviceProfile] = []
    templates: list[TemplateSpec] = []
    wanted: list[tuple[_Entry, str, re.Pattern[str]]] = []
    ids: set[str] = set()

    def unique(entry: _Entry, key: str, value: str, seen: set[str]) -> None:
        if value in seen:
            raise entry.fail(f"{key} {value!r} is used by an earlier entry", key)
        seen.add(value)

    for entry in entries("commands"):
        try:
            catalog = _parse_command_set(entry)
            unique(entry, "id", catalog.id, ids)
            catalogs.append(catalog)
        except TableError as exc:
            report(exc)
    for entry in entries("template"):
        try:
            template = _parse_template(entry)
            unique(entry, "key", template.key, {t.key for t in templates})
            templates.append(template)
        except TableError as exc:
            report(exc)
    for entry in entries("instrument"):
        try:
            catalog, profile, template_key = _parse_instrument(entry)
            if template_key and template_key not in {t.key for t in templates}:
                raise entry.fail(f"upload.template {template_key!r} is not a [[template]] key", "upload", "template")
            unique(entry, "id", entry.raw["id"], ids)
        except TableError as exc:
            report(exc)
            continue
        if catalog is not None:
            catalogs.append(catalog)
        if profile is not None:
            profiles.append(profile)
        if template_key:
            wanted.append((entry, template_key, re.compile(entry.raw["idn"], re.IGNORECASE)))
    choices = tuple(TemplateChoice(entry.raw["id"], idn, key) for entry, key, idn in wanted)
    return Table(origin, text, tuple(catalogs), tuple(profiles), tuple(templates), choices,
                 tuple(problems or ()))


def shipped_text() -> str:
    """The text of the table shipped in this package."""
    return resources.files(__package__).joinpath(SHIPPED).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def shipped_table() -> Table:
    """The shipped table; a broken entry is skipped and listed in :attr:`Table.problems`."""
    problems: list[str] = []
    try:
        return parse_table(shipped_text(), SHIPPED, problems)
    except TableError as exc:  # not TOML at all: nothing in it can be used
        return Table(SHIPPED, "", (), (), (), (), (f"instrument table ignored: {exc}",))
