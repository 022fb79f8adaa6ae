"""The protocol core against the virtual SAM7 counter: every control request, the command set
and the error model, over the in-process virtual bus."""

import re

import pytest

from app.sim.clock import ManualClock
from app.usbtmc import Instrument, NotSupportedError, TmcTimeoutError, list_resources
from app.usbtmc.errors import DeviceGoneError, DeviceNotFoundError, ResourceError

IDN = re.compile(r"^XYZ Company Ltd, SAM7-EK, 0, v\d\.\d\.\d{3}$")


def esr(inst) -> int:
    text = inst.query("*ESR?")
    assert re.fullmatch(r"#H[0-9A-F]{2}", text), text
    return int(text[2:], 16)


def test_discovery_describes_the_sam7(sim):
    infos = [i for i in list_resources(sim) if i.pid == 0x0001]
    assert len(infos) == 1
    info = infos[0]
    assert info.resource.startswith("USB0::0x1209::0x0001::") and info.resource.endswith("::INSTR")
    assert info.protocol == "USB488" and info.speed.startswith("full")
    assert info.manufacturer == "XYZ Company Ltd" and "SAM7" in info.product
    kinds = sorted((e.kind, e.direction, e.max_packet_bytes) for e in info.endpoints)
    assert ("bulk", "in", 64) in kinds and ("bulk", "out", 64) in kinds and ("interrupt", "in", 8) in kinds
    caps = info.capabilities
    assert caps is not None and caps.is_usb488 and caps.indicator_pulse and caps.sr1 and caps.ren_control
    assert info.problem is None and info.quirks == ()


def test_idn_and_power_on_status(sam7):
    assert IDN.match(sam7.query("*IDN?"))
    assert esr(sam7) & 0x80  # PON after power-on
    assert esr(sam7) == 0  # *ESR? clears the register


@pytest.fixture
def clocked(sim):
    """A SAM7 on a manual clock (its own serial), so time-dependent behaviour is exact."""
    from app.sim.sam7 import Sam7Counter

    clock = ManualClock()
    device = Sam7Counter(clock=clock, serial="CLOCKED-1")
    sim.bus.plug(device)
    with Instrument("USB0::0x1209::0x0001::CLOCKED-1::INSTR", backend=sim, timeout_ms=300) as inst:
        yield inst, device, clock


def test_counter_counts_debounced_sw1_hits_and_resets(clocked):
    inst, device, clock = clocked
    assert inst.query("COUNT:READ?") == "0"
    device.press_sw1(hold_s=0.05)
    clock.advance(0.1)
    device.press_sw1(hold_s=0.02)  # shorter than the 30 ms glitch filter: ignored
    clock.advance(0.1)
    device.press_sw1(hold_s=0.05)
    clock.advance(0.1)
    assert inst.query("COUNT:READ?") == "2"
    inst.write("COUNT:RESET")
    assert inst.query("COUNT:READ?") == "0"


def test_counter_saturates_at_30000(clocked):
    inst, device, clock = clocked
    end = device.pulse_train(rate_hz=10, count=30_002, duty=0.5)
    clock.advance(end - clock.now() + 0.1)
    assert inst.query("COUNT:READ?") == "30000"
    assert device.count_overflow
    inst.write("COUNT:RESET")
    assert inst.query("COUNT:READ?") == "0" and not device.count_overflow


def test_indicator_param_busy_and_debug_flags(sam7):
    sam7.write("INDICATOR 1")
    assert sam7.query("INDICATOR?") == "ON"
    sam7.write("INDICATOR 0")
    assert sam7.query("INDICATOR?") == "OFF"
    sam7.write("PARAM:SET -10000,10000")
    assert sam7.query("PARAM:ENQ?").replace(" ", "") == "-10000,10000"
    assert sam7.query("BUSY?") in ("YES", "NO")
    assert re.fullmatch(r"#H[0-9A-F]{8}", sam7.query("DEBUG:FLAGS?"))


def test_exe_for_out_of_range_parameter_leaves_values(sam7):
    esr(sam7)
    sam7.write("PARAM:SET 1,2")
    sam7.write("PARAM:SET 10001,0")
    assert esr(sam7) & 0x10  # EXE
    assert sam7.query("PARAM:ENQ?").replace(" ", "") == "1,2"


def test_cme_query_gets_no_answer_and_the_timeout_is_recovered(sam7):
    esr(sam7)
    with pytest.raises(TmcTimeoutError) as info:
        sam7.query("NO:SUCH:QUERY?")
    assert "usable" in info.value.recovery and "Bulk-IN" in info.value.recovery
    assert esr(sam7) & 0x20  # CME
    assert IDN.match(sam7.query("*IDN?"))  # the next query works without reopening


def test_wrong_parameter_count_is_a_command_error(sam7):
    esr(sam7)
    sam7.write("PARAM:SET 1")
    assert esr(sam7) & 0x20


def test_query_error_when_reading_without_a_query(sam7):
    esr(sam7)
    with pytest.raises(TmcTimeoutError):
        sam7.read()
    assert esr(sam7) & 0x04  # QYE


def test_unread_response_discarded_by_a_new_command(sam7):
    esr(sam7)
    sam7.write("*IDN?")
    sam7.write("INDICATOR 1")
    assert esr(sam7) & 0x04  # QYE: the *IDN? answer was never read


def test_command_buffer_overflow_is_dde(sam7):
    esr(sam7)
    sam7.write("PARAM:SET " + "1" * 2000 + ",1")
    assert esr(sam7) & 0x08  # DDE
    assert IDN.match(sam7.query("*IDN?"))


def test_read_stb_via_interrupt_in_does_not_touch_the_output_queue(sam7):
    sam7.write("*IDN?")
    stb = sam7.read_stb()
    assert stb & 0x10  # MAV: the reply waits in the output queue
    assert IDN.match(sam7.read())
    assert not sam7.read_stb() & 0x10


def test_srq_from_an_enabled_event(sam7):
    esr(sam7)
    sam7.write("*ESE 32")  # CME
    sam7.write("*SRE 32")  # ESB
    assert sam7.poll_srq() == []
    sam7.write("BOGUS")
    stb = sam7.wait_srq(1000)
    assert stb & 0x40 and stb & 0x20  # RQS and ESB
    esr(sam7)


def test_indicator_pulse_toggles_the_ready_led(sim):
    from app.sim.sam7 import Sam7Counter

    clock = ManualClock()
    device = Sam7Counter(clock=clock, serial="PULSE-1")
    sim.bus.plug(device)
    with Instrument("USB0::0x1209::0x0001::PULSE-1::INSTR", backend=sim, timeout_ms=300) as inst:
        assert device.leds().ready is False
        inst.indicator_pulse()
        assert device.leds().ready is True
        clock.advance(0.499)
        assert device.leds().ready is True
        clock.advance(0.002)
        assert device.leds().ready is False


def test_remote_local_lockout_drive_the_remote_led(sam7, sam7_device):
    sam7.remote()
    sam7.write("*CLS")  # a message while REN is asserted takes the device to remote
    assert sam7_device.leds().remote
    sam7.lockout()
    sam7.local()
    assert not sam7_device.leds().remote
    assert esr(sam7) & 0x02  # RTL: returned to local
    sam7.ren(False)


def test_trigger_refused_when_capabilities_say_no(sam7):
    assert not sam7.capabilities.trigger
    with pytest.raises(NotSupportedError, match="TRIGGER"):
        sam7.trigger()


def test_device_clear_discards_a_pending_response(sam7):
    sam7.write("*IDN?")
    sam7.clear()
    with pytest.raises(TmcTimeoutError):
        sam7.read()
    assert IDN.match(sam7.query("*IDN?"))


def test_reads_use_small_buffers(sam7, transfer_log):
    sam7.query("*IDN?")
    assert transfer_log.read_sizes and max(transfer_log.read_sizes) <= 4096


def test_unplugged_device_raises_device_gone(sim, sam7, sam7_device):
    sim.bus.unplug(sam7_device)
    with pytest.raises(DeviceGoneError):
        sam7.query("*IDN?")
    sam7.close()


def test_open_errors_are_typed(sim):
    with pytest.raises(ResourceError):
        Instrument("USB0::0x1209", backend=sim)
    with pytest.raises(DeviceNotFoundError, match="serial 'NOPE'"):
        Instrument("USB0::0x1209::0x0001::NOPE::INSTR", backend=sim)
