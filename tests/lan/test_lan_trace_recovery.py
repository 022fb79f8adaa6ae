"""A LAN session's recoveries in the I/O trace: each one a recovery record that says which recovery
ran and why, under the message that failed, with the sends and receives it took marked as its
steps, as a USB session's aborts and clears are."""

from __future__ import annotations

import threading

import pytest

from app.lan import open_session
from app.sim.lan import MessagePort
from app.usbtmc.errors import AbortedError, NotSupportedError, TmcTimeoutError
from app.usbtmc.trace import BULK, MESSAGE, RECOVERY, TCP, Decoder, Recorder


def resource(lan, protocol: str) -> str:
    return next(e.resource for e in lan.resources if e.protocol == protocol and "Loopback" in e.label)


def recovery_of(recorder: Recorder, message) -> tuple:
    """The one recovery record under ``message``, and the decoded entries marked as its steps."""
    entries = recorder.entries()
    found = [e for e in entries if e.kind == RECOVERY and e.group == message.seq]
    assert len(found) == 1, found
    decoder = Decoder()
    decoded = [(e, decoder.decode(e).summary) for e in entries]
    return found[0], [(e, text) for e, text in decoded if e.step == found[0].seq]


def new_connections_during(recorder: Recorder, recovery) -> list:
    info = recorder.sessions[recovery.session]
    return [c for c in info.connections if recovery.t_ns <= c.since_ns <= recovery.t_ns + recovery.duration_ns]


# Which recovery each protocol runs after a reply that does not come in time, and what it sends.
TIMEOUT_RECOVERY = {
    "SOCKET": ("reconnect, after the reply timed out (socket receive timeout)", []),
    "VXI-11": ("device_clear, after the instrument reported an I/O timeout",
               ["RPC call device_clear", "RPC reply device_clear"]),
    "HiSLIP": ("device clear (AsyncDeviceClear), after the reply timed out (socket receive timeout)",
               ["HiSLIP ASYNC_DEVICE_CLEAR", "HiSLIP ASYNC_DEVICE_CLEAR_ACKNOWLEDGE", "HiSLIP DEVICE_CLEAR_COMPLETE",
                "HiSLIP DEVICE_CLEAR_ACKNOWLEDGE"]),
}


@pytest.mark.parametrize("protocol", ["SOCKET", "VXI-11", "HiSLIP"])
def test_a_reply_timeout_records_its_recovery_with_the_packets_under_it(lan, protocol):
    recorder = Recorder()
    with open_session(resource(lan, protocol), timeout_ms=300, trace=recorder) as session:
        session.write("SYST:DEL 2000")  # the virtual instrument answers two seconds late
        with pytest.raises(TmcTimeoutError) as info:
            session.query("*IDN?")
        session.timeout_ms = 3000
        session.write("SYST:DEL 0")
        assert "Loopback" in session.query("*IDN?")
    failed = next(e for e in recorder.entries() if e.kind == MESSAGE and e.status == "timeout")
    recovery, steps = recovery_of(recorder, failed)
    why, sent = TIMEOUT_RECOVERY[protocol]
    assert recovery.text == why
    assert recovery.status == "ok" and recovery.detail == str(info.value.recovery)
    assert recovery.detail.endswith("the session is usable") and recovery.duration_ns > 0
    assert all(e.kind == TCP and e.group == failed.seq and e.status == "ok" for e, _ in steps)
    assert [text.split(" xid")[0].split(" MessageID")[0] for _, text in steps if not text.startswith("RPC record mark")] \
        == sent
    if protocol == "SOCKET":  # a reconnect sends nothing: the new connection is what it did
        assert len(new_connections_during(recorder, recovery)) == 1
    after = [e for e in recorder.entries() if e.seq > recovery.seq and e.kind == TCP and not e.step]
    assert after  # the next commands' packets are their own again, not the recovery's


@pytest.mark.parametrize("protocol, why", [
    ("SOCKET", "reconnect, after the user aborted (socket send cancelled)"),
    ("VXI-11", "device_clear, after the user aborted"),
    ("HiSLIP", "device clear (AsyncDeviceClear), after the user aborted (socket send cancelled)"),
])
def test_an_aborted_upload_records_its_recovery(lan, protocol, why):
    recorder = Recorder()
    abort = threading.Event()

    def progress(done, total):
        if done >= 1 << 20:
            abort.set()

    with open_session(resource(lan, protocol), timeout_ms=10000, trace=recorder) as session:
        with pytest.raises(AbortedError) as info:
            session.write_block("MEM:DATA ", bytes(16 << 20), abort=abort, progress=progress)
        assert "Loopback" in session.query("*IDN?")
    upload = next(e for e in recorder.entries() if e.kind == MESSAGE and e.status == "cancelled")
    recovery, steps = recovery_of(recorder, upload)
    assert recovery.text == why and recovery.detail == str(info.value.recovery) and recovery.status == "ok"
    assert "the instrument may hold part of the message" in recovery.detail
    if protocol == "SOCKET":
        assert not steps and len(new_connections_during(recorder, recovery)) == 1
    else:
        assert steps and all(e.kind == TCP for e, _ in steps)


def test_a_vxi11_call_aborted_while_waiting_records_device_abort_then_device_clear(lan, monkeypatch):
    recorder = Recorder()
    abort, reading = threading.Event(), threading.Event()
    port_read = MessagePort.read

    def read(port, *args, **kwargs):  # the instrument waits for the reply: device_read is under way
        reading.set()
        return port_read(port, *args, **kwargs)

    monkeypatch.setattr(MessagePort, "read", read)
    with open_session(resource(lan, "VXI-11"), timeout_ms=3000, trace=recorder) as session:
        session.write("SYST:DEL 2000")
        send_call = session._core.send_call

        def send_then_abort(*args, **kwargs):  # the user aborts once the instrument works on the call
            xid = send_call(*args, **kwargs)
            assert reading.wait(5)
            abort.set()
            return xid

        monkeypatch.setattr(session._core, "send_call", send_then_abort)
        session.write("*IDN?")
        with pytest.raises(AbortedError) as info:
            session.read_raw(abort=abort)
        monkeypatch.undo()
        session.write("SYST:DEL 0")
        assert "Loopback" in session.query("*IDN?")
    read = next(e for e in recorder.entries() if e.kind == MESSAGE and e.op == "read")
    entries = recorder.entries()
    recoveries = [e for e in entries if e.kind == RECOVERY and e.group == read.seq]
    assert [e.text for e in recoveries] == [
        "device_abort on the abort channel, after the user aborted (socket receive cancelled)",
        "device_clear, after the user aborted (socket receive cancelled)"]
    decoder = Decoder()
    texts = {e.seq: decoder.decode(e).summary for e in entries}
    abort_steps = [e for e in entries if e.step == recoveries[0].seq]
    assert any(texts[e.seq].startswith("RPC call device_abort") and e.endpoint == 0x21 for e in abort_steps)
    assert any(texts[e.seq].startswith("RPC reply device_read") for e in abort_steps)  # the aborted call's answer
    assert any(texts[e.seq].startswith("RPC call device_clear") for e in entries if e.step == recoveries[1].seq)
    assert recoveries[1].detail == str(info.value.recovery)


def test_a_raw_sockets_clear_is_recorded_as_the_reconnect_it_is(lan):
    recorder = Recorder()
    with open_session(resource(lan, "SOCKET"), timeout_ms=3000, trace=recorder) as session:
        with pytest.raises(NotSupportedError):
            session.clear()
        assert "Loopback" in session.query("*IDN?")
    clear = next(e for e in recorder.entries() if e.kind == MESSAGE and e.op == "clear")
    recovery, _ = recovery_of(recorder, clear)
    assert recovery.text == "reconnect, in place of a device clear (a raw socket has none)"
    assert "unread reply bytes were dropped; the connection was reopened" in recovery.detail
    assert len(new_connections_during(recorder, recovery)) == 1


def test_a_recovery_names_only_a_failed_transfer_of_its_own_message():
    recorder = Recorder()
    trace = recorder.open_session("a session")
    with trace.message("read"):
        trace.transfer(BULK, 0x82, "in", 64, 0, "timeout", b"", trace.now(), trace.now())
    with trace.message("query", b"X?\n"):
        with trace.recovery("device clear, after the instrument reported an error"):
            pass
    recovery = next(e for e in recorder.entries() if e.kind == RECOVERY)
    assert recovery.text == "device clear, after the instrument reported an error"  # not "(Bulk-IN timeout)"
