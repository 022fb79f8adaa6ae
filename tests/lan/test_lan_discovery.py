"""Finding LAN instruments: the VXI-11 broadcast to portmappers, and mDNS announcements."""

from __future__ import annotations

import socket
import time

import pytest

from app.lan import open_session
from app.lan.discovery import broadcast_vxi11, browse_mdns, resource_for


# Discovery listens for a while; the tests stop listening as soon as what they wait for is found
# and allow far longer than that takes, so a loaded machine makes them slower, never red.
GENEROUS_S = 30.0


def test_the_vxi11_getport_call_finds_the_virtual_portmapper_and_its_resource_opens(lan):
    wanted = f"TCPIP::127.0.0.1,{lan.vxi11.core_port}::inst0::INSTR"
    found = broadcast_vxi11("127.0.0.1", lan.vxi11.pmap_udp.udp_port, wait_s=GENEROUS_S,
                            until=lambda found: any(f.resource == wanted for f in found))
    assert [f.resource for f in found] == [wanted]
    with open_session(found[0].resource, timeout_ms=3000) as session:
        assert "SAM7" in session.query("*IDN?")  # inst0 is the first instrument served


def test_no_answer_is_an_empty_list_in_bounded_time():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("127.0.0.1", 0))
        assert broadcast_vxi11("127.0.0.1", quiet.getsockname()[1], wait_s=0.2) == []


@pytest.mark.parametrize("protocol, port, resource", [
    ("HiSLIP", 4880, "TCPIP::10.0.0.7::hislip0::INSTR"),
    ("HiSLIP", 4990, "TCPIP::10.0.0.7::hislip0,4990::INSTR"),
    ("SOCKET", 5025, "TCPIP::10.0.0.7::5025::SOCKET"),
    ("VXI-11", 111, "TCPIP::10.0.0.7::inst0::INSTR"),
    ("LXI", 80, "TCPIP::10.0.0.7::inst0::INSTR"),
])
def test_announced_services_become_resource_strings(protocol, port, resource):
    assert resource_for(protocol, "10.0.0.7", port) == resource


def test_an_mdns_announcement_is_found():
    zeroconf = pytest.importorskip("zeroconf")
    zc = zeroconf.Zeroconf(interfaces=["127.0.0.1"])
    wanted = "TCPIP::127.0.0.1::hislip0,4999::INSTR"
    info = zeroconf.ServiceInfo("_hislip._tcp.local.", "Virtual Loopback._hislip._tcp.local.",
                                addresses=[socket.inet_aton("127.0.0.1")], port=4999, server="tmc-test.local.")
    try:
        zc.register_service(info)
        found = browse_mdns(wait_s=GENEROUS_S, interfaces=["127.0.0.1"],
                            until=lambda found: any(f.resource == wanted for f in found))
    finally:
        zc.unregister_all_services()
        zc.close()
    assert (wanted, "mDNS _hislip", "Virtual Loopback") in [(f.resource, f.how, f.name) for f in found]


def test_the_browsers_lan_directory_lists_what_discovery_finds_and_stops_its_thread():
    import threading

    from app.lan.directory import LanDirectory

    ran = threading.Event()

    def discover():
        ran.set()
        return ["TCPIP::10.0.0.9::hislip0::INSTR"]

    directory = LanDirectory(lambda: ["TCPIP::10.0.0.8::5025::SOCKET"], discover=discover)
    try:
        directory.resources()  # starts discovery on its own thread
        assert ran.wait(GENEROUS_S)
        # The thread stores what it found just after discover() returns: wait for that, bounded.
        deadline = time.monotonic() + GENEROUS_S
        while "TCPIP::10.0.0.9::hislip0::INSTR" not in directory.resources() and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert directory.resources() == ["TCPIP::10.0.0.8::5025::SOCKET", "TCPIP::10.0.0.9::hislip0::INSTR"]
    finally:
        directory.close()  # the autouse fixture fails the test if the thread is left running
