"""``tmc ... --trace FILE`` and ``tmc trace --dissector-path``."""

import json
import shutil
import subprocess

import pytest

from app import cli

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


@pytest.mark.parametrize("command", [
    ["query", "--sim", SAM7, "*IDN?"], ["write", "--sim", SAM7, "*CLS"], ["stb", "--sim", SAM7],
    ["clear", "--sim", SAM7], ["trigger", "--sim", "USB0::0x1209::0x0002::LOOP-0001::INSTR"], ["pulse", "--sim", SAM7],
    ["probe", "--sim", SAM7, "--json"],
])
def test_every_instrument_command_writes_a_trace(command, tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    assert cli.main([*command, "--trace", str(path)]) == 0
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["description"] == "GET_DESCRIPTOR DEVICE"
    assert any(r["layer"] == "USB" and r["call"] != "control" or r["description"].startswith(("INITIATE_CLEAR",
               "INDICATOR_PULSE", "READ_STATUS_BYTE")) for r in records)
    assert f"written to {path}" in capsys.readouterr().err


def test_a_failed_command_still_writes_its_trace(tmp_path, capsys):
    path = tmp_path / "t.csv"
    assert cli.main(["read", "--sim", "--timeout-ms", "100", SAM7, "--trace", str(path)]) == cli.EXIT_ERROR
    text = path.read_text()
    assert "timeout" in text and "ABORT_BULK_IN" in text
    assert "tmc: the device did not answer in time" in capsys.readouterr().err


def test_an_unknown_trace_format_is_refused_before_the_device_is_touched(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["query", "--sim", SAM7, "*IDN?", "--trace", str(tmp_path / "t.pcap")])
    assert info.value.code == 2
    assert "must end in .pcapng, .csv, .jsonl" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_tmc_trace_prints_the_dissector_path(capsys):
    assert cli.main(["trace", "--dissector-path"]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("usbtmc.lua") and "usb.bulk" in open(path).read()
    assert cli.main(["trace"]) == cli.EXIT_USAGE


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (CI installs it)")
def test_the_documented_tshark_command_works(tmp_path, capsys):
    path = tmp_path / "q.pcapng"
    assert cli.main(["query", "--sim", SAM7, "*IDN?", "--trace", str(path)]) == 0
    cli.main(["trace", "--dissector-path"])
    dissector = capsys.readouterr().out.strip().splitlines()[-1]
    out = subprocess.run(["tshark", "-X", f"lua_script:{dissector}", "-r", str(path)],
                         capture_output=True, text=True, timeout=120).stdout
    assert "USBTMC" in out and "DEV_DEP_MSG_IN bTag 2 TransferSize 38 EOM: XYZ Company Ltd" in out
