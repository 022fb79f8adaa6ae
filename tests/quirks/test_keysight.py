"""Agilent/Keysight U27xx modular instruments: powered up in a firmware-update mode, listed
under their USBTMC PID, switched by the vendor sequence when the resource is opened."""

from __future__ import annotations

import pytest
import usb.core

from app.usbtmc import DeviceNotFoundError, list_resources
from app.usbtmc.quirks import QuirkDatabase, parse_database

MODES = [
    ("keysight-u2702a", 0x2818, 0x2918, "MY48212052", "AGILENT TECHNOLOGIES,U2702A,MY48212052,V2.47-2.05-1.05"),
    ("keysight-u2722a", 0x4218, 0x4118, "MY00000022", "Agilent Technologies,U2722A,MY00000022,V1.00"),
    ("keysight-u2723a", 0x4418, 0x4318, "MY00000023", "Agilent Technologies,U2723A,MY00000023,V1.00"),
    ("keysight-u2751a", 0x3E18, 0x3D18, "MY00000051", "Agilent Technologies,U2751A,MY00000051,V1.00"),
]


@pytest.mark.parametrize("key, boot_pid, pid, serial, idn", MODES)
def test_opening_switches_the_instrument_to_usbtmc_mode(quirky, key, boot_pid, pid, serial, idn):
    bus = quirky(key)
    if key == "keysight-u2702a":
        bus.device(key).usbtmc_mode.idn = idn  # the reply python-usbtmc #31 shows
    (info,) = list_resources(bus.backend, db=bus.db)
    assert (info.pid, info.firmware_mode_pid, info.problem) == (pid, boot_pid, None)
    assert info.resource == f"USB0::0x0957::0x{pid:04X}::{serial}::INSTR"
    with bus.open(key) as inst:  # sends the vendor sequence, waits for 0957:<pid>
        assert inst.query("*IDN?") == idn
        assert inst.info.pid == pid and inst.info.firmware_mode_pid is None
    assert bus.device(key).switched
    (info,) = list_resources(bus.backend, db=bus.db)
    assert (info.pid, info.firmware_mode_pid) == (pid, None)


def test_without_quirks_the_firmware_mode_is_not_found(quirky):
    bus = quirky("keysight-u2702a")
    assert list_resources(bus.backend, db=QuirkDatabase()) == []
    with pytest.raises(DeviceNotFoundError, match="no USBTMC device 0957:2918"):
        bus.open("keysight-u2702a", use_quirks=False)  # python-usbtmc #31: "Device not found"
    assert not bus.device("keysight-u2702a").switched


def test_a_wrong_sequence_does_not_switch_it(quirky):
    """The U2702A needs wIndex 0x0484 in its third request; the U2722A's 0x0487 does nothing."""
    bus = quirky("keysight-u2702a")
    u2722a = next(e for e in bus.db.entries if e.pids == (0x4218,))
    wrong = parse_database(f"""
[[quirk]]
name = "wrong"
vid = 0x0957
pid = 0x2818
reason = "r"
source = "s"
[quirk.flags]
mode_switch_target_pid = 0x2918
mode_switch_wait_ms = 300
mode_switch_requests = [{", ".join(r.as_toml() for r in u2722a.flags["mode_switch_requests"])}]
""")
    bus.db = QuirkDatabase(entries=list(bus.db.entries) + wrong)
    with pytest.raises(DeviceNotFoundError, match="did not come back as 0957:2918 within 0.3 s"):
        bus.open("keysight-u2702a")


def test_u2741a_serial_is_unreadable_and_no_sequence_is_shipped(quirky):
    bus = quirky("keysight-u2741a")
    raw = usb.core.find(backend=bus.backend, idVendor=0x0957, idProduct=0x4818)
    with pytest.raises(usb.core.USBError):
        raw.serial_number  # python-usbtmc PR #61: "the serial number cannot be read out"
    usb.util.dispose_resources(raw)
    (info,) = list_resources(bus.backend, db=bus.db)
    assert info.resource == "USB0::0x0957::0x4918::::INSTR" and info.firmware_mode_pid == 0x4818
    assert "no sequence" in info.problem and "mode_switch_requests" in info.problem
    with pytest.raises(DeviceNotFoundError, match="no sequence to switch it"):
        bus.open("keysight-u2741a")


def test_u2741a_opens_with_a_sequence_from_the_user_file(quirky, tmp_path):
    from app.usbtmc.quirks import load_database

    bus = quirky("keysight-u2741a")
    user = tmp_path / "quirks.toml"
    user.write_text("""
[[quirk]]
name = "My U2741A"
vid = 0x0957
pid = 0x4818
reason = "the sequence I captured"
source = "my own USB capture"
[quirk.flags]
mode_switch_requests = [
    [0xC0, 0x0C, 0x0000, 0x047E, 1],
    [0x40, 0x0C, 0x0000, 0x0475, [0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x08, 0x01]],
]
""")
    bus.db = load_database(user)
    (info,) = list_resources(bus.backend, db=bus.db)
    assert info.problem is None
    with bus.open("keysight-u2741a") as meter:  # resource with an empty serial: the one that appears
        assert meter.query("*IDN?") == "Agilent Technologies,U2741A,MY57029021,V1.00"
        assert meter.info.resource == "USB0::0x0957::0x4918::MY57029021::INSTR"


def test_the_quirky_instruments_join_the_virtual_bus_on_request():
    import app.sim
    from app.sim.quirky import CATALOGUE, DEFAULT_KEYS

    plain = {(d.device_desc.vid, d.device_desc.pid) for d in app.sim.default_bus().devices()}
    bus = app.sim.default_bus(quirky=True)
    found = {(d.device_desc.vid, d.device_desc.pid) for d in bus.devices()} - plain
    assert found == {(m.vid, m.pid) for m in CATALOGUE if m.key in DEFAULT_KEYS}
    assert len(app.sim.quirky_devices()) == len(DEFAULT_KEYS)
    listed = list_resources(app.sim.backend(bus), probe=False)
    assert sum(1 for info in listed if info.firmware_mode_pid) == 5
