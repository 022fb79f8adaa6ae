"""A query's command, read request and first read as one batch (UsbTransport.bulk_batch), and its recovery paths."""

from dataclasses import replace

import pytest

from app.usbtmc import Instrument, Quirks, TmcTimeoutError, list_resources, open_interface
from app.usbtmc.transport import Outcome, UsbTransport

LOOPBACK_PID = 0x0002


@pytest.fixture
def spy(monkeypatch):
    """Records each batch the test's sessions send (``spy.batches``); ``spy.answers`` can replace
    what the transport returns, one batch each."""

    class Spy:
        def __init__(self) -> None:
            self.batches: list = []
            self.answers: list = []

    found = Spy()
    real = UsbTransport.bulk_batch

    def bulk_batch(transport, outs, in_length, in_timeout_ms, on_sent=None):
        found.batches.append([bytes(data) for data, _timeout in outs])
        return found.answers.pop(0) if found.answers else real(transport, outs, in_length, in_timeout_ms, on_sent=on_sent)

    monkeypatch.setattr(UsbTransport, "bulk_batch", bulk_batch)
    return found


def test_a_short_query_goes_out_as_one_batch_of_command_and_request(sam7, spy):
    batches = spy.batches
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")
    (command, request), = batches
    assert command[0] == 1 and command[12:18] == b"*IDN?\n"  # DEV_DEP_MSG_OUT
    assert request[0] == 2 and request[1] == (command[1] % 255) + 1  # REQUEST_DEV_DEP_MSG_IN, the next bTag
    assert not sam7.pipelined  # the in-process bus has no libusb: the batch ran one transfer at a time


def test_no_pipelining_and_multi_transfer_messages_take_the_write_then_read_path(sim, spy):
    resource = next(i.resource for i in list_resources(sim) if i.pid == LOOPBACK_PID)
    with Instrument(resource, backend=sim, quirks=replace(Quirks(), no_pipelining=True)) as inst:
        batches = spy.batches
        assert inst.query("*OPC?") == "1"
        assert batches == []
    with Instrument(resource, backend=sim, quirks=replace(Quirks(), max_out_transfer_bytes=64)) as inst:
        batches = spy.batches
        long_query = "SYST:DEL 0;" * 10 + "*OPC?"  # more than one 64-byte transfer
        assert inst.query(long_query) == "1"
        assert inst.query("*OPC?") == "1"
        assert len(batches) == 1  # only the short one


def test_a_command_that_times_out_with_its_request_behind_it_aborts_both_and_the_session_goes_on(sam7, spy):
    s = spy
    s.answers.append([Outcome(count=0, error=TmcTimeoutError("Bulk-OUT transfer timed out")), Outcome(count=12),
                      Outcome(started=False)])
    with pytest.raises(TmcTimeoutError) as caught:
        sam7.query("*IDN?")
    recovery = caught.value.recovery
    assert "Bulk-OUT" in recovery and "Bulk-IN" in recovery and recovery.endswith("usable"), recovery
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")


def test_a_command_that_times_out_alone_aborts_only_bulk_out(sam7, spy):
    s = spy
    s.answers.append([Outcome(error=TmcTimeoutError("Bulk-OUT transfer timed out")), Outcome(started=False),
                      Outcome(started=False)])
    with pytest.raises(TmcTimeoutError) as caught:
        sam7.query("*IDN?")
    assert "Bulk-IN" not in caught.value.recovery and "usable" in caught.value.recovery
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")


def test_a_short_count_on_the_command_is_a_timeout(sam7, spy):
    s = spy
    s.answers.append([Outcome(count=4), Outcome(count=12), Outcome(started=False)])
    with pytest.raises(TmcTimeoutError, match="Bulk-OUT"):
        sam7.query("*IDN?")
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")


def test_a_request_that_times_out_is_aborted_on_bulk_out(sam7, spy):
    s = spy
    s.answers.append([Outcome(count=20), Outcome(error=TmcTimeoutError("Bulk-OUT transfer timed out")),
                      Outcome(started=False)])
    with pytest.raises(TmcTimeoutError, match="read request") as caught:
        sam7.query("*IDN?")
    assert "usable" in caught.value.recovery or "Bulk-OUT" in caught.value.recovery
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")


@pytest.fixture
def overlapping(monkeypatch):
    """A loopback session whose transport claims to overlap transfers; ``events`` records starts and finishes."""
    monkeypatch.setattr(UsbTransport, "pipelines", property(lambda self: True))

    def make(sim, fail_at: int | None = None):
        resource = next(i.resource for i in list_resources(sim) if i.pid == LOOPBACK_PID)
        interface = open_interface(resource, sim)
        transport, events, headers = interface.transport, [], []
        real_out = transport.bulk_out

        def start(data, timeout_ms):
            headers.append(bytes(data[:12]))
            n = len(headers)
            events.append(f"start {n}")
            if n == fail_at:
                return ("failed", n, Outcome(error=TmcTimeoutError("Bulk-OUT transfer timed out")))
            if fail_at is not None and n == fail_at + 1:
                return ("queued", n, Outcome(count=len(data)))  # it reached the device before the cancel
            return ("sent", n, Outcome(count=real_out(data, timeout_ms)))

        def finish(token):
            events.append(f"finish {token[1]}")
            return token[2]

        monkeypatch.setattr(transport, "start_bulk_out", start)
        monkeypatch.setattr(transport, "finish_bulk_out", finish)
        inst = Instrument(interface, quirks=replace(Quirks(), max_out_transfer_bytes=4096))
        return inst, events, headers

    return make


def test_an_upload_in_small_transfers_queues_the_next_before_waiting_for_the_last(sim, overlapping):
    inst, events, _headers = overlapping(sim)
    with inst:
        inst.write_block("MEM:DATA ", bytes(range(256)) * 64)  # 16 KiB: five 4 KiB transfers
        assert events[:6] == ["start 1", "start 2", "finish 1", "start 3", "finish 2", "start 4"]
        assert events[-1] == f"finish {len([e for e in events if e.startswith('start')])}"
        assert inst.query("MEM:DATA:LEN?") == str(256 * 64)


def test_an_overlapped_transfer_that_fails_aborts_the_newest_one_sent_and_discards_the_message(sim, overlapping):
    inst, events, headers = overlapping(sim, fail_at=3)
    with inst:
        with pytest.raises(TmcTimeoutError) as caught:
            inst.write_block("MEM:DATA ", bytes(64 * 1024))
        recovery = caught.value.recovery
        assert f"bTag {headers[3][1]}" in recovery, recovery  # the 4th transfer, queued behind the failed 3rd
        assert "partial message" in recovery and recovery.endswith("usable")
        assert "start 5" not in events  # nothing more was sent after the failure was seen
        assert inst.query("*OPC?") == "1"
