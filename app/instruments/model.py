"""What the instrument table describes, as frozen records (no Qt, standard library only).

The loader (:mod:`.table`) builds these from ``instruments.toml``; the console's completion,
the status view, the demo panels and the Waveform panel read them.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from app.protocol import ieee488

BitNames = dict[int, tuple[str, str]]  # bit -> (short name, description)

UNUSED = "–"  # the table's name for a bit the device does not use

_OPTIONAL = re.compile(r"\[([^\]]+)\]")


# --- command catalogues (the console's completion) -------------------------------------------


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
    """A command set: one of the table's ``[[commands]]``, or an instrument's own ``commands``."""

    id: str
    name: str
    entries: tuple[CatalogEntry, ...]
    idn: re.Pattern[str] | None = None  # None: for every instrument
    requires_scpi: bool = False  # offered only when the instrument is known to speak SCPI
    scpi: bool | None = None  # what a matching instrument's own list says about its error queue
    replaces: tuple[str, ...] = ()  # command sets a matching instrument's own list replaces

    def matches(self, idn: str | None) -> bool:
        if self.idn is None:
            return True
        return idn is not None and self.idn.search(idn) is not None


# --- status registers and panels -------------------------------------------------------------


@dataclass(frozen=True)
class BitGroup:
    """Bits ``first``..``last`` of a register that belong together (events, state...)."""

    name: str
    first: int
    last: int

    def covers(self, bit: int) -> bool:
        return self.first <= bit <= self.last


@dataclass(frozen=True)
class DeviceRegister:
    """A device-specific register read with one query, e.g. the SAM7's ``DEBUG:FLAGS?``."""

    name: str
    query: str
    width: int
    bits: BitNames
    clears: str = ""  # what reading it clears, in words ("" when reading has no side effect)
    groups: tuple[BitGroup, ...] = ()

    def decode(self, value: int) -> list[tuple[int, str, str]]:
        """The named bits set in ``value``: (bit, name, description), least significant first."""
        return [(bit, *self.bits[bit]) for bit in sorted(self.bits) if value >> bit & 1]

    def unnamed_bits(self, value: int) -> list[int]:
        """Bits set in ``value`` that the table has no name for."""
        return [bit for bit in range(self.width) if value >> bit & 1 and bit not in self.bits]

    def group_of(self, bit: int) -> str:
        return next((g.name for g in self.groups if g.covers(bit)), "")


@dataclass(frozen=True)
class DemoStep:
    """One step of a demo panel's script."""

    text: str  # a line to send, or the control action (app.session.events.Control) for mode "control"
    mode: str  # "send", "query" or "control"
    explain: str
    reads: str = ""  # which of the panel's displays the reply updates


@dataclass(frozen=True)
class DeviceProfile:
    """What the status view and panels know about one kind of instrument."""

    id: str
    name: str
    idn: re.Pattern[str] | None = None
    stb_bits: BitNames = field(default_factory=lambda: dict(ieee488.STB_BITS))
    esr_bits: BitNames = field(default_factory=lambda: dict(ieee488.ESR_BITS))
    ese_query: str = "*ESE?"
    sre_command: str = "*SRE"  # "" when the device has no service request enable register
    sre_query: str = "*SRE?"
    registers: tuple[DeviceRegister, ...] = ()
    panel: str = ""  # a demo panel's key ("" for none)
    no_waveform: str = ""  # why the instrument takes no waveform upload ("": it may)
    limits: dict[str, int] = field(default_factory=dict)  # the panel's limits, e.g. param_max
    demo: tuple[DemoStep, ...] = ()  # the panel's demo script

    def matches(self, idn: str | None) -> bool:
        return self.idn is not None and idn is not None and self.idn.search(idn) is not None

    def register(self, name: str) -> DeviceRegister | None:
        return next((r for r in self.registers if r.name == name), None)

    def register_for_query(self, query: str) -> DeviceRegister | None:
        wanted = query.strip().upper()
        return next((r for r in self.registers if r.query.upper() == wanted), None)


GENERIC = DeviceProfile(id="generic", name="IEEE 488.2")


# --- waveform uploads ------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateSpec:
    """A waveform template as the table gives it: the keyword arguments of
    :class:`app.waveforms.Template` (which says what each means)."""

    key: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class TemplateChoice:
    """The template an instrument starts with in the Waveform panel."""

    instrument: str  # the instrument's id
    idn: re.Pattern[str]
    template: str  # a template's key
