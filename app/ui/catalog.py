"""Command catalogues for completion (no Qt).

A catalogue is a text file in ``app/ui/catalogs/``: one command per line, its
header (SCPI case convention: upper case is the short form, ``[...]`` optional
nodes) with any parameters, then a tab or two or more spaces and a description.
Lines starting ``#!`` are directives:

``name``      shown in tooltips;
``idn``       a regular expression on the ``*IDN?`` answer: the catalogue is only
              for instruments it matches (none: for every instrument);
``requires``  ``scpi``: only when the instrument is known to speak SCPI;
``scpi``      ``yes``/``no``: what a matching device catalogue says about its error queue;
``replaces``  catalogue ids (file names without ``.txt``) a matching device
              catalogue replaces, for instruments that implement only their own list.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

_SPLIT = re.compile(r"\t+| {2,}")
_OPTIONAL = re.compile(r"\[([^\]]+)\]")


@dataclass(frozen=True)
class CatalogEntry:
    header: str  # as written, e.g. "SYSTem:ERRor[:NEXT]?"
    params: str  # e.g. "<mask>", "" when none
    description: str
    catalog: str  # the catalogue's name
    forms: tuple[str, ...] = field(default=(), compare=False)  # upper-case spellings, short forms first

    @property
    def display(self) -> str:
        return f"{self.header} {self.params}".strip()


@dataclass(frozen=True)
class Catalog:
    id: str
    name: str
    entries: tuple[CatalogEntry, ...]
    idn: re.Pattern[str] | None = None
    requires_scpi: bool = False
    scpi: bool | None = None
    replaces: tuple[str, ...] = ()

    def matches(self, idn: str | None) -> bool:
        if self.idn is None:
            return True
        return idn is not None and self.idn.search(idn) is not None


def header_forms(header: str) -> tuple[str, ...]:
    """Every upper-case spelling of a SCPI header: short and long, with and without optional nodes.

    ``SYSTem:ERRor[:NEXT]?`` gives ``SYST:ERR?``, ``SYSTEM:ERROR?``, ``SYST:ERR:NEXT?`` and
    ``SYSTEM:ERROR:NEXT?``.
    """
    optionals = _OPTIONAL.findall(header)
    variants = []
    for keep in itertools.product((False, True), repeat=len(optionals)):
        it = iter(keep)
        variants.append(_OPTIONAL.sub(lambda m: m.group(1) if next(it) else "", header))
    forms: list[str] = []
    for variant in variants:
        short = "".join(ch for ch in variant if not ch.islower())
        for form in (short.upper(), variant.upper()):
            if form not in forms:
                forms.append(form)
    return tuple(forms)


def parse_catalog(text: str, catalog_id: str) -> Catalog:
    """A catalogue from its file text; raises ValueError naming the line of a bad directive."""
    directives: dict[str, str] = {}
    rows: list[tuple[str, str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#!"):
            key, sep, value = line[2:].partition(":")
            if not sep:
                raise ValueError(f"{catalog_id}.txt:{lineno}: a directive needs 'key: value'")
            directives[key.strip().lower()] = value.strip()
            continue
        if not line or line.startswith("#"):
            continue
        parts = _SPLIT.split(line, 1)
        command, description = parts[0], (parts[1] if len(parts) > 1 else "")
        header, _, params = command.strip().partition(" ")
        rows.append((header, params.strip(), description.strip()))
    name = directives.get("name", catalog_id)
    entries = tuple(CatalogEntry(h, p, d, name, header_forms(h)) for h, p, d in rows)
    scpi_flag = directives.get("scpi")
    return Catalog(
        id=catalog_id,
        name=name,
        entries=entries,
        idn=re.compile(directives["idn"], re.IGNORECASE) if "idn" in directives else None,
        requires_scpi=directives.get("requires", "").lower() == "scpi",
        scpi=None if scpi_flag is None else scpi_flag.lower() in ("yes", "true", "1"),
        replaces=tuple(x.strip() for x in directives.get("replaces", "").split(",") if x.strip()),
    )


@lru_cache(maxsize=1)
def shipped_catalogs() -> tuple[Catalog, ...]:
    """The catalogues shipped in ``app/ui/catalogs``, in file-name order."""
    folder = resources.files("app.ui").joinpath("catalogs")
    found = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".txt"):
            found.append(parse_catalog(item.read_text(encoding="utf-8"), item.name[: -len(".txt")]))
    return tuple(found)


@dataclass(frozen=True)
class Profile:
    """What the console knows about an instrument's command set."""

    catalogs: tuple[Catalog, ...]
    device_catalog: Catalog | None  # the catalogue matched by *IDN?, if any
    speaks_scpi: bool | None  # None: unknown

    @property
    def entries(self) -> tuple[CatalogEntry, ...]:
        return tuple(entry for catalog in self.catalogs for entry in catalog.entries)

    @property
    def name(self) -> str:
        return self.device_catalog.name if self.device_catalog else "generic"


def profile_for(idn: str | None, scpi_capability: bool | None, catalogs: tuple[Catalog, ...] | None = None) -> Profile:
    """The catalogues for an instrument with this ``*IDN?`` answer and USB488 SCPI capability bit."""
    catalogs = shipped_catalogs() if catalogs is None else catalogs
    device = next((c for c in catalogs if c.idn is not None and c.matches(idn)), None)
    speaks_scpi = device.scpi if device is not None and device.scpi is not None else scpi_capability
    replaced = set(device.replaces) if device else set()
    chosen = []
    for catalog in catalogs:
        if catalog.idn is not None and catalog is not device:
            continue
        if catalog.id in replaced:
            continue
        if catalog.requires_scpi and speaks_scpi is False:
            continue
        chosen.append(catalog)
    # The device's own list comes first: its commands are what the user is most likely after.
    chosen.sort(key=lambda c: c is not device)
    return Profile(tuple(chosen), device, speaks_scpi)


@dataclass(frozen=True)
class Completion:
    entry: CatalogEntry
    text: str  # what to insert for the unit being typed


def complete(prefix: str, entries: tuple[CatalogEntry, ...], limit: int = 50) -> list[Completion]:
    """Catalogue entries for the program-message unit being typed.

    Entries whose spelling starts with ``prefix`` come first (inserting the
    spelling that matched, so ``syst:e`` completes to ``SYST:ERR?``), then
    entries that merely contain it. Case does not matter; a leading ``:`` is kept.
    """
    typed = prefix.strip()
    lead = ":" if typed.startswith(":") else ""
    key = typed.lstrip(":").upper()
    if not key:
        return []
    starts, contains = [], []
    for entry in entries:
        hit = next((form for form in entry.forms if form.startswith(key)), None)
        if hit is not None:
            starts.append(Completion(entry, lead + hit + (" " if entry.params else "")))
            continue
        hit = next((form for form in entry.forms if key in form), None)
        if hit is not None:
            contains.append(Completion(entry, lead + hit + (" " if entry.params else "")))
    seen, out = set(), []
    for item in starts + contains:
        if item.text not in seen:
            seen.add(item.text)
            out.append(item)
    return out[:limit]


def current_unit(line: str, cursor: int) -> tuple[int, str]:
    """Where the program-message unit under the cursor starts, and its text up to the cursor.

    Units are separated by ``;`` outside quotes; a header ends at the first space.
    Returns (-1, "") when the cursor is in a unit's parameters (nothing to complete).
    """
    start, quote = 0, ""
    for i, ch in enumerate(line[:cursor]):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == ";":
            start = i + 1
    if quote:
        return -1, ""
    while start < cursor and line[start] == " ":
        start += 1
    unit = line[start:cursor]
    if " " in unit:
        return -1, ""
    return start, unit
