"""Rigol (and the rebadged Agilent DSO1000): each entry cures its virtual twin, and without
quirks the failure appears as users reported it."""

from __future__ import annotations

import dataclasses
import time

import pytest
import usb.core
import usb.util

from app.usbtmc import (
    BlockFormatError,
    Instrument,
    NotSupportedError,
    ProtocolError,
    TmcTimeoutError,
    list_resources,
    open_interface,
)
from app.usbtmc.quirks import DEFAULTS

MIB = 1 << 20


# --- DS1000 (1AB1:0588): one header per reply, whatever was asked for -----------------

def test_ds1000_long_memory_block_needs_the_header_only_once_quirk(quirky):
    bus = quirky("rigol-ds1000")
    # The DS1000E long memory holds 1M points: the block is bigger than a 1 MiB read request.
    bus.device("rigol-ds1000").waveform = bytes(i * 7 % 251 for i in range(MIB))
    with bus.open("rigol-ds1000") as scope:
        assert scope.quirks.header_in_first_transfer_only
        assert scope.query_block(":WAV:DATA?") == bus.device("rigol-ds1000").waveform
        assert scope.query("*IDN?").startswith("Rigol Technologies,DS1102D")
    with bus.open("rigol-ds1000", use_quirks=False) as scope:
        # The Linux driver reports the same: "Device wants to return more data than requested".
        with pytest.raises(ProtocolError, match="announced 1048586 bytes after 1048576 were requested"):
            scope.query_block(":WAV:DATA?")


def test_ds1000_restarts_the_reply_on_a_repeated_request(quirky):
    bus = quirky("rigol-ds1000")
    interface = open_interface(bus.resource("rigol-ds1000"), bus.backend, bus.db)
    with Instrument(interface, quirks=DEFAULTS, timeout_ms=300) as scope:
        transport = interface.transport
        scope.write("*IDN?")
        # Ask for 8 bytes: the scope sends the whole reply anyway, one header, EOM set.
        transport.bulk_out(bytes([2, 1, 0xFE, 0, 8, 0, 0, 0, 0, 0, 0, 0]), 300)
        first = transport.bulk_in(64, 300)
        reply_bytes = len(bus.device("rigol-ds1000").idn) + 1
        assert first[:3] == bytes([2, 1, 0xFE]) and first[8] & 1 and int.from_bytes(first[4:8], "little") == reply_bytes
        # A second request restarts the reply from its header (python-usbtmc PR #18).
        transport.bulk_out(bytes([2, 2, 0xFD, 0, 8, 0, 0, 0, 0, 0, 0, 0]), 300)
        again = transport.bulk_in(128, 300)
        assert again[:3] == bytes([2, 2, 0xFD]) and again[12:].startswith(b"Rigol Technologies,DS1102D")


def test_ds1000_rl1_is_refused_before_the_device_is_asked(quirky):
    bus = quirky("rigol-ds1000")
    with bus.open("rigol-ds1000") as scope:
        assert scope.capabilities.rl1
        with pytest.raises(NotSupportedError, match="ren_control_broken"):
            scope.remote()
    with bus.open("rigol-ds1000", use_quirks=False) as scope:
        with pytest.raises(NotSupportedError, match="refused REN_CONTROL"):
            scope.remote()  # what libsigrok met: the advertised request is not implemented


def test_agilent_dso1000_is_a_rebadged_ds1000_without_rl1(quirky):
    bus = quirky("agilent-dso1000")
    with bus.open("agilent-dso1000") as scope:
        assert [a.flag for a in scope.quirks.applied] == ["ren_control_broken"]
        with pytest.raises(NotSupportedError, match="ren_control_broken"):
            scope.lockout()
        assert scope.query("*IDN?").startswith("Agilent Technologies,DSO1002A")


def test_ds1000_string_descriptors_lose_their_nuls(quirky):
    bus = quirky("rigol-ds1000")
    raw = usb.core.find(backend=bus.backend, idVendor=0x1AB1, idProduct=0x0588)
    assert usb.util.get_string(raw, raw.iSerialNumber).endswith("\x00")
    usb.util.dispose_resources(raw)
    (info,) = list_resources(bus.backend, db=bus.db)
    assert info.serial == "DS1EA000000001" and info.resource == "USB0::0x1AB1::0x0588::DS1EA000000001::INSTR"


# --- DS1000Z (1AB1:04CE) -------------------------------------------------------------------

@pytest.mark.parametrize("key", ["rigol-ds1000z", "rigol-ds1102z-e", "rigol-ds1000z-old"])
def test_ds1000z_hangs_on_initiate_clear(quirky, key):
    bus = quirky(key)
    with bus.open(key) as scope:
        assert not scope.quirks.clear_on_open and scope.quirks.no_initiate_clear
        assert "RIGOL TECHNOLOGIES" in scope.query("*IDN?")
        with pytest.raises(NotSupportedError, match="no_initiate_clear"):
            scope.clear()
    with pytest.raises(TmcTimeoutError, match="control request 5 timed out"):
        bus.open(key, use_quirks=False)  # python-usbtmc PR #62: "times out (and hangs)"
    if key == "rigol-ds1000z":
        with pytest.raises(TmcTimeoutError):
            bus.open(key)  # and it stays hung until it is replugged
    bus.bus.unplug(bus.device(key))
    bus.bus.plug(bus.device(key))
    with bus.open(key) as scope:
        assert "RIGOL TECHNOLOGIES" in scope.query("*IDN?")


def test_ds1000z_old_firmware_block_length_comes_from_the_block_header(quirky):
    bus = quirky("rigol-ds1000z-old")
    device = bus.device("rigol-ds1000z-old")
    device.waveform = bytes(range(256)) * 47  # 12032 bytes, far beyond the 500 TransferSize announces
    with bus.open("rigol-ds1000z-old") as scope:
        assert scope.quirks.block_length_from_block_header and scope.quirks.transfer_size_cap == 500
        assert scope.query_block(":WAV:DATA?") == device.waveform
        assert scope.query("*IDN?").endswith("00.04.02.SP4")
        # The capped TransferSize alone (no block header to go by) reads the whole stream too.
        scope.quirks = dataclasses.replace(scope.quirks, block_length_from_block_header=False)
        assert scope.query_block(":WAV:DATA?") == device.waveform
    # Matched without the firmware version (the flags every DS1000Z gets), the block is cut
    # at the 500 bytes TransferSize announces, and the rest arrives as garbage later.
    base = bus.db.lookup(0x1AB1, 0x04CE)
    with bus.open("rigol-ds1000z-old", quirks=base) as scope:
        with pytest.raises(BlockFormatError):
            scope.query_block(":WAV:DATA?")
        with pytest.raises(ProtocolError):
            scope.query("*IDN?")


def test_ds1000z_current_firmware_must_not_get_the_old_framing_quirks(quirky):
    bus = quirky("rigol-ds1000z")
    device = bus.device("rigol-ds1000z")
    device.waveform = bytes(i % 253 for i in range(1_200_000))  # python-usbtmc #23: :ACQ:MDEP 1200000
    with bus.open("rigol-ds1000z") as scope:
        assert not scope.quirks.header_in_first_transfer_only  # 00.04.04 is past the fix
        assert scope.query_block(":WAV:DATA?") == device.waveform
    # python-usbtmc #23: the Rigol quirk broke firmware 00.04.03.02.03 and later. Current
    # firmware answers a 1 MiB request with 1 MiB and waits for the next request, which the
    # single-request quirk never sends.
    old = bus.db.lookup(0x1AB1, 0x04CE, idn="RIGOL TECHNOLOGIES,DS1104Z,DS1ZA1,00.04.02.SP4")
    with bus.open("rigol-ds1000z", quirks=old) as scope:
        with pytest.raises(TmcTimeoutError):
            scope.query_block(":WAV:DATA?")


def test_ds1102z_e_sends_no_zero_length_packet(quirky):
    bus = quirky("rigol-ds1102z-e")
    with bus.open("rigol-ds1102z-e", timeout_ms=500) as scope:
        started = time.monotonic()
        idn = scope.query("*IDN?")
        assert time.monotonic() - started < 0.25
        assert (12 + len(idn) + 1 + 3) // 4 * 4 == 64  # its *IDN? transfer fills one 64-byte packet exactly
    # Without the entry (pyvisa-py #463 hung for good): reads are sized so that none waits for
    # a ZLP until the device has shown it sends them, and the session learns it omits them.
    with bus.open("rigol-ds1102z-e", timeout_ms=500) as scope:
        quirks = dataclasses.replace(scope.quirks, no_zlp=False)
    with bus.open("rigol-ds1102z-e", timeout_ms=500, quirks=quirks) as scope:
        started = time.monotonic()
        assert [scope.query("*IDN?") for _ in range(3)] == [idn] * 3
        assert time.monotonic() - started < 0.4
        (note,) = scope.take_notes()
        assert "omits the zero-length packet" in note
        assert scope.take_notes() == []


def test_no_zlp_costs_nothing_on_a_device_that_sends_zlps(quirky):
    bus = quirky("rigol-ds1000z")
    with bus.open("rigol-ds1000z") as scope:
        assert scope.quirks.no_zlp and bus.device("rigol-ds1000z").in_pipes[0x82].zlp
        for _ in range(3):
            assert scope.query("*IDN?").startswith("RIGOL TECHNOLOGIES,DS1104Z")


# --- DHO800 (1AB1:044D) ----------------------------------------------------------------------

def test_dho800_stale_btag(quirky):
    bus = quirky("rigol-dho800")
    with bus.open("rigol-dho800") as scope:
        assert [scope.query("*IDN?") for _ in range(3)] == ["RIGOL TECHNOLOGIES,DHO804,DHO8A000000001,00.01.04"] * 3
    with bus.open("rigol-dho800", use_quirks=False) as scope:
        scope.query("*IDN?")  # the first reply after configuration carries the right tag
        with pytest.raises(ProtocolError, match=r"echoes bTag \d+, the request used \d+"):
            scope.query("*IDN?")  # libsigrok PR #246: "bTag 2 instead of the expected 4"


# --- DP800 (1AB1:0E11) ------------------------------------------------------------------------

def test_dp800_needs_its_halts_cleared_on_close(quirky):
    bus = quirky("rigol-dp800")
    for _ in range(3):
        with bus.open("rigol-dp800") as supply:
            assert supply.query("*IDN?").startswith("RIGOL TECHNOLOGIES,DP832A")
    with bus.open("rigol-dp800", use_quirks=False) as supply:
        supply.query("*IDN?")
    with bus.open("rigol-dp800", use_quirks=False) as supply:
        # pyvisa-py #371 met "Pipe error" here. Without the quirk, the clear on open meets the
        # halted Bulk-IN, clears it (libusb's clear_halt, both toggles) and goes on.
        assert supply.query("*IDN?").startswith("RIGOL TECHNOLOGIES,DP832A")
