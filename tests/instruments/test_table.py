"""The instrument table: the shipped file, its validation (line-numbered, entry by entry) and its readers."""

import re

import pytest

from app.instruments import TableError, parse_table, shipped_table, shipped_text
from app.sim import sam7 as sam7_model
from app.usbtmc.quirks import load_database, parse_database, shipped_entries

GOOD = '''
[[commands]]
id = "good"
list = [["*IDN?", "identify"]]
'''


def test_the_shipped_table_loads_whole():
    table = shipped_table()
    assert table.problems == ()
    assert [c.id for c in table.catalogs] == ["ieee488", "scpi99", "sam7"]
    assert [p.id for p in table.profiles] == ["sam7"]
    assert [t.key for t in table.templates] == ["awg-dac", "awg-float", "generic", "rigol", "siglent"]
    assert [c.template for c in table.template_choices] == ["awg-dac", "rigol", "siglent"]


def test_the_sam7_entry_holds_its_commands_registers_panel_and_demo():
    table = shipped_table()
    sam7 = table.profile("sam7")
    catalog = next(c for c in table.catalogs if c.id == "sam7")
    assert catalog.scpi is False and catalog.replaces == ("ieee488", "scpi99")
    assert catalog.matches("XYZ Company Ltd, SAM7-EK, 0, v1.0.001") and not catalog.matches("RIGOL,DS1054Z,1,1")
    assert sam7.panel == "sam7" and sam7.register("DEBUG:FLAGS").width == 32
    assert sam7.no_waveform.startswith("The SAM7 counter board takes no waveform data")
    assert {step.mode for step in sam7.demo} == {"send", "query", "control"}
    assert sam7.demo[0].text == "*RST" and sam7.demo[-1].text == "*ESE 0"


def test_the_sam7_limits_agree_with_the_virtual_board():
    """The panel's limits are the table's; the virtual board keeps the firmware's own: they must agree."""
    limits = shipped_table().profile("sam7").limits
    assert limits == {"count_max": sam7_model.COUNT_MAX, "param_min": sam7_model.PARAM_MIN,
                      "param_max": sam7_model.PARAM_MAX, "glitch_filter_ms": sam7_model.GLITCH_FILTER_US // 1000}
    from app.ui import sam7_panel  # the panel reads them from the table, not from the simulator

    assert (sam7_panel.COUNT_MAX, sam7_panel.PARAM_MIN, sam7_panel.PARAM_MAX) == (30000, -10000, 10000)
    assert sam7_panel.FILTER_MS == 30.0 and sam7_panel.DEMO == shipped_table().profile("sam7").demo
    assert "app.sim.sam7" not in open(sam7_panel.__file__, encoding="utf-8").read()


def test_the_shipped_quirk_entries_come_from_the_table_with_their_lines():
    lines = shipped_text().splitlines()
    entries = shipped_entries()
    assert len(entries) == shipped_text().count("\n[[quirk]]")
    for entry in entries:
        origin, line = entry.origin.rsplit(":", 1)
        assert origin == "instruments.toml (shipped)" and lines[int(line) - 1].strip() == "[[quirk]]", entry.name


@pytest.mark.parametrize("text, line, problem", [
    ('[[commands]]\nid = "x"\nlist = [["*IDN?"]]', 3, "must be [command, description]"),
    ('[[commands]]\nid = "x"\nrequires = "gpib"\nlist = [["*IDN?", "i"]]', 3, 'requires may only be "scpi"'),
    ('[[commands]]\nname = "no id"\nlist = [["*IDN?", "i"]]', 1, "needs id"),
    ('[[instrument]]\nid = "x"\nname = "X"\nidn = "("', 4, "not a valid regular expression"),
    ('[[instrument]]\nid = "x"\nname = "X"', 1, "needs idn"),
    ('[[instrument]]\nid = "x"\nname = "X"\nidn = "X"\ncolour = "red"', 5, "unknown key 'colour'"),
    ('[[instrument]]\nid = "x"\nname = "X"\nidn = "X"\n[instrument.status.stb]\n9 = ["X", ""]', 6,
     "not a bit number"),
    ('[[instrument]]\nid = "x"\nname = "X"\nidn = "X"\n[[instrument.status.registers]]\nname = "R"\nwidth = 8', 5,
     "needs status.registers.query"),
    ('[[instrument]]\nid = "x"\nname = "X"\nidn = "X"\n[instrument.panel]\nkey = "p"\ndemo = [{ send = "*RST" }]',
     7, "demo step 1: send, explain and reads are text"),
    ('[[instrument]]\nid = "x"\nname = "X"\nidn = "X"\n[instrument.panel]\nkey = "p"\n'
     'demo = [{ send = "*RST", query = "*IDN?", explain = "both" }]', 7, "exactly one of send, query, control"),
    ('[[instrument]]\nid = "x"\nname = "X"\nidn = "X"\n[instrument.panel]\nkey = "p"\n[instrument.panel.limits]\nmax = 1.5', 8,
     "panel.limits.max must be a whole number"),
    ('[[instrument]]\nid = "x"\nname = "X"\nidn = "X"\nupload.template = "nope"', 5, "is not a [[template]] key"),
    ('[[template]]\nkey = "t"\nlabel = "T"\nkind = "stream"\nprefix = ""\nsample_type = "int16"', 4,
     "kind must be one of block, chained, raw"),
    ('[[template]]\nkey = "t"\nlabel = "T"\nkind = "raw"\nprefix = ""\nsample_type = "int8"', 6,
     "sample_type must be one of sample_types"),
    ('[[template]]\nkey = "t"\nlabel = "T"\nkind = "raw"\nprefix = ""\nsample_type = "int16"\nopc = "yes"', 7,
     "opc must be true or false"),
])
def test_a_bad_entry_is_skipped_with_its_line_and_the_others_load(text, line, problem):
    problems = []
    table = parse_table(GOOD + "\n" + text + "\n" + GOOD.replace('"good"', '"after"'), "mine.toml", problems)
    assert [c.id for c in table.catalogs] == ["good", "after"]
    (message,) = problems
    assert message.startswith(f"mine.toml:{line + GOOD.count(chr(10)) + 1}: ") and problem in message, message
    assert message.endswith("; entry skipped") and table.problems == (message,)
    with pytest.raises(TableError, match=re.escape(problem)):
        parse_table(text, "mine.toml")


def test_a_duplicate_id_and_an_unknown_section_are_reported():
    problems = []
    parse_table(GOOD + GOOD + '\n[[widget]]\nname = "w"\n', "mine.toml", problems)
    assert problems[0] == "mine.toml: unknown top-level key 'widget' (known: commands, instrument, template, quirk)"
    assert problems[1].startswith("mine.toml:7: commands 'good': id 'good' is used by an earlier entry")


def test_a_file_that_is_not_toml_names_its_line():
    with pytest.raises(TableError, match=r"^mine.toml:3: not valid TOML"):
        parse_table('[[commands]]\nid = "x"\nlist = [ 1 2 ]\n', "mine.toml", [])


def test_nothing_in_the_table_is_executed():
    text = '[[instrument]]\nid = "x"\nname = "__import__(\'os\').system(\'false\')"\nidn = "X"\n' \
           '[instrument.panel]\nkey = "p"\ndemo = [{ send = "__import__(\'os\')", explain = "text only" }]\n'
    profile = parse_table(text, "mine.toml").profile("x")
    assert profile.name.startswith("__import__") and profile.demo[0].text == "__import__('os')"


def test_the_user_quirks_file_keeps_its_form_and_holds_quirks_only(tmp_path):
    user = tmp_path / "quirks.toml"
    user.write_text('[[quirk]]\nname = "Mine"\nvid = 0x1234\npid = [0x0001]\nreason = "r"\nsource = "s"\n'
                    '[quirk.flags]\nno_zlp = true\n\n[[instrument]]\nid = "x"\nname = "X"\nidn = "X"\n',
                    encoding="utf-8")
    db = load_database(user)
    assert db.lookup(0x1234, 0x0001).no_zlp
    assert any("unknown top-level keys ['instrument']" in p for p in db.problems)
    assert parse_database(shipped_text(), "t", table=True)  # the table's own sections are known to the core


def test_problems_of_the_table_reach_the_quirks_banner(monkeypatch, tmp_path):
    from app.usbtmc import quirks

    broken = parse_table(shipped_text() + '\n[[commands]]\nid = "x"\n', "instruments.toml", [])
    monkeypatch.setattr(quirks, "shipped_table", lambda: broken)
    db = quirks.load_database(tmp_path / "none.toml")
    assert db.entries and any(p.startswith("instruments.toml:") and "entry skipped" in p for p in db.problems)
