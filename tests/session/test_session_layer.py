"""The session layer runs without Qt, and its vocabularies say what the GUI relies on."""

import subprocess
import sys
import textwrap
from pathlib import Path

from app.session import FailureKind, Origin, SessionState, is_background, is_follow_up, is_users_command

ROOT = Path(__file__).resolve().parents[2]


def test_the_session_layer_imports_and_runs_without_qt():
    # In a fresh interpreter: importing every module of app.session and running a session over
    # the virtual bus loads neither PySide6 nor pyqtgraph.
    script = textwrap.dedent("""
        import pkgutil, importlib, sys
        import app.session
        for module in pkgutil.iter_modules(app.session.__path__):
            importlib.import_module("app.session." + module.name)
        import app.sim
        from app.session import DirectSession
        from app.session.events import Close, Open, Query, Reply
        from app.usbtmc import list_resources
        backend = app.sim.backend()
        session = DirectSession(backend)
        session.run(Open(list_resources(backend)[0].resource))
        reply = [e for e in session.run(Query(b"*IDN?\\n")) if isinstance(e, Reply)]
        session.run(Close())
        assert reply and reply[0].data, "no reply"
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph"))
        print(loaded)
        raise SystemExit(1 if loaded else 0)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_background_work_never_makes_the_session_busy():
    for origin in (Origin.CONFIG, Origin.SRQ, Origin.CLOSE, Origin.DISCOVERY, Origin.STATUS_POLL, Origin.SAM7_POLL,
                   "my-panel-poll"):
        assert is_background(origin), origin
        assert not is_users_command(origin), origin
    for origin in (Origin.OPEN, Origin.CONSOLE, Origin.SCRIPT, Origin.ACTION, Origin.IDENTIFY, Origin.WAVEFORM,
                   Origin.SMOKE_TEST, Origin.RESET, "a-new-panel", ""):
        assert not is_background(origin), origin
        assert is_users_command(origin), origin


def test_the_error_check_keeps_the_session_busy_but_belongs_to_its_command():
    # A script waits for the check after each line, and Abort must reach it: not background.
    # It is never the cause of an SRQ nor a command of the status history: not the user's.
    assert not is_background(Origin.CHECK)
    assert is_follow_up(Origin.CHECK)
    assert not is_users_command(Origin.CHECK)


def test_the_enums_compare_equal_to_the_strings_they_replace():
    assert SessionState.BUSY == "busy" and f"{SessionState.GONE}" == "gone"
    assert FailureKind.NOT_SUPPORTED == "not_supported" and Origin.SMOKE_TEST == "smoke-test"
    assert SessionState("idle").is_open and not SessionState.OPENING.is_open
    assert {s for s in SessionState if s.is_ended} == {SessionState.GONE, SessionState.FAILED, SessionState.CLOSED}


def tracked():
    from app.session import SessionTracker

    states = []
    tracker = SessionTracker(states.append)
    sent = []
    return tracker, states, sent


def test_the_tracker_follows_a_session_from_opening_to_gone():
    from app.session.events import Closed, Finished, Open, Opened, Query, Started

    tracker, states, sent = tracked()
    tracker.set_state(SessionState.OPENING)
    opened = tracker.submit(Open("USB0::1::2::3::INSTR"), Origin.OPEN, sent.append)
    assert sent[0].id == opened and tracker.record(opened).origin == Origin.OPEN
    query = tracker.submit(Query(b"*IDN?\n"), Origin.CONSOLE, sent.append)  # typed while opening
    delivered = []
    tracker.handle(Opened(opened, "info", True), lambda e: delivered.append(tracker.state))
    assert delivered == [SessionState.BUSY]  # the query is still waiting: busy as soon as open
    tracker.handle(Finished(opened, True, 1.0), delivered.append)
    tracker.handle(Started(query, "*IDN?"), delivered.append)
    assert tracker.state == SessionState.BUSY and tracker.info == "info"
    tracker.handle(Finished(query, True, 1.0), lambda e: delivered.append(tracker.outstanding))
    assert delivered[-1] == 1  # a panel handling Finished still finds the command's record
    assert tracker.state == SessionState.IDLE and tracker.outstanding == 0
    tracker.handle(Closed(0, "unplugged", gone=True), delivered.append)
    assert states == ["opening", "busy", "idle", "gone"] and tracker.last_problem == "unplugged"


def test_the_tracker_keeps_background_work_idle_and_the_error_check_busy():
    from app.session.events import CheckErrors, Configure, Finished, Query

    tracker, states, sent = tracked()
    tracker.set_state(SessionState.IDLE)
    states.clear()
    config = tracker.submit(Configure(timeout_ms=100), Origin.CONFIG, sent.append)
    poll = tracker.submit(Query(b"X?\n"), "status-poll", sent.append)
    tracker.handle(Finished(config, True, 0.1), sent.append)
    tracker.handle(Finished(poll, True, 0.1), sent.append)
    assert states == []

    query = tracker.submit(Query(b"*IDN?\n"), Origin.SCRIPT, sent.append)
    check = tracker.submit(CheckErrors(after=query, method="esr"), Origin.CHECK, sent.append)
    tracker.handle(Finished(query, True, 0.1), sent.append)
    assert tracker.state == SessionState.BUSY  # the script's line is done, its check is not
    tracker.handle(Finished(check, True, 0.1), sent.append)
    assert states == ["busy", "idle"]


def test_a_failed_open_says_why():
    from app.session.events import Failed, Open

    tracker, states, sent = tracked()
    tracker.set_state(SessionState.OPENING)
    cid = tracker.submit(Open("USB0::1::2::3::INSTR"), Origin.OPEN, sent.append)
    tracker.handle(Failed(cid, FailureKind.ACCESS, "permission denied"), sent.append)
    assert tracker.state == SessionState.FAILED and tracker.last_problem == "permission denied"
