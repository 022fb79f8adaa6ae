"""The console's typed queries and streams take the core's fast paths, and still show a line as
sent the moment the command has left."""

from __future__ import annotations

from app.session.events import Finished, Opened, Query, Reply, Sent, WriteStream
from app.ui.worker import Session
from app.usbtmc import Instrument

LOOPBACK = "USB0::0x1209::0x0002::LOOP-0001::INSTR"


class CountingInstrument(Instrument):
    """The real core, counting which entry points the worker uses."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, resource, backend, timeout_ms):
        super().__init__(resource, backend=backend, timeout_ms=timeout_ms)

    def query_raw(self, data, **kwargs):
        CountingInstrument.calls.append(("query_raw", kwargs))
        return super().query_raw(data, **kwargs)

    def write_stream(self, pieces, total_bytes=None, **kwargs):
        CountingInstrument.calls.append(("write_stream", kwargs))
        return super().write_stream(pieces, total_bytes, **kwargs)


def _open(qtbot, backend):
    CountingInstrument.calls = []
    session = Session(LOOPBACK, backend, source="virtual", timeout_ms=3000, instrument_factory=CountingInstrument)
    events = []
    session.event.connect(events.append)
    with qtbot.waitSignal(session.event, timeout=3000, check_params_cb=lambda e: isinstance(e, Opened)):
        session.open()
    return session, events


def _finished(events, cid):
    return any(isinstance(e, Finished) and e.command_id == cid for e in events)


def test_a_typed_query_is_the_cores_batched_query_and_shows_as_sent_before_its_reply(qtbot, sim_backend):
    session, events = _open(qtbot, sim_backend)
    try:
        cid = session.submit(Query(b"SYST:DEL 400;*IDN?\n"), origin="console")
        qtbot.waitUntil(lambda: any(isinstance(e, Sent) and e.command_id == cid for e in events), timeout=3000)
        assert not any(isinstance(e, Reply) and e.command_id == cid for e in events)  # still awaited
        qtbot.waitUntil(lambda: _finished(events, cid), timeout=5000)
        sent = next(e for e in events if isinstance(e, Sent) and e.command_id == cid)
        reply = next(e for e in events if isinstance(e, Reply) and e.command_id == cid)
        assert reply.data.startswith(b"TMC Console,Virtual Loopback")
        assert reply.duration_ms >= 300 > sent.duration_ms  # the line was sent long before the answer
        (kind, kwargs), = [c for c in CountingInstrument.calls if c[0] == "query_raw"]
        assert kwargs["on_sent"] is not None and kwargs["abort"] is not None
    finally:
        session.close()
        qtbot.waitUntil(lambda: not session.thread.isRunning(), timeout=3000)


def test_a_stream_from_the_console_is_paced_for_cancel_like_the_waveform_panels(qtbot, sim_backend):
    session, events = _open(qtbot, sim_backend)
    try:
        block = b"MEM:DATA #6200000" + bytes(200_000) + b"\n"
        cid = session.submit(WriteStream((block,), len(block)), origin="console")
        qtbot.waitUntil(lambda: _finished(events, cid), timeout=5000)
        (kind, kwargs), = [c for c in CountingInstrument.calls if c[0] == "write_stream"]
        assert kwargs["abort"] is not None and kwargs["abort_latency_ms"] == 50
        assert sim_backend.bus.find(serial="LOOP-0001").memory == bytes(200_000)
    finally:
        session.close()
        qtbot.waitUntil(lambda: not session.thread.isRunning(), timeout=3000)
