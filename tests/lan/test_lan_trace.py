"""LAN sessions in the I/O trace: each operation a message record, failures with their recovery, and\nunder each message the socket sends and receives it took, decoded and exported for Wireshark."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

from app.lan import open_session
from app.trace_export import export
from app.usbtmc.errors import TmcTimeoutError
from app.usbtmc.trace import MESSAGE, TCP, Decoder, Recorder


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


def _traced_session(lan, protocol, recorder):
    entry = next(e for e in lan.resources if e.protocol == protocol and "Loopback" in e.label)
    with open_session(entry.resource, timeout_ms=300, trace=recorder) as session:
        session.query("*IDN?")
        session.read_stb()
    return session


@pytest.mark.parametrize("protocol, expected", [
    ("SOCKET", ["SCPI *IDN?\\n", "SCPI TMC Console,Virtual Loopback"]),
    ("VXI-11", ["RPC call device_write", "RPC reply device_write", "RPC call device_read",
                "RPC reply device_read xid"]),
    ("HiSLIP", ["HiSLIP DATA_END MessageID", "DATA_END payload, 6 bytes: *IDN?\\n", "HiSLIP DATA_END MessageID"]),
])
def test_every_socket_send_and_receive_is_recorded_under_its_message_and_decoded(lan, protocol, expected):
    recorder = Recorder()
    session = _traced_session(lan, protocol, recorder)
    decoder = Decoder()
    entries = [(e, decoder.decode(e).summary) for e in recorder.entries()]
    query = next(e for e, _ in entries if e.kind == MESSAGE and e.op == "query")
    inner = [(e, text) for e, text in entries if e.group == query.seq]
    assert inner and all(e.kind == TCP and e.status == "ok" and e.t_ns > 0 for e, _ in inner)
    assert [e.direction for e, _ in inner][0] == "out" and inner[-1][0].direction == "in"
    texts = [text for _, text in inner]
    for want in expected:
        assert any(text.startswith(want) for text in texts), (want, texts)
    info = recorder.sessions[query.session]
    channels = {c.endpoint for c in info.connections}
    assert {e.endpoint for e, _ in inner} <= channels
    assert all(c.local[0] == "127.0.0.1" and c.remote == ("127.0.0.1", session.address.port)
               for c in info.connections)


def test_csv_and_json_lines_carry_the_lan_packets(lan, tmp_path):
    recorder = Recorder()
    _traced_session(lan, "HiSLIP", recorder)
    export(recorder, tmp_path / "t.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    lan_rows = [r for r in rows if r["layer"] == "LAN"]
    assert {r["endpoint"] for r in lan_rows} == {"HiSLIP sync", "HiSLIP async"}
    assert {r["call"] for r in lan_rows} == {"send", "receive"}
    assert any(r["fields"].get("MessageType") == "DATA_END" for r in lan_rows)
    export(recorder, tmp_path / "t.csv")
    table = list(csv.DictReader((tmp_path / "t.csv").open(encoding="utf-8")))
    assert sum(r["Layer"] == "LAN" for r in table) == len(lan_rows)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (CI installs it)")
def test_tshark_decodes_the_lan_packets_of_an_exported_trace_with_its_own_dissectors(lan, tmp_path):
    recorder = Recorder()
    ports = {protocol: _traced_session(lan, protocol, recorder).address.port for protocol in ("SOCKET", "VXI-11",
                                                                                            "HiSLIP")}
    path = tmp_path / "lan.pcapng"
    assert export(recorder, path) > 0
    fields = ["frame.interface_id", "tcp.srcport", "tcp.dstport", "tcp.payload", "hislip.messagetype",
              "rpc.program", "rpc.procedure", "_ws.col.Protocol", "_ws.col.Info"]
    # Port 4880 is HiSLIP's own; the virtual server listens on a free one, so say which.
    command = ["tshark", "-r", str(path), "-d", f"tcp.port=={ports['HiSLIP']},hislip", "-T", "fields",
               "-E", "separator=|", "-E", "occurrence=f"]
    for name in fields:
        command += ["-e", name]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [dict(zip(fields, line.split("|"))) for line in proc.stdout.splitlines()]
    assert rows and all(r["frame.interface_id"] == "1" for r in rows)  # the raw-IPv4 interface
    raw = [r for r in rows if ports["SOCKET"] in (int(r["tcp.srcport"]), int(r["tcp.dstport"]))]
    assert raw[0]["tcp.dstport"] == str(ports["SOCKET"]) and bytes.fromhex(raw[0]["tcp.payload"]) == b"*IDN?\n"
    assert bytes.fromhex(raw[1]["tcp.payload"]).startswith(b"TMC Console,Virtual Loopback")
    vxi = [r for r in rows if r["rpc.program"] == "395183"]  # DEVICE_CORE
    procedures = [int(r["rpc.procedure"]) for r in vxi]
    assert {10, 11, 12, 13} <= set(procedures)  # create_link, device_write, device_read, device_readstb
    assert any("DEVICE_WRITE Call" in r["_ws.col.Info"] and "*IDN?" in r["_ws.col.Info"] for r in vxi)
    hs = [r for r in rows if r["_ws.col.Protocol"] == "HiSLIP"]
    types = {int(r["hislip.messagetype"], 16) for r in hs if r["hislip.messagetype"]}
    assert {0, 1, 7, 17, 21, 22} <= types  # Initialize(+Response), DataEnd, AsyncInitialize, status query/response
    assert any("DataEnd" in r["_ws.col.Info"] and "*IDN?" in r["_ws.col.Info"] for r in hs)
