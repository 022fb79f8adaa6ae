"""The instrument subcommands of ``tmc`` on the virtual instruments (``--sim``): what each prints,
its exit code, and a failure as one line on stderr. (``tmc write``'s error check, ``tmc probe``
and the quirky twins are in test_cli.py; ``--trace`` in test_cli_trace.py.)"""

from __future__ import annotations

import json

import pytest

import app.sim
from app import cli
from app.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from app.sim.scpi_device import VirtualLoopback

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"
LOOP = "USB0::0x1209::0x0002::LOOP-0001::INSTR"
AWG = "USB0::0x1209::0x000C::AWG-0001::INSTR"
MISSING = "USB0::0x1209::0x0001::NOPE::INSTR"


@pytest.fixture
def one_bus(monkeypatch):
    """Every tmc call of the test on the same virtual bus, as under ``tmc sim run``: a reply left by
    one call is there for the next."""
    backend = app.sim.backend()
    monkeypatch.setattr(cli, "_backend", lambda args: backend if args.sim else None)
    return backend


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tmc: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


def test_list_names_each_virtual_instrument_with_its_protocol_and_speed(capsys):
    assert main(["list", "--sim", "--no-probe"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [SAM7, LOOP, AWG]
    assert "XYZ Company Ltd SAM7-EK  [USB488, full (12 Mbit/s)]" in lines[0]
    assert lines[1].endswith("[USB488, high (480 Mbit/s)]")


def test_list_json_is_one_record_per_instrument(capsys):
    assert main(["list", "--sim", "--json"]) == EXIT_OK
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["resource"] for r in records] == [SAM7, LOOP, AWG]
    assert records[0] | {"quirks": []} == records[0]  # none of the default instruments needs a quirk
    assert {r["protocol"] for r in records} == {"USB488"} and all(r["problem"] is None for r in records)
    assert (records[1]["vid"], records[1]["pid"], records[1]["serial"]) == (0x1209, 0x0002, "LOOP-0001")


def test_query_prints_the_reply_and_raw_shows_its_terminator(capsys):
    assert main(["query", "--sim", SAM7, "*IDN?"]) == EXIT_OK
    assert capsys.readouterr().out == "XYZ Company Ltd, SAM7-EK, 0, v1.0.001\n"
    assert main(["query", "--sim", "--raw", LOOP, "*IDN?"]) == EXIT_OK
    assert capsys.readouterr().out == "TMC Console,Virtual Loopback,LOOP-0001,1.0\\n\n"


def test_read_prints_the_reply_a_write_left(one_bus, capsys):
    assert main(["write", "--sim", "--check", "off", LOOP, "*IDN?"]) == EXIT_OK
    assert main(["read", "--sim", LOOP]) == EXIT_OK
    assert capsys.readouterr().out == "TMC Console,Virtual Loopback,LOOP-0001,1.0\n"


def test_stb_decodes_the_status_byte(one_bus, capsys):
    assert main(["stb", "--sim", LOOP]) == EXIT_OK
    assert capsys.readouterr().out == "STB 0x00 (0): no bits set\n"
    assert main(["write", "--sim", "--check", "off", LOOP, "*IDN?"]) == EXIT_OK  # a reply waits: MAV
    assert main(["stb", "--sim", LOOP]) == EXIT_OK
    assert capsys.readouterr().out.startswith("STB 0x10 (16): MAV")


def test_clear_discards_a_waiting_reply(one_bus, capsys):
    assert main(["write", "--sim", "--check", "off", LOOP, "*IDN?"]) == EXIT_OK
    assert main(["clear", "--sim", LOOP]) == EXIT_OK
    assert capsys.readouterr().out == "device cleared\n"
    assert one_bus.bus.find(kind=VirtualLoopback).read_status_byte() == 0  # MAV gone with the reply


def test_trigger_and_pulse_say_what_was_done(capsys):
    assert main(["trigger", "--sim", LOOP]) == EXIT_OK
    assert capsys.readouterr().out == "triggered\n"
    assert main(["pulse", "--sim", SAM7]) == EXIT_OK
    assert capsys.readouterr().out == "indicator pulsed\n"


def test_a_trigger_the_device_does_not_accept_is_one_line_and_exit_1(capsys):
    assert main(["trigger", "--sim", SAM7]) == EXIT_ERROR  # the SAM7's capabilities have no TRIGGER
    assert "does not accept the USB488 TRIGGER message" in _one_line_error(capsys)


@pytest.mark.parametrize("command", [
    ["query", "*IDN?"], ["write", "*CLS"], ["read"], ["stb"], ["clear"], ["trigger"], ["pulse"],
])
def test_every_instrument_command_names_an_instrument_that_is_not_there(command, capsys):
    name, *rest = command
    assert main([name, "--sim", "--timeout-ms", "300", MISSING, *rest]) == EXIT_ERROR
    assert "serial 'NOPE'" in _one_line_error(capsys)


@pytest.mark.parametrize("argv, said", [
    (["query", "--sim", "GPIB0::1::INSTR", "*IDN?"], "is not a USB resource string"),
    (["stb", "--sim", "USB0::0x1209::0xZZZZ::S::INSTR"], "is not a hex (0x...) or decimal number"),
    (["query", "--sim", "--timeout-ms", "0", SAM7, "*IDN?"], "a timeout must be at least 1 ms, got 0"),
    (["pulse", "--sim", "--timeout-ms", "-5", SAM7], "a timeout must be at least 1 ms, got -5"),
])
def test_a_command_line_that_asks_for_the_impossible_is_bad_usage(argv, said, capsys):
    assert main(argv) == EXIT_USAGE
    assert said in _one_line_error(capsys)


def test_a_missing_argument_is_argparse_usage(capsys):
    with pytest.raises(SystemExit) as usage:
        main(["query", "--sim", SAM7])
    assert usage.value.code == EXIT_USAGE and "required: command" in capsys.readouterr().err
