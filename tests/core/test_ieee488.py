import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.usbtmc import ieee488
from app.usbtmc.errors import BlockFormatError


def test_definite_block_encode_decode():
    assert ieee488.encode_block(b"abc") == b"#13abc"
    assert ieee488.encode_block(bytes(1000))[:6] == b"#41000"
    assert ieee488.decode_block(b"#13abc\n") == b"abc"
    assert ieee488.decode_block(b"  #210" + b"0123456789") == b"0123456789"


def test_indefinite_block():
    assert ieee488.encode_indefinite_block(b"xy") == b"#0xy\n"
    assert ieee488.decode_block(b"#0xy\n") == b"xy"


def test_decode_block_errors_name_the_problem():
    with pytest.raises(BlockFormatError, match="'#'"):
        ieee488.decode_block(b"12abc")
    with pytest.raises(BlockFormatError, match="only 2 arrived"):
        ieee488.decode_block(b"#15ab")
    with pytest.raises(BlockFormatError, match="unexpected bytes"):
        ieee488.decode_block(b"#12abXYZ")
    with pytest.raises(BlockFormatError, match="digit count"):
        ieee488.decode_block(b"#A")
    with pytest.raises(BlockFormatError, match="decimal digits"):
        ieee488.decode_block(b"#2x1ab")


def test_parse_block_header_asks_for_more_bytes():
    assert ieee488.parse_block_header(b"#") is None
    assert ieee488.parse_block_header(b"#4") is None
    assert ieee488.parse_block_header(b"#41") is None
    header = ieee488.parse_block_header(b"#41234")
    assert (header.header_bytes, header.payload_bytes) == (6, 1234)


def test_find_block_after_a_response_header():
    reply = b":CURV #15hello\n"
    block = ieee488.find_block(reply)
    assert block is not None and reply[block.payload_start : block.end] == b"hello"
    assert ieee488.find_block(b"1.234E+00\n") is None
    assert ieee488.find_block(b"#Hxx") is None  # a hex register value is not a block


@given(st.binary(max_size=2000))
def test_blocks_round_trip(payload):
    assert ieee488.decode_block(ieee488.encode_block(payload)) == payload


@given(st.binary(max_size=64))
def test_block_parsers_only_raise_block_format_error(data):
    for parse in (ieee488.decode_block, ieee488.parse_block_header, ieee488.find_block):
        try:
            parse(data)
        except BlockFormatError:
            pass


@pytest.mark.parametrize(
    "line, expected",
    [
        ("*IDN?", True),
        ("*RST", False),
        ("*RST;*IDN?", True),
        (":MEAS:VOLT? (@101)", True),
        ("DISP:TEXT 'why?'", False),
        ('SYST:BEEP;DISP:TEXT "a;b?"', False),
        ("COUNT:READ?;COUNT:RESET", True),
        ("", False),
    ],
)
def test_is_query(line, expected):
    assert ieee488.is_query(line) is expected


def test_register_values():
    assert ieee488.parse_register_value("#H20") == 32
    assert ieee488.parse_register_value("+32\n") == 32
    assert ieee488.parse_register_value("#B101") == 5
    with pytest.raises(ValueError, match="not a register value"):
        ieee488.parse_register_value("ON")
    assert ieee488.set_bit_names(0x30, ieee488.STB_BITS) == ["ESB", "MAV"]
    assert ieee488.set_bit_names(0xA0, ieee488.ESR_BITS) == ["PON", "CME"]
