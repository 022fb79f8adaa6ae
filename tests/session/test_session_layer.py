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
                   Origin.SMOKE_TEST, "a-new-panel", ""):
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
