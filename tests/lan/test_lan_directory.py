"""The LAN directory the browser lists: which connections are one instrument, and the virtual
LAN instruments' identity (docs/lan.md)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.lan.directory import LanDirectory, known_serial, list_lan, same_instrument
from app.sim.lan import serve


def conn(maker="Keysight Technologies", model="33622A", serial="MY57800123"):
    return SimpleNamespace(manufacturer=maker, product=model, serial=serial)


@pytest.mark.parametrize("serial", ["", " ", "0", "000000", "N/A", "none", "Unknown", "SN"])
def test_placeholder_serials_name_no_instrument(serial):
    assert known_serial(serial) == ""
    assert not same_instrument(conn(serial=serial), conn(serial=serial))


@pytest.mark.parametrize("a, b, same", [
    (conn(), conn(), True),
    # A USB descriptor often says more than *IDN?, in other letter case.
    (conn(maker="KEYSIGHT TECHNOLOGIES", model="33622A Waveform Generator"), conn(), True),
    (conn(serial="my57800123"), conn(), True),
    (conn(serial="MY57800124"), conn(), False),
    (conn(model="33522B"), conn(), False),
    (conn(maker="Rigol Technologies"), conn(), False),
    (conn(maker=""), conn(), False),  # an empty maker confirms nothing
])
def test_same_instrument_needs_the_serial_and_agreeing_maker_and_model(a, b, same):
    assert same_instrument(a, b) is same and same_instrument(b, a) is same


def test_virtual_lan_instruments_carry_the_served_models_serial_when_idn_has_none():
    directory = LanDirectory(start_virtual=serve)
    try:
        infos = list_lan(directory, probe=True)
    finally:
        directory.close()
    by_model = {}
    for info in infos:
        assert info.problem is None
        by_model.setdefault(info.product, set()).add((info.serial, info.serial_from))
    # The SAM7-EK firmware answers *IDN? with serial 0 (IEEE 488.2: none); the model served is
    # the virtual bus's SAM7, whose USB descriptor says SAM7-0001.
    ((serial, source),) = by_model["SAM7-EK"]
    assert serial == "SAM7-0001" and "*IDN? gives 0" in source
    assert by_model["Virtual Loopback"] == {("LOOP-0001", "*IDN?")}


def test_an_added_instrument_with_no_serial_keeps_what_idn_says(lan):
    hislip = next(r.resource for r in lan.resources if r.protocol == "HiSLIP" and "SAM7" in r.label)
    directory = LanDirectory(lambda: [hislip])  # added by hand: the directory serves nothing itself
    (info,) = list_lan(directory, probe=True)
    assert (info.serial, info.serial_from) == ("0", "*IDN?")
    assert info.idn.startswith("XYZ Company Ltd, SAM7-EK, 0")
