"""Siglent, Thorlabs, Tektronix, B&K Precision and ADCMT: each entry cures its virtual twin,
and without quirks the failure appears as users reported it."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import usb.core
import usb.util

from app.usbtmc import DeviceNotFoundError, ProtocolError, TmcTimeoutError, list_resources, parse_resource
from app.usbtmc.quirks import DEFAULTS


# --- Siglent SDS1000X-E (F4EC:EE38) ---------------------------------------------------------

def test_sds1000x_e_with_its_entry(quirky):
    bus = quirky("siglent-sds1000x-e")
    device = bus.device("siglent-sds1000x-e")
    device.waveform = bytes(range(200))
    with bus.open("siglent-sds1000x-e") as scope:
        assert scope.query("*IDN?") == device.idn  # no trailing NULs
        assert scope.query_block(":WAV:DATA?") == device.waveform  # read 48 bytes at a time
        assert scope.query("*IDN?") == device.idn


def test_sds1000x_e_without_quirks_hangs_in_the_open_clear(quirky):
    bus = quirky("siglent-sds1000x-e")
    with pytest.raises(TmcTimeoutError, match="clear did not finish"):
        bus.open("siglent-sds1000x-e", use_quirks=False)


def test_sds1000x_e_each_flag_is_needed(quirky):
    bus = quirky("siglent-sds1000x-e")
    device = bus.device("siglent-sds1000x-e")
    with bus.open("siglent-sds1000x-e") as scope:
        cured = scope.quirks
        # TransferSize counts the padding: the NUL alignment bytes end up in the reply.
        scope.quirks = dataclasses.replace(cured, transfer_size_includes_padding=False)
        scope.write("*OPC?")
        assert scope.read_raw() == b"1\n\x00\x00"
        # A request for more than 48 bytes is never answered (scopehal #652: "mostly don't work").
        scope.quirks = dataclasses.replace(cured, max_in_transfer_bytes=DEFAULTS.max_in_transfer_bytes)
        with pytest.raises(TmcTimeoutError):
            scope.query("*IDN?")
        scope.quirks = cured
        assert scope.query("*IDN?") == device.idn  # the abort left the session usable


# --- Siglent SDG1000X (F4EC:1103) and the clone without a serial number --------------------

def test_sdg1000x_transfer_size_and_eom(quirky):
    bus = quirky("siglent-sdg1000x")
    device = bus.device("siglent-sdg1000x")
    assert len(device.idn) + 1 > 52  # longer than the 52 bytes TransferSize announces
    with bus.open("siglent-sdg1000x") as generator:
        assert generator.query("*IDN?") == device.idn
        assert generator.query("*IDN?") == device.idn
    with bus.open("siglent-sdg1000x", use_quirks=False) as generator:
        # pyvisa-py #465: 52 bytes announced, EOM clear; the rest of the reply comes as a bare
        # transfer with no header, which the session refuses, aborts and recovers from.
        with pytest.raises(ProtocolError, match="shorter than the 12-byte USBTMC header") as caught:
            generator.query("*IDN?")
        assert caught.value.usable is True


def test_a_device_with_an_empty_serial_number_still_opens(quirky):
    bus = quirky("siglent-clone")
    raw = usb.core.find(backend=bus.backend, idVendor=0xF4ED, idProduct=0xEE3A)
    assert raw.iSerialNumber and usb.util.get_string(raw, raw.iSerialNumber) == ""
    usb.util.dispose_resources(raw)
    (info,) = list_resources(bus.backend, db=bus.db)
    # pyvisa-py #280 could not parse USB0::62701::60986::::0::INSTR; here the empty field is valid.
    assert info.resource == "USB0::0xF4ED::0xEE3A::::INSTR" and info.serial == ""
    assert parse_resource(info.resource).serial == ""
    with bus.open("siglent-clone", use_quirks=False) as generator:
        assert generator.query("*IDN?").startswith("Siglent Technologies,SDG1032X,,")


# --- Thorlabs PM100D (1313:8078) and PM101U (1313:8076) -------------------------------------

def test_pm100d_clear_resets_bulk_in(quirky):
    bus = quirky("thorlabs-pm100d")
    with bus.open("thorlabs-pm100d") as meter:
        assert meter.query("MEAS:POW?") == "1.234000E-03"
        meter.clear()
        assert meter.query("*IDN?").startswith("Thorlabs,PM100D")
    with bus.open("thorlabs-pm100d", use_quirks=False) as meter:
        # The open's device clear left Bulk-IN out of step: the first reply is lost.
        with pytest.raises(TmcTimeoutError):
            meter.query("*IDN?")
        assert meter.query("*IDN?").startswith("Thorlabs,PM100D")


def test_pm101u_with_its_entry(quirky):
    bus = quirky("thorlabs-pm101u")
    device = bus.device("thorlabs-pm101u")
    with bus.open("thorlabs-pm101u") as meter:
        assert meter.query("*IDN?").startswith("Thorlabs,PM101U")
        meter.clear()  # without the drain read the clear completes
        assert meter.query("MEAS:POW?") == "1.234000E-03"
        assert device.ren
    assert not device.ren  # REN released on close: the front panel is the user's again


def test_pm101u_without_quirks(quirky):
    bus = quirky("thorlabs-pm101u")
    with pytest.raises(TmcTimeoutError, match="clear did not finish"):
        bus.open("thorlabs-pm101u", use_quirks=False)  # the drain read hangs the clear
    bus.bus.unplug(bus.device("thorlabs-pm101u"))
    bus.bus.plug(bus.device("thorlabs-pm101u"))
    quirks = dataclasses.replace(bus.db.lookup(0x1313, 0x8076), remote_on_open=False)
    with bus.open("thorlabs-pm101u", quirks=quirks) as meter:
        with pytest.raises(TmcTimeoutError):  # pyvisa-py PR #241: nothing without REN
            meter.query("*IDN?")


# --- Tektronix FCA3000 (0699:3000) ------------------------------------------------------------

def test_fca3000_recovers_from_a_read_timeout_through_the_drain(quirky):
    bus = quirky("tektronix-fca3000")
    with bus.open("tektronix-fca3000") as counter:
        with pytest.raises(TmcTimeoutError, match="aborted Bulk-IN transfer"):
            counter.query("MEAS:FREQ?")  # the 1 s gate outlasts the 300 ms timeout
        assert counter.query("*IDN?").startswith("TEKTRONIX, FCA3000")


def test_fca3000_with_python_usbtmc_never_recovers(quirky, monkeypatch):
    """python-usbtmc #49: its ABORT_BULK_IN skipped the drain, and 'all subsequent commands
    also time out'. python-usbtmc 0.8 still skips it."""
    usbtmc = pytest.importorskip("usbtmc")
    bus = quirky("tektronix-fca3000")
    monkeypatch.setattr(usb.core, "find", functools.partial(usb.core.find, backend=bus.backend))
    counter = usbtmc.Instrument(0x0699, 0x3000)
    counter.timeout = 0.3
    try:
        assert counter.ask("*IDN?").startswith("TEKTRONIX")
        for command in ("MEAS:FREQ?", "*IDN?", "*IDN?", "*IDN?"):
            with pytest.raises(usb.core.USBTimeoutError):
                counter.ask(command)
    finally:
        counter.close()


def test_fca3000_entry_pins_the_drain(quirky):
    bus = quirky("tektronix-fca3000")
    with bus.open("tektronix-fca3000") as counter:
        assert [(a.flag, a.value) for a in counter.quirks.applied] == [("abort_in_drain", True)]
        counter.quirks = dataclasses.replace(counter.quirks, abort_in_drain=False)
        with pytest.raises(TmcTimeoutError):
            counter.query("MEAS:FREQ?")
        for _ in range(2):
            with pytest.raises(TmcTimeoutError):
                counter.query("*IDN?")  # stuck, as the reporters found it
        counter.quirks = dataclasses.replace(counter.quirks, abort_in_drain=True)
        counter.clear()  # a device clear brings it back
        assert counter.query("*IDN?").startswith("TEKTRONIX")


# --- B&K Precision 8600 (2EC7:8800) -----------------------------------------------------------

def test_bk8600_needs_remote(quirky):
    bus = quirky("bk-8600")
    device = bus.device("bk-8600")
    with bus.open("bk-8600") as load:
        assert load.query("*IDN?") == device.idn
        assert device.remote_state.is_remote
    assert not device.ren and not device.remote_state.is_remote
    with bus.open("bk-8600", use_quirks=False) as load:
        with pytest.raises(TmcTimeoutError):  # python-usbtmc PR #53: nothing happens before remote
            load.query("*IDN?")
    assert device.messages_ignored == 1


# --- Advantest / ADCMT (1334) -----------------------------------------------------------------

def test_adcmt_is_listed_and_answers_with_its_lock(quirky):
    bus = quirky("adcmt")
    device = bus.device("adcmt")
    (info,) = list_resources(bus.backend, db=bus.db)
    assert info.protocol == "USBTMC" and [a.flag for a in info.quirks][0] == "force_usbtmc"
    with bus.open("adcmt") as meter:
        assert meter.query("*IDN?") == "ADCMT,7351E,000000001,A01"
        assert meter.query("READ?") == device.latest_measurement
        assert not device.locked
    with pytest.raises(DeviceNotFoundError, match="no USBTMC interface"):
        bus.open("adcmt", use_quirks=False)
    assert list_resources(bus.backend, db=bus.db.__class__()) == []  # pyvisa-py does not list it either


def test_adcmt_each_flag_is_needed(quirky):
    bus = quirky("adcmt")
    device = bus.device("adcmt")
    with bus.open("adcmt") as meter:
        cured = meter.quirks
        meter.quirks = dataclasses.replace(cured, vendor_lock_around_query=False)
        assert meter.query("*IDN?") == device.latest_measurement  # not the identity: unlocked
        meter.quirks = dataclasses.replace(cured, no_eom=False)
        with pytest.raises(TmcTimeoutError):
            meter.query("*IDN?")  # waits for an EOM that never comes
        meter.quirks = dataclasses.replace(cured, max_in_transfer_bytes=64)
        with pytest.raises(TmcTimeoutError):
            meter.query("*IDN?")  # a 64-byte request is never answered
        meter.quirks = cured
        assert meter.query("*IDN?") == "ADCMT,7351E,000000001,A01"


def test_protocol_errors_name_the_problem(quirky):
    bus = quirky("rigol-dho800")
    with bus.open("rigol-dho800", use_quirks=False) as scope:
        scope.query("*IDN?")
        with pytest.raises(ProtocolError, match="bTag"):
            scope.query("*IDN?")
