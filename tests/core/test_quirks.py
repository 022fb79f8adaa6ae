import pytest

from app.usbtmc.errors import QuirksFileError
from app.usbtmc.quirks import DEFAULTS, QuirkDatabase, load_database, parse_database, shipped_entries


def test_shipped_database_is_valid_and_covers_the_known_devices():
    db = QuirkDatabase(entries=shipped_entries())
    # The DS1000Z framing quirks belong to firmware before 00.04.03 (python-usbtmc #23).
    ds1000z = db.lookup(0x1AB1, 0x04CE, idn="RIGOL TECHNOLOGIES,DS1104Z,DS1ZA1,00.04.02.SP4")
    assert ds1000z.single_request_per_reply and ds1000z.block_length_from_block_header
    assert not db.lookup(0x1AB1, 0x04CE, idn="RIGOL TECHNOLOGIES,DS1104Z,DS1ZA1,00.04.04.SP4").single_request_per_reply
    ds1000 = db.lookup(0x1AB1, 0x0588)
    assert ds1000.eom_unreliable and not ds1000.block_length_from_block_header
    advantest = db.lookup(0x1334, 0x1234)
    assert advantest.max_in_transfer_bytes == 63 and advantest.no_eom and advantest.vendor_lock_around_query
    assert db.lookup(0x1209, 0x0001) == DEFAULTS
    flags = {a.flag for a in ds1000z.applied}
    assert "block_length_from_block_header" in flags
    assert all(a.reason and a.source for a in ds1000z.applied)


ENTRY = """
[[quirk]]
name = "Example"
vid = 0x1234
pid_range = [0x10, 0x20]
product = "Model X"
reason = "r"
source = "s"
[quirk.flags]
max_out_transfer_bytes = 4096
"""


def test_match_by_range_and_product_pattern():
    db = QuirkDatabase(entries=parse_database(ENTRY))
    assert db.lookup(0x1234, 0x15, "Model X2").max_out_transfer_bytes == 4096
    assert db.lookup(0x1234, 0x15, "Model Y") == DEFAULTS
    assert db.lookup(0x1234, 0x21, "Model X") == DEFAULTS


def test_idn_patterns_need_the_idn_and_later_entries_win():
    text = ENTRY.replace('product = "Model X"\n', "") + """
[[quirk]]
name = "Old firmware"
vid = 0x1234
pid = 0x15
idn = ",0\\\\.9\\\\."
reason = "old"
source = "s"
[quirk.flags]
max_out_transfer_bytes = 512
"""
    db = QuirkDatabase(entries=parse_database(text))
    assert db.needs_idn(0x1234, 0x15) and not db.needs_idn(0x1234, 0x16)
    assert db.lookup(0x1234, 0x15).max_out_transfer_bytes == 4096
    assert db.lookup(0x1234, 0x15, idn="ACME,X,1,0.9.1").max_out_transfer_bytes == 512


@pytest.mark.parametrize(
    "change, message",
    [
        (("max_out_transfer_bytes = 4096", "max_out_transfer_bytes = 4096\nfly = true"), r"x.toml:11: .*unknown flag 'fly'"),
        (("max_out_transfer_bytes = 4096", "max_out_transfer_bytes = true"), r"x.toml:10: .*whole number from 1 to 67,108,864"),
        (("vid = 0x1234", "vid = 0x123456"), r"x.toml:4: .*'vid'"),
        (('product = "Model X"', 'product = "("'), r"x.toml:6: .*regular expression"),
        (('reason = "r"\n', ""), r"x.toml:2: .*needs a 'reason'"),
        (("pid_range = [0x10, 0x20]", "pids = 1"), r"x.toml:5: .*unknown key 'pids'"),
    ],
)
def test_validation_errors_name_file_and_line(change, message):
    with pytest.raises(QuirksFileError, match=message):
        parse_database(ENTRY.replace(*change), "x.toml")


def test_not_toml_is_a_clear_error():
    with pytest.raises(QuirksFileError, match="not valid TOML"):
        parse_database("[[quirk]\n", "x.toml")


def test_broken_user_file_is_reported_and_shipped_entries_kept(tmp_path):
    user = tmp_path / "quirks.toml"
    user.write_text("[[quirk]]\nname = 'x'\n")
    db = load_database(user)
    assert db.problems == [f"{user}:1: entry 'x': 'vid' must be a 16-bit number; entry skipped"]
    assert db.lookup(0x1AB1, 0x0588).single_request_per_reply


def test_user_file_overrides_shipped_entries(tmp_path):
    user = tmp_path / "quirks.toml"
    user.write_text(ENTRY.replace("0x1234", "0x1AB1").replace("pid_range = [0x10, 0x20]", "pid = 0x0588").replace('product = "Model X"\n', ""))
    quirks = load_database(user).lookup(0x1AB1, 0x0588)
    assert quirks.max_out_transfer_bytes == 4096 and quirks.single_request_per_reply
