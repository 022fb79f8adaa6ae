"""Trace exports: pcapng that tshark decodes with the shipped dissector, CSV and JSON lines."""

import csv
import json
import shutil
import struct
import subprocess

import pytest

from app.trace_export import ExportError, dissector_path, export
from app.trace_export.pcapng import LINKTYPE_USB_LINUX_MMAPPED
from app.usbtmc import Instrument, TmcTimeoutError
from app.usbtmc.trace import Recorder

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


@pytest.fixture
def recorder(sim):
    recorder = Recorder()
    with Instrument(SAM7, backend=sim, timeout_ms=200, trace=recorder) as inst:
        inst.query("*IDN?")
        inst.read_stb()
        with pytest.raises(TmcTimeoutError):
            inst.query("NOPE?")
        inst.write("*ESE 32;*SRE 32")
        inst.write("BOGUS")
        inst.wait_srq(1000)
        inst.clear()
    return recorder


def _blocks(data: bytes):
    offset = 0
    while offset < len(data):
        kind, total = struct.unpack_from("<II", data, offset)
        yield kind, data[offset + 8: offset + total - 4]
        offset += total


def test_pcapng_has_link_type_220_and_the_descriptors_first(recorder, tmp_path):
    path = tmp_path / "t.pcapng"
    count = export(recorder, path)
    blocks = list(_blocks(path.read_bytes()))
    assert blocks[0][0] == 0x0A0D0D0A and blocks[1][0] == 1
    assert struct.unpack_from("<H", blocks[1][1])[0] == LINKTYPE_USB_LINUX_MMAPPED
    packets = [body[20:] for kind, body in blocks if kind == 6]
    assert len(packets) == count and count % 2 == 0
    first = packets[0]
    # usbmon header: a control submission ('S', type 2) with the GET_DESCRIPTOR(DEVICE) setup packet
    assert first[8] == ord("S") and first[9] == 2 and first[40:48] == bytes([0x80, 6, 0, 1, 0, 0, 18, 0])
    assert packets[1][8] == ord("C") and packets[1][64:66] == bytes([18, 1])


def test_pcapng_from_a_cleared_ring_keeps_the_descriptors(recorder, tmp_path):
    recorder.clear()
    recorder.marker("nothing")
    assert export(recorder, tmp_path / "empty.pcapng") == 0  # no transfers: nothing to describe


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (CI installs it)")
def test_tshark_decodes_an_exported_trace_with_the_shipped_dissector(recorder, tmp_path):
    path = tmp_path / "t.pcapng"
    export(recorder, path)
    fields = ["frame.number", "_ws.col.Protocol", "usbtmc.msgid", "usbtmc.btag", "usbtmc.transfer_size",
              "usbtmc.eom", "usbtmc.request", "usbtmc.status", "usbtmc.stb", "usbtmc.notify", "usbtmc.text",
              "_ws.col.Info"]
    command = ["tshark", "-X", f"lua_script:{dissector_path()}", "-r", str(path), "-T", "fields",
               "-E", "separator=|", "-E", "occurrence=f"]
    for name in fields:
        command += ["-e", name]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Lua: Error" not in proc.stderr
    rows = [dict(zip(fields, line.split("|"))) for line in proc.stdout.splitlines()]
    infos = [r["_ws.col.Info"] for r in rows]
    assert rows[0]["_ws.col.Info"].startswith("GET DESCRIPTOR Request DEVICE")
    assert "GET_CAPABILITIES response: STATUS_SUCCESS" in infos
    idn = next(r for r in rows if r["usbtmc.text"] == "*IDN?\\n")
    assert idn["usbtmc.msgid"] == "1" and idn["usbtmc.transfer_size"] == "6" and idn["usbtmc.eom"] == "1"
    btag = int(idn["usbtmc.btag"])
    request = next(r for r in rows if r["usbtmc.msgid"] == "2" and int(r["usbtmc.btag"]) == btag + 1
                   and r["usbtmc.transfer_size"] != "38")
    assert request["_ws.col.Info"].startswith("REQUEST_DEV_DEP_MSG_IN")
    reply = next(r for r in rows if r["_ws.col.Info"].startswith("DEV_DEP_MSG_IN"))
    assert reply["usbtmc.text"].startswith("XYZ Company Ltd") and reply["usbtmc.eom"] == "1"
    assert any(i.startswith("READ_STATUS_BYTE response: STATUS_SUCCESS, bTag") for i in infos)
    srq = next(r for r in rows if r["_ws.col.Info"].startswith("SRQ: STB"))
    assert srq["_ws.col.Protocol"] == "USB488" and int(srq["usbtmc.stb"], 16) & 0x40
    assert "RQS/MSS" in srq["_ws.col.Info"]
    assert any(i.startswith("INITIATE_ABORT_BULK_IN request bTag") for i in infos)
    assert any(i.startswith("CHECK_ABORT_BULK_IN_STATUS response: STATUS_SUCCESS, NBYTES_TXD") for i in infos)
    assert infos.count("INITIATE_CLEAR response: STATUS_SUCCESS") >= 1


def test_csv_has_io_monitor_like_columns_and_every_layer(recorder, tmp_path):
    path = tmp_path / "t.csv"
    count = export(recorder, path)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == count
    assert list(rows[0])[:6] == ["#", "Time", "Duration (us)", "Session", "Layer", "Call"]
    layers = {r["Layer"] for r in rows}
    assert layers == {"USB", "SCPI", "recovery"}
    query = next(r for r in rows if r["Call"] == "query" and "NOPE" in r["Description"])
    assert query["Status"] == "timeout" and "did not answer in time" in query["Description"]
    recovery = next(r for r in rows if r["Layer"] == "recovery")
    assert recovery["Description"].startswith("ABORT_BULK_IN bTag")
    assert any(r["Recovery"] == recovery["#"] for r in rows)
    assert rows[0]["Time"].endswith("Z") and "T" in rows[0]["Time"]


def test_jsonl_is_one_decoded_record_per_line(recorder, tmp_path):
    path = tmp_path / "t.jsonl"
    count = export(recorder, path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == count
    reply = next(r for r in records if r["fields"].get("MsgID") == "DEV_DEP_MSG_IN")
    assert reply["fields"]["EOM"] is True and bytes.fromhex(reply["data"])[12:15] == b"XYZ"
    srq = next(r for r in records if r["fields"].get("notify") == "SRQ")
    assert srq["call"] == "interrupt in" and srq["fields"]["STB"] & 0x40


def test_a_bad_suffix_or_folder_is_a_clear_error_and_the_old_file_survives(recorder, tmp_path):
    with pytest.raises(ExportError, match=r"unknown trace format \.txt"):
        export(recorder, tmp_path / "t.txt")
    with pytest.raises(ExportError, match="cannot write the trace"):
        export(recorder, tmp_path / "missing" / "t.csv")
    old = tmp_path / "keep.jsonl"
    old.write_text("old\n")

    class Broken(Recorder):
        def entries(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        export(Broken(), old)
    assert old.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jsonl"]


def test_the_dissector_ships_with_the_package():
    path = dissector_path()
    assert path.is_file() and path.name == "usbtmc.lua"
    text = path.read_text()
    assert 'DissectorTable.get("usb.bulk"):add(0xFE' in text
