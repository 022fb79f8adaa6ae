"""Scripts exported from a traced session repeat it against the virtual SAM7 and get the same replies."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.replay import exercise

from app.trace_export.script import default_session, pyvisa_script, python_script
from app.usbtmc import Instrument
from app.usbtmc.trace import Recorder

ROOT = Path(__file__).resolve().parents[2]
SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


@pytest.fixture
def session(sim):
    recorder = Recorder()
    with Instrument(SAM7, backend=sim, timeout_ms=300, trace=recorder) as inst:
        replies = exercise(inst)
    return recorder, replies


def test_the_python_script_replays_the_session_and_gets_the_same_replies(session, tmp_path):
    recorder, replies = session
    number = default_session(recorder)
    text = python_script(recorder, number)
    ast.parse(text)
    assert "inst.write_raw(b'*CLS\\r\\n')" in text and "inst.clear()" in text and "wait_srq(1000)" in text
    path = tmp_path / "replay.py"
    path.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(path), "--sim"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    got = [ast.literal_eval(line.split(": ", 1)[1]) for line in lines
           if line.startswith("step ") and ": b" in line and "TmcTimeoutError" not in line]
    for reply in replies:
        assert reply in got
    assert any("TmcTimeoutError (timeout when recorded)" in line for line in lines)


def test_a_reply_that_differs_makes_the_script_fail(session, tmp_path):
    recorder, _ = session
    number = default_session(recorder)
    query = next(e for e in recorder.entries() if e.op == "query")
    query.reply, query.actual = b"something else\n", 15
    path = tmp_path / "replay.py"
    path.write_text(python_script(recorder, number))
    proc = subprocess.run([sys.executable, str(path), "--sim"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 1 and "differs; recorded b'something else\\n'" in proc.stderr


def test_device_bytes_stay_literals_in_the_script():
    recorder = Recorder()
    trace = recorder.open_session("USB0::0x1::0x2::X\"\"\"; import os::INSTR")
    with trace.message("query", b"Q?\n") as entry:
        entry.reply, entry.actual = b"'); __import__('os').system('echo hi'); ('\n", 48
    text = python_script(recorder, trace.number)
    tree = ast.parse(text)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "system"]
    assert calls == []


def test_a_message_kept_in_part_is_left_out_with_a_comment():
    recorder = Recorder()
    trace = recorder.open_session(SAM7)
    with trace.message("write", b"x" * 100_000):
        pass
    text = python_script(recorder, trace.number)
    assert "# step 1: a 100000-byte write was traced only in part and is not repeated" in text
    ast.parse(text)


def test_the_pyvisa_script_replays_the_session_on_pyvisa_py(session, tmp_path):
    pytest.importorskip("pyvisa")
    pytest.importorskip("pyvisa_py")
    recorder, replies = session
    text = pyvisa_script(recorder, default_session(recorder))
    assert "inst.assert_trigger()" not in text and "inst.clear()" in text
    path = tmp_path / "replay_pyvisa.py"
    path.write_text(text)
    # pyvisa-py finds USB devices with usb.core.find(); point it at a fresh virtual bus, as tmc bench does.
    runner = ("import runpy, sys, app.sim; from app.bench import default_backend_for_peers\n"
              "with default_backend_for_peers(app.sim.backend()):\n"
              f"    sys.argv = [{str(path)!r}, '--visa-library', '@py']\n"
              f"    runpy.run_path({str(path)!r}, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = [ast.literal_eval(line.split(": ", 1)[1]) for line in proc.stdout.splitlines()
           if line.startswith("step ") and ": b" in line]
    for reply in replies:
        assert reply in got
