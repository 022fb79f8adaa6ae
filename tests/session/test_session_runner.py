"""The session layer's command handlers, run with no Qt over the virtual instruments."""

import threading
from dataclasses import dataclass

import pytest

import app.sim
from app.session import CommandContext, DirectSession, FailureKind, SessionData, SessionRunner, register
from app.session.events import (
    CheckErrors,
    Close,
    Closed,
    Command,
    Configure,
    Configured,
    Control,
    Done,
    ErrorReport,
    Failed,
    Finished,
    Open,
    Opened,
    Query,
    Read,
    Reply,
    Sent,
    SetIdlePolling,
    Srq,
    Started,
    StatusByte,
    Write,
    WriteStream,
)
from app.session.handlers import handler_for
from app.sim.sam7 import Sam7Counter
from app.sim.scpi_device import VirtualLoopback
from app.usbtmc import list_resources


@pytest.fixture
def bus():
    return app.sim.backend()


def resource_of(backend, kind) -> str:
    device = backend.bus.find(kind=kind)
    return next(i.resource for i in list_resources(backend) if i.serial == device.serial)


def only(events, kind):
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, events
    return found[0]


def opened(backend, kind=Sam7Counter) -> DirectSession:
    session = DirectSession(backend)
    events = session.run(Open(resource_of(backend, kind)))
    assert only(events, Finished).ok, events
    return session


def test_a_command_answers_started_then_its_events_then_finished(bus):
    session = DirectSession(bus)
    events = session.run(Open(resource_of(bus, Sam7Counter)))
    assert [type(e) for e in events] == [Started, Opened, Finished]
    assert events[1].info.product == "SAM7-EK" and events[1].has_interrupt_in
    assert len({e.command_id for e in events}) == 1 and events[0].command_id > 0

    events = session.run(Query(b"*IDN?\n"))
    assert [type(e) for e in events] == [Started, Sent, Reply, Finished]
    assert events[2].data.startswith(b"XYZ Company Ltd, SAM7-EK")
    assert events[2].round_trip_ms >= events[2].duration_ms

    events = session.run(Close())
    assert [type(e) for e in events] == [Started, Closed, Finished]
    assert session.instrument is None


def test_write_read_and_an_upload_reach_the_device(bus):
    session = opened(bus, VirtualLoopback)
    payload = bytes(range(256)) * 64
    block = b"#5%05d" % len(payload)
    events = session.run(WriteStream((b"MEM:DATA ", block, payload, b"\n"), 9 + len(block) + len(payload) + 1))
    assert only(events, Sent).nbytes == 9 + len(block) + len(payload) + 1
    assert bus.bus.find(kind=VirtualLoopback).memory == payload

    assert only(session.run(Write(b"MEM:DATA:LEN?\n")), Sent).nbytes == 14
    assert only(session.run(Read()), Reply).data == b"%d\n" % len(payload)


def test_a_closed_session_refuses_commands_that_need_the_instrument(bus):
    events = DirectSession(bus).run(Query(b"*IDN?\n"))
    failed = only(events, Failed)
    assert failed.kind is FailureKind.GONE and "not open" in failed.message
    assert only(events, Finished).ok is False


def test_a_command_aborted_before_it_starts_fails_as_aborted(bus):
    events = []
    runner = SessionRunner(SessionData(backend=bus), events.append)
    runner.flags.register(7).set()
    assert runner.execute(Configure(timeout_ms=100, id=7)) is False
    assert only(events, Failed).kind == "aborted"  # a StrEnum: equal to the string it replaced
    assert runner.session.timeout_ms == 5000  # the handler never ran


def test_the_esr_check_names_the_bits_the_device_set(bus):
    session = opened(bus)
    session.run(Write(b"NO:SUCH:COMMAND\n"))
    report = only(session.run(CheckErrors(after=2, method="esr")), ErrorReport)
    assert report.after == 2 and report.esr is not None and report.esr & 0x20  # CME, IEEE 488.2 11.5.1.1.4
    assert any(entry.severe for entry in report.entries) and not report.problem


def test_the_error_queue_check_drains_syst_err(bus):
    session = opened(bus, VirtualLoopback)
    session.run(Write(b"NO:SUCH:COMMAND\n"))
    report = only(session.run(CheckErrors(after=2, method="syst_err")), ErrorReport)
    assert [entry.code for entry in report.entries] == [-113]
    assert only(session.run(CheckErrors(after=2, method="syst_err")), ErrorReport).entries == ()


def test_settings_outlive_the_instrument_and_apply_to_the_next_one(bus):
    session = DirectSession(bus)
    configured = only(session.run(Configure(timeout_ms=1234)), Configured)
    assert configured.timeout_ms == 1234 and session.data.timeout_ms == 1234
    session.run(Open(resource_of(bus, VirtualLoopback), timeout_ms=1500))
    session.run(Configure(timeout_ms=2500, term_char=ord("\n")))
    assert session.instrument.timeout_ms == 2500 and session.instrument.term_char == ord("\n")
    session.run(Configure(term_char=-1))
    assert session.instrument.term_char is None


def test_control_requests_and_the_status_byte(bus):
    session = opened(bus)
    assert isinstance(only(session.run(Control("read_stb")), StatusByte).value, int)
    assert only(session.run(Control("indicator_pulse")), Done).what == "indicator pulse"
    failed = only(session.run(Control("reboot")), Failed)
    assert failed.kind is FailureKind.NOT_SUPPORTED and "reboot" in failed.message


def test_a_device_that_leaves_the_bus_closes_the_session(bus):
    session = opened(bus)
    bus.bus.unplug(bus.bus.find(kind=Sam7Counter))
    events = session.run(Query(b"*IDN?\n"))
    assert only(events, Failed).kind is FailureKind.GONE
    closed = only(events, Closed)
    assert closed.gone and closed.command_id == 0
    assert session.instrument is None


def test_a_bug_in_a_handler_fails_that_command_only(bus):
    @dataclass(frozen=True)
    class Broken(Command):
        pass

    def explode(ctx):
        raise RuntimeError("a handler bug")

    register(Broken, explode, needs_instrument=False)
    session = opened(bus)
    failed = only(session.run(Broken()), Failed)
    assert failed.kind is FailureKind.INTERNAL and "a handler bug" in failed.message
    assert only(session.run(Query(b"*IDN?\n")), Reply).data.startswith(b"XYZ")


def test_a_handler_runs_on_an_explicit_state_and_emit():
    # No runner, no worker: the state object and the emit callable are all a handler needs.
    events = []
    data = SessionData(timeout_ms=1000)
    ctx = CommandContext(data, Configure(timeout_ms=250, id=3), threading.Event(), events.append)
    handler_for(Configure).handler(ctx)
    assert data.timeout_ms == 250
    assert events == [Configured(3, 250, None, at=events[0].at)]


def test_idle_polling_follows_the_session_and_reports_srq(bus):
    changes = []
    events = []
    runner = SessionRunner(SessionData(backend=bus), events.append, polling_changed=lambda: changes.append(
        (runner.session.srq_poll_ms, runner.session.stb_poll_ms)))
    runner.execute(Open(resource_of(bus, VirtualLoopback), id=1))
    assert changes[-1] == (100, 0)  # interrupt-IN read every 100 ms; the status byte only when asked
    runner.execute(SetIdlePolling(stb_interval_ms=500, id=2))
    assert changes[-1] == (100, 500)

    runner.execute(Write(b"*CLS;*ESE 1;*SRE 32;*OPC\n", id=3))  # OPC -> ESB -> SRQ on interrupt-IN
    events.clear()
    runner.poll_srq()
    runner.poll_stb()
    srq = only(events, Srq)
    assert srq.status_byte & 0x40 and srq.command_id == 0  # RQS, IEEE 488.2 11.2.2.2
    assert only(events, StatusByte).polled

    runner.execute(Close(id=4))
    assert changes[-1] == (0, 0)


def test_a_failed_idle_poll_stops_that_poll_until_reopened(bus):
    changes = []
    events = []
    runner = SessionRunner(SessionData(backend=bus), events.append,
                           polling_changed=lambda: changes.append(runner.session.srq_poll_ms))
    runner.execute(Open(resource_of(bus, Sam7Counter), id=1))

    class BrokenInterrupt:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def poll_srq(self):
            from app.usbtmc.errors import ProtocolError

            raise ProtocolError("interrupt-IN sent garbage")

    real = runner.session.instrument
    runner.session.instrument = BrokenInterrupt(real)
    events.clear()
    runner.poll_srq()
    failed = only(events, Failed)
    assert failed.command_id == 0 and "idle SRQ polling stopped" in failed.message
    assert changes[-1] == 0
    runner.session.instrument = real
    runner.execute(Open(resource_of(bus, Sam7Counter), id=2))
    assert changes[-1] == 100
    runner.execute(Close(id=3))


def test_a_waveform_upload_runs_and_is_checked_without_qt(bus):
    from app.session.upload import UploadChecking, UploadDone, UploadProgress, UploadWaveform
    from app.sim.awg import VirtualAwg
    from app.waveforms import TEMPLATES, ShapeSource, UploadPlan

    session = opened(bus, VirtualAwg)
    plan = UploadPlan(ShapeSource("sine", 20000), TEMPLATES["awg-dac"], name="w1")
    events = session.run(UploadWaveform(plan))
    assert only(events, Finished).ok, events
    progress = [e for e in events if isinstance(e, UploadProgress)]
    assert progress and progress[-1].done_bytes == plan.total_bytes
    assert only(events, UploadChecking).bytes_sent == plan.total_bytes
    result = only(events, UploadDone).result
    assert result.verified and result.device_points == 20000
    assert bus.bus.find(kind=VirtualAwg).waveform("W1").points == 20000
