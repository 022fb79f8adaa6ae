"""The shipped database: valid, sourced, documented, and every entry has a virtual twin."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from app.sim.quirky import CATALOGUE
from app.usbtmc.errors import QuirksFileError
from app.usbtmc.quirks import DEFAULTS, Quirks, parse_database, shipped_entries

DOC = (Path(__file__).resolve().parents[2] / "docs" / "quirks.md").read_text(encoding="utf-8")


def test_every_shipped_entry_names_its_public_source():
    for entry in shipped_entries():
        assert entry.reason.endswith(".") and len(entry.reason) > 40, entry.name
        assert any(name in entry.source for name in (
            "python-usbtmc", "pyvisa-py", "libsigrok", "Linux usbtmc", "sidneycadot", "scopehal", "gotmc")), entry.name


def test_every_shipped_entry_has_a_virtual_twin():
    twins = {(m.vid, m.pid) for m in CATALOGUE}
    for entry in shipped_entries():
        if entry.pids is None:
            assert any(vid == entry.vid for vid, _ in twins), entry.name
        else:
            assert any((entry.vid, pid) in twins for pid in entry.pids), entry.name


def test_every_flag_is_documented_with_its_default():
    for flag in fields(Quirks):
        if flag.name == "applied":
            continue
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{flag.name}` |")), None)
        assert row is not None, f"docs/quirks.md does not document {flag.name}"
        default = getattr(DEFAULTS, flag.name)
        shown = row.split("|")[2].strip()
        expected = {True: "true", False: "false", (): "none"}.get(default, str(default)) \
            if not isinstance(default, int) or isinstance(default, bool) else str(default)
        assert shown == expected, (flag.name, shown, expected)


def test_every_shipped_entry_is_in_the_documented_table():
    for entry in shipped_entries():
        assert f"| {entry.name} |" in DOC, entry.name


BASE = """
[[quirk]]
name = "x"
vid = 0x1234
reason = "r"
source = "s"
[quirk.flags]
"""


@pytest.mark.parametrize("flags, message", [
    ("no_initiate_clear = 1", "must be true or false"),
    ("transfer_size_cap = -1", "whole number from 0 to 4,294,967,295"),
    ("mode_switch_target_pid = 0x12345", "whole number from 0 to 65,535"),
    ("mode_switch_requests = []", "non-empty list"),
    ("mode_switch_requests = [[0x80, 6, 0x0300, 0, 255]]", "not a vendor request"),
    ("mode_switch_requests = [[0x21, 9, 0, 0, [1]]]", "not a vendor request"),
    ("mode_switch_requests = [[0xC0, 0x0C, 0, 0x047E, [1]]]", "IN request ends with wLength"),
    ("mode_switch_requests = [[0x40, 0x0C, 0, 0x0475, 8]]", "OUT request ends with its data"),
    ("mode_switch_requests = [[0x40, 0x0C, 0, 0x0475, [256]]]", "OUT request ends with its data"),
    ("abort_in_drian = true", "unknown flag 'abort_in_drian'"),
])
def test_new_flags_are_validated_with_the_line(flags, message):
    with pytest.raises(QuirksFileError, match=rf"x\.toml:8: .*{message}"):
        parse_database(BASE + flags + "\n", "x.toml")


def test_vendor_requests_round_trip_through_toml():
    (entry,) = [e for e in shipped_entries() if e.pids == (0x2818,)]
    requests = entry.flags["mode_switch_requests"]
    assert [r.index for r in requests] == [0x047E, 0x047D, 0x0484, 0x0472, 0x047A, 0x0475]
    assert requests[-1].data == bytes([0, 0, 1, 1, 0, 0, 8, 1]) and not requests[-1].is_in
    text = BASE + "mode_switch_requests = [" + ", ".join(r.as_toml() for r in requests) + "]\n"
    (again,) = parse_database(text)
    assert again.flags["mode_switch_requests"] == requests
