import pytest

from app.lan import is_lan_resource, parse_lan_resource
from app.usbtmc.errors import ResourceError


@pytest.mark.parametrize("text, protocol, host, port, device", [
    ("TCPIP::192.168.1.5::5025::SOCKET", "SOCKET", "192.168.1.5", 5025, ""),
    ("TCPIP0::scope.lab::inst0::INSTR", "VXI-11", "scope.lab", None, "inst0"),
    ("TCPIP::10.0.0.2", "VXI-11", "10.0.0.2", None, "inst0"),  # VPP-4.3: the device name defaults to inst0
    ("tcpip::10.0.0.2,1024::inst3::INSTR", "VXI-11", "10.0.0.2", 1024, "inst3"),
    ("TCPIP::10.0.0.2::gpib0,5::INSTR", "VXI-11", "10.0.0.2", None, "gpib0,5"),
    ("TCPIP::10.0.0.2::hislip0::INSTR", "HiSLIP", "10.0.0.2", 4880, "hislip0"),
    ("TCPIP::[fe80::1]::HISLIP1,4990::INSTR", "HiSLIP", "fe80::1", 4990, "hislip1"),
])
def test_lan_resources_parse(text, protocol, host, port, device):
    address = parse_lan_resource(text)
    assert (address.protocol, address.host, address.port, address.device) == (protocol, host, port, device)
    assert parse_lan_resource(str(address)) == address  # the canonical string parses back


@pytest.mark.parametrize("text, says", [
    ("TCPIP::", "TCPIP::host"),
    ("TCPIP::host::99999::SOCKET", "65535"),
    ("TCPIP::host::SOCKET", "port"),
    ("TCPIP::bad host::INSTR", "host"),
    ("TCPIPX::host::INSTR", "TCPIP"),
    ("TCPIP::host::inst0::extra::INSTR", "expected"),
])
def test_bad_lan_resources_say_what_is_wrong(text, says):
    with pytest.raises(ResourceError, match=says):
        parse_lan_resource(text)


def test_usb_strings_are_not_lan():
    assert not is_lan_resource("USB0::0x1209::0x0001::SAM7-0001::INSTR")
    assert is_lan_resource(" tcpip0::h::inst0::INSTR")
