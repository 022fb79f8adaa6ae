"""Scripts exported from a traced LAN session (raw socket, VXI-11, HiSLIP) open the same TCPIP
resource, repeat the session against a fresh virtual LAN instrument and get the same replies."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.replay import exercise

from app.lan import open_session
from app.sim.lan import serve
from app.trace_export.script import default_session, pyvisa_script, python_script
from app.usbtmc.trace import Recorder

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = ["SOCKET", "VXI-11", "HiSLIP"]


def sam7(servers, protocol: str) -> str:
    return next(e.resource for e in servers.resources if e.protocol == protocol and "SAM7" in e.label)


def record(servers, protocol: str) -> tuple[Recorder, list[bytes]]:
    """The USB replay test's session, over ``protocol``; a raw socket has no clear and no SRQ."""
    recorder = Recorder()
    with open_session(sam7(servers, protocol), timeout_ms=300, trace=recorder) as session:
        replies = exercise(session, lacks=("clear", "wait_srq") if protocol == "SOCKET" else (), trigger=True)
    return recorder, replies


def run(command: list[str], tmp_path) -> list[str]:
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def replies_in(lines: list[str]) -> list[bytes]:
    return [ast.literal_eval(line.split(": ", 1)[1]) for line in lines
            if line.startswith("step ") and ": b" in line and "Error" not in line]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_python_script_of_a_lan_session_replays_it_on_a_fresh_instrument(lan, protocol, tmp_path):
    recorder, replies = record(lan, protocol)
    text = python_script(recorder, default_session(recorder))
    ast.parse(text)
    assert "from app.lan import open_session" in text and "--sim" not in text
    assert f"RESOURCE = {sam7(lan, protocol)!r}" in text
    assert "inst.write_raw(b'*CLS\\r\\n')" in text and "inst.clear()" in text and "inst.trigger()" in text
    assert "inst.wait_srq(1000)" in text
    path = tmp_path / "replay.py"
    path.write_text(text)
    with serve() as fresh:  # other ports: the resource is given on the command line
        lines = run([sys.executable, str(path), sam7(fresh, protocol)], tmp_path)
    for reply in replies:
        assert reply in replies_in(lines)
    assert any("TmcTimeoutError (timeout when recorded)" in line or "ReplyTimeoutError (timeout when recorded)"
               in line for line in lines)
    if protocol == "SOCKET":
        assert any("NotSupportedError (error when recorded)" in line for line in lines)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_pyvisa_script_of_a_lan_session_replays_it_on_pyvisa_py(lan, protocol, tmp_path):
    pytest.importorskip("pyvisa")
    pytest.importorskip("pyvisa_py")
    recorder, replies = record(lan, protocol)
    text = pyvisa_script(recorder, default_session(recorder))
    ast.parse(text)
    assert ('inst.read_termination = "\\n"' in text) == (protocol == "SOCKET")
    # app.lan ends a raw socket's message with the newline it lacks; VISA's write_raw does not.
    assert ("inst.write_raw(b'PARAM:SET 1,2\\n')" in text) and "inst.write_raw(b'*CLS\\r\\n')" in text
    path = tmp_path / "replay_pyvisa.py"
    path.write_text(text)
    with serve() as fresh:
        lines = run([sys.executable, str(path), "--visa-library", "@py", sam7(fresh, protocol)], tmp_path)
    for reply in replies:
        assert reply in replies_in(lines)
