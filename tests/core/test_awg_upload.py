"""Waveform uploads through the core to the virtual AWG: byte-for-byte round trips, Cancel,
a device that stops taking data, transfer sizing for a quick Cancel, and memory use."""

from __future__ import annotations

import threading
import tracemalloc
import zlib
from dataclasses import replace

import numpy as np
import pytest

from app.sim.awg import VirtualAwg
from app.sim.device import NoData
from app.usbtmc import AbortedError, Instrument, TmcTimeoutError
from app.waveforms import TEMPLATES, ArraySource, ShapeSource, UploadPlan, run_upload

AWG = "USB0::0x1209::0x000C::AWG-0001::INSTR"
MIB = 1 << 20


@pytest.fixture
def awg_device(sim):
    return sim.bus.find(kind=VirtualAwg)


@pytest.fixture
def awg(sim):
    with Instrument(AWG, backend=sim, timeout_ms=2000) as inst:
        yield inst


def errors(inst) -> list[str]:
    found = []
    for _ in range(20):
        entry = inst.query("SYST:ERR?")
        if entry.startswith("0,"):
            break
        found.append(entry)
    return found


@pytest.mark.parametrize("template", ["awg-dac", "awg-float"])
@pytest.mark.parametrize("byte_order", ["little", "big"])
@pytest.mark.parametrize("points", [4096, 4099, 3 * MIB // 4 + 5])  # whole 512-byte packets, not, several transfers
def test_uploads_round_trip_byte_for_byte(awg, awg_device, template, byte_order, points):
    rng = np.random.default_rng(points)
    source = ArraySource(rng.uniform(-1, 1, points), "noise")
    plan = UploadPlan(source, TEMPLATES[template], name="rt", byte_order=byte_order)
    result = run_upload(awg, plan)
    assert result.errors == () and result.opc is True and result.verified is True
    stored = awg_device.waveform("rt")
    kind = "<i2" if template == "awg-dac" else "<f4"
    values = source.chunk(0, points)
    expected = (np.rint(values * 32767) if kind == "<i2" else values).astype(kind).tobytes()
    assert bytes(stored.data) == expected
    assert result.crc32 == zlib.crc32(expected) and result.points == points
    assert result.bytes_sent == plan.total_bytes


def test_cancel_mid_upload_leaves_the_device_usable_and_explains(awg, awg_device):
    abort = threading.Event()
    seen = []

    def progress(done, total, elapsed):
        seen.append(done)
        if len(seen) == 2:
            abort.set()  # Cancel after the second transfer

    plan = UploadPlan(ShapeSource("sine", 4 * MIB), TEMPLATES["awg-dac"], name="cut")
    with pytest.raises(AbortedError, match="aborted by the user") as info:
        run_upload(awg, plan, abort=abort, progress=progress)
    assert "device clear" in str(info.value) and "the session is usable" in str(info.value)
    assert awg.query("*IDN?").startswith("TMC Console,Virtual AWG")
    (entry,) = errors(awg)
    assert entry.startswith("-161,") and "DATA:ARB:DAC CUT" in entry.upper() and "aborted" in entry
    assert f"after {seen[-1] - len(plan.head_preview()[0])} of {8 * MIB} block bytes" in entry
    assert awg_device.waveform("cut") is None
    result = run_upload(awg, plan)
    assert result.verified and result.errors == ()


def test_a_device_that_stops_taking_data_times_out_with_a_clear_message(sim, awg_device):
    transfers = []

    def stop_after_one(direction, data):
        if len(data) > 4096:
            transfers.append(len(data))
        if len(transfers) > 1:  # the first large transfer taken: then NAK for ever
            raise NoData("the instrument stopped reading")

    with Instrument(AWG, backend=sim, timeout_ms=150) as inst:
        inst.write("*CLS")
        awg_device.faults[0x01] = stop_after_one
        plan = UploadPlan(ShapeSource("ramp", 2 * MIB), TEMPLATES["awg-dac"], name="stuck")
        with pytest.raises(TmcTimeoutError) as info:
            run_upload(inst, plan)
        del awg_device.faults[0x01]
        text = str(info.value)
        assert text.startswith("the device did not accept a 1048576-byte Bulk-OUT transfer in time")
        assert "device clear sent to discard the partial message" in text and "the session is usable" in text
        assert inst.query("*OPC?") == "1"
        (entry,) = errors(inst)
        assert "STUCK" in entry.upper() and "aborted" in entry and "nothing stored" in entry


def test_a_device_slower_than_its_quirk_rate_is_aborted_mid_transfer(sim, awg_device):
    awg_device.set_pacing(ingest_bytes_per_s=1.8e6)  # like a 33622A: a 1 MiB transfer takes 0.58 s
    with Instrument(AWG, backend=sim, timeout_ms=100) as inst:
        inst.quirks = replace(inst.quirks, min_bytes_per_s=100_000_000)  # it claims 100 MB/s: 110 ms per MiB
        plan = UploadPlan(ShapeSource("sine", MIB), TEMPLATES["awg-dac"], name="slow")
        with pytest.raises(TmcTimeoutError) as info:
            run_upload(inst, plan)
        assert "aborted Bulk-OUT transfer" in info.value.recovery and "after the device took" in info.value.recovery
        awg_device.set_pacing()
        assert inst.query("*OPC?") == "1"
        assert any("SLOW" in e.upper() and "aborted" in e for e in errors(inst))


def test_large_transfers_get_time_for_their_bytes_without_a_quirk(sim, awg_device):
    # USBTMC gives no rate; a 1 MiB transfer at 1.8 MB/s outlasts a 100 ms timeout, and
    # the session allows it time for its bytes (DEFAULT_MIN_BYTES_PER_S) instead of aborting it.
    awg_device.set_pacing(ingest_bytes_per_s=1.8e6)
    with Instrument(AWG, backend=sim, timeout_ms=100) as inst:
        assert inst.quirks.min_bytes_per_s == 0
        run_upload(inst, UploadPlan(ShapeSource("sine", MIB), TEMPLATES["awg-dac"], name="slow"))
        awg_device.set_pacing()
        assert inst.query("*OPC?") == "1"
        assert errors(inst) == []


def test_abort_latency_sizes_transfers_from_the_measured_rate(sim, awg_device, transfer_log):
    awg_device.set_pacing(ingest_bytes_per_s=2e6)
    with Instrument(AWG, backend=sim, timeout_ms=2000) as inst:
        transfer_log.writes.clear()
        inst.write_stream([b"DATA:ARB:DAC lat,#6524288", bytes(512 * 1024), b"\n"], abort=threading.Event(),
                          abort_latency_ms=50)
        sizes = [n for n, _eom in transfer_log.message_transfers()]
        assert sizes[0] == 64 * 1024  # before a rate is known
        assert all(n % 512 == 0 for n in sizes[:-1]) and max(sizes) <= 256 * 1024
        assert len(sizes) >= 4
        awg_device.set_pacing()
        assert inst.query("DATA:ATTR:POIN? lat") == "262144"


def test_a_short_last_transfer_does_not_reset_the_rate_the_next_upload_starts_from(sim, awg_device, transfer_log):
    # Unpaced device, a message a little over the largest transfer: once the rate is known an
    # upload is one full transfer and a short tail, and the tail's rate (mostly turnaround) must
    # not send the next upload back to 64 KiB transfers.
    with Instrument(AWG, backend=sim, timeout_ms=2000) as inst:
        most = inst.quirks.max_out_transfer_bytes
        message = [b"DATA:ARB:DAC fast,#9%09d" % most, bytes(most), b"\n"]
        for _ in range(2):
            inst.write_stream(message, abort=threading.Event(), abort_latency_ms=50)
        transfer_log.writes.clear()
        inst.write_stream(message, abort=threading.Event(), abort_latency_ms=50)
        sizes = [n for n, _eom in transfer_log.message_transfers()]
        assert sizes[0] > 64 * 1024, sizes
        assert inst.query("DATA:ATTR:POIN? fast") == str(most // 2)


def test_a_cancellable_upload_that_fits_one_transfer_is_one_transfer_and_measures_the_rate(sim, transfer_log):
    # The GUI's uploads always pass an abort flag; one that is one transfer anyway goes out as a
    # command does, still learns the rate the next paced upload starts from, and still stops
    # before anything is sent when the flag is already set.
    with Instrument(AWG, backend=sim, timeout_ms=2000) as inst:
        block = bytes(64 * 1024)
        message = b"DATA:ARB:DAC one,#6%06d" % len(block) + block + b"\n"
        done = []
        inst.write_stream((message,), len(message), abort=threading.Event(), abort_latency_ms=50,
                          progress=lambda sent, total: done.append((sent, total)))
        assert [(n, eom) for n, eom in transfer_log.message_transfers()] == [(len(message), True)]
        assert done == [(len(message), len(message))]
        assert inst._writer.paced_rate is not None and inst._writer.paced_rate > 0
        assert inst.query("DATA:ATTR:POIN? one") == str(len(block) // 2)
        transfer_log.writes.clear()
        stop = threading.Event()
        stop.set()
        with pytest.raises(AbortedError, match="before it was sent"):
            inst.write_stream((message,), len(message), abort=stop, abort_latency_ms=50)
        assert transfer_log.message_transfers() == []
        assert errors(inst) == []


def test_a_large_upload_keeps_one_copy_of_the_waveform(awg, awg_device):
    plan = UploadPlan(ShapeSource("triangle", 16 * MIB), TEMPLATES["awg-dac"], name="big")  # 32 MiB of int16
    tracemalloc.start()
    try:
        result = run_upload(awg, plan)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.verified
    waveform = plan.total_bytes
    # The device's copy, plus transfer- and chunk-sized buffers on the way (the encoder's queue,
    # the frame): 42-45 MiB here. A second copy of the waveform anywhere would reach 64 MiB.
    assert peak < 1.5 * waveform, f"peak {peak / MIB:.1f} MiB for a {waveform / MIB:.1f} MiB upload"
