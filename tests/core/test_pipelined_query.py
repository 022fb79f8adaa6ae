"""A query's command, read request and first read as one batch (UsbTransport.bulk_batch), and its recovery paths."""

from dataclasses import replace

import pytest

from app.usbtmc import Instrument, Quirks, TmcTimeoutError, list_resources
from app.usbtmc.transport import Outcome

LOOPBACK_PID = 0x0002


@pytest.fixture
def spy(monkeypatch):
    """Records each batch a session sends; ``spy.answers`` can replace what the transport returns."""

    class Spy:
        batches: list = []
        answers: list = []

    def attach(inst):
        real = inst._transport.bulk_batch

        def bulk_batch(outs, in_length, in_timeout_ms):
            Spy.batches.append([bytes(data) for data, _timeout in outs])
            return Spy.answers.pop(0) if Spy.answers else real(outs, in_length, in_timeout_ms)

        monkeypatch.setattr(inst._transport, "bulk_batch", bulk_batch)
        return Spy

    return attach


def test_a_short_query_goes_out_as_one_batch_of_command_and_request(sam7, spy):
    batches = spy(sam7).batches
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")
    (command, request), = batches
    assert command[0] == 1 and command[12:18] == b"*IDN?\n"  # DEV_DEP_MSG_OUT
    assert request[0] == 2 and request[1] == (command[1] % 255) + 1  # REQUEST_DEV_DEP_MSG_IN, the next bTag
    assert not sam7.pipelined  # the in-process bus has no libusb: the batch ran one transfer at a time


def test_no_pipelining_and_multi_transfer_messages_take_the_write_then_read_path(sim, spy):
    resource = next(i.resource for i in list_resources(sim) if i.pid == LOOPBACK_PID)
    with Instrument(resource, backend=sim, quirks=replace(Quirks(), no_pipelining=True)) as inst:
        batches = spy(inst).batches
        assert inst.query("*OPC?") == "1"
        assert batches == []
    with Instrument(resource, backend=sim, quirks=replace(Quirks(), max_out_transfer_bytes=64)) as inst:
        batches = spy(inst).batches
        long_query = "SYST:DEL 0;" * 10 + "*OPC?"  # more than one 64-byte transfer
        assert inst.query(long_query) == "1"
        assert inst.query("*OPC?") == "1"
        assert len(batches) == 1  # only the short one


def test_a_command_that_times_out_with_its_request_behind_it_aborts_both_and_the_session_goes_on(sam7, spy):
    s = spy(sam7)
    s.answers.append([Outcome(count=0, error=TmcTimeoutError("Bulk-OUT transfer timed out")), Outcome(count=12),
                      Outcome(started=False)])
    with pytest.raises(TmcTimeoutError) as caught:
        sam7.query("*IDN?")
    recovery = caught.value.recovery
    assert "Bulk-OUT" in recovery and "Bulk-IN" in recovery and recovery.endswith("usable"), recovery
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")


def test_a_command_that_times_out_alone_aborts_only_bulk_out(sam7, spy):
    s = spy(sam7)
    s.answers.append([Outcome(error=TmcTimeoutError("Bulk-OUT transfer timed out")), Outcome(started=False),
                      Outcome(started=False)])
    with pytest.raises(TmcTimeoutError) as caught:
        sam7.query("*IDN?")
    assert "Bulk-IN" not in caught.value.recovery and "usable" in caught.value.recovery
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")


def test_a_short_count_on_the_command_is_a_timeout(sam7, spy):
    s = spy(sam7)
    s.answers.append([Outcome(count=4), Outcome(count=12), Outcome(started=False)])
    with pytest.raises(TmcTimeoutError, match="Bulk-OUT"):
        sam7.query("*IDN?")
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")


def test_a_request_that_times_out_is_aborted_on_bulk_out(sam7, spy):
    s = spy(sam7)
    s.answers.append([Outcome(count=20), Outcome(error=TmcTimeoutError("Bulk-OUT transfer timed out")),
                      Outcome(started=False)])
    with pytest.raises(TmcTimeoutError, match="read request") as caught:
        sam7.query("*IDN?")
    assert "usable" in caught.value.recovery or "Bulk-OUT" in caught.value.recovery
    assert sam7.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")
