"""Command catalogues for completion (no Qt).

The catalogues come from the instrument table (:mod:`app.instruments`, docs/instruments.md):
its ``[[commands]]`` sets (IEEE 488.2, SCPI-99), offered to every instrument, and each
instrument's own ``commands``, offered when its ``*IDN?`` matches. Here they are chosen for an
instrument (:func:`profile_for`) and matched against what is typed (:func:`complete`).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.instruments import Catalog, CatalogEntry, header_forms, shipped_table


def shipped_catalogs() -> tuple[Catalog, ...]:
    """The catalogues of the shipped instrument table: the command sets, then the instruments' own."""
    return shipped_table().catalogs


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


__all__ = ["Catalog", "CatalogEntry", "Completion", "Profile", "complete", "current_unit", "header_forms", "profile_for",
           "shipped_catalogs"]
