"""python-usbtmc (from PyPI), unchanged, talks to the virtual instruments.

python-usbtmc calls ``usb.core.find`` without a backend, so the test points that one
function at the virtual bus; everything else runs as it would against hardware.
"""

import functools

import pytest
import usb.core

usbtmc = pytest.importorskip("usbtmc")


@pytest.fixture
def on_virtual_bus(monkeypatch, backend):
    monkeypatch.setattr(usb.core, "find", functools.partial(usb.core.find, backend=backend))


@pytest.fixture
def counter(on_virtual_bus, sam7):
    instrument = usbtmc.Instrument(0x1209, 0x0001)
    instrument.timeout = 1.0
    yield instrument
    instrument.close()


def test_python_usbtmc_lists_and_opens_the_sam7(on_virtual_bus, sam7, loopback):
    found = usbtmc.list_devices()
    assert sorted((d.idVendor, d.idProduct) for d in found) == [(0x1209, 0x0001), (0x1209, 0x0002)]
    instrument = usbtmc.Instrument("USB0::0x1209::0x0001::SAM7-0001::INSTR")
    try:
        assert instrument.ask("*IDN?") == "XYZ Company Ltd, SAM7-EK, 0, v1.0.001"
        assert instrument.is_usb488() and instrument.support_pulse and not instrument.support_term_char
    finally:
        instrument.close()


def test_python_usbtmc_runs_the_counter(counter, sam7, clock):
    sam7.pulse_train(5, 3)
    clock.advance(1)
    assert counter.ask("COUNT:READ?") == "3"
    counter.write("PARAM:SET 11,-22")
    assert counter.ask("PARAM:ENQ?") == "11,-22"
    counter.write("COUNT:RESET")
    assert counter.ask("COUNT:READ?") == "0"
    assert counter.ask("*ESR?") == "#H80"
    counter.pulse()
    assert sam7.leds().ready


def test_python_usbtmc_reads_the_status_byte_on_interrupt_in(counter):
    counter.write("*IDN?")
    assert counter.read_stb() == 0x50  # MAV, and the SAM7's MSS
    assert counter.read().startswith("XYZ Company Ltd")
    assert counter.read_stb() == 0x00


def test_python_usbtmc_clears_the_device(counter, sam7):
    counter.write("*IDN?")
    counter.clear()
    assert not sam7.has_output() and not sam7.is_halted(0x01)
    assert counter.ask("BUSY?") == "NO"


def test_python_usbtmc_moves_a_large_block_through_the_loopback(on_virtual_bus, loopback):
    instrument = usbtmc.Instrument(0x1209, 0x0002)
    try:
        payload = bytes(range(256)) * 8192  # 2 MiB: python-usbtmc splits it into 1 MiB transfers
        header = b"#7" + str(len(payload)).encode()
        instrument.write_raw(b"MEM:DATA " + header + payload + b"\n")
        assert instrument.ask_raw(b"MEM:DATA?") == header + payload + b"\n"
    finally:
        instrument.close()
