"""The generic USBTMC/USB488 device function: framing, TermChar, halts, status byte, tracing, fuzzing."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.sim import ManualClock, VirtualBus
from app.sim.device import Stall
from app.sim.usbtmc_device import MsgId, Status, StatusModel, TmcCapabilities, UsbtmcDevice

from support.rawtmc import RawTmc, open_pyusb


class Recorder(UsbtmcDevice):
    """A bare USBTMC function that records what the instrument layer is handed."""

    def __init__(self, **options):
        options.setdefault("capabilities", TmcCapabilities())
        super().__init__(vid=0x1209, pid=0x000C, manufacturer="Test", product="Recorder", serial="R1", **options)
        self.messages = []
        self.triggers = 0

    def on_message(self, data):
        self.messages.append(data)
        if data.endswith(b"?"):
            self.respond(data[:-1][::-1])

    def on_trigger(self):
        self.triggers += 1


@pytest.fixture
def recorder(bus):
    device = Recorder(clock=ManualClock())
    bus.plug(device)
    return device


def frame(btag, payload, eom=True, msg_id=1):
    return RawTmc.out_frame(btag, payload, eom, msg_id)


def test_headers_and_data_may_arrive_split_anywhere(recorder):
    stream = frame(1, b"hello") + frame(2, b"world!", eom=True)
    for byte in stream:
        recorder.bulk_out(0x01, bytes([byte]))
    assert recorder.messages == [b"hello", b"world!"]


def test_alignment_bytes_may_come_in_the_next_transfer_or_not_at_all(recorder):
    first = frame(1, b"abcde")
    recorder.bulk_out(0x01, first[:17])  # the data ends here; its 3 alignment bytes follow later
    recorder.bulk_out(0x01, first[17:] + frame(2, b"x"))
    recorder.bulk_out(0x01, frame(3, b"abcde")[:17])  # a host that sends no alignment bytes
    recorder.bulk_out(0x01, frame(4, b"y"))
    assert recorder.messages == [b"abcde", b"x", b"abcde", b"y"]


def test_a_message_spans_transfers_until_eom(recorder):
    recorder.bulk_out(0x01, frame(1, b"part one, ", eom=False) + frame(2, b"part two"))
    assert recorder.messages == [b"part one, part two"]


def test_a_long_answer_is_split_over_requests_with_eom_on_the_last(backend, recorder):
    tmc = RawTmc(open_pyusb(backend, 0x000C))
    tmc.write(b"0123456789?")
    first, attributes, _ = tmc.read_transfer(4)
    assert (first, attributes) == (b"9876", 0)
    second, attributes, _ = tmc.read_transfer(4)
    assert (second, attributes) == (b"5432", 0)
    third, attributes, _ = tmc.read_transfer(100)
    assert (third, attributes) == (b"10", 1)


def test_term_char_ends_a_transfer_early_when_supported(backend, recorder):
    tmc = RawTmc(open_pyusb(backend, 0x000C))
    tmc.write(b"c\nb\na?")
    data, attributes, _ = tmc.read_transfer(100, term_char=0x0A)
    assert (data, attributes) == (b"a\n", 0x02)  # ended on the TermChar, message not over
    data, attributes, _ = tmc.read_transfer(100, term_char=0x0A)
    assert (data, attributes) == (b"b\n", 0x02)
    data, attributes, _ = tmc.read_transfer(100, term_char=0x0A)
    assert (data, attributes) == (b"c", 0x01)


def test_term_char_is_ignored_without_the_capability(tmc):
    tmc.write("*IDN?\n")
    data, attributes, _ = tmc.read_transfer(100, term_char=ord(","))
    assert data.endswith(b"\n") and attributes == 0x01


@pytest.mark.parametrize("bad", [
    struct.pack("<BBBBIB3x", 1, 5, 0x00, 0, 1, 1),  # bTagInverse wrong
    struct.pack("<BBBBIB3x", 1, 0, 0xFF, 0, 1, 1),  # bTag 0
    struct.pack("<BBBBIB3x", 9, 5, 0xFA, 0, 1, 1),  # unknown MsgID
    struct.pack("<BBBBIB3x", MsgId.VENDOR_SPECIFIC_OUT, 5, 0xFA, 0, 1, 0),  # not supported here
    struct.pack("<BBBBIB3x", 2, 5, 0xFA, 0, 0, 0),  # REQUEST_DEV_DEP_MSG_IN for 0 bytes
])
def test_a_bad_header_halts_bulk_out_until_cleared(recorder, bad):
    with pytest.raises(Stall):
        recorder.bulk_out(0x01, bad)
    assert recorder.is_halted(0x01)
    with pytest.raises(Stall):
        recorder.bulk_out(0x01, frame(6, b"ignored"))
    recorder.clear_halt(0x01)
    recorder.bulk_out(0x01, frame(7, b"fine"))
    assert recorder.messages == [b"fine"]


def test_trigger_reaches_the_instrument_when_advertised(recorder):
    recorder.bulk_out(0x01, struct.pack("<BBBB8x", MsgId.TRIGGER, 3, 0xFC, 0))
    assert recorder.triggers == 1 and not recorder.is_halted(0x01)


def test_a_zero_length_packet_changes_nothing(recorder):
    recorder.bulk_out(0x01, b"")
    recorder.bulk_out(0x01, frame(1, b"ok"))
    assert recorder.messages == [b"ok"]


def test_read_status_byte_in_the_control_reply_without_interrupt_in(bus, backend):
    device = Recorder(interrupt_in=False, capabilities=TmcCapabilities(service_request=False),
                      clock=ManualClock())
    bus.plug(device)
    tmc = RawTmc(open_pyusb(backend, 0x000C))
    tmc.write(b"abc?")  # an answer waits: MAV
    assert tmc.control(128, 9, 3) == bytes([Status.SUCCESS, 9, 0x10])
    assert tmc.control(7, 0, 0x18)[15] & 0x04 == 0  # no SR1 without Interrupt-IN
    with pytest.raises(ValueError):
        Recorder(interrupt_in=False)  # SR1 advertised without the endpoint it needs


def test_serial_poll_reports_and_clears_rqs():
    sent = []
    status = StatusModel(sent.append, lambda: 0x10)  # MAV
    status.sre = 0x10
    status.update()
    assert sent == [0x50] and status.rqs
    assert status.stb() == 0x50  # *STB?: MSS
    assert status.serial_poll() == 0x50  # RQS, cleared by the poll
    assert status.serial_poll() == 0x10
    status.set_event(0x20)
    status.ese = 0x20
    status.sre = 0x30
    status.update()
    assert sent == [0x50]  # the summary was already true: no new edge


def test_the_trace_hook_sees_every_transaction(recorder):
    events = []
    recorder.trace.append(events.append)
    recorder.bulk_out(0x01, frame(1, b"x?"))
    recorder.bulk_out(0x01, RawTmc.request_frame(2, 64))
    reply = recorder.bulk_in(0x82, 64)
    recorder.control(0xA1, 7, 0, 0, 0x18)
    assert [(e.direction, e.endpoint, e.status) for e in events] == [
        ("out", 0x01, "ok"), ("out", 0x01, "ok"), ("in", 0x82, "ok"), ("setup", 0, "ok"), ("in", 0, "ok")]
    assert events[2].data == reply and events[3].data[:2] == b"\xa1\x07"
    with pytest.raises(Stall):
        recorder.control(0xA1, 99, 0, 0, 1)
    assert events[-1].status == "stall"


# --- fuzzing the Bulk-OUT parser ---


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=12))
def test_garbage_on_bulk_out_never_breaks_the_device(chunks):
    device = Recorder(clock=ManualClock())
    VirtualBus().plug(device)
    for chunk in chunks:
        try:
            device.bulk_out(0x01, chunk)
        except Stall:
            assert device.is_halted(0x01)  # the only way the device refuses: halting Bulk-OUT
            device.clear_halt(0x01)
    # Whatever happened, a device clear brings it back to a working state.
    assert device.control(0xA1, 5, 0, 0, 1) == bytes([Status.SUCCESS])
    device.clear_halt(0x01)
    device.bulk_out(0x01, frame(7, b"ping?"))
    device.bulk_out(0x01, RawTmc.request_frame(8, 64))
    assert device.bulk_in(0x82, 64)[12:16] == b"gnip"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5), st.data())
def test_valid_frames_cut_anywhere_give_the_same_messages(payloads, data):
    device = Recorder(clock=ManualClock())
    VirtualBus().plug(device)
    stream = b"".join(frame(i + 1, p) for i, p in enumerate(payloads))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        device.bulk_out(0x01, stream[start:end])
    assert device.messages == payloads
