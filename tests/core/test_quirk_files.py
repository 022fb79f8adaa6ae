"""A user's quirks file with mistakes: each broken entry is skipped with file and line, the
others load, line numbers are right for every TOML form, and numbers have bounds."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.usbtmc.errors import QuirksFileError
from app.usbtmc.quirks import FLAG_TYPES, MIB, QuirkDatabase, load_database, parse_database

GOOD = """\
[[quirk]]
name = "Good"
vid = 0x1234
pid = 0x0001
reason = "r"
source = "s"
[quirk.flags]
no_eom = true
"""


@pytest.mark.parametrize("value", ["[1]", '["a"]', "[[1, 2]]", "[true]"])
def test_a_quirk_that_is_not_a_table_is_skipped_and_the_rest_loads(tmp_path, value):
    user = tmp_path / "quirks.toml"
    user.write_text(f"quirk = {value}\n")
    db = load_database(user)
    assert db.problems and db.problems[0].startswith(f"{user}:1: entry 1 is ") and "not a table" in db.problems[0]
    assert db.lookup(0x1AB1, 0x0588).single_request_per_reply  # the shipped entries still load


def test_a_broken_entry_is_skipped_and_the_next_one_loads(tmp_path):
    user = tmp_path / "quirks.toml"
    user.write_text(GOOD.replace("0x0001", "0x0002").replace("no_eom = true", "no_eom = 1") + "\n" + GOOD)
    db = load_database(user)
    assert db.problems == [f"{user}:8: entry 'Good': flag 'no_eom' must be true or false; entry skipped"]
    assert db.lookup(0x1234, 0x0001).no_eom and not db.lookup(0x1234, 0x0002).no_eom


@pytest.mark.parametrize("header", ["[[ quirk ]]", "[[\tquirk]]", '[["quirk"]]', "[[ 'quirk' ]]  # a comment"])
def test_spaced_and_quoted_headers_give_the_right_line(header):
    text = "# my file\n\n" + GOOD + "\n" + GOOD.replace("[[quirk]]", header).replace("no_eom = true", "no_eom = 2")
    with pytest.raises(QuirksFileError, match=r"^x.toml:19: entry 'Good': flag 'no_eom'"):
        parse_database(text, "x.toml")


def test_inline_tables_give_the_right_line():
    text = ('# inline\nquirk = [\n  {name = "A", vid = 1, reason = "r", source = "s", flags = {no_eom = true}},\n'
            '  # the next one is broken\n'
            '  {name = "B", vid = 1, reason = "r", source = "s", flags = {no_eom = "yes"}},\n]\n')
    problems: list[str] = []
    entries = parse_database(text, "x.toml", problems)
    assert [e.name for e in entries] == ["A"] and entries[0].origin == "x.toml:3"
    assert problems == ["x.toml:5: entry 'B': flag 'no_eom' must be true or false; entry skipped"]


def test_strings_holding_brackets_and_headers_do_not_confuse_the_lines():
    text = ('[[quirk]]\nname = "x [[quirk]] {"\nvid = 1\nreason = """\n[[quirk]]\n"""\nsource = \'s ]\'\n'
            '[quirk.flags]\nno_eom = true\n\n[[quirk]]\nname = "y"\nvid = 0x10000\n')
    problems: list[str] = []
    assert len(parse_database(text, "x.toml", problems)) == 1
    assert problems == ["x.toml:13: entry 'y': 'vid' must be a 16-bit number; entry skipped"]


@pytest.mark.parametrize("flag, value, message", [
    ("max_in_transfer_bytes", 2**32, "from 1 to 67,108,864"),
    ("max_in_transfer_bytes", 4294967295, "from 1 to 67,108,864"),
    ("read_buffer_bytes", 4294967295, "from 1 to 16,777,216"),
    ("max_out_transfer_bytes", 0, "from 1 to"),
    ("mode_switch_wait_ms", 10**20, "from 0 to 600,000"),
    ("transfer_size_cap", -1, "from 0 to 4,294,967,295"),
])
def test_numbers_have_bounds(flag, value, message):
    with pytest.raises(QuirksFileError, match=f"x.toml:8: entry 'Good': flag '{flag}' must be a whole number {message}"):
        parse_database(GOOD.replace("no_eom = true", f"{flag} = {value}"), "x.toml")


def test_the_largest_read_sizes_allowed_keep_a_query_small(sam7_device, sim):
    """The read sizes at their bounds: one *IDN? allocates per its reply, not per the bounds."""
    import tracemalloc

    from app.usbtmc import Instrument

    text = GOOD.replace("vid = 0x1234\npid = 0x0001", "vid = 0x1209\npid = 0x0001").replace(
        "no_eom = true", f"max_in_transfer_bytes = {64 * MIB}\nread_buffer_bytes = {16 * MIB}")
    db = QuirkDatabase(entries=parse_database(text))
    with Instrument("USB0::0x1209::0x0001::SAM7-0001::INSTR", backend=sim, timeout_ms=2000, quirk_db=db) as inst:
        tracemalloc.start()
        try:
            assert inst.query("*IDN?").startswith("XYZ")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 64 * MIB


# --- property-based: whatever the file holds, loading never raises anything but the typed
# error, every problem names the file and a line inside it, and good entries are kept.

SCALARS = st.one_of(st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=8),
                    st.floats(allow_nan=True), st.just([]), st.lists(st.integers(-5, 300), max_size=6))
KEYS = st.sampled_from(["name", "vid", "pid", "pid_range", "product", "idn", "reason", "source", "bogus"])
FLAGS = st.dictionaries(st.sampled_from(sorted(FLAG_TYPES) + ["nope"]), SCALARS, max_size=4)
ENTRY = st.one_of(
    st.dictionaries(KEYS, SCALARS, max_size=8).flatmap(
        lambda d: FLAGS.map(lambda f: {**d, "flags": f} if f else d)),
    SCALARS,
)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, "nan" if value != value else repr(value))
    if isinstance(value, str):
        return '"' + "".join(c if c.isalnum() or c == " " else f"\\u{ord(c):04x}" for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def _render(entries, form: str) -> str:
    if form == "inline":
        items = []
        for e in entries:
            if isinstance(e, dict):
                parts = [f"{k} = {_toml_value(v)}" for k, v in e.items() if k != "flags"]
                if "flags" in e:
                    parts.append("flags = {" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in e["flags"].items()) + "}")
                items.append("{" + ", ".join(parts) + "}")
            else:
                items.append(_toml_value(e))
        return "quirk = [\n" + ",\n".join("  " + i for i in items) + "\n]\n"
    out = []
    for e in entries:
        if not isinstance(e, dict):
            return _render(entries, "inline")
        out.append("[[ quirk ]]" if form == "spaced" else "[[quirk]]")
        out += [f"{k} = {_toml_value(v)}" for k, v in e.items() if k != "flags"]
        if "flags" in e:
            out.append("[quirk.flags]")
            out += [f"{k} = {_toml_value(v)}" for k, v in e["flags"].items()]
        out.append("")
    return "\n".join(out)


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ENTRY, max_size=4), st.sampled_from(["headers", "spaced", "inline"]), st.integers(0, 4))
def test_any_quirks_file_loads_what_is_good_and_names_the_rest(entries, form, good_at):
    entries = list(entries)
    good = tomllib.loads(GOOD)["quirk"][0]
    entries.insert(min(good_at, len(entries)), good)
    text = _render(entries, form)
    problems: list[str] = []
    try:
        loaded = parse_database(text, "f.toml", problems)
    except QuirksFileError:
        return  # e.g. a duplicate key: not TOML, reported whole
    assert any(e.name == "Good" and e.flags == {"no_eom": True} for e in loaded)
    n_lines = len(text.splitlines())
    for problem in problems:
        head, line, rest = problem.split(":", 2)
        assert head == "f.toml" and 1 <= int(line) <= n_lines and rest.endswith("entry skipped")
        assert "\n" not in problem
    assert len(loaded) + len(problems) == len(entries)


def test_tmc_names_a_skipped_entry_on_stderr_and_still_runs(tmp_path, monkeypatch, capsys):
    import app.usbtmc.quirks as quirks
    from app.cli import main

    user = tmp_path / "quirks.toml"
    user.write_text("quirk = [1]\n")
    monkeypatch.setattr(quirks, "user_quirks_path", lambda: user)
    quirks.default_database.cache_clear()
    try:
        assert main(["query", "--sim", "USB0::0x1209::0x0002::LOOP-0001::INSTR", "*IDN?"]) == 0
    finally:
        quirks.default_database.cache_clear()
    out, err = capsys.readouterr()
    assert err == f"tmc: {user}:1: entry 1 is int 1, not a table of keys; entry skipped\n"
