"""Enumeration and strings through the real libusb: what lsusb and list_resources() see."""

import pytest

pytestmark = pytest.mark.libusb

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"
LOOPBACK = "USB0::0x1209::0x0002::LOOP-0001::INSTR"


def test_the_default_backend_finds_every_virtual_instrument_with_its_strings(bus, host):
    result = host.run(bus, "enumeration")
    assert "libusb-1.0" in result["libusb"], "the default backend must be a real libusb"
    raw = {(d["bus"], d["address"]): d for d in result["raw"]}
    assert len(raw) == len(bus.devices)
    for device in bus.devices:
        seen = raw[(device["bus"], device["address"])]
        assert (seen["vid"], seen["pid"]) == (device["vid"], device["pid"])
        assert (seen["manufacturer"], seen["product"], seen["serial"]) == (
            device["manufacturer"], device["product"], device["serial"])
    resources = {r["resource"]: r for r in result["resources"]}
    assert set(resources) == {SAM7, LOOPBACK}
    sam7, loopback = resources[SAM7], resources[LOOPBACK]
    assert (sam7["manufacturer"], sam7["product"], sam7["serial"]) == ("XYZ Company Ltd", "SAM7-EK", "SAM7-0001")
    assert sam7["protocol"] == "USB488" and sam7["speed"].startswith("full")
    assert sam7["endpoints"] == [[0x01, "bulk", "out", 64], [0x82, "bulk", "in", 64], [0x83, "interrupt", "in", 8]]
    assert sam7["capabilities"]["indicator_pulse"] and sam7["problem"] is None
    assert loopback["speed"].startswith("high") and loopback["endpoints"][0][3] == 512


def test_lsusb_reads_descriptors_and_strings(bus):
    import shutil
    import subprocess

    if shutil.which("lsusb", path=bus.env.get("PATH")) is None:  # run() would raise FileNotFoundError
        pytest.skip("lsusb is not installed (usbutils)")
    result = subprocess.run(["lsusb", "-v", "-d", "1209:0001"], env=bus.env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "ID 1209:0001 XYZ Company Ltd SAM7-EK" in result.stdout
    assert "iSerial                 3 SAM7-0001" in result.stdout
    assert "bInterfaceClass       254" in result.stdout and "Device Status:     0x0000" in result.stdout
