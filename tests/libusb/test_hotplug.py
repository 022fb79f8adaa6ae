"""Devices that come and go while a host process runs, through the real libusb."""

import pytest

pytestmark = pytest.mark.libusb

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


@pytest.mark.parametrize("during", ["read", "query"])
def test_unplugging_during_a_transfer_raises_device_gone_and_the_process_lives_on(make_bus, host, during):
    bus = make_bus(["sam7"])
    key = bus.devices[0]["key"]
    reader = host.start(bus, "unplug", {"resource": SAM7, "timeout_ms": 20000, "during": during})
    assert reader.step()["step"] == "reading"
    assert bus.wait_in_flight(key), "the host never started its transfer"
    bus.unplug(key)
    result = reader.result()
    assert result["raised"] == "DeviceGoneError", result
    assert result["elapsed_s"] < 5, "the transfer ended with the unplug, not with its 20 s timeout"
    assert result["after"] == "DeviceGoneError" and result["closed"]
    assert result["still_listed"] == []


def test_a_device_plugged_while_a_host_runs_appears_on_re_enumeration(make_bus, host):
    bus = make_bus(["sam7"])
    watcher = host.start(bus, "hotplug", {"count": 1})
    listed = watcher.step()
    assert listed["resources"] == [SAM7]
    second = bus.plug("sam7", serial="SAM7-0002")
    watcher.go()
    plugged = watcher.step()
    assert sorted(plugged["resources"]) == sorted([SAM7, second["resource"]])
    bus.unplug(bus.devices[0]["key"])
    watcher.go()
    assert watcher.result()["after_unplug"] == [second["resource"]]


def test_the_console_lists_a_device_plugged_while_it_runs_in_its_browser(make_bus, host):
    pytest.importorskip("PySide6")
    bus = make_bus(["sam7"])
    console = host.start(bus, "gui_browser", {"count": 1}, env={"QT_QPA_PLATFORM": "offscreen"})
    assert console.step()["resources"] == [SAM7]
    second = bus.plug("sam7", serial="SAM7-0003")
    console.go()
    result = console.result()
    assert result["second"] == sorted([SAM7, second["resource"]])
    assert result["stopped"], "the window's discovery and session threads ended"
