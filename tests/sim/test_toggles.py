"""Data toggles on the virtual bus (USB 2.0 8.6): which clear-halt resets which side, and what a mismatch costs.

Raw pyusb transfers over the in-process backend with the host's toggles modelled.
"""

from __future__ import annotations

import pytest
import usb.core
from support.rawtmc import RawTmc, open_pyusb

from app.sim import VirtualBus
from app.sim.device import HostToggles
from app.sim.pyusb_backend import VirtualBackend
from app.sim.scpi_device import VirtualLoopback

BULK_OUT, BULK_IN = 0x01, 0x82
IDN = "TMC Console,Virtual Loopback,LOOP-0001,1.0\n"


@pytest.fixture
def loop(clock):
    device = VirtualLoopback(clock=clock)
    bus = VirtualBus()
    bus.plug(device)
    device.test_bus = bus
    return device


def raw(loop, *, data_toggles: bool = True) -> RawTmc:
    return RawTmc(open_pyusb(VirtualBackend(loop.test_bus, data_toggles=data_toggles), 0x0002), timeout_ms=100)


def hand_built_clear(tmc: RawTmc, ep: int) -> None:
    # CLEAR_FEATURE(ENDPOINT_HALT) as a plain control request: USB 2.0 9.4.1, reaching the device only.
    tmc.dev.ctrl_transfer(0x02, 0x01, 0, ep, None)


def test_a_hand_built_clear_after_an_odd_number_of_packets_loses_the_next_command(loop):
    tmc = raw(loop)
    tmc.write("*CLS\n")  # one packet: host and device both expect DATA1 next
    hand_built_clear(tmc, BULK_OUT)  # the device goes back to DATA0, the host does not
    tmc.write("*IDN?\n")  # acknowledged, then dropped by the device as a retransmission
    assert loop.executed == [b"*CLS\n"]
    assert loop.toggle_drops == 1
    assert tmc.query("*IDN?") == IDN  # one packet lost, the toggles agree again


def test_a_hand_built_clear_after_an_even_number_of_packets_loses_nothing(loop):
    tmc = raw(loop)
    tmc.write("*CLS\n")
    tmc.write("*CLS\n")  # two packets: DATA0 again on both sides
    hand_built_clear(tmc, BULK_OUT)
    assert tmc.query("*IDN?") == IDN and loop.toggle_drops == 0


def test_libusbs_clear_halt_resets_both_sides(loop):
    tmc = raw(loop)
    tmc.write("*CLS\n")
    tmc.clear_halt(BULK_OUT)  # pyusb Device.clear_halt -> backend.clear_halt, as libusb_clear_halt
    assert tmc.query("*IDN?") == IDN and loop.toggle_drops == 0


@pytest.mark.parametrize("reset", ["set_configuration", "set_interface"])
def test_set_configuration_and_set_interface_reset_both_sides(loop, reset):
    tmc = raw(loop)
    tmc.write("*CLS\n")
    if reset == "set_configuration":
        usb.util.release_interface(tmc.dev, 0)
        tmc.dev.set_configuration(1)
        usb.util.claim_interface(tmc.dev, 0)
    else:
        tmc.dev.set_interface_altsetting(0, 0)
    assert tmc.query("*IDN?") == IDN and loop.toggle_drops == 0


def test_a_hand_built_clear_on_bulk_in_loses_the_first_packet_of_the_next_reply(loop):
    tmc = raw(loop)
    assert tmc.query("*IDN?") == IDN  # one Bulk-IN packet: both expect DATA1 next
    hand_built_clear(tmc, BULK_IN)
    tmc.write("*IDN?\n")
    tmc.request(1024)
    with pytest.raises(usb.core.USBTimeoutError):
        tmc.dev.read(BULK_IN, 1024, timeout=50)  # the reply's only packet was discarded by the host
    assert loop.toggle_drops == 1


def test_without_the_model_nothing_is_lost(loop):
    tmc = raw(loop, data_toggles=False)
    tmc.write("*CLS\n")
    hand_built_clear(tmc, BULK_OUT)
    assert tmc.query("*IDN?") == IDN and loop.toggle_drops == 0


def test_a_multi_packet_transfer_loses_only_its_first_packet(loop):
    tmc = raw(loop)
    tmc.write("*CLS\n")
    hand_built_clear(tmc, BULK_OUT)
    # 12-byte header + 1000 bytes: the header and the first 500 bytes are in the lost packet, the
    # device takes the rest of the transfer as the start of a new one and refuses it.
    with pytest.raises(usb.core.USBError):
        tmc.write(b"MEM:DATA #41000" + b"q" * 985)
    assert loop.toggle_drops == 1
    assert loop.violations and "refused" in loop.violations[0]


def test_host_toggles_reset():
    toggles = HostToggles()
    toggles.set(1, 1)
    toggles.set(0x82, 1)
    toggles.reset((1,))
    assert (toggles.get(1), toggles.get(0x82)) == (0, 1)
    toggles.reset()
    assert toggles.get(0x82) == 0
