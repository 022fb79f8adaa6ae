"""``tmc`` as a user types it: the quirky twins can be listed, a write is checked for errors,
exit codes say what happened, and the help keeps its word."""

from __future__ import annotations

import pytest

from app.bench import PEERS_HINT
from app.cli import EXIT_DEVICE, EXIT_ERROR, EXIT_OK, build_parser, main

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"
LOOP = "USB0::0x1209::0x0002::LOOP-0001::INSTR"
DS1104Z = "USB0::0x1AB1::0x04CE::DS1ZA000000001::INSTR"


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_list_shows_the_quirky_twins_only_when_asked(capsys):
    assert main(["list", "--sim", "--no-probe", "--quirky"]) == EXIT_OK
    quirky = capsys.readouterr().out
    assert "RIGOL" in quirky.upper() and "0x1AB1::0x04CE" in quirky
    assert main(["list", "--sim", "--no-probe"]) == EXIT_OK
    plain = capsys.readouterr().out
    assert "0x1AB1" not in plain and SAM7 in plain
    with pytest.raises(SystemExit) as usage:
        main(["list", "--quirky"])
    assert usage.value.code == 2 and "--quirky needs --sim" in capsys.readouterr().err


def test_a_quirky_twin_answers_a_query(capsys):
    resource = next(line.split()[0] for line in _listed(capsys) if "0x04CE" in line)
    assert main(["query", "--sim", "--quirky", "--timeout-ms", "500", resource, "*IDN?"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("RIGOL")


def _listed(capsys) -> list[str]:
    main(["list", "--sim", "--no-probe", "--quirky"])
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("USB0::")]


@pytest.mark.parametrize("resource, check, code", [
    (LOOP, "auto", EXIT_DEVICE),  # SCPI claimed: SYST:ERR? says -113
    (SAM7, "auto", EXIT_DEVICE),  # no SCPI: *ESR? has CME set
    (LOOP, "off", EXIT_OK),
])
def test_write_runs_the_error_check_and_exits_non_zero_on_a_device_error(capsys, resource, check, code):
    assert main(["write", "--sim", "--timeout-ms", "500", "--check", check, resource, "NO:SUCH:COMMAND"]) == code
    err = capsys.readouterr().err
    if code == EXIT_DEVICE:
        assert "the instrument reported" in err and "NO:SUCH:COMMAND" in err
        assert "-113" in err if resource == LOOP else "CME" in err


def test_a_good_write_exits_zero(capsys):
    assert main(["write", "--sim", "--timeout-ms", "500", LOOP, "*CLS"]) == EXIT_OK
    assert main(["write", "--sim", "--timeout-ms", "500", SAM7, "*CLS"]) == EXIT_OK
    assert capsys.readouterr().err == ""


def test_one_shot_errors_do_not_talk_about_a_session(capsys):
    assert main(["read", "--sim", "--timeout-ms", "200", SAM7]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("tmc: ") and "did not answer" in err and "session is usable" not in err


def test_probe_exit_codes_are_usable_in_ci(capsys):
    assert main(["probe", "--sim", "--json", "--timeout-ms", "300", SAM7]) == EXIT_OK
    capsys.readouterr()
    assert main(["probe", "--sim", "--safe", "--timeout-ms", "300", DS1104Z]) == EXIT_DEVICE
    out, err = capsys.readouterr()
    assert "Reply framing" in err and "Device clear" not in err  # --safe skipped the clear that hangs it
    assert "not run in safe mode" in out
    assert main(["probe", "--sim", "USB0::0x1209::0x0BAD::X::INSTR"]) == EXIT_ERROR


def test_help_keeps_its_word(capsys):
    probe_help = _help(capsys, "probe")
    assert "default 1000" in probe_help and "5000" not in probe_help
    assert "Exit 0 when no check failed" in probe_help and "exit codes:" in probe_help
    write_help = _help(capsys, "write")
    assert "fresh virtual bus" in write_help and "tmc sim run" in write_help and "default 5000" in write_help
    assert "3 the instrument reported an error" in " ".join(build_parser().format_help().split())


def test_the_bench_hint_points_at_the_readme_install():
    assert 'pip install ".[bench]"' in PEERS_HINT and "tmc-console[bench]" not in PEERS_HINT
