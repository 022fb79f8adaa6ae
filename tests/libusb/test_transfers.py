"""Transfers through the real libusb: multi-MiB blocks, timeouts recovered by abort, STALL and clear halt."""

import errno

import pytest

pytestmark = pytest.mark.libusb

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"
LOOPBACK = "USB0::0x1209::0x0002::LOOP-0001::INSTR"


def _key(bus, kind: str) -> str:
    return next(d["key"] for d in bus.devices if d["kind"] == kind)


def test_a_multi_mib_block_goes_out_and_comes_back_byte_for_byte(bus, host):
    size = 6 * 1024 * 1024 + 123  # several 1 MiB transfers and an odd tail
    result = host.run(bus, "block", {
        "resource": LOOPBACK, "bytes": size, "write_prefix": "MEM:DATA ", "read_query": "MEM:DATA?",
    })
    assert result["got_bytes"] == size
    assert result["got_sha256"] == result["sent_sha256"]
    assert result["idn_after"].startswith("TMC Console,Virtual Loopback")


def test_an_upload_in_small_transfers_keeps_two_in_flight_and_arrives_intact(make_bus, host):
    bus = make_bus(["loopback"])
    size = 256 * 1024 + 5
    common = {"resource": LOOPBACK, "bytes": size, "transfer_bytes": 4096}
    host.run(bus, "block", {**common, "write_prefix": "MEM:DATA "})  # the upload alone, nothing else
    assert bus.stats(_key(bus, "loopback"))["most_outstanding"] == 2
    result = host.run(bus, "block", {**common, "read_query": "MEM:DATA?"})
    assert result["got_sha256"] == result["sent_sha256"] and result["got_bytes"] == size


def test_a_cancellable_upload_also_keeps_two_in_flight(make_bus, host):
    # The console's uploads carry an abort flag and are paced for a quick Cancel; they take
    # the same overlapped path, Cancel cancelling the queued transfer (tests/core/test_cancel.py).
    bus = make_bus(["loopback"])
    size = 256 * 1024 + 5
    common = {"resource": LOOPBACK, "bytes": size, "transfer_bytes": 4096}
    host.run(bus, "block", {**common, "write_prefix": "MEM:DATA ", "cancellable": True})
    assert bus.stats(_key(bus, "loopback"))["most_outstanding"] == 2
    result = host.run(bus, "block", {**common, "read_query": "MEM:DATA?"})
    assert result["got_sha256"] == result["sent_sha256"] and result["got_bytes"] == size


def test_a_read_timeout_is_recovered_by_abort_through_discardurb(bus, host):
    key = _key(bus, "sam7")
    before = bus.stats(key)["discarded"]
    # The SAM7 gives no response to a query with an undefined mnemonic (a command error).
    result = host.run(bus, "timeout", {"resource": SAM7, "silent_query": "NOPE?", "timeout_ms": 300})
    assert result["raised"] == "TmcTimeoutError", result
    assert "abort" in result["recovery"].lower() and "usable" in result["recovery"]
    assert 0.25 < result["elapsed_s"] < 5
    assert result["next"].startswith("XYZ Company Ltd, SAM7-EK")
    # libusb timed the transfer out by discarding its URB: the kernel path a real device takes.
    assert bus.stats(key)["discarded"] > before


def test_a_delayed_answer_is_waited_for_without_spinning(bus, host):
    result = host.run(bus, "timeout", {
        "resource": LOOPBACK, "silent_query": "SYST:DEL 1500;*IDN?", "timeout_ms": 400, "next": "*OPC?",
    })
    assert result["raised"] == "TmcTimeoutError" and result["next"] == "1"


def test_a_stalled_bulk_out_is_reported_and_cleared(bus, host):
    result = host.run(bus, "stall", {"resource": SAM7, "vid": 0x1209, "pid": 0x0001})
    libusb_error_pipe = -9
    assert result["bad_header"]["backend_error_code"] == libusb_error_pipe, result
    assert result["while_halted"]["errno"] == errno.EPIPE
    assert "halted its Bulk-OUT endpoint" in result["session"] and "cleared" in result["session"]
    assert result["after_clear"].startswith("XYZ Company Ltd, SAM7-EK")


def test_a_host_killed_mid_transfer_leaves_the_device_usable_for_the_next(bus, host):
    key = _key(bus, "sam7")
    doomed = host.start(bus, "unplug", {"resource": SAM7, "timeout_ms": 30000})  # reads until told otherwise
    assert doomed.step()["step"] == "reading"
    assert bus.wait_in_flight(key)
    doomed.kill()  # SIGKILL inside the transfer: no release, no discard
    replies = host.run(bus, "sam7", {"resource": SAM7, "script": ["*IDN?"]})["replies"]
    assert replies["00 *IDN?"].startswith("XYZ Company Ltd, SAM7-EK")


@pytest.mark.parametrize("pipeline", ["on", "off"])
def test_queries_overlap_their_transfers_on_libusb_and_recover_a_timeout_inside_the_batch(make_bus, host, pipeline):
    bus = make_bus(["sam7"])  # a bus of its own: its URB counts are this test's alone
    key = _key(bus, "sam7")
    result = host.run(bus, "pipelined_query", {
        "resource": SAM7, "queries": ["*IDN?", "COUNT:READ?", "DEBUG:FLAGS?"], "silent_query": "NOPE?", "timeout_ms": 300,
    }, env={"TMC_PIPELINE": pipeline})
    stats = bus.stats(key)
    assert result["pipelined"] is (pipeline == "on")
    assert result["replies"][0].startswith("XYZ Company Ltd, SAM7-EK") and result["replies"][1] == "0"
    assert result["replies"][2].startswith("#H")
    # Command, read request and first read are submitted before any is reaped; one by one, never more than one.
    assert stats["most_outstanding"] == (3 if pipeline == "on" else 1), stats
    silent = result["silent"]
    assert silent["raised"] == "TmcTimeoutError", result
    assert "abort" in silent["recovery"].lower() and "usable" in silent["recovery"]
    assert 0.25 < silent["elapsed_s"] < 5
    assert stats["discarded"] >= 1  # libusb timed the read out by discarding its URB
    assert result["next"] == result["replies"][0]


def test_sessions_on_two_threads_share_libusb_and_each_gets_its_own_replies(bus, host):
    rounds = 200
    result = host.run(bus, "concurrent_sessions", {"sam7": SAM7, "loopback": LOOPBACK, "rounds": rounds})
    assert "errors" not in result and result["alive"] == [], result
    assert result["sam7_pipelined"] is True
    assert len(result["sam7_distinct"]) == 1 and result["sam7_distinct"][0].startswith("XYZ Company Ltd, SAM7-EK")
    assert result["loopback_blocks_ok"] == rounds // 10


def test_a_traced_session_over_libusb_records_batched_transfers_and_the_abort(make_bus, host):
    bus = make_bus(["sam7"])
    result = host.run(bus, "traced", {"resource": SAM7})
    assert result["pipelined"] is True and result["reply"].startswith("XYZ Company Ltd")
    entries = result["entries"]
    assert result["descriptors"] >= 2
    query = next(e for e in entries if e["op"] == "query")
    inner = [e for e in entries if e["group"] == query["seq"]]
    assert [e["summary"].split()[0] for e in inner] == ["DEV_DEP_MSG_OUT", "REQUEST_DEV_DEP_MSG_IN", "DEV_DEP_MSG_IN"]
    assert all(e["status"] == "ok" and e["duration_ns"] >= 0 for e in inner)
    silent = [e for e in entries if e["op"] == "query"][1]
    assert silent["status"] == "timeout"
    assert any(e["group"] == silent["seq"] and e["status"] == "timeout" and e["direction"] == "in" for e in entries)
    recovery = next(e for e in entries if e["kind"] == "recovery")
    steps = [e["summary"] for e in entries if e["step"] == recovery["seq"]]
    assert steps[0].startswith("INITIATE_ABORT_BULK_IN")
    clear = next(e for e in entries if e["op"] == "clear")
    assert [e["summary"] for e in entries if e["group"] == clear["seq"]][0] == "INITIATE_CLEAR: SUCCESS"


def test_closing_cancels_a_transfer_waiting_out_a_long_timeout_over_libusb(make_bus, host):
    """Instrument.cancel_transfers() from another thread ends a Bulk-IN that waits out a
    600 s timeout on the real libusb (libusb_cancel_transfer on the asynchronous engine)."""
    bus = make_bus(["sam7"])
    result = host.run(bus, "cancel_stuck", {"resource": SAM7}, timeout_s=120)
    assert result["ended"] and result["aborted"], result
    assert "cancelled" in result["raised"][0]
    assert result["after"].startswith("XYZ Company Ltd")
