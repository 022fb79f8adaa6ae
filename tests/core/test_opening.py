"""Opening a session: open_interface finds and claims, Instrument composes a session on what it
is given, and the interface is released whatever happens."""

from __future__ import annotations

import pytest

from app.protocol.ieee488 import StbBit
from app.sim.sam7 import Sam7Counter
from app.usbtmc import (
    DeviceNotFoundError,
    Instrument,
    OpenedInterface,
    TmcError,
    open_instrument,
    open_interface,
    parse_resource,
)
from app.usbtmc.errors import UsageError

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


def _claimed_by_someone(sim) -> bool:
    """Whether another session holds the SAM7's interface (the virtual bus refuses a second claim)."""
    try:
        open_interface(SAM7, sim).transport.close()
    except TmcError:
        return True
    return False


def test_a_session_runs_on_the_interface_it_is_given_and_releases_it(sim):
    interface = open_interface(SAM7, sim)
    assert isinstance(interface, OpenedInterface) and interface.usb488
    assert interface.resource == parse_resource(SAM7) and interface.info.product.startswith("SAM7")
    assert _claimed_by_someone(sim)
    with Instrument(interface, timeout_ms=500) as inst:
        assert inst.resource == interface.resource and inst.info.vid == 0x1209
        assert inst.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")
        assert inst.capabilities is not None and inst.capabilities.indicator_pulse
    assert not _claimed_by_someone(sim)


def test_open_instrument_and_the_constructor_open_by_name_alike(sim):
    with open_instrument(SAM7, sim, 500) as a:
        first = a.query("*IDN?")
    with Instrument(SAM7, backend=sim, timeout_ms=500) as b:
        assert b.query("*IDN?") == first
        assert b.resource == parse_resource(SAM7)


def test_a_session_that_cannot_start_releases_the_interface(sim):
    interface = open_interface(SAM7, sim)
    with pytest.raises(UsageError, match="already has its backend"):
        Instrument(interface, backend=sim)
    assert not _claimed_by_someone(sim)
    interface = open_interface(SAM7, sim)
    with pytest.raises(UsageError, match="at least 1 ms"):
        Instrument(interface, timeout_ms=0)
    assert not _claimed_by_someone(sim)


def test_a_bad_timeout_is_refused_before_the_device_is_claimed(sim, monkeypatch):
    import app.usbtmc.instrument as instrument

    monkeypatch.setattr(instrument, "open_interface", lambda *a: pytest.fail("the device was opened"))
    with pytest.raises(UsageError, match="at least 1 ms, got 0"):
        Instrument(SAM7, backend=sim, timeout_ms=0)


def test_open_interface_names_what_it_could_not_find(sim):
    with pytest.raises(DeviceNotFoundError, match="serial 'NOPE'"):
        open_interface("USB0::0x1209::0x0001::NOPE::INSTR", sim)


def test_a_session_opened_without_the_clear_reads_what_the_last_one_left(sim):
    with Instrument(SAM7, backend=sim, timeout_ms=500) as first:
        first.write("*IDN?")
    with Instrument(SAM7, backend=sim, timeout_ms=500, clear_on_open=False) as second:
        assert second.read().startswith("XYZ Company Ltd, SAM7-EK")
        second.write("*IDN?")
    assert sim.bus.find(kind=Sam7Counter).read_status_byte() & StbBit.MAV
    with Instrument(SAM7, backend=sim, timeout_ms=500) as third:  # the clear discards the reply
        assert not third.read_stb() & StbBit.MAV
