"""The session worker's thread contract: commands in, events out, aborts between chunks."""

import threading
import time

import pytest
from support.ui import SAM7_PRODUCT

from app.session import handlers as handlers_module
from app.session import Origin, register
from app.session.events import (
    CheckErrors,
    Closed,
    Configure,
    Control,
    ErrorReport,
    Failed,
    Finished,
    Opened,
    Progress,
    Query,
    Reply,
    Sent,
    Started,
    SetIdlePolling,
    StatusByte,
    Write,
    WriteStream,
)
from app.ui.worker import Session
from app.usbtmc import Instrument, list_resources
from app.usbtmc.errors import AbortedError


def sam7_resource(backend):
    return next(i.resource for i in list_resources(backend) if SAM7_PRODUCT in i.product)


class Recorder:
    def __init__(self, session):
        self.events = []
        session.event.connect(self.events.append)

    def of(self, cid, kind=None):
        return [e for e in self.events if e.command_id == cid and (kind is None or isinstance(e, kind))]

    def finished(self, cid):
        return bool(self.of(cid, Finished))


class ThreadCheckingInstrument:
    """Wraps an Instrument and records which thread calls it."""

    def __init__(self, resource, backend, timeout_ms):
        self._inner = Instrument(resource, backend=backend, timeout_ms=timeout_ms)
        self.threads = set()
        ThreadCheckingInstrument.last = self

    def __getattr__(self, name):
        value = getattr(self._inner, name)
        if callable(value):
            def call(*args, **kwargs):
                self.threads.add(threading.get_ident())
                return value(*args, **kwargs)
            return call
        return value

    def __setattr__(self, name, value):
        if name in ("timeout_ms", "term_char"):
            self.threads.add(threading.get_ident())
            setattr(self._inner, name, value)
        else:
            object.__setattr__(self, name, value)


@pytest.fixture
def session(qtbot, sim_backend):
    s = Session(sam7_resource(sim_backend), sim_backend, source="virtual", timeout_ms=300,
                instrument_factory=ThreadCheckingInstrument)
    recorder = Recorder(s)
    with qtbot.waitSignal(s.event, timeout=3000, check_params_cb=lambda e: isinstance(e, Opened)):
        s.open()
    yield s, recorder
    s.close()
    qtbot.waitUntil(lambda: not s.thread.isRunning(), timeout=3000)


def test_every_command_is_answered_in_order_and_only_the_worker_touches_the_instrument(session, qtbot):
    s, rec = session
    ids = [s.submit(Write(b"*CLS\n")), s.submit(Query(b"*IDN?\n")), s.submit(Control("read_stb")),
           s.submit(CheckErrors(after=0, method="esr"))]
    qtbot.waitUntil(lambda: rec.finished(ids[-1]), timeout=3000)
    for cid in ids:
        kinds = [type(e) for e in rec.of(cid)]
        assert kinds[0] is Started and kinds[-1] is Finished, kinds
    assert rec.of(ids[0], Sent)
    assert b"SAM7" in rec.of(ids[1], Reply)[0].data
    assert isinstance(rec.of(ids[2], StatusByte)[0].value, int)
    assert isinstance(rec.of(ids[3], ErrorReport)[0].esr, int)
    started = [e.command_id for e in rec.events if isinstance(e, Started)]
    assert started == sorted(started)
    threads = ThreadCheckingInstrument.last.threads
    assert threads and threading.get_ident() not in threads, "the GUI thread called the instrument"


def test_queued_commands_are_aborted_without_running(session, qtbot):
    s, rec = session
    hung = s.submit(Query(b"NOSUCH?\n"))  # never answered: waits for the 300 ms timeout
    queued = [s.submit(Write(b"*CLS\n")) for _ in range(3)]
    for cid in queued:
        s.abort(cid)
    qtbot.waitUntil(lambda: rec.finished(queued[-1]), timeout=3000)
    assert rec.of(hung, Failed)[0].kind == "timeout"
    for cid in queued:
        failure = rec.of(cid, Failed)
        assert failure and failure[0].kind == "aborted" and "before it started" in failure[0].message


def test_a_timeout_reports_what_the_session_did_to_recover(session, qtbot):
    s, rec = session
    cid = s.submit(Query(b"NOSUCH?\n"))
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    failure = rec.of(cid, Failed)[0]
    assert failure.kind == "timeout" and failure.recovery
    assert failure.duration_ms >= 250
    after = s.submit(Query(b"*IDN?\n"))
    qtbot.waitUntil(lambda: rec.finished(after), timeout=3000)
    assert rec.of(after, Reply), "the session is usable after the timeout"


def test_closing_ends_the_thread_and_refuses_new_commands(qtbot, sim_backend):
    s = Session(sam7_resource(sim_backend), sim_backend, source="virtual")
    rec = Recorder(s)
    s.open()
    qtbot.waitUntil(lambda: s.is_open, timeout=3000)
    s.close()
    qtbot.waitUntil(lambda: not s.thread.isRunning(), timeout=3000)
    # Closed is emitted on the worker thread and reaches this thread queued, so
    # the thread can have ended before the event is delivered here.
    qtbot.waitUntil(lambda: any(isinstance(e, Closed) for e in rec.events), timeout=3000)
    assert [e.gone for e in rec.events if isinstance(e, Closed)] == [False]
    assert s.submit(Write(b"*CLS\n")) == 0
    assert s.state == "closed"


def test_opening_a_missing_device_fails_with_a_clear_message(qtbot, sim_backend):
    s = Session("USB0::0x1209::0x7777::NOPE::INSTR", sim_backend, source="virtual")
    rec = Recorder(s)
    s.open()
    qtbot.waitUntil(lambda: s.state == "failed", timeout=3000)
    failure = [e for e in rec.events if isinstance(e, Failed)][0]
    assert failure.kind == "not_found" and "NOPE" in failure.message
    s.close()
    qtbot.waitUntil(lambda: not s.thread.isRunning(), timeout=3000)


class ChunkedInstrument:
    """A stand-in whose uploads take many chunks, to watch Progress and the abort flag."""

    info = None
    has_interrupt_in = False

    def __init__(self, resource, backend, timeout_ms):
        self.timeout_ms = timeout_ms
        self.term_char = None

    def write_stream(self, pieces, total_bytes, *, abort=None, progress=None, abort_latency_ms=None):
        done = 0
        for piece in pieces:
            for start in range(0, len(piece), 1024):
                if abort is not None and abort.is_set():
                    raise AbortedError(f"the transfer was aborted by the user (after {done} bytes)", done)
                time.sleep(0.002)
                done += len(piece[start:start + 1024])
                progress(done, total_bytes)

    def close(self):
        pass


def test_an_upload_reports_progress_and_stops_at_once_when_aborted(qtbot, monkeypatch):
    monkeypatch.setattr(handlers_module, "PROGRESS_FIRST_AFTER_S", 0.0)
    s = Session("USB0::0x1209::0x0001::X::INSTR", None, instrument_factory=ChunkedInstrument)
    rec = Recorder(s)
    s.open()
    qtbot.waitUntil(lambda: s.is_open, timeout=3000)
    payload = bytes(1024 * 2000)  # 2000 chunks: about 4 s if never aborted
    cid = s.submit(WriteStream((b"#72048000", memoryview(payload), b"\n"), len(payload) + 10))
    qtbot.waitUntil(lambda: len(rec.of(cid, Progress)) >= 2, timeout=3000)
    aborted_at = time.monotonic()
    s.abort(cid)
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    assert time.monotonic() - aborted_at < 0.5
    failure = rec.of(cid, Failed)[0]
    assert failure.kind == "aborted"
    progress = rec.of(cid, Progress)
    assert all(b.done_bytes >= a.done_bytes for a, b in zip(progress, progress[1:], strict=False))
    assert progress[-1].total_bytes == len(payload) + 10
    s.close()
    qtbot.waitUntil(lambda: not s.thread.isRunning(), timeout=3000)


def test_new_command_types_plug_in(qtbot, sim_backend):
    from dataclasses import dataclass

    from app.session.events import Command, Done

    @dataclass(frozen=True)
    class CountRead(Command):
        pass

    def handle(ctx):
        value = ctx.instrument.query("COUNT:READ?")
        ctx.emit(Done(ctx.command.id, f"count {value}", ctx.elapsed_ms()))

    register(CountRead, handle)
    s = Session(sam7_resource(sim_backend), sim_backend, source="virtual")
    rec = Recorder(s)
    s.open()
    qtbot.waitUntil(lambda: s.is_open, timeout=3000)
    cid = s.submit(CountRead())
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    assert rec.of(cid, Done)[0].what.startswith("count ")
    s.close()
    qtbot.waitUntil(lambda: not s.thread.isRunning(), timeout=3000)


def test_background_work_leaves_the_session_idle_and_the_error_check_keeps_it_busy(qtbot, sim_backend):
    s = Session(sam7_resource(sim_backend), sim_backend, source="virtual")
    rec = Recorder(s)
    states = []
    s.state_changed.connect(states.append)
    s.open()
    qtbot.waitUntil(lambda: s.state == "idle", timeout=3000)
    states.clear()
    cid = s.submit(Configure(timeout_ms=1000), origin=Origin.CONFIG)
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    assert states == []  # a settings change is the app's own work: the session never looked busy

    state_at_check = []
    query = s.submit(Query(b"*IDN?\n"), origin=Origin.CONSOLE)
    check = s.submit(CheckErrors(after=query, method="esr"), origin=Origin.CHECK)
    s.event.connect(lambda e: state_at_check.append(s.state) if isinstance(e, Started) and e.command_id == check else None)
    qtbot.waitUntil(lambda: rec.finished(check), timeout=3000)
    assert state_at_check == ["busy"]  # the query is done, its error check is not: still busy
    assert states == ["busy", "idle"]
    s.close()
    qtbot.waitUntil(lambda: not s.thread.isRunning(), timeout=3000)


def test_a_quick_command_wakes_the_gui_thread_once_with_all_its_events_in_order(session, qtbot):
    s, rec = session
    wakes = []
    s.worker.wake.connect(lambda: wakes.append(1))
    cid = s.submit(Query(b"*IDN?\n"))
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    assert [type(e) for e in rec.of(cid)] == [Started, Sent, Reply, Finished]
    # One queued signal carried the four events (one per event before): with the SRQ poll of
    # an idle session possibly adding its own, never four.
    assert 1 <= len(wakes) <= 2


def test_a_long_commands_first_events_arrive_while_it_is_still_running(session, qtbot):
    s, rec = session
    cid = s.submit(Query(b"NOSUCH?\n"))  # never answered: the read waits for the 300 ms timeout
    qtbot.waitUntil(lambda: bool(rec.of(cid, Sent)), timeout=3000)
    assert not rec.finished(cid), "the line shows as sent while the instrument has not answered"
    assert s.outstanding == 1
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    assert rec.of(cid, Failed)[0].kind == "timeout"


def test_idle_polls_run_at_the_interval_asked_and_stop_when_turned_off(session, qtbot):
    s, rec = session
    polled = lambda: [e for e in rec.events if isinstance(e, StatusByte) and e.polled]
    s.submit(SetIdlePolling(stb_interval_ms=20))
    qtbot.waitUntil(lambda: len(polled()) >= 3, timeout=3000)
    cid = s.submit(Query(b"*IDN?\n"))  # a command between polls is answered as ever
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    assert b"SAM7" in rec.of(cid, Reply)[0].data
    off = s.submit(SetIdlePolling(stb_interval_ms=0))
    qtbot.waitUntil(lambda: rec.finished(off), timeout=3000)
    count = len(polled())
    marker = s.submit(Query(b"*IDN?\n"))
    qtbot.waitUntil(lambda: rec.finished(marker), timeout=3000)
    qtbot.wait(150)  # seven intervals of the poll that was turned off
    assert len(polled()) == count


def test_listeners_get_every_event_in_order_beside_the_signal_and_one_failing_spoils_nothing(session, qtbot, caplog):
    s, rec = session
    heard, after_broken = [], []

    def broken(event):
        raise ValueError("a panel's bug")

    s.listen(heard.append)
    s.listen(broken)
    s.listen(after_broken.append)
    cid = s.submit(Query(b"*IDN?\n"))
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    mine = [e for e in heard if e.command_id == cid]
    assert [type(e) for e in mine] == [Started, Sent, Reply, Finished]
    assert [e for e in after_broken if e.command_id == cid] == mine == rec.of(cid)  # the signal's receivers too
    assert "a panel's bug" in caplog.text and "event handler" in caplog.text
    s.unlisten(broken)
    caplog.clear()
    cid = s.submit(Query(b"*IDN?\n"))
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    assert "event handler" not in caplog.text and rec.of(cid, Reply)


def test_a_deleted_panels_handler_is_forgotten_not_called(session, qtbot, caplog):
    from PySide6.QtWidgets import QWidget

    s, rec = session
    calls = []

    class Panel(QWidget):
        def on_event(self, event):
            calls.append(self.objectName())  # touching a deleted widget would raise

    panel = Panel()
    s.listen(panel.on_event)
    cid = s.submit(Query(b"*IDN?\n"))
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    assert len(calls) == 4
    import shiboken6

    shiboken6.delete(panel)
    cid = s.submit(Query(b"*IDN?\n"))
    qtbot.waitUntil(lambda: rec.finished(cid), timeout=3000)
    assert len(calls) == 4 and "event handler" not in caplog.text
