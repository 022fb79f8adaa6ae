"""The console's text helpers: escapes, raw views, blocks and error replies (no Qt)."""

import pytest

from app.session import scpi
from app.session.events import ErrorEntry


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("*IDN?", b"*IDN?"),
        (r"A\nB", b"A\nB"),
        (r"\r\n", b"\r\n"),
        (r"\x41\x0a", b"A\n"),
        (r"back\\slash", b"back\\slash"),
        (r"C:\data\file", b"C:\\data\\file"),  # unknown escapes stay as typed, so paths survive
        ("tail\\", b"tail\\"),
        ("µ", "µ".encode()),
    ],
)
def test_escapes_become_bytes(typed, sent):
    assert scpi.decode_escapes(typed) == sent


def test_a_broken_hex_escape_names_its_column():
    with pytest.raises(scpi.EscapeError, match="column 4"):
        scpi.decode_escapes(r"abc\xZ1")


def test_escaped_and_hex_views_show_every_byte():
    data = b"OK\r\n\x00\xff\\"
    assert scpi.escape_bytes(data) == "OK\\r\\n\\x00\\xFF\\\\"
    dump = scpi.hexdump(data)
    assert dump.startswith("00000000  4F 4B 0D 0A 00 FF 5C")
    assert dump.endswith("OK....\\")


def test_hexdump_of_a_long_reply_is_cut_and_says_so():
    dump = scpi.hexdump(bytes(100), limit_bytes=32)
    assert dump.count("\n") == 2 and dump.endswith("... 68 more bytes")


def test_display_text_strips_the_termination_and_shows_control_characters():
    assert scpi.display_text(b"1.23\r\n") == "1.23"
    assert scpi.display_text(b"A\tB\x07\n") == "A\\tB\\x07"


@pytest.mark.parametrize(
    ("reply", "prefix", "header", "length"),
    [
        (b"#15HELLO\n", b"", b"#15", 5),
        (b":CURV #210" + bytes(10) + b"\n", b":CURV ", b"#210", 10),
        (b"#0ABC\n", b"", b"#0", 3),
    ],
)
def test_block_replies_are_found_and_summarised(reply, prefix, header, length):
    block = scpi.find_block(reply)
    assert block is not None
    assert (block.prefix, block.header, block.payload_bytes) == (prefix, header, length)
    assert len(block.payload(reply)) == length


def test_text_replies_are_not_blocks():
    assert scpi.find_block(b"XYZ Company Ltd, SAM7-EK, 0, v1.0.000\n") is None
    assert scpi.find_block(b"#H20\n") is None  # the SAM7's hex register format is not a block


def test_error_queue_entries_parse():
    assert scpi.parse_error_entry('-113,"Undefined header"\n') == ErrorEntry(-113, "Undefined header")
    assert scpi.parse_error_entry('+0,"No error"').code == 0
    assert scpi.parse_error_entry("0").message == "No error"
    with pytest.raises(ValueError):
        scpi.parse_error_entry("garbage")


def test_esr_bits_decode_into_errors_and_information():
    entries = scpi.esr_entries(0xA0)  # PON + CME
    assert [(e.message.split()[0], e.severe) for e in entries] == [("PON", False), ("CME", True)]


@pytest.mark.parametrize("line", ["*ESR?", "syst:err?", "SYSTEM:ERROR:NEXT?", "*CLS;:SYST:ERR:ALL?"])
def test_lines_that_read_errors_themselves_get_no_check(line):
    assert scpi.asks_for_errors(line)


def test_ordinary_lines_get_the_check():
    assert not scpi.asks_for_errors("*IDN?")
    assert not scpi.asks_for_errors("COUNT:READ?")


def test_a_late_srq_line_goes_where_its_time_puts_it(qtbot):
    import time

    from app.ui.transcript import Transcript

    transcript = Transcript()
    qtbot.addWidget(transcript)
    now = time.time()
    transcript.add("sent", "*OPC?", at=now - 2)
    transcript.add("received", "1", at=now)
    transcript.add("srq", "service request: status byte #H60", at=now - 1)  # delivered last, happened between
    assert [e.kind for e in transcript.entries()] == ["sent", "srq", "received"]
    text = transcript.toPlainText()
    assert text.index("*OPC?") < text.index("service request") < text.index("← 1")
    transcript.add("note", "later", at=now + 1)
    assert transcript.entries()[-1].text == "later" and transcript.toPlainText().rstrip().endswith("later")
