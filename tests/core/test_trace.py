"""The I/O trace: what the transport records, how it is grouped and decoded, and its bounds."""

from array import array

import pytest

from app.usbtmc import Instrument, TmcTimeoutError, open_interface
from app.usbtmc import trace as tr
from app.usbtmc.trace import Decoder, Recorder

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"
AWG = "USB0::0x1209::0x000C::AWG-0001::INSTR"


def decoded(recorder):
    decoder = Decoder()
    return [(e, decoder.decode(e)) for e in recorder.entries()]


def test_a_query_is_one_message_folding_its_three_transfers(sim):
    recorder = Recorder()
    with Instrument(SAM7, backend=sim, timeout_ms=300, trace=recorder) as inst:
        assert inst.query("*IDN?").startswith("XYZ")
    entries = recorder.entries()
    (query,) = [e for e in entries if e.kind == tr.MESSAGE and e.op == "query"]
    assert query.data == b"*IDN?\n" and query.reply.startswith(b"XYZ Company") and query.status == tr.OK
    inner = [e for e in entries if e.group == query.seq]
    assert [(e.kind, e.direction) for e in inner] == [(tr.BULK, "out"), (tr.BULK, "out"), (tr.BULK, "in")]
    assert all(e.t_ns > 0 and e.duration_ns >= 0 and e.status == tr.OK for e in inner)
    assert inner[0].endpoint == 0x01 and inner[2].endpoint & 0x80
    assert inner[0].requested == inner[0].actual == 12 + 6 + 2  # header, *IDN?\n, alignment
    decoder = Decoder()
    fields = [decoder.decode(e).fields for e in inner]
    assert fields[0] == {"MsgID": "DEV_DEP_MSG_OUT", "bTag": fields[0]["bTag"], "TransferSize": 6, "EOM": True}
    assert fields[1]["MsgID"] == "REQUEST_DEV_DEP_MSG_IN" and fields[1]["bTag"] == fields[0]["bTag"] + 1
    assert fields[2]["MsgID"] == "DEV_DEP_MSG_IN" and fields[2]["EOM"] and fields[2]["bTag"] == fields[1]["bTag"]


def test_the_descriptor_exchange_and_class_requests_are_recorded_first(sim):
    recorder = Recorder()
    with Instrument(SAM7, backend=sim, timeout_ms=300, trace=recorder):
        pass
    info = recorder.sessions[1]
    names = [tr.decode(e).summary for e in info.descriptors]
    assert names[:2] == ["GET_DESCRIPTOR DEVICE", "GET_DESCRIPTOR CONFIGURATION"]
    assert info.descriptors[0].data[:2] == bytes([18, 1]) and info.descriptors[-1].data[1] == 2
    # the configuration descriptor holds the USBTMC interface (class FE, subclass 03)
    config = info.descriptors[-1].data
    assert bytes([4, 0xFE, 3]) in config or b"\x09\x04" in config and b"\xfe\x03" in config
    summaries = [d.summary for _e, d in decoded(recorder)]
    assert "GET_CAPABILITIES: SUCCESS" in summaries


def test_status_byte_and_srq_notifications_are_decoded(sim):
    recorder = Recorder()
    with Instrument(SAM7, backend=sim, timeout_ms=300, trace=recorder) as inst:
        inst.query("*ESR?")
        inst.write("*ESE 32")
        inst.write("*SRE 32")
        inst.write("BOGUS")
        stb = inst.wait_srq(1000)
        inst.read_stb()
    summaries = [d.summary for _e, d in decoded(recorder)]
    srq = [s for s in summaries if s.startswith("SRQ notification")]
    assert srq == [f"SRQ notification: STB 0x{stb:02X} (RQS/MSS, ESB)"]
    assert any(s.startswith("READ_STATUS_BYTE reply bTag") for s in summaries)
    wait = [e for e in recorder.entries() if e.op == "wait_srq"]
    assert wait and wait[0].reply == bytes([stb])


def test_a_timeout_and_its_abort_are_marked_as_a_recovery_with_its_reason(sim):
    recorder = Recorder()
    with Instrument(SAM7, backend=sim, timeout_ms=200, trace=recorder) as inst:
        with pytest.raises(TmcTimeoutError):
            inst.query("NO:SUCH:QUERY?")
        assert inst.query("*IDN?").startswith("XYZ")
    entries = recorder.entries()
    (query,) = [e for e in entries if e.op == "query" and e.data == b"NO:SUCH:QUERY?\n"]
    assert query.status == tr.TIMEOUT and "did not answer in time" in query.detail
    failed = [e for e in entries if e.group == query.seq and e.status == tr.TIMEOUT]
    assert failed and failed[0].kind == tr.BULK and failed[0].direction == "in"
    (recovery,) = [e for e in entries if e.kind == tr.RECOVERY]
    assert recovery.group == query.seq
    assert recovery.text.startswith("ABORT_BULK_IN bTag") and "Bulk-IN timeout" in recovery.text
    assert "aborted Bulk-IN transfer" in recovery.detail or "usable" in recovery.detail
    steps = [tr.decode(e).summary for e in entries if e.step == recovery.seq]
    assert steps[0].startswith("INITIATE_ABORT_BULK_IN bTag")
    assert any(s.startswith("CHECK_ABORT_BULK_IN_STATUS") for s in steps)
    assert any(s.startswith("drain: 0 bytes discarded") for s in steps)


def test_data_is_capped_per_transfer_and_the_ring_by_bytes(sim):
    recorder = Recorder(transfer_cap_bytes=16, total_cap_bytes=20_000)
    with Instrument(AWG, backend=sim, timeout_ms=2000, trace=recorder) as inst:
        inst.write_raw(b"DATA:ARB:DAC x,#41000" + bytes(1000) + b"\n")
        for _ in range(200):
            inst.query("*OPC?")
    entries = recorder.entries()
    assert all(len(e.data) <= 16 for e in entries if e.is_transfer)
    assert recorder.size_bytes <= 20_000 and recorder.dropped > 0
    assert entries[0].seq > 1 and entries[-1].seq == recorder.last_seq
    big = [e for e in recorder.sessions[1].descriptors]
    assert big, "the descriptors outlive the ring"


@pytest.mark.parametrize("path", ["general", "hot"])
def test_the_ring_bound_holds_for_the_memory_it_really_takes(path):
    """The ring's byte cap bounds the Python heap its entries take, not only the bytes it
    counts: a full ring of query-sized records (a message and three small transfers each)
    frees at most the cap, plus a little, when cleared; on the general path (an Entry and a
    record per transfer) as on a query's hot one (a listed message, one call for the batch)."""
    import gc
    import tracemalloc
    from array import array

    cap = 2 * 1024 * 1024
    recorder = Recorder(total_cap_bytes=cap)
    trace = recorder.open_session("x")
    frame, request, reply = b"\x01\x05\xfa\x00" + bytes(8) + b"*IDN?\n\x00\x00", bytes(12), bytes(44)
    tracemalloc.start()
    try:
        for _ in range(3 * cap // 1000):  # three times what the ring holds
            start = trace.now()
            if path == "hot":
                item = trace.open_message("query", b"*IDN?\n")
                trace.batch(0x01, [(array("B", frame), 100), (request, 100)], [len(frame), len(request)], 0x82, 64,
                            reply, [start, start + 1, start + 2, start + 3])
                trace.close_message(item, reply[12:40])
                continue
            entry = trace.begin("query", b"*IDN?\n")
            trace.bulk(0x01, "out", len(frame), len(frame), frame, start)
            trace.bulk(0x01, "out", len(request), len(request), request, start)
            trace.bulk(0x82, "in", 64, len(reply), reply, start)
            trace.end(entry, reply[12:40])
        assert recorder.dropped > 0 and recorder.size_bytes <= cap
        gc.collect()
        full = tracemalloc.get_traced_memory()[0]
        recorder.clear()
        gc.collect()
        freed = full - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert freed <= cap * 1.1, f"a {cap:,}-byte ring held {freed:,} bytes of heap"


def test_since_hands_a_reader_only_new_entries(sim):
    recorder = Recorder()
    with Instrument(SAM7, backend=sim, timeout_ms=300, trace=recorder) as inst:
        seen = recorder.last_seq
        inst.write("*CLS")
        new = recorder.since(seen)
        assert [e.kind for e in new] == [tr.MESSAGE, tr.BULK]
        assert recorder.since(recorder.last_seq) == []
        recorder.marker("here")
        assert recorder.since(new[-1].seq)[0].text == "here"
        recorder.clear()
        assert len(recorder) == 0 and recorder.since(0) == []


def _query(trace, extra_read: bool = False):
    """One query on the hot path: its message, the batch of three transfers and, for a long reply,
    a further Bulk-IN read before the message ends."""
    start = trace.now()
    item = trace.open_message("query", b"*IDN?\n")
    trace.batch(0x01, [(array("B", bytes(20)), 100), (bytes(12), 100)], [20, 12], 0x82, 64, b"r" * 64,
                [start, start + 10, start + 20, start + 30])
    if extra_read:
        trace.bulk(0x82, "in", 64, 40, b"s" * 40, trace.now())
    trace.close_message(item, b"r" * 52 + b"s" * 40)
    return item[0]


def test_a_querys_transfers_read_back_as_entries_in_order_from_any_seq():
    """A query's three transfers are kept together and read back as three entries with their
    own seqs: since() from a seq inside them hands over only the later ones, a limit counts
    entries, and a reader taking one entry at a time sees each exactly once."""
    recorder = Recorder()
    trace = recorder.open_session("x")
    first = _query(trace)
    second = _query(trace, extra_read=True)
    entries = recorder.entries()
    assert [e.seq for e in entries] == list(range(first, first + 9)) and len(recorder) == 9
    assert [(e.kind, e.direction, e.group) for e in entries[:4]] == [
        (tr.MESSAGE, "", 0), (tr.BULK, "out", first), (tr.BULK, "out", first), (tr.BULK, "in", first)]
    assert [e.duration_ns for e in entries[1:4]] == [10, 10, 10] and entries[3].data == b"r" * 64
    assert [e.requested for e in entries[1:4]] == [20, 12, 64] and entries[3].actual == 64
    # The long reply's further read comes after the batch it follows, under the same message.
    assert entries[4].seq == second and [e.group for e in entries[5:]] == [second] * 4
    assert entries[8].data == b"s" * 40
    assert [e.seq for e in recorder.since(first + 1)] == list(range(first + 2, first + 9))
    assert [e.seq for e in recorder.since(first + 2, limit=2)] == [first + 3, first + 4]
    seen, last = [], 0
    while batch := recorder.since(last, limit=1):
        seen.append(batch[0].seq)
        last = batch[0].seq
    assert seen == [e.seq for e in entries]
    assert recorder.first_seq == first and recorder.last_seq == first + 8
    assert recorder.size_bytes == sum(e.cost for e in entries)


def test_a_querys_transfers_wait_for_its_end_but_not_for_anything_else():
    """While a query runs its message is in the ring at once (a reader sees it pending); its
    batch's transfers are written when the message ends, or as soon as anything else of the
    session is recorded first (a recovery, a failed transfer), so the order stays the bus's."""
    recorder = Recorder()
    trace = recorder.open_session("x")
    start = trace.now()
    item = trace.open_message("query", b"MEAS?\n")
    trace.batch(0x01, [(bytes(20), 100), (bytes(12), 100)], [20, 12], 0x82, 64, b"x" * 20,
                [start, start + 1, start + 2, start + 3])
    (pending,) = recorder.since(0)
    assert pending.kind == tr.MESSAGE and pending.duration_ns == 0
    trace.transfer(tr.BULK, 0x82, "in", 64, 0, tr.TIMEOUT, None, start + 3, start + 9)
    with trace.recovery("after the read timed out"):
        trace.transfer(tr.CONTROL, 0xA2, "in", 2, 2, tr.OK, b"\x01\x00", start + 10, start + 11,
                       b"\xa2\x03\x00\x00\x82\x00\x02\x00")
    trace.close_message(item, None, TmcTimeoutError("the reply did not come"))
    kinds = [(e.kind, e.status) for e in recorder.entries()]
    assert kinds == [(tr.MESSAGE, tr.TIMEOUT), (tr.BULK, tr.OK), (tr.BULK, tr.OK), (tr.BULK, tr.OK),
                     (tr.BULK, tr.TIMEOUT), (tr.RECOVERY, tr.OK), (tr.CONTROL, tr.OK)]
    assert "Bulk-IN timeout" in recorder.entries()[5].text


def test_a_writes_transfer_waits_for_its_end_but_not_for_the_next_transfer():
    """A write's Bulk-OUT transfer is written with the message's end (one lock less for a write of
    one transfer); a second transfer, a failure or a recovery writes it first, so the ring keeps
    the bus's order and every transfer its group, data and length."""
    recorder = Recorder(transfer_cap_bytes=16)
    trace = recorder.open_session("x")
    item = trace.open_message("write", b"DATA " + bytes(40))
    start = trace.now()
    frame = array("B", range(60))  # a frame as the writer builds it
    trace.bulk(0x01, "out", 60, 60, frame, start)
    (pending,) = recorder.since(0)
    assert pending.kind == tr.MESSAGE and pending.duration_ns == 0
    trace.bulk(0x01, "out", 60, 60, memoryview(bytes(range(100, 160))), start + 5)
    assert [e.kind for e in recorder.since(0)] == [tr.MESSAGE, tr.BULK]  # the first, written by the second
    trace.transfer(tr.BULK, 0x01, "out", 60, 0, tr.TIMEOUT, bytes(60), start + 9, start + 12)
    with trace.recovery("after the transfer timed out"):
        pass
    trace.close_message(item, None, TmcTimeoutError("the device took nothing"))
    entries = recorder.entries()
    assert [(e.kind, e.status) for e in entries] == [(tr.MESSAGE, tr.TIMEOUT), (tr.BULK, tr.OK), (tr.BULK, tr.OK),
                                                     (tr.BULK, tr.TIMEOUT), (tr.RECOVERY, tr.OK)]
    assert [e.seq for e in entries] == list(range(entries[0].seq, entries[0].seq + 5))
    first, second = entries[1:3]
    assert first.data == bytes(range(16)) and second.data == bytes(range(100, 116))
    assert all(e.group == entries[0].seq and e.requested == 60 for e in entries[1:4])
    assert "Bulk-OUT timeout" in entries[4].text  # the recovery names the failure it answers
    one = recorder.open_session("y")
    item = one.open_message("write", b"*RST\n")
    one.bulk(0x01, "out", 16, 16, bytes(16), one.now())
    one.close_message(item, None)
    assert [e.kind for e in recorder.since(entries[-1].seq)] == [tr.MESSAGE, tr.BULK]


def test_packed_queries_leave_the_ring_whole_and_count_as_entries():
    recorder = Recorder(total_cap_bytes=20 * (4 * tr.ENTRY_OVERHEAD_BYTES + 200))
    trace = recorder.open_session("x")
    for _ in range(100):
        _query(trace)
    entries = recorder.entries()
    assert recorder.dropped > 0 and len(recorder) == len(entries) == 4 * 100 - recorder.dropped
    assert recorder.size_bytes == sum(e.cost for e in entries) <= recorder.total_cap_bytes
    assert entries[-1].seq == recorder.last_seq and entries[0].seq == recorder.first_seq
    assert recorder.since(entries[0].seq - 1)[0].seq == entries[0].seq
    recorder.clear()
    assert len(recorder) == 0 and recorder.since(0) == [] and recorder.cleared_before == entries[-1].seq + 1


def test_a_message_read_while_it_runs_is_completed_in_place_when_it_ends():
    """A query's message is kept in the ring in a cheap form and becomes an Entry when read;
    a reader that took it while it ran (the dock) sees it end: same object, reply and duration."""
    recorder = Recorder()
    trace = recorder.open_session("x")
    item = trace.open_message("query", memoryview(b"MEAS:VOLT?\n"))
    (running,) = recorder.since(0)
    assert running.kind == tr.MESSAGE and running.op == "query" and running.duration_ns == 0
    assert running.data == b"MEAS:VOLT?\n" and running.requested == 11
    start = trace.now()
    trace.bulk(0x01, "out", 24, 24, bytes(24), start)
    trace.close_message(item, b"+1.5E+00\n")
    assert running.duration_ns > 0 and running.reply == b"+1.5E+00\n" and running.actual == 9
    assert running.cost == len(running.data) + len(running.reply) + tr.ENTRY_OVERHEAD_BYTES
    assert recorder.entries()[0] is running and recorder.entries()[1].group == running.seq
    failed = trace.open_message("write", b"x" * 10_000)
    trace.close_message(failed, None, TmcTimeoutError("Bulk-OUT transfer timed out"))
    entry = recorder.entries()[-1]
    assert entry.status == tr.TIMEOUT and "timed out" in entry.detail
    assert entry.requested == 10_000 and entry.data == b"x" * tr.MESSAGE_PREVIEW_BYTES
    assert recorder.size_bytes == sum(e.cost for e in recorder.entries())


@pytest.mark.parametrize("opened", ["open_message", "begin"])
def test_a_message_is_kept_whole_up_to_the_cap_and_as_a_preview_beyond_it(opened):
    """A SCPI message up to MESSAGE_CAP_BYTES is kept whole (a script repeats it); a longer one
    (a waveform block) keeps its first MESSAGE_PREVIEW_BYTES and its true length, whether it
    came as bytes or as a memoryview of another format."""
    recorder = Recorder()
    trace = recorder.open_session("x")
    whole = bytes(range(256)) * (tr.MESSAGE_CAP_BYTES // 256)
    longer = memoryview(array("h", range(5000)))  # 10,000 bytes of int16
    for sent in (whole, longer):
        token = getattr(trace, opened)("write", sent)
        if opened == "begin":
            trace.end(token)
        else:
            trace.close_message(token, None)
    kept, preview = [e for e in recorder.entries() if e.kind == tr.MESSAGE]
    assert kept.data == whole and kept.requested == len(whole)
    assert preview.data == longer.tobytes()[: tr.MESSAGE_PREVIEW_BYTES] and preview.requested == 10_000
    assert tr.message_text(preview).endswith("…")
    assert recorder.size_bytes == sum(e.cost for e in recorder.entries())


def test_an_upload_through_the_core_keeps_its_preview_and_its_first_transfer(sim):
    recorder = Recorder()
    block = b"DATA:ARB:DAC #510000" + bytes(10_000) + b"\n"
    with Instrument(AWG, backend=sim, timeout_ms=2000, trace=recorder) as inst:
        inst.write_raw(block)
    (write,) = [e for e in recorder.entries() if e.kind == tr.MESSAGE and e.op == "write"]
    assert write.data == block[: tr.MESSAGE_PREVIEW_BYTES] and write.requested == len(block)
    first = next(e for e in recorder.entries() if e.group == write.seq)
    assert first.data[12:32] == block[:20] and first.requested > tr.MESSAGE_PREVIEW_BYTES


def test_a_query_that_fails_mid_batch_keeps_every_transfer_and_its_status(sim):
    """The query's transfers are recorded in one call after the batch; a batch that fails
    part-way records what ran, with the failed transfer's status."""
    recorder = Recorder()
    with Instrument(SAM7, backend=sim, timeout_ms=100, trace=recorder) as inst:
        with pytest.raises(TmcTimeoutError):
            inst.query("NOPE?")
    entries = recorder.entries()
    query = next(e for e in entries if e.kind == tr.MESSAGE and e.op == "query")
    inner = [e for e in entries if e.group == query.seq and e.step == 0]
    assert [(e.direction, e.status) for e in inner[:3]] == [("out", tr.OK), ("out", tr.OK), ("in", tr.TIMEOUT)]
    assert query.status == tr.TIMEOUT and query.duration_ns > 0


def test_tracing_off_records_nothing_and_changes_nothing(sim):
    interface = open_interface(SAM7, sim)
    with Instrument(interface, timeout_ms=300) as inst:
        assert inst.trace is None and interface.transport.trace is None
        assert inst.query("*IDN?").startswith("XYZ")


def test_decoding_is_pure():
    out = tr.Entry(0, 1, tr.BULK, 0, endpoint=1, direction="out", requested=24, actual=24,
                   data=bytes([2, 7, 0xF8, 0, 0x00, 0x10, 0, 0, 2, ord("\n"), 0, 0]))
    fields = tr.decode(out).fields
    assert fields == {"MsgID": "REQUEST_DEV_DEP_MSG_IN", "bTag": 7, "TransferSize": 4096,
                      "TermCharEnabled": True, "TermChar": 10}
    bad = tr.Entry(0, 1, tr.BULK, 0, endpoint=1, direction="out", requested=12, actual=12, data=bytes(12))
    assert tr.decode(bad).usbtmc == ""
    assert tr.hex_dump(b"AB\x00").startswith("00000000  41 42 00")
