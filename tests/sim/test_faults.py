"""The fault injector (app.sim.faults), kind by kind, with raw pyusb transfers over the in-process bus.

Each test makes the device misbehave and checks on the wire that it really does, without
app.usbtmc: frames are packed by hand (support.rawtmc.RawTmc).
"""

from __future__ import annotations

import errno
import logging
import struct
import threading

import pytest
import usb.core
import usb.util
from support.rawtmc import RawTmc, open_pyusb

from app.sim import VirtualBus
from app.sim.device import NoData
from app.sim.faults import DESCRIPTIONS, Fault, FaultInjector, FaultKind, parse_fault_spec
from app.sim.pyusb_backend import VirtualBackend
from app.sim.sam7 import Sam7Counter
from app.sim.scpi_device import VirtualLoopback
from app.sim.usbtmc_device import UsbtmcDevice

BULK_OUT, BULK_IN, INTR_IN = 0x01, 0x82, 0x83
INITIATE_ABORT_BULK_OUT, CHECK_ABORT_BULK_OUT_STATUS = 1, 2
INITIATE_ABORT_BULK_IN, CHECK_ABORT_BULK_IN_STATUS = 3, 4
INITIATE_CLEAR, CHECK_CLEAR_STATUS, READ_STATUS_BYTE = 5, 6, 128
SUCCESS, PENDING, FAILED = 0x01, 0x02, 0x80
IDN = "TMC Console,Virtual Loopback,LOOP-0001,1.0\n"


@pytest.fixture
def bus():
    return VirtualBus()


@pytest.fixture
def loop(bus, clock):
    device = VirtualLoopback(clock=clock)
    bus.plug(device)
    return device


@pytest.fixture
def inj(loop, bus):
    return FaultInjector.attach(loop, bus)


@pytest.fixture
def tmc(bus, loop):
    return RawTmc(open_pyusb(VirtualBackend(bus, data_toggles=True), 0x0002), timeout_ms=300)


def header(raw: bytes):
    """(MsgID, bTag, bTagInverse, TransferSize, attributes) of a Bulk-IN transfer."""
    msg_id, btag, inverse, _, size, attributes = struct.unpack_from("<BBBBIB", raw)
    return msg_id, btag, inverse, size, attributes


def raw_reply(tmc: RawTmc, max_bytes: int = 1024, buffer_bytes: int = 4096) -> tuple[int, bytes]:
    btag = tmc.request(max_bytes)
    return btag, tmc.dev.read(BULK_IN, buffer_bytes, timeout=tmc.timeout_ms).tobytes()


def device_clear(tmc: RawTmc) -> None:
    """INITIATE_CLEAR, poll CHECK_CLEAR_STATUS (draining Bulk-IN when asked), clear the Bulk-OUT halt."""
    assert tmc.control(INITIATE_CLEAR, length=1)[0] == SUCCESS
    for _ in range(20):
        status = tmc.control(CHECK_CLEAR_STATUS, length=2)
        if status[0] == SUCCESS:
            break
        if status[1] & 0x01:
            tmc.dev.read(BULK_IN, 4096, timeout=tmc.timeout_ms)
    else:
        pytest.fail("the clear never finished")
    tmc.clear_halt(BULK_OUT)


def errno_of(excinfo) -> int:
    return excinfo.value.errno


# --- the API ---


def test_attach_is_idempotent_and_reachable_from_the_device(loop):
    first = FaultInjector.attach(loop)
    assert FaultInjector.attach(loop) is first
    assert loop.fault_injector is first


def test_only_usbtmc_devices_take_faults():
    from app.sim.quirky import FirmwareModeDevice

    with pytest.raises(TypeError, match="USBTMC devices"):
        FaultInjector.attach(FirmwareModeDevice.__new__(FirmwareModeDevice))


def test_every_kind_has_a_description_and_a_spec_that_reads_back():
    for kind in FaultKind:
        assert DESCRIPTIONS[kind]
        fault = Fault(kind, times=None, every=2, after_bytes=7, polls=4, replug_after_s=0.5)
        assert parse_fault_spec(fault.spec()) == fault
        assert parse_fault_spec(kind.value) == Fault(kind)


def test_parse_fault_spec():
    assert parse_fault_spec("stall-bulk-out:after_bytes=100,times=2") == Fault(
        FaultKind.STALL_BULK_OUT, times=2, after_bytes=100)
    assert parse_fault_spec(" SIZE_ZERO : times=always ") == Fault(FaultKind.SIZE_ZERO, times=None)
    assert parse_fault_spec("status-pending:polls=0x10").polls == 16


@pytest.mark.parametrize(("spec", "named"), [
    ("stall-bulk", "'stall-bulk'"),
    ("stall-bulk-out:after=3", "'after'"),
    ("stall-bulk-out:after_bytes", "'after_bytes'"),
    ("stall-bulk-out:after_bytes=many", "after_bytes='many'"),
    ("no-answer:times=0", "times must be 1 or more"),
    ("unplug:replug_after_s=-1", "replug_after_s"),
])
def test_parse_fault_spec_names_the_bad_part(spec, named):
    with pytest.raises(ValueError) as excinfo:
        parse_fault_spec(spec)
    assert named in str(excinfo.value)


def test_schedule_times_and_every(tmc, inj):
    inj.add(Fault(FaultKind.WRONG_BTAG, times=2, every=2))
    wrong = []
    for _ in range(6):
        tmc.write("*IDN?\n")
        btag, raw = raw_reply(tmc)
        wrong.append(header(raw)[1] != btag)
    assert wrong == [False, True, False, True, False, False]
    assert [kind for kind, _ in inj.fired] == [FaultKind.WRONG_BTAG] * 2
    assert inj.armed == []


def test_clear_disarms_and_answers_a_held_request(tmc, inj):
    inj.add(Fault(FaultKind.NO_ANSWER))
    tmc.write("*IDN?\n")
    btag = tmc.request(1024)
    with pytest.raises(usb.core.USBTimeoutError):
        tmc.dev.read(BULK_IN, 1024, timeout=50)
    inj.clear()
    raw = tmc.dev.read(BULK_IN, 1024, timeout=300).tobytes()
    assert header(raw)[1] == btag and raw[12:12 + header(raw)[3]] == IDN.encode()


# --- Bulk-OUT ---


def test_stall_bulk_out_mid_multi_transfer_message(tmc, inj, loop):
    inj.add(Fault(FaultKind.STALL_BULK_OUT, after_bytes=100))
    part = b"x" * 60
    tmc.write(b"MEM:DATA #0" + part, eom=False)  # 12 + 72 bytes: counting starts here
    with pytest.raises(usb.core.USBError) as excinfo:
        tmc.write(part, eom=False)
    assert errno_of(excinfo) == errno.EPIPE
    assert loop.is_halted(BULK_OUT)
    assert inj.fired[0][0] == FaultKind.STALL_BULK_OUT
    with pytest.raises(usb.core.USBError):
        tmc.write("*IDN?\n")  # still halted


def test_after_a_mid_message_stall_a_halt_clear_alone_merges_the_next_command(tmc, inj, loop):
    inj.add(Fault(FaultKind.STALL_BULK_OUT, after_bytes=150))
    tmc.write(b"DATA " + b"x" * 100, eom=False)
    with pytest.raises(usb.core.USBError):
        tmc.write(b"x" * 100, eom=False)
    tmc.clear_halt(BULK_OUT)  # no INITIATE_CLEAR: USBTMC 3.2.2.2 is not followed
    tmc.write("*IDN?\n")
    assert loop.executed[-1].startswith(b"DATA xxx") and loop.executed[-1].endswith(b"*IDN?\n")
    assert any("appended to a message a halt cut short" in v for v in loop.violations)


def test_after_a_mid_message_stall_a_clear_keeps_the_next_command_intact(tmc, inj, loop):
    inj.add(Fault(FaultKind.STALL_BULK_OUT, after_bytes=150))
    tmc.write(b"DATA " + b"x" * 100, eom=False)
    with pytest.raises(usb.core.USBError):
        tmc.write(b"x" * 100, eom=False)
    device_clear(tmc)
    assert tmc.query("*IDN?") == IDN
    assert loop.executed == [b"*IDN?\n"]
    assert loop.violations == []


def _partial_then_abort(tmc, inj) -> None:
    inj.add(Fault(FaultKind.PARTIAL_OUT_TIMEOUT, after_bytes=40))
    btag = tmc.next_btag()
    frame = tmc.out_frame(btag, b"DATA " + b"y" * 200)
    assert tmc.dev.write(BULK_OUT, frame, timeout=50) == 40  # libusb reports the bytes moved with its timeout
    assert tmc.control(INITIATE_ABORT_BULK_OUT, btag, 2, endpoint=BULK_OUT)[0] == SUCCESS
    status = tmc.control(CHECK_ABORT_BULK_OUT_STATUS, 0, 8, endpoint=BULK_OUT)
    assert status[0] == SUCCESS
    assert struct.unpack_from("<I", status, 4)[0] == 40 - 12  # USBTMC Table 22: NBYTES_RXD, data bytes only
    tmc.clear_halt(BULK_OUT)


def test_partial_out_timeout_reports_the_true_nbytes_rxd(tmc, inj, loop):
    _partial_then_abort(tmc, inj)
    assert inj.fired == [(FaultKind.PARTIAL_OUT_TIMEOUT, "took 40 of 220 bytes, then NAKs")]


def test_partial_out_timeout_without_a_clear_merges_the_next_command(tmc, inj, loop):
    _partial_then_abort(tmc, inj)
    tmc.write("*IDN?\n")
    assert loop.executed == [b"DATA " + b"y" * 23 + b"*IDN?\n"]
    assert loop.violations


def test_partial_out_timeout_then_a_clear_keeps_the_next_command_intact(tmc, inj, loop):
    _partial_then_abort(tmc, inj)
    device_clear(tmc)
    assert tmc.query("*IDN?") == IDN
    assert loop.executed == [b"*IDN?\n"] and loop.violations == []


def test_toggle_mismatch_loses_the_first_packet(tmc, inj, loop):
    inj.add(Fault(FaultKind.TOGGLE_MISMATCH))
    tmc.write("*CLS\n")  # one packet, dropped as a retransmission: the host sees success
    assert loop.executed == []
    assert loop.toggle_drops == 1
    assert tmc.query("*IDN?") == IDN


def test_model_crash_answers_with_a_stall_and_logs(tmc, inj, loop, caplog):
    inj.add(Fault(FaultKind.MODEL_CRASH))
    with caplog.at_level(logging.ERROR, logger="app.sim"), pytest.raises(usb.core.USBError) as excinfo:
        tmc.write("*IDN?\n")
    assert errno_of(excinfo) == errno.EPIPE
    assert "RuntimeError: MODEL_CRASH" in loop.crashes[0]
    assert "Traceback" in caplog.text
    device_clear(tmc)
    assert tmc.query("*IDN?") == IDN


def test_an_exception_in_any_model_code_becomes_a_stall(tmc, loop):
    def broken(data):
        raise ZeroDivisionError("a bug in the model")

    loop.on_message = broken
    with pytest.raises(usb.core.USBError) as excinfo:
        tmc.write("*IDN?\n")
    assert errno_of(excinfo) == errno.EPIPE and "ZeroDivisionError" in loop.crashes[0]


# --- header stalls ---


def test_stall_trigger(tmc, inj, loop):
    inj.add(Fault(FaultKind.STALL_TRIGGER))
    btag = tmc.next_btag()
    with pytest.raises(usb.core.USBError) as excinfo:
        tmc.dev.write(BULK_OUT, struct.pack("<BBBB8x", 128, btag, ~btag & 0xFF, 0), timeout=300)
    assert errno_of(excinfo) == errno.EPIPE and loop.is_halted(BULK_OUT)
    assert loop.violations == []  # the device's misbehaviour, not the host's


def test_stall_request_in(tmc, inj, loop):
    inj.add(Fault(FaultKind.STALL_REQUEST_IN))
    tmc.write("*IDN?\n")
    with pytest.raises(usb.core.USBError) as excinfo:
        tmc.request(1024)
    assert errno_of(excinfo) == errno.EPIPE and loop.is_halted(BULK_OUT)


class _VendorDevice(UsbtmcDevice):
    vendor_specific = True

    def __init__(self, clock):
        super().__init__(vid=0x1209, pid=0x0F0F, manufacturer="test", product="vendor", serial="V1", clock=clock)
        self.vendor = b""

    def on_vendor_data(self, chunk, last):
        self.vendor += chunk


def test_stall_vendor(bus, clock):
    device = _VendorDevice(clock)
    bus.plug(device)
    tmc = RawTmc(open_pyusb(VirtualBackend(bus), 0x0F0F))
    btag = tmc.next_btag()
    tmc.dev.write(BULK_OUT, tmc.out_frame(btag, b"ok", msg_id=126), timeout=300)
    assert device.vendor == b"ok"
    FaultInjector.attach(device).add(Fault(FaultKind.STALL_VENDOR))
    with pytest.raises(usb.core.USBError) as excinfo:
        tmc.dev.write(BULK_OUT, tmc.out_frame(tmc.next_btag(), b"no", msg_id=126), timeout=300)
    assert errno_of(excinfo) == errno.EPIPE and device.vendor == b"ok"


# --- replies ---


def test_stall_bulk_in(tmc, inj, loop):
    inj.add(Fault(FaultKind.STALL_BULK_IN))
    tmc.write("*IDN?\n")
    tmc.request(1024)
    with pytest.raises(usb.core.USBError) as excinfo:
        tmc.dev.read(BULK_IN, 1024, timeout=300)
    assert errno_of(excinfo) == errno.EPIPE and loop.is_halted(BULK_IN)


def test_no_answer_until_the_abort(tmc, inj):
    inj.add(Fault(FaultKind.NO_ANSWER))
    tmc.write("*IDN?\n")
    btag = tmc.request(1024)
    with pytest.raises(usb.core.USBTimeoutError):
        tmc.dev.read(BULK_IN, 1024, timeout=50)
    assert tmc.control(INITIATE_ABORT_BULK_IN, btag, 2, endpoint=BULK_IN)[0] == SUCCESS
    assert tmc.dev.read(BULK_IN, 1024, timeout=300).tobytes() == b""  # the abort's short packet
    assert tmc.control(CHECK_ABORT_BULK_IN_STATUS, 0, 8, endpoint=BULK_IN)[0] == SUCCESS
    assert tmc.query("*IDN?") == IDN


@pytest.mark.parametrize("kind", [FaultKind.WRONG_BTAG, FaultKind.WRONG_MSGID, FaultKind.GARBAGE_HEADER])
def test_bad_reply_headers(tmc, inj, kind):
    inj.add(Fault(kind))
    tmc.write("*IDN?\n")
    btag, raw = raw_reply(tmc)
    msg_id, rtag, inverse, size, _ = header(raw)
    if kind == FaultKind.WRONG_BTAG:
        assert (msg_id, inverse) == (2, ~rtag & 0xFF) and rtag != btag and raw[12:12 + size] == IDN.encode()
    elif kind == FaultKind.WRONG_MSGID:
        assert (msg_id, rtag) == (127, btag)
    else:
        assert inverse != ~rtag & 0xFF and raw[12:12 + len(IDN)] == IDN.encode()


def test_short_header(tmc, inj):
    inj.add(Fault(FaultKind.SHORT_HEADER))
    tmc.write("*IDN?\n")
    _, raw = raw_reply(tmc)
    assert len(raw) == 7


def test_size_zero_leaves_the_reply_for_the_next_request(tmc, inj):
    inj.add(Fault(FaultKind.SIZE_ZERO))
    tmc.write("*IDN?\n")
    btag, raw = raw_reply(tmc)
    assert len(raw) == 12 and header(raw)[1:] == (btag, ~btag & 0xFF, 0, 0)  # TransferSize 0, EOM clear
    assert tmc.read().decode() == IDN


def test_size_zero_every_time(tmc, inj):
    inj.add(Fault(FaultKind.SIZE_ZERO, times=None))
    tmc.write("*IDN?\n")
    for _ in range(5):
        assert header(raw_reply(tmc)[1])[3:] == (0, 0)


def test_size_too_large(tmc, inj):
    inj.add(Fault(FaultKind.SIZE_TOO_LARGE))
    tmc.write("*IDN?\n")
    btag, raw = raw_reply(tmc, max_bytes=4, buffer_bytes=64 * 1024)
    size = header(raw)[3]
    assert size > 4 and len(raw) >= 12 + size and raw[12:16] == IDN.encode()[:4]


def test_size_too_small(tmc, inj):
    inj.add(Fault(FaultKind.SIZE_TOO_SMALL))
    tmc.write("*IDN?\n")
    _, raw = raw_reply(tmc)
    size = header(raw)[3]
    assert size < len(IDN) and raw[12:12 + len(IDN)] == IDN.encode()


def test_early_short_packet(tmc, inj):
    inj.add(Fault(FaultKind.EARLY_SHORT_PACKET))
    tmc.write("*IDN?\n")
    _, raw = raw_reply(tmc)
    assert header(raw)[3] == len(IDN) and 12 < len(raw) < 12 + len(IDN)


def _fill_one_packet(tmc: RawTmc) -> None:
    # MEM:DATA? answers "#3494" + 494 bytes + "\n": 500 bytes, 512 with the header: one full packet.
    tmc.write(b"MEM:DATA #3494" + b"z" * 494 + b"\n")
    tmc.write("MEM:DATA?\n")
    tmc.request(1024)


def test_no_zlp(tmc, inj, loop):
    _fill_one_packet(tmc)
    assert len(loop.bulk_in(BULK_IN, 1024)) == 512  # the ZLP ends the transfer at once
    inj.add(Fault(FaultKind.NO_ZLP))
    _fill_one_packet(tmc)
    with pytest.raises(NoData):
        loop.bulk_in(BULK_IN, 1024)  # 512 bytes in the host buffer, and nothing ends the transfer
    assert len(loop.cancel_in(BULK_IN)) == 512
    assert inj.fired == [(FaultKind.NO_ZLP, "no ZLP after a 512-byte reply")]


def test_no_zlp_waits_for_a_reply_on_a_packet_boundary(tmc, inj):
    inj.add(Fault(FaultKind.NO_ZLP))
    assert tmc.query("*IDN?") == IDN
    assert inj.fired == []


def test_split_reply(tmc, inj):
    inj.add(Fault(FaultKind.SPLIT_REPLY))
    tmc.write("*IDN?\n")
    chunks = []
    while True:
        data, attributes, _ = tmc.read_transfer(1024)
        chunks.append((data, attributes & 0x01))
        if attributes & 0x01:
            break
    assert [c for c, _ in chunks] == [bytes([b]) for b in IDN.encode()]
    assert [eom for _, eom in chunks] == [0] * (len(IDN) - 1) + [1]
    assert tmc.query("*IDN?") == IDN  # the next reply is whole again


# --- control requests and Interrupt-IN ---


def test_status_pending(tmc, inj):
    inj.add(Fault(FaultKind.STATUS_PENDING, polls=3))
    assert tmc.control(INITIATE_CLEAR, length=1)[0] == SUCCESS
    answers = [tmc.control(CHECK_CLEAR_STATUS, length=2)[0] for _ in range(4)]
    assert answers == [PENDING, PENDING, PENDING, SUCCESS]
    tmc.clear_halt(BULK_OUT)


def test_status_pending_on_abort_bulk_in(tmc, inj):
    inj.add(Fault(FaultKind.STATUS_PENDING, polls=2))
    tmc.write("*IDN?\n")
    btag = tmc.request(1024)
    assert tmc.control(INITIATE_ABORT_BULK_IN, btag, 2, endpoint=BULK_IN)[0] == SUCCESS
    answers = [tmc.control(CHECK_ABORT_BULK_IN_STATUS, 0, 8, endpoint=BULK_IN)[0] for _ in range(2)]
    assert answers == [PENDING, PENDING]


def test_leftover_data_for_the_clear_to_drain(tmc, inj):
    inj.add(Fault(FaultKind.LEFTOVER_DATA))
    assert tmc.control(INITIATE_CLEAR, length=1)[0] == SUCCESS
    assert list(tmc.control(CHECK_CLEAR_STATUS, length=2)) == [PENDING, 1]  # bmClear.D0: read Bulk-IN
    drained = tmc.dev.read(BULK_IN, 4096, timeout=300).tobytes()
    assert len(drained) == 2 * 512 + 5 and drained.startswith(b"LEFTOVER")
    assert tmc.control(CHECK_CLEAR_STATUS, length=2)[0] == SUCCESS
    tmc.clear_halt(BULK_OUT)
    assert tmc.query("*IDN?") == IDN


def test_stale_interrupt_tag(tmc, inj):
    inj.add(Fault(FaultKind.STALE_INTERRUPT_TAG))
    assert tmc.control(READ_STATUS_BYTE, 5, 3)[0] == SUCCESS
    assert tmc.interrupt()[0] == 0x80 | 4  # the stale one first
    assert tmc.interrupt()[0] == 0x80 | 5


def test_srq_during_query(tmc, inj):
    inj.add(Fault(FaultKind.SRQ_DURING_QUERY))
    tmc.write("*IDN?\n")
    data, _, _ = tmc.read_transfer(1024)
    assert data == IDN.encode()
    notification = tmc.interrupt()
    assert notification[0] == 0x81 and notification[1] & 0x40


# --- unplug ---


def test_unplug_mid_message_and_replug_on_demand(bus, tmc, inj, loop):
    inj.add(Fault(FaultKind.UNPLUG, after_bytes=30))
    with pytest.raises(usb.core.USBError) as excinfo:
        tmc.write(b"MEM:DATA #0" + b"w" * 100)
    assert errno_of(excinfo) == errno.ENODEV
    assert loop not in bus.devices()
    inj.replug()
    assert loop in bus.devices()
    tmc = RawTmc(open_pyusb(VirtualBackend(bus), 0x0002))
    assert tmc.query("*IDN?") == IDN


def test_unplug_at_a_read_and_replug_after_a_delay(bus, tmc, inj, loop):
    plugged = threading.Event()
    bus.listeners.append(lambda event, entry: event == "plug" and plugged.set())
    tmc.write("*IDN?\n")
    tmc.request(1024)
    inj.add(Fault(FaultKind.UNPLUG, replug_after_s=0.05))  # armed now, it fires at the read
    with pytest.raises(usb.core.USBError) as excinfo:
        tmc.dev.read(BULK_IN, 1024, timeout=300)
    assert errno_of(excinfo) == errno.ENODEV
    assert plugged.wait(5)
    assert loop in bus.devices()


def test_sam7_takes_faults_too(bus, clock):
    sam7 = Sam7Counter(clock=clock)
    bus.plug(sam7)
    tmc = RawTmc(open_pyusb(VirtualBackend(bus), 0x0001))
    FaultInjector.attach(sam7).add(Fault(FaultKind.WRONG_BTAG))
    tmc.write("*IDN?\n")
    btag, raw = raw_reply(tmc)
    assert header(raw)[1] != btag


# --- more schedules and what the device records ---


def test_status_pending_on_abort_bulk_out(tmc, inj):
    inj.add(Fault(FaultKind.STATUS_PENDING, polls=2))
    inj.add(Fault(FaultKind.PARTIAL_OUT_TIMEOUT, after_bytes=40))
    btag = tmc.next_btag()
    tmc.dev.write(BULK_OUT, tmc.out_frame(btag, b"y" * 200), timeout=50)
    assert tmc.control(INITIATE_ABORT_BULK_OUT, btag, 2, endpoint=BULK_OUT)[0] == SUCCESS
    answers = [tmc.control(CHECK_ABORT_BULK_OUT_STATUS, 0, 8, endpoint=BULK_OUT)[0] for _ in range(3)]
    assert answers == [PENDING, PENDING, SUCCESS]


def test_leftover_data_for_the_abort_bulk_in_to_drain(tmc, inj):
    inj.add(Fault(FaultKind.LEFTOVER_DATA))
    inj.add(Fault(FaultKind.NO_ANSWER))
    tmc.write("*IDN?\n")
    btag = tmc.request(1024)
    assert tmc.control(INITIATE_ABORT_BULK_IN, btag, 2, endpoint=BULK_IN)[0] == SUCCESS
    status = tmc.control(CHECK_ABORT_BULK_IN_STATUS, 0, 8, endpoint=BULK_IN)
    assert (status[0], status[1]) == (PENDING, 1)  # bmAbortBulkIn.D0: read Bulk-IN until a short packet
    assert tmc.dev.read(BULK_IN, 4096, timeout=300).tobytes().startswith(b"LEFTOVER")
    assert tmc.control(CHECK_ABORT_BULK_IN_STATUS, 0, 8, endpoint=BULK_IN)[0] == SUCCESS
    assert tmc.query("*IDN?") == IDN


def test_a_request_while_a_message_has_no_eom_is_a_violation(tmc, loop):
    tmc.write("*IDN", eom=False)
    tmc.request(1024)
    assert loop.violations == [
        "REQUEST_DEV_DEP_MSG_IN bTag 2 while a DEV_DEP_MSG_OUT message has not ended (no EOM yet)"]


def test_a_refused_header_is_a_violation_but_an_injected_refusal_is_not(tmc, inj, loop):
    btag = tmc.next_btag()
    with pytest.raises(usb.core.USBError):
        tmc.dev.write(BULK_OUT, struct.pack("<BBBB8x", 1, btag, btag, 0), timeout=300)  # bTagInverse wrong
    assert len(loop.violations) == 1 and "refused" in loop.violations[0]
    tmc.clear_halt(BULK_OUT)
    inj.add(Fault(FaultKind.TOGGLE_MISMATCH))
    with pytest.raises(usb.core.USBError):
        tmc.write(b"MEM:DATA #41000" + b"q" * 985)  # the rest of the transfer is refused: the fault's doing
    assert len(loop.violations) == 1


def test_executed_keeps_the_head_and_tail_of_a_long_message(tmc, loop):
    block = bytes(range(256)) * 64  # 16 KiB
    tmc.write(b"MEM:DATA #516384" + block + b"\n")
    assert loop.memory == block
    record = loop.executed[-1]
    assert record.startswith(b"MEM:DATA #516384" + block[:4096 - 16]) and record.endswith(block[-4095:] + b"\n")
    assert b"..." in record and len(record) == 2 * 4096 + 3
    tmc.write(b"MEM:DATA #17abcdefg\n")
    assert loop.executed[-1] == b"MEM:DATA #17abcdefg\n"


@pytest.mark.parametrize("key", ["awg", "rigol-ds1000z", "siglent-clone"])
def test_the_awg_and_the_quirky_twins_take_faults_too(bus, clock, key):
    from app.sim.awg import VirtualAwg
    from app.sim.quirky import CATALOGUE

    device = VirtualAwg(clock=clock) if key == "awg" else next(m for m in CATALOGUE if m.key == key).factory(clock)
    bus.plug(device)
    desc = device.device_desc
    dev = usb.core.find(backend=VirtualBackend(bus), idVendor=desc.vid, idProduct=desc.pid)
    usb.util.claim_interface(dev, 0)
    tmc = RawTmc(dev, timeout_ms=300)
    FaultInjector.attach(device).add(Fault(FaultKind.WRONG_BTAG))
    tmc.write("*IDN?\n")
    btag, raw = raw_reply(tmc)
    assert header(raw)[1] != btag
    assert tmc.query("*IDN?").startswith(device.idn)
