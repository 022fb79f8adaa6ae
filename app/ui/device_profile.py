"""Device profiles: what the status view and demo panels know about an instrument (no Qt).

A profile is a TOML file in ``app/ui/profiles/``, matched to an instrument by a
regular expression on its ``*IDN?`` answer. It names the status byte's and the event
status register's bits where the device gives them its own meaning, says how the
enable registers are read back, lists device-specific registers (query, width, bit
names) and picks a demo panel. Instruments no profile matches get the IEEE 488.2
names and the ``*ESE?``/``*SRE?`` queries every 488.2 device has.

Nothing in a profile is executed: it is parsed as data only.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from app.usbtmc import ieee488

BitNames = dict[int, tuple[str, str]]  # bit -> (short name, description)

UNUSED = "–"  # a profile's name for a bit the device does not use


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
        """Bits set in ``value`` that the profile has no name for."""
        return [bit for bit in range(self.width) if value >> bit & 1 and bit not in self.bits]

    def group_of(self, bit: int) -> str:
        return next((g.name for g in self.groups if g.covers(bit)), "")


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

    def matches(self, idn: str | None) -> bool:
        return self.idn is not None and idn is not None and self.idn.search(idn) is not None

    def register(self, name: str) -> DeviceRegister | None:
        return next((r for r in self.registers if r.name == name), None)

    def register_for_query(self, query: str) -> DeviceRegister | None:
        wanted = query.strip().upper()
        return next((r for r in self.registers if r.query.upper() == wanted), None)


GENERIC = DeviceProfile(id="generic", name="IEEE 488.2")


def _bits(table: Any, where: str, width: int) -> BitNames:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected a table of bit = [name, description]")
    bits: BitNames = {}
    for key, value in table.items():
        if not str(key).isdigit() or not 0 <= int(key) < width:
            raise ValueError(f"{where}: {key!r} is not a bit number 0..{width - 1}")
        if (not isinstance(value, list) or not 1 <= len(value) <= 2
                or not all(isinstance(v, str) for v in value)):
            raise ValueError(f"{where}.{key}: expected [name, description]")
        bits[int(key)] = (value[0], value[1] if len(value) > 1 else "")
    return bits


def _text(data: dict, key: str, where: str, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key} must be a string")
    return value


def parse_profile(text: str, profile_id: str) -> DeviceProfile:
    """A profile from its TOML text; raises ValueError saying what is wrong and where."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{profile_id}.toml: {exc}") from None
    where = f"{profile_id}.toml"
    idn = _text(data, "idn", where)
    try:
        pattern = re.compile(idn, re.IGNORECASE) if idn else None
    except re.error as exc:
        raise ValueError(f"{where}: idn is not a regular expression: {exc}") from None
    stb = dict(ieee488.STB_BITS)
    stb.update(_bits(data.get("stb", {}), f"{where} [stb]", 8))
    esr = dict(ieee488.ESR_BITS)
    esr.update(_bits(data.get("esr", {}), f"{where} [esr]", 8))
    registers = []
    for n, reg in enumerate(data.get("registers", [])):
        at = f"{where} [[registers]] #{n + 1}"
        if not isinstance(reg, dict):
            raise ValueError(f"{at}: expected a table")
        name, query = _text(reg, "name", at), _text(reg, "query", at)
        width = reg.get("width", 8)
        if not name or not query or not isinstance(width, int) or not 1 <= width <= 64:
            raise ValueError(f"{at}: needs a name, a query and a width of 1..64 bits")
        groups = []
        for group_name, span in reg.get("groups", {}).items():
            if (not isinstance(span, list) or len(span) != 2 or not all(isinstance(b, int) for b in span)
                    or not 0 <= span[0] <= span[1] < width):
                raise ValueError(f"{at}: group {group_name!r} must be [first bit, last bit]")
            groups.append(BitGroup(group_name, span[0], span[1]))
        registers.append(DeviceRegister(name, query, width, _bits(reg.get("bits", {}), f"{at} bits", width),
                                        _text(reg, "clears", at), tuple(groups)))
    return DeviceProfile(
        id=profile_id,
        name=_text(data, "name", where, profile_id),
        idn=pattern,
        stb_bits=stb,
        esr_bits=esr,
        ese_query=_text(data, "ese_query", where, "*ESE?"),
        sre_command=_text(data, "sre_command", where, "*SRE"),
        sre_query=_text(data, "sre_query", where, "*SRE?"),
        registers=tuple(registers),
        panel=_text(data, "panel", where),
        no_waveform=_text(data, "no_waveform", where),
    )


@lru_cache(maxsize=1)
def shipped_profiles() -> tuple[DeviceProfile, ...]:
    """The profiles in ``app/ui/profiles``, in file-name order."""
    folder = resources.files("app.ui").joinpath("profiles")
    found = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            found.append(parse_profile(item.read_text(encoding="utf-8"), item.name[: -len(".toml")]))
    return tuple(found)


def profile_for_idn(idn: str | None, profiles: tuple[DeviceProfile, ...] | None = None) -> DeviceProfile:
    """The first profile whose ``idn`` pattern matches, else :data:`GENERIC`."""
    for profile in shipped_profiles() if profiles is None else profiles:
        if profile.matches(idn):
            return profile
    return GENERIC
