import pytest

from app.usbtmc.errors import ResourceError
from app.usbtmc.resource import Resource, format_resource, parse_resource


def test_round_trip_with_and_without_interface():
    res = parse_resource("USB0::0x1209::0x0001::SAM7-0001::INSTR")
    assert res == Resource(0x1209, 0x0001, "SAM7-0001")
    assert str(res) == "USB0::0x1209::0x0001::SAM7-0001::INSTR"
    res = parse_resource("usb1::4617::1::ABC::2::instr")
    assert (res.board, res.vid, res.pid, res.serial, res.interface) == (1, 0x1209, 1, "ABC", 2)
    assert format_resource(0x1AB1, 0x04CE, "DS1ZA", 0) == "USB0::0x1AB1::0x04CE::DS1ZA::0::INSTR"


def test_instr_suffix_is_optional():
    assert parse_resource("USB::0x1209::0x0002::X") == Resource(0x1209, 2, "X")


@pytest.mark.parametrize(
    "text, message",
    [
        ("GPIB0::12::INSTR", "not a USB resource string"),
        ("TCPIP0::1.2.3.4::0x1::INSTR", "does not start with USB"),
        ("USB0::0xZZ::0x0001::S::INSTR", "vendor ID"),
        ("USB0::0x1209::0x10000::S::INSTR", "does not fit 16 bits"),
        ("USB0::0x1209::0x0001::S::x::INSTR", "interface number"),
        ("USB0::0x1209::0x0001::S::RAW", "RAW"),
        ("USB0::0x1209::0x0001::S::1::2::INSTR", "fields"),
    ],
)
def test_malformed_strings_say_why(text, message):
    with pytest.raises(ResourceError, match=message):
        parse_resource(text)


def test_matches():
    res = parse_resource("USB0::0x1209::0x0001::S1::INSTR")
    assert res.matches(0x1209, 1, "S1", 3)
    assert not res.matches(0x1209, 1, "S2", 0)
    assert not parse_resource("USB0::0x1209::0x0001::S1::1::INSTR").matches(0x1209, 1, "S1", 0)
