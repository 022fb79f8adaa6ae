"""The virtual SAM7 counter against its firmware design document, over raw USBTMC frames."""

import struct

import pytest
import usb.core

from app.sim.sam7 import COUNT_MAX, DebugFlag, Leds, Sam7Counter

STATUS_SUCCESS, STATUS_PENDING, STATUS_FAILED, STATUS_NOT_IN_PROGRESS = 0x01, 0x02, 0x80, 0x81
STATUS_INTERRUPT_IN_BUSY = 0x20
CME, EXE, DDE, QYE, RTL, PON = 0x20, 0x10, 0x08, 0x04, 0x02, 0x80


def esr(tmc) -> int:
    reply = tmc.query("*ESR?")
    assert reply.startswith("#H") and reply.endswith("\n") and len(reply) == 5
    return int(reply[2:4], 16)


def expect_no_answer(tmc):
    with pytest.raises(usb.core.USBTimeoutError):
        tmc.read_transfer()
    # Recover as a host must: abort the Bulk-IN transfer, then drain the short packet.
    reply = tmc.control(3, tmc.btag, 2, endpoint=0x82)
    assert reply[0] == STATUS_SUCCESS
    assert tmc.dev.read(0x82, 64, timeout=100).tobytes() == b""
    assert tmc.control(4, 0, 8, endpoint=0x82)[0] == STATUS_SUCCESS


# --- identity and the command set ---


def test_idn_and_power_on_status(tmc):
    assert tmc.query("*IDN?") == "XYZ Company Ltd, SAM7-EK, 0, v1.0.001\n"
    assert esr(tmc) == PON  # set at power-on
    assert esr(tmc) == 0  # reading clears it


def test_commands_are_case_insensitive_and_may_be_compound(tmc):
    assert tmc.query("param:set 12,-34;PARAM:ENQ?;indicator 1;INDICATOR?") == "12,-34;ON\n"


def test_param_set_and_range(tmc, sam7):
    tmc.write("PARAM:SET -10000,10000\n")
    assert tmc.query("PARAM:ENQ?") == "-10000,10000\n"
    esr(tmc)
    tmc.write("PARAM:SET 1,10001\n")  # out of range: no effect, EXE
    assert tmc.query("PARAM:ENQ?") == "-10000,10000\n"
    assert esr(tmc) == EXE
    tmc.write("PARAM:SET 1.5,2\n")  # wrong type: EXE
    assert esr(tmc) == EXE
    tmc.write("PARAM:SET 1\n")  # wrong parameter count: CME
    assert esr(tmc) == CME
    assert sam7.params == (-10000, 10000)


def test_indicator_command_and_query(tmc, sam7):
    assert tmc.query("INDICATOR?") == "OFF\n"
    tmc.write("INDICATOR 1\n")
    assert tmc.query("INDICATOR?") == "ON\n" and sam7.leds().ready
    tmc.write("INDICATOR 2\n")
    assert tmc.query("INDICATOR?") == "ON\n"
    assert esr(tmc) & EXE
    tmc.write("INDICATOR 0\n")
    assert not sam7.leds().ready


def test_status_registers_in_ieee_hex(tmc):
    esr(tmc)
    tmc.write("*ESE 36\n")  # decimal
    assert tmc.query("*ESE?") == "#H24\n"
    tmc.write("*ESE #H21\n")  # or IEEE hexadecimal
    assert tmc.query("*ESE?") == "#H21\n"
    tmc.write("*ESE 256\n")
    assert esr(tmc) == EXE
    tmc.write("BOGUS\n")  # CME, and ESE has the CME bit: ESB and the summary bit go up
    assert tmc.query("*STB?") == "#H60\n"
    tmc.write("*CLS\n")
    assert tmc.query("*STB?") == "#H00\n"


def test_stb_shows_mav_for_an_earlier_query_of_the_same_message(tmc):
    assert tmc.query("*IDN?;*STB?") == "XYZ Company Ltd, SAM7-EK, 0, v1.0.001;#H50\n"


def test_busy_and_debug_flags(tmc, sam7):
    assert tmc.query("BUSY?") == "NO\n"
    sam7.busy = True
    assert tmc.query("BUSY?") == "YES\n"
    flags = tmc.query("DEBUG:FLAGS?")
    assert flags.startswith("#H") and len(flags) == 11
    assert int(flags[2:10], 16) & DebugFlag.USB_CONFIGURED


def test_rst_resets_the_function_not_the_status(tmc, sam7, clock):
    tmc.write("PARAM:SET 5,6;INDICATOR 1;*ESE 32\n")
    sam7.press_sw1()
    clock.advance(0.2)
    tmc.write("*RST\n")
    assert tmc.query("PARAM:ENQ?;COUNT:READ?;INDICATOR?;*ESE?") == "0,0;0;OFF;#H20\n"


# --- the error model ---


def test_an_undefined_query_gives_cme_and_no_response(tmc):
    esr(tmc)
    tmc.write("COUNT:WHAT?\n")
    expect_no_answer(tmc)
    # The read found no query pending: QYE comes along with the CME.
    assert esr(tmc) == CME | QYE


def test_a_query_with_parameters_is_a_command_error(tmc):
    esr(tmc)
    tmc.write("*IDN? 1\n")
    expect_no_answer(tmc)
    assert esr(tmc) & CME


def test_reading_without_a_query_is_a_query_error(tmc, sam7):
    esr(tmc)
    expect_no_answer(tmc)
    assert esr(tmc) == QYE
    assert sam7.debug_flags() & DebugFlag.READ_WITHOUT_QUERY


def test_a_new_command_discards_an_unread_response(tmc):
    esr(tmc)
    tmc.write("*IDN?\n")
    tmc.write("PARAM:ENQ?\n")  # the IDN answer was never read
    assert tmc.read() == b"0,0\n"
    assert esr(tmc) == QYE


def test_command_buffer_overflow_is_dde_and_has_no_effect(tmc, sam7):
    esr(tmc)
    tmc.write("PARAM:SET 1,2" + " " * 300 + "\n")
    assert esr(tmc) == DDE
    assert sam7.params == (0, 0)
    tmc.write("PARAM:SET 1,2" + " " * 200 + "\n")  # 256 bytes fit
    assert sam7.params == (1, 2)
    assert sam7.debug_flags() & DebugFlag.COMMAND_OVERFLOW


def test_debug_events_clear_when_read(tmc, sam7):
    tmc.write("X" * 300 + "\n")
    first = int(tmc.query("DEBUG:FLAGS?")[2:10], 16)
    second = int(tmc.query("DEBUG:FLAGS?")[2:10], 16)
    assert first & DebugFlag.COMMAND_OVERFLOW and not second & DebugFlag.COMMAND_OVERFLOW


def test_a_message_split_over_transfers_is_one_command(tmc, sam7):
    tmc.write("PARAM:SET 7,", eom=False)
    tmc.write("8\n")
    assert sam7.params == (7, 8)


# --- the counter and SW1 ---


def test_a_press_counts_after_the_30_ms_glitch_filter(tmc, sam7, clock):
    sam7.press_sw1(hold_s=0.1)
    clock.advance(0.029)
    assert sam7.count == 0
    clock.advance(0.001)
    assert sam7.count == 1
    clock.advance(1)
    assert tmc.query("COUNT:READ?") == "1\n"
    tmc.write("COUNT:RESET\n")
    assert sam7.count == 0


def test_glitches_shorter_than_30_ms_are_ignored(sam7, clock):
    t = clock.now()
    sam7.feed_edges([(t + 0.01, 0), (t + 0.039, 1),  # 29 ms low: a glitch
                     (t + 0.1, 0), (t + 0.11, 1), (t + 0.115, 0), (t + 0.2, 1),  # bounce, then a press
                     (t + 0.3, 0), (t + 0.33, 1)])  # exactly 30 ms: counts
    clock.advance(1)
    assert sam7.count == 2


def test_a_pulse_train_with_glitches(sam7, clock):
    end = sam7.pulse_train(5, 25, glitches=5, glitch_s=0.025)
    clock.set(end + 0.1)
    assert sam7.count == 25
    with pytest.raises(ValueError):
        sam7.pulse_train(10, 1, glitches=1, glitch_s=0.01)  # a 50 ms high phase cannot hold a clean blip


def test_pulses_shorter_than_the_filter_are_lost(sam7, clock):
    end = sam7.pulse_train(25, 10)  # 20 ms low: every pulse is a glitch to the filter
    clock.set(end + 0.1)
    assert sam7.count == 0


def test_the_count_saturates_at_30000_until_reset(tmc, sam7, clock):
    sam7._count = COUNT_MAX - 1  # skip ahead rather than feed 30,000 pulses
    end = sam7.pulse_train(5, 3)
    clock.set(end + 0.1)
    assert sam7.count == COUNT_MAX and sam7.count_overflow
    assert tmc.query("COUNT:READ?") == "30000\n"
    assert int(tmc.query("DEBUG:FLAGS?")[2:10], 16) & DebugFlag.COUNT_OVERFLOW
    tmc.write("COUNT:RESET\n")
    assert not sam7.count_overflow and sam7.count == 0


def test_edges_must_be_in_time_order(sam7, clock):
    sam7.press_sw1()
    with pytest.raises(ValueError):
        sam7.feed_edges([(clock.now() - 1, 0)])


# --- LEDs ---


def test_indicator_pulse_toggles_for_500_ms(tmc, sam7, clock):
    assert tmc.control(64, 0, 1) == bytes([STATUS_SUCCESS])
    assert sam7.leds().ready
    clock.advance(0.499)
    assert sam7.leds().ready and tmc.query("INDICATOR?") == "ON\n"
    clock.advance(0.001)
    assert not sam7.leds().ready and tmc.query("INDICATOR?") == "OFF\n"
    tmc.write("INDICATOR 1\n")
    tmc.control(64, 0, 1)  # from ON it blinks off and back on
    assert not sam7.leds().ready
    clock.advance(0.5)
    assert sam7.leds().ready


def test_usb_led_heartbeat_and_activity(sam7, clock, tmc):
    clock.advance(1)  # no bus activity for a while
    assert sam7.leds().usb
    beats = []
    for _ in range(4):
        beats.append(sam7.leds().heartbeat)
        clock.advance(0.25)
    assert beats.count(True) == 2 and beats.count(False) == 2  # 1 Hz, half on
    states = set()
    for _ in range(4):
        tmc.write("BUSY?\n")  # packets keep arriving on Bulk-OUT
        tmc.read()
        states.add(sam7.leds().usb)
        clock.advance(0.05)
    assert states == {True, False}  # pulsing at 10 Hz during activity
    clock.advance(0.2)
    assert sam7.leds().usb
    sam7.set_configuration(0)
    assert sam7.leds() == Leds(usb=False, remote=False, ready=False, heartbeat=sam7.leds().heartbeat)


# --- USB488: remote/local, status byte, service requests ---


def test_ren_remote_lockout_and_return_to_local(tmc, sam7):
    esr(tmc)
    assert tmc.control(160, 1, 1) == bytes([STATUS_SUCCESS])  # REN_CONTROL: assert REN
    assert not sam7.leds().remote  # remote only once addressed
    tmc.write("BUSY?\n")
    tmc.read()
    assert sam7.leds().remote
    assert tmc.control(162, 0, 1) == bytes([STATUS_SUCCESS])  # LOCAL_LOCKOUT: RWLS
    assert sam7.debug_flags() & DebugFlag.LOCKOUT
    assert tmc.control(161, 0, 1) == bytes([STATUS_SUCCESS])  # GO_TO_LOCAL: LWLS
    assert not sam7.leds().remote
    assert esr(tmc) == RTL  # returned to local since the last *ESR?
    tmc.control(160, 0, 1)  # REN off: LOCS
    assert not sam7.debug_flags() & DebugFlag.LOCKOUT


def test_read_status_byte_answers_on_interrupt_in(tmc):
    tmc.write("BOGUS\n")  # CME; with ESE=0 ESB stays clear
    tmc.write("*IDN?\n")  # MAV
    reply = tmc.control(128, 5, 3)
    assert reply == bytes([STATUS_SUCCESS, 5, 0])
    assert tmc.interrupt() == bytes([0x80 | 5, 0x50])  # MAV and the SAM7's MSS
    tmc.control(128, 6, 3)
    assert tmc.control(128, 7, 3)[0] == STATUS_INTERRUPT_IN_BUSY  # the previous one is unread
    assert tmc.interrupt() == bytes([0x80 | 6, 0x50])
    with pytest.raises(usb.core.USBError):
        tmc.control(128, 1, 3)  # bTag 1 is outside 2..127: STALL


def test_srq_on_interrupt_in_from_sre(tmc, sam7):
    esr(tmc)
    tmc.write("*ESE 32;*SRE 32\n")
    assert tmc.query("*SRE?") == "#H20\n"
    tmc.write("NOT:A:COMMAND\n")  # CME -> ESB -> service request
    notification = tmc.interrupt()
    assert notification[0] == 0x81 and notification[1] & 0x20 and notification[1] & 0x40
    assert sam7.debug_flags() & DebugFlag.SRQ_SENT
    tmc.write("NOT:A:COMMAND\n")  # ESB is already set: no new rising edge, no new SRQ
    with pytest.raises(usb.core.USBTimeoutError):
        tmc.interrupt(timeout_ms=20)
    esr(tmc)  # clears ESR: ESB falls
    tmc.write("NOT:A:COMMAND\n")
    assert tmc.interrupt()[0] == 0x81


def test_capabilities(tmc):
    caps = tmc.control(7, 0, 0x18)
    assert caps[0] == STATUS_SUCCESS and caps[2:4] == b"\x00\x01" and caps[12:14] == b"\x00\x01"
    assert caps[4] == 0x04  # indicator pulse; neither talk-only nor listen-only
    assert caps[5] == 0x00  # no TermChar
    assert caps[14] == 0x06  # USB488.2, REN/GTL/LLO, no TRIGGER
    assert caps[15] == 0x06  # SR1, RL1; not SCPI, no DT1


def test_trigger_is_refused_as_advertised(tmc, sam7):
    btag = tmc.next_btag()
    trigger = struct.pack("<BBBB8x", 128, btag, ~btag & 0xFF, 0)
    with pytest.raises(usb.core.USBError) as stall:
        tmc.dev.write(0x01, trigger, timeout=100)
    assert stall.value.backend_error_code == -9
    assert sam7.is_halted(0x01)
    tmc.clear_halt(0x01)
    assert tmc.query("BUSY?") == "NO\n"


# --- aborts and clear ---


def test_abort_bulk_out_in_the_middle_of_a_transfer(tmc, sam7):
    btag = tmc.next_btag()
    frame = tmc.out_frame(btag, b"PARAM:SET 3,4\n" + b" " * 100)
    tmc.dev.write(0x01, frame[:64], timeout=100)  # the rest never comes
    assert tmc.control(1, btag + 1, 2, endpoint=0x01)[0] == STATUS_NOT_IN_PROGRESS
    assert tmc.control(1, btag, 2, endpoint=0x01) == bytes([STATUS_SUCCESS, btag])
    with pytest.raises(usb.core.USBError):
        tmc.dev.write(0x01, frame[64:], timeout=100)  # Bulk-OUT is halted now
    check = tmc.control(2, 0, 8, endpoint=0x01)
    assert check[0] == STATUS_SUCCESS and struct.unpack_from("<I", check, 4)[0] == 52
    tmc.clear_halt(0x01)
    assert sam7.params == (0, 0)
    assert tmc.query("PARAM:ENQ?") == "0,0\n"
    assert tmc.control(1, 9, 2, endpoint=0x01)[0] == STATUS_FAILED  # nothing in progress


def test_abort_bulk_in_part_way_through_a_response(tmc):
    tmc.write("*IDN?;*IDN?;*IDN?\n")  # 12 + 117 + 3 bytes: packets of 64, 64 and 4
    btag = tmc.request(1024)
    assert tmc.dev.read(0x82, 64, timeout=100).tobytes()[:1] == b"\x02"  # one packet, then stop
    assert tmc.control(3, btag, 2, endpoint=0x82) == bytes([STATUS_SUCCESS, btag])
    pending = tmc.control(4, 0, 8, endpoint=0x82)
    assert pending[:2] == bytes([STATUS_PENDING, 1])  # read until the short packet
    assert tmc.dev.read(0x82, 64, timeout=100).tobytes() == b""  # the rest is dropped: a ZLP ends it
    done = tmc.control(4, 0, 8, endpoint=0x82)
    assert done[:2] == bytes([STATUS_SUCCESS, 0]) and struct.unpack_from("<I", done, 4)[0] == 64
    assert tmc.query("BUSY?") == "NO\n"


def test_a_host_buffer_smaller_than_a_packet_overflows(tmc):
    tmc.write("*IDN?\n")
    tmc.request(1024)
    with pytest.raises(usb.core.USBError) as babble:
        tmc.dev.read(0x82, 16, timeout=100)
    assert babble.value.backend_error_code == -8


def test_abort_bulk_in_without_a_transfer_fails(tmc):
    assert tmc.control(3, 1, 2, endpoint=0x82)[0] == STATUS_FAILED


def test_clear_empties_the_buffers_and_halts_bulk_out(tmc, sam7):
    tmc.write("*IDN?\n")
    assert tmc.control(5, 0, 1) == bytes([STATUS_SUCCESS])
    assert tmc.control(6, 0, 2) == bytes([STATUS_SUCCESS, 0])
    assert sam7.is_halted(0x01)
    tmc.clear_halt(0x01)
    assert not sam7.has_output()
    assert tmc.query("BUSY?") == "NO\n"
    assert sam7.debug_flags() & DebugFlag.DEVICE_CLEAR


def test_class_requests_with_the_wrong_shape_stall(tmc):
    for args in [(7, 0, 0x10), (5, 0, 2), (64, 0, 2)]:
        with pytest.raises(usb.core.USBError) as stall:
            tmc.control(*args)
        assert stall.value.backend_error_code == -9
    with pytest.raises(usb.core.USBError):
        tmc.control(1, 1, 2, endpoint=0x82)  # ABORT_BULK_OUT aimed at the Bulk-IN endpoint


def test_power_cycle_by_unplugging(bus, sam7, clock):
    sam7.press_sw1()
    clock.advance(1)
    assert sam7.count == 1
    bus.unplug(sam7)
    bus.plug(sam7)
    assert sam7.count == 0 and sam7.status.esr == PON


def test_a_second_board_gets_its_own_serial():
    board = Sam7Counter(serial="SAM7-0002")
    assert board.strings[3] == "SAM7-0002"
