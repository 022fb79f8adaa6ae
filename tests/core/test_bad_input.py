"""Bad resource strings and commands from the command line: one line and a non-zero exit,
never a traceback (property-based for the resource grammar)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import EXIT_ERROR, EXIT_USAGE, main
from app.usbtmc.errors import ResourceError
from app.usbtmc.resource import Resource, format_resource, parse_resource

LOOP = "USB0::0x1209::0x0002::LOOP-0001::INSTR"
MANY_DIGITS = "1" * 5000
FIELD = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789abcdefxX٠١٢٣²³¹߀௧", max_size=8),
    st.integers(-1, 1 << 70).map(str),
    st.integers(0, 1 << 40).map(hex),
    st.sampled_from(["", "0x", MANY_DIGITS, "0x" + MANY_DIGITS, " 12 ", "+1", "1_0", "INSTR", "RAW"]),
)
RESOURCE_TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(FIELD, min_size=1, max_size=7).map("::".join),
    st.tuples(st.sampled_from(["USB", "USB0", "usb1", "USB" + MANY_DIGITS, "USB²"]),
              st.lists(FIELD, min_size=3, max_size=5)).map(lambda t: "::".join([t[0], *t[1]])),
)


@settings(max_examples=400, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(RESOURCE_TEXT)
def test_a_resource_string_parses_or_says_why_in_one_short_line(text):
    try:
        resource = parse_resource(text)
    except ResourceError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 400
        return
    assert 0 <= resource.vid <= 0xFFFF and 0 <= resource.pid <= 0xFFFF
    assert resource.interface is None or 0 <= resource.interface <= 0xFF
    assert parse_resource(str(resource)) == resource  # what parses, prints back to itself


@settings(max_examples=200, deadline=500)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.text(st.characters(blacklist_characters=":", blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=20),
       st.one_of(st.none(), st.integers(0, 0xFF)), st.integers(0, 99))
def test_every_formatted_resource_parses_back(vid, pid, serial, interface, board):
    text = format_resource(vid, pid, serial, interface, board)
    assert parse_resource(text) == Resource(vid, pid, serial, interface, board)


@pytest.mark.parametrize("resource, message", [
    ("USB0::0x1209::0x0001::X::²::INSTR", "interface number '²'"),
    ("USB0::١٢::0x0001::X::INSTR", "vendor ID '١٢'"),  # Arabic-Indic digits are not a number here
    (f"USB0::0x1209::0x0001::X::{MANY_DIGITS}::INSTR", "interface number '1111"),
    (f"USB{MANY_DIGITS}::0x1209::0x0001::X::INSTR", "does not start with USB[board]"),
    (f"USB0::{MANY_DIGITS}::0x0001::X::INSTR", "does not fit 16 bits"),
    (f"USB0::0x1209::0x{MANY_DIGITS}::X::INSTR", "does not fit 16 bits"),
])
def test_tmc_refuses_odd_numbers_in_one_line(capsys, resource, message):
    assert main(["query", "--sim", resource, "*IDN?"]) == EXIT_USAGE  # a wrong argument (README's exit codes)
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and message in err and len(err) < 400


def test_tmc_refuses_a_command_that_is_not_utf8(capsys):
    # argv holds the bytes 0xFF 0xFE as the surrogates Python decodes them to (PEP 383).
    for command in ("query", "write"):
        assert main([command, "--sim", LOOP, "*IDN?\udcff\udcfe"]) == EXIT_USAGE
        out, err = capsys.readouterr()
        assert err == ("tmc: the command holds bytes that are not UTF-8 (\\xff\\xfe at character 6); "
                       "nothing was sent\n")


def test_tmc_turns_an_unexpected_error_into_one_line(capsys, monkeypatch):
    import app.cli

    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(app.cli, "cmd_stb", broken)
    assert main(["stb", "--sim", LOOP]) == EXIT_ERROR
    assert capsys.readouterr().err == "tmc: internal error (KeyError): 'boom'\n"
