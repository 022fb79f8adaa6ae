"""LAN sessions in the I/O trace: each operation a message record, failures with their recovery."""

from __future__ import annotations

import pytest

from app.lan import open_session
from app.usbtmc.errors import TmcTimeoutError
from app.usbtmc.trace import MESSAGE, Recorder


@pytest.mark.parametrize("protocol", ["SOCKET", "VXI-11", "HiSLIP"])
def test_queries_status_reads_and_a_timeout_are_traced(lan, protocol):
    recorder = Recorder()
    entry = next(e for e in lan.resources if e.protocol == protocol and "Loopback" in e.label)
    with open_session(entry.resource, timeout_ms=300, trace=recorder) as session:
        session.trace.command_id = 7  # as the console's worker tags its command
        session.query("*IDN?")
        session.read_stb()
        with pytest.raises(TmcTimeoutError):
            session.query("SYST:ERR")  # not a query: no reply comes
    messages = [e for e in recorder.entries() if e.kind == MESSAGE]
    assert [(e.op, e.status) for e in messages] == [("query", "ok"), ("stb", "ok"), ("query", "timeout")]
    assert messages[0].data == b"*IDN?\n" and messages[0].reply.startswith(b"TMC Console,Virtual Loopback")
    assert all(e.command == 7 for e in messages)
    assert "the session is usable" in messages[2].detail  # the recovery that ran
    assert protocol in recorder.sessions[messages[0].session].name
