"""Device profiles: what the status view and demo panels know about an instrument (no Qt).

A profile is an ``[[instrument]]`` of the instrument table (:mod:`app.instruments`,
docs/instruments.md) with a ``status``, ``panel`` or ``upload.refuse`` section, matched to an
instrument by a regular expression on its ``*IDN?`` answer. It names the status byte's and
the event status register's bits where the device gives them its own meaning, says how the
enable registers are read back, lists device-specific registers (query, width, bit names)
and picks a demo panel with its limits and demo script. Instruments no profile matches get
:data:`GENERIC`: the IEEE 488.2 names and the ``*ESE?``/``*SRE?`` queries every 488.2 device has.
"""

from __future__ import annotations

from app.instruments import (
    GENERIC,
    UNUSED,
    BitGroup,
    BitNames,
    DemoStep,
    DeviceProfile,
    DeviceRegister,
    shipped_table,
)


def shipped_profiles() -> tuple[DeviceProfile, ...]:
    """The profiles of the shipped instrument table, in table order."""
    return shipped_table().profiles


def profile_for_idn(idn: str | None, profiles: tuple[DeviceProfile, ...] | None = None) -> DeviceProfile:
    """The first profile whose ``idn`` pattern matches, else :data:`GENERIC`."""
    for profile in shipped_profiles() if profiles is None else profiles:
        if profile.matches(idn):
            return profile
    return GENERIC


__all__ = ["GENERIC", "UNUSED", "BitGroup", "BitNames", "DemoStep", "DeviceProfile", "DeviceRegister", "profile_for_idn",
           "shipped_profiles"]
