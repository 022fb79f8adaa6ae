"""Command catalogues: parsing, matching an instrument by *IDN?, completion (no Qt)."""

import pytest

from app.session.catalog import complete, current_unit, header_forms, profile_for, shipped_catalogs

SAM7_IDN = "XYZ Company Ltd, SAM7-EK, 0, v1.0.000"


def test_shipped_catalogues_parse():
    ids = {c.id for c in shipped_catalogs()}
    assert {"ieee488", "scpi99", "sam7"} <= ids
    for catalog in shipped_catalogs():
        assert catalog.entries, catalog.id
        assert all(entry.description for entry in catalog.entries), catalog.id


def test_header_forms_cover_short_long_and_optional_nodes():
    assert set(header_forms("SYSTem:ERRor[:NEXT]?")) == {
        "SYST:ERR?", "SYSTEM:ERROR?", "SYST:ERR:NEXT?", "SYSTEM:ERROR:NEXT?",
    }
    assert header_forms("*IDN?") == ("*IDN?",)


def test_the_sam7_gets_its_own_command_set_and_no_scpi_error_queue():
    profile = profile_for(SAM7_IDN, scpi_capability=True)
    assert profile.name == "SAM7 counter"
    assert profile.speaks_scpi is False
    headers = {entry.header for entry in profile.entries}
    assert "COUNT:READ?" in headers and "*OPC" not in headers and "SYSTem:ERRor[:NEXT]?" not in headers


def test_a_generic_scpi_instrument_gets_488_2_and_scpi_99():
    profile = profile_for("ACME,DMM-1,123,1.0", scpi_capability=True)
    assert [c.id for c in profile.catalogs] == ["ieee488", "scpi99"]
    assert profile_for("ACME,PLAIN,1,1", scpi_capability=False).catalogs[0].id == "ieee488"
    assert "scpi99" not in [c.id for c in profile_for("ACME,PLAIN,1,1", scpi_capability=False).catalogs]


def test_completion_prefers_prefix_matches_and_inserts_the_matching_spelling():
    entries = profile_for("ACME,DMM-1,123,1.0", True).entries
    texts = [c.text for c in complete("syst:e", entries)]
    assert texts[0] == "SYST:ERR?"
    assert [c.text for c in complete("system:vers", entries)] == ["SYSTEM:VERSION?"]
    assert "*ESE " in [c.text for c in complete("*ES", entries)]  # takes a parameter: a space follows
    assert "SYST:ERR?" in [c.text for c in complete("ERR", entries)]  # contained, after the prefix matches
    assert complete("", entries) == []


def test_completion_keeps_a_leading_colon():
    entries = profile_for("ACME,DMM-1,123,1.0", True).entries
    assert complete(":stat:pres", entries)[0].text == ":STAT:PRES"


@pytest.mark.parametrize(
    ("line", "cursor", "expected"),
    [
        ("COUNT:R", 7, (0, "COUNT:R")),
        ("*CLS; COUNT:R", 13, (6, "COUNT:R")),
        ("PARAM:SET 1", 11, (-1, "")),  # in the parameters: nothing to complete
        ('DISP:TEXT "a;b', 14, (-1, "")),  # inside quotes
    ],
)
def test_the_unit_under_the_cursor(line, cursor, expected):
    assert current_unit(line, cursor) == expected
