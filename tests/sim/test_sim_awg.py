"""The virtual arbitrary waveform generator: blocks streamed in any split, its SCPI commands,
its error queue and status reporting, and the Bulk-OUT pacing models (frames by hand, no app.usbtmc)."""

from __future__ import annotations

import array
import math
import random
import struct
import sys
import zlib

import pytest
from support.rawtmc import RawTmc, open_pyusb

from app.sim.awg import AWG_PID, VirtualAwg, first_out_of_range
from app.sim.device import NoData, Speed
from app.sim.wire import FULL_SPEED, HIGH_SPEED, OutPacer


@pytest.fixture
def awg(bus, clock):
    device = VirtualAwg(clock=clock)
    bus.plug(device)
    return device


@pytest.fixture
def gen(backend, awg):
    return RawTmc(open_pyusb(backend, AWG_PID), timeout_ms=2000)


def dac_samples(n: int, seed: int = 1) -> array.array:
    rng = random.Random(seed)
    return array.array("h", (rng.randint(-32767, 32767) for _ in range(n)))


def float_samples(n: int) -> array.array:
    return array.array("f", (math.sin(2 * math.pi * i / max(1, n)) for i in range(n)))


def as_bytes(samples: array.array, little: bool) -> bytes:
    copy = array.array(samples.typecode, samples)
    if (sys.byteorder == "little") != little:
        copy.byteswap()
    return copy.tobytes()


def block(data: bytes) -> bytes:
    length = str(len(data)).encode()
    return b"#" + str(len(length)).encode() + length + data


def send_split(gen: RawTmc, message: bytes, cuts: list[int]) -> None:
    """Send ``message`` as several USBTMC transfers cut at ``cuts`` (EOM on the last)."""
    edges = [0, *sorted(c for c in cuts if 0 < c < len(message)), len(message)]
    for start, end in zip(edges, edges[1:]):
        gen.write(message[start:end], eom=end == len(message))


def errors(gen: RawTmc) -> list[str]:
    found = []
    while True:
        entry = gen.query("SYST:ERR?").strip()
        if entry.startswith("0,"):
            return found
        found.append(entry)


def test_identity_and_high_speed_endpoints(awg, gen):
    assert gen.query("*IDN?") == "TMC Console,Virtual AWG,AWG-0001,1.0\n"
    assert awg.speed == Speed.HIGH
    assert {ep.max_packet for ep in awg.endpoints().values() if ep.transfer_type == 2} == {512}


@pytest.mark.parametrize("kind", ["dac", "float"])
@pytest.mark.parametrize("little", [True, False], ids=["SWAP", "NORM"])
@pytest.mark.parametrize("points", [256, 1021, 4096 + 3])  # 512 or 2048/4096-byte multiples, and not
def test_block_round_trips_byte_for_byte_in_any_split(awg, gen, kind, little, points):
    samples = dac_samples(points) if kind == "dac" else float_samples(points)
    command = b"DATA:ARB:DAC wave," if kind == "dac" else b"DATA:ARB wave,"
    order = b"SWAP" if little else b"NORM"
    message = b"FORM:BORD " + order + b";:" + command + block(as_bytes(samples, little)) + b"\n"
    head = len(message) - len(as_bytes(samples, little)) - 1
    # Cut inside the block header, inside a sample, on packet boundaries and right after the block.
    send_split(gen, message, [head - 3, head + 1, head + 511, head + 2048, len(message) - 1])
    assert errors(gen) == []
    stored = awg.waveform("wave")
    assert stored.kind == kind and stored.points == points
    assert stored.data == as_bytes(samples, little=True)
    assert gen.query("DATA:ATTR:CHEC? wave") == f"{points},{zlib.crc32(as_bytes(samples, True))}\n"
    assert gen.query("DATA:ATTR:POIN? WAVE") == f"{points}\n"


def test_one_transfer_per_byte_still_streams(awg, gen):
    samples = dac_samples(40)
    message = b"FORM:BORD SWAP;:DATA:ARB:DAC w," + block(as_bytes(samples, True)) + b";*OPC?\n"
    send_split(gen, message, list(range(1, len(message))))
    assert gen.read() == b"1\n"
    assert awg.waveform("w").data == as_bytes(samples, True)


def test_comma_lists(awg, gen):
    gen.write("DATA:ARB:DAC codes,-32767,0,1,2,3,4,5,32767\n")
    gen.write("DATA:ARB flt,-1,-0.5,0,0.25,0.5,0.75,1.0,1e-3\n")
    assert errors(gen) == []
    assert array.array("h", awg.waveform("codes").data).tolist() == [-32767, 0, 1, 2, 3, 4, 5, 32767]
    assert array.array("f", awg.waveform("flt").data)[6] == 1.0
    gen.write("DATA:ARB bad,0,0,0,0,0,0,0,1.5\n")
    gen.write("DATA:ARB:DAC bad,0,0,0,0,0,0,0,-32768\n")
    assert [e.split(",")[0] for e in errors(gen)] == ["-222", "-222"]
    assert awg.waveform("bad") is None


def test_indefinite_block_goes_through_the_parser(awg, gen):
    data = as_bytes(dac_samples(16), True)
    gen.write(b"FORM:BORD SWAP;:DATA:ARB:DAC ind,#0" + data + b"\n")
    assert errors(gen) == []
    assert awg.waveform("ind").data == data


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        (b"DATA:ARB:DAC w,#4abcd" + bytes(16) + b"\n", "-161", "block length"),
        (b"FORM:BORD SWAP;:DATA:ARB:DAC w,#217" + bytes(17) + b"\n", "-161", "not a whole number of int16"),
        (b"FORM:BORD SWAP;:DATA:ARB w,#218" + bytes(18) + b"\n", "-161", "not a whole number of float32"),
        (b"DATA:ARB:DAC w,#14" + bytes(4) + b"\n", "-222", "at least 8"),
        (b"DATA:ARB:DAC 9w,#216" + bytes(16) + b"\n", "-224", "not a waveform name"),
        (b"DATA:ARB:DAC w,#232" + bytes(16) + b"\n", "-161", "after 17 of 32 block bytes"),
    ],
    ids=["bad-header", "odd-int16", "odd-float32", "too-short", "bad-name", "short-block"],
)
def test_bad_blocks_give_their_error_and_store_nothing(awg, gen, message, code, words):
    gen.write(message)
    found = errors(gen)
    assert len(found) == 1 and found[0].startswith(code + ",") and words in found[0], found
    assert awg.waveform("w") is None
    assert gen.query("*OPC?") == "1\n"  # and the device carries on


@pytest.mark.parametrize("little", [True, False])
def test_out_of_range_samples_name_the_first_offender(awg, gen, little):
    samples = array.array("h", [0] * 1000)
    samples[700], samples[900] = -32768, -32768
    gen.write(f"FORM:BORD {'SWAP' if little else 'NORM'}\n")
    gen.write(b"DATA:ARB:DAC w," + block(as_bytes(samples, little)) + b"\n")
    (entry,) = errors(gen)
    assert entry.startswith("-222,") and "sample 700 is -32768" in entry
    floats = array.array("f", [0.0] * 64)
    floats[9] = float("nan")
    gen.write(b"DATA:ARB f," + block(as_bytes(floats, little)) + b"\n")
    (entry,) = errors(gen)
    assert "sample 9 is nan" in entry
    assert awg.waveform("w") is None and awg.waveform("f") is None


def test_float_range_check_agrees_with_arithmetic():
    specials = [1.0, -1.0, 1.0000001, -1.0000001, 0.5, 0.99999994, 2.0, float("inf"), float("-inf"), 0.0, -0.0,
                1e-40, 1.5, -0.75, 3.4e38]
    rng = random.Random(7)
    values = specials + [rng.uniform(-1.2, 1.2) for _ in range(2000)]
    data = as_bytes(array.array("f", values), little=True)
    stored = array.array("f", values)
    expected = next((i for i, v in enumerate(stored) if not -1.0 <= v <= 1.0), -1)
    assert first_out_of_range(data, "float") == expected == 2
    for i, v in enumerate(stored):
        one = as_bytes(array.array("f", [0.0, v]), little=True)
        assert (first_out_of_range(one, "float") == 1) == (not -1.0 <= v <= 1.0), v
    ints = array.array("h", range(-32767, 32768))
    assert first_out_of_range(as_bytes(ints, True), "dac") == -1
    ints.append(-32768)
    assert first_out_of_range(as_bytes(ints, True), "dac") == len(ints) - 1


def test_memory_full_is_reported_and_clear_frees_it(bus, backend, clock):
    small = VirtualAwg(clock=clock, memory_points=100, serial="AWG-SMALL")
    bus.plug(small)
    gen = RawTmc(open_pyusb(backend, AWG_PID), timeout_ms=2000)
    gen.write(b"FORM:BORD SWAP;:DATA:ARB:DAC a," + block(bytes(120)) + b"\n")
    assert gen.query("DATA:VOL:FREE?") == "40\n"
    gen.write(b"DATA:ARB:DAC b," + block(bytes(100)) + b"\n")
    (entry,) = errors(gen)
    assert entry.startswith("-225,") and "50 points do not fit" in entry and "40 points free" in entry
    gen.write(b"DATA:ARB:DAC a," + block(bytes(200)) + b"\n")  # replacing a waveform reuses its room
    assert errors(gen) == [] and gen.query("DATA:VOL:FREE?") == "0\n"
    gen.write("DATA:VOL:CLE\n")
    assert gen.query("DATA:VOL:FREE?") == "100\n" and gen.query("DATA:VOL:CAT?") == '""\n'


def test_selecting_waveforms_and_the_sample_rate(awg, gen):
    gen.write(b"FORM:BORD SWAP;:DATA:ARB:DAC first," + block(bytes(16)) + b"\n")
    gen.write("FUNC:ARB first;:FUNC ARB;:FUNC:ARB:SRAT 1e6\n")
    assert gen.query("FUNC:ARB?;:FUNC?;:FUNC:ARB:SRAT?") == '"first";ARB;1.000000000E+06\n'
    assert gen.query("DATA:ATTR:POIN?") == "8\n"  # the selected waveform
    gen.write("SOUR:FUNC:ARB missing\n")
    gen.write("FUNC:ARB:SRAT 2e9\n")
    assert [e.split(",")[0] for e in errors(gen)] == ["-224", "-222"]
    gen.write("FUNC:ARB:SRAT MAX;:OUTP ON\n")
    assert gen.query("FUNC:ARB:SRAT?;:OUTP?;:FORM:BORD?") == "1.000000000E+09;1;SWAP\n"
    gen.write("*RST\n")
    assert gen.query("FORM:BORD?;:FUNC?") == "NORM;SIN\n"
    assert gen.query("DATA:VOL:CAT?") == '"first"\n'  # *RST leaves volatile memory alone


def test_opc_after_an_upload_raises_a_service_request(awg, gen):
    gen.write("*CLS;*ESE 1;*SRE 32\n")
    gen.write(b"FORM:BORD SWAP;:DATA:ARB:DAC w," + block(as_bytes(dac_samples(600), True)) + b";*OPC\n")
    notification = gen.interrupt()
    assert notification[0] == 0x81 and notification[1] & 0x60 == 0x60  # RQS and ESB
    assert gen.query("*ESR?") == "1\n"


def test_a_new_message_discards_an_unread_answer(awg, gen):
    gen.write("*IDN?\n")
    gen.write(b"DATA:ARB:DAC w," + block(bytes(16)) + b"\n")
    assert [e.split(",")[0] for e in errors(gen)] == ["-410"]
    assert awg.waveform("w") is not None


def test_an_aborted_upload_is_explained_and_the_device_carries_on(awg, gen):
    data = as_bytes(dac_samples(4096), True)
    message = b"FORM:BORD SWAP;:DATA:ARB:DAC cut," + block(data) + b"\n"
    btag = gen.write(message[:3000], eom=False)
    reply = gen.control(1, btag, 2, endpoint=0x01)  # INITIATE_ABORT_BULK_OUT, USBTMC 4.2.1.2
    assert reply[0] == 0x80  # FAILED: that transfer had completed, so the host clears the message
    assert gen.control(5, 0, 1)[0] == 0x01  # INITIATE_CLEAR
    assert gen.control(6, 0, 2)[0] == 0x01
    gen.clear_halt(0x01)
    (entry,) = errors(gen)
    assert entry.startswith("-161,") and "DATA:ARB:DAC cut" in entry and "aborted" in entry
    assert "of 8192 block bytes" in entry and "nothing stored" in entry
    assert awg.waveform("cut") is None
    gen.write(message)
    assert errors(gen) == [] and awg.waveform("cut").data == data


def test_other_blocks_are_not_streamed(awg, gen):
    gen.write(b"*ESE #H20;DATA:ARB:DAC w," + block(bytes(16)) + b"\n")  # a #H number before the block
    assert errors(gen) == [] and gen.query("*ESE?") == "32\n"
    # "#15;DATA" is a five-byte block: the first block decides, the message is parsed whole.
    gen.write(b"*SRE #15;DATA:ARB:DAC x," + block(bytes(16)) + b"\n")
    assert errors(gen)[0].startswith("-102,")
    assert awg.waveform("x") is None


# --- pacing --------------------------------------------------------------------------------


def test_wire_models_carry_what_usb_2_0_allows():
    assert FULL_SPEED.bytes_per_s == pytest.approx(1.216e6)
    assert HIGH_SPEED.bytes_per_s == pytest.approx(53.248e6)
    assert HIGH_SPEED.transfer_s(512) == pytest.approx(125e-6)  # one packet: one whole microframe
    assert HIGH_SPEED.transfer_s(1 << 20) == pytest.approx(158 * 125e-6)  # 2048 packets / 13 per microframe
    assert FULL_SPEED.transfer_s(1216) == pytest.approx(1e-3)


def test_pacer_takes_whole_frames_as_they_pass():
    pacer = OutPacer(HIGH_SPEED)
    size = 1 << 20
    assert pacer.offer(0.0, size) == 0  # nothing has crossed the wire yet
    due = pacer.next_due()
    assert 0 < due <= 11 * 125e-6 + 1e-9  # the next 64 KiB step
    taken = pacer.offer(10 * 125e-6, size)
    assert taken == 10 * 13 * 512
    taken += pacer.offer(157 * 125e-6, size - taken)
    assert taken == 157 * 13 * 512 and pacer.next_due() == pytest.approx(158 * 125e-6)
    assert pacer.offer(158 * 125e-6, size - taken) == size - taken
    assert pacer.next_due() is None
    # The next transfer starts when it is offered: the idle time is not banked.
    assert pacer.offer(1.0, 100) == 0 and pacer.offer(1.0 + 125e-6, 100) == 100


def test_pacer_ingest_rate_fills_and_drains_a_fifo():
    pacer = OutPacer(None, ingest_bytes_per_s=1.8e6, fifo_bytes=64 * 1024)
    assert pacer.offer(0.0, 100_000) == 64 * 1024
    due = pacer.next_due()
    assert due == pytest.approx(32 * 1024 / 1.8e6)
    assert pacer.offer(due, 100_000 - 64 * 1024) == pytest.approx(32 * 1024, abs=1)


def test_paced_device_naks_until_the_clock_allows(bus, backend, clock):
    paced = VirtualAwg(clock=clock, wire="full", serial="AWG-FS")
    bus.plug(paced)
    gen = RawTmc(open_pyusb(backend, AWG_PID))
    frame = gen.out_frame(1, b"*CLS\n")
    with pytest.raises(NoData):
        paced.bulk_out(0x01, frame)
    assert paced.next_deadline() == pytest.approx(clock.now() + 1e-3)
    clock.advance(1e-3)
    assert paced.bulk_out(0x01, frame) == len(frame)
    paced.set_pacing(wire=None)
    assert paced.bulk_out(0x01, gen.out_frame(2, b"*CLS\n")) == 20
    assert paced.pacing == (None, None)
    assert struct.unpack_from("<I", frame, 4)[0] == 5
