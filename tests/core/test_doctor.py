"""The driver doctor: causes read from exactly what pyusb raises on each platform, on the virtual bus."""

import errno

import pytest
import usb.core

import app.sim
from app.sim.pyusb_backend import LIBUSB_ERROR_ACCESS, LIBUSB_ERROR_BUSY, usb_error
from app.usbtmc import doctor, list_resources
from app.usbtmc.doctor import Cause, Situation, classify, diagnose
from app.usbtmc.errors import BackendUnavailableError

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


@pytest.fixture
def bus_backend():
    return app.sim.backend()


@pytest.fixture
def sam7(bus_backend):
    return next(d for d in bus_backend.bus.devices() if d.device_desc.pid == 0x0001)


@pytest.fixture
def on(monkeypatch):
    def use(platform: str, usbdk: bool = False):
        monkeypatch.setattr(doctor, "PLATFORM", platform)
        monkeypatch.setattr(doctor, "usbdk_installed", lambda: usbdk)
    return use


@pytest.fixture
def no_sysfs(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "SYSFS_USB_DEVICES", tmp_path / "no-sysfs")


def sam7_info(backend):
    return next(i for i in list_resources(backend) if i.vid == 0x1209 and i.pid == 0x0001)


# --- the classifier, on the exception objects pyusb builds -------------------------------------


def test_not_supported_is_not_winusb_on_windows_only():
    exc = NotImplementedError("Operation not supported or unimplemented on this platform")
    assert classify(exc, Situation(0x1AB1, 0x04CE, platform="win32")) is Cause.NOT_WINUSB
    assert classify(exc, Situation(0x1AB1, 0x04CE, platform="linux")) is Cause.OTHER


def test_access_is_permissions_on_linux_and_another_program_on_windows():
    exc = usb.core.USBError("Access denied (insufficient permissions)", LIBUSB_ERROR_ACCESS, errno.EACCES)
    assert classify(exc, Situation(1, 2, platform="linux")) is Cause.ACCESS_DENIED
    assert classify(exc, Situation(1, 2, platform="win32")) is Cause.BUSY


def test_busy_with_the_kernel_driver_bound_is_the_kernel_driver():
    exc = usb.core.USBError("Resource busy", LIBUSB_ERROR_BUSY, errno.EBUSY)
    assert classify(exc, Situation(1, 2, platform="linux", kernel_driver="usbtmc")) is Cause.KERNEL_DRIVER
    assert classify(exc, Situation(1, 2, platform="linux")) is Cause.BUSY


def test_no_libusb():
    d = diagnose(BackendUnavailableError("libusb could not be loaded"), Situation(0, 0, platform="win32"))
    assert d.cause is Cause.NO_LIBUSB and "libusb-1.0.dll" in d.fixes[0].steps[0]
    d = diagnose(BackendUnavailableError("libusb could not be loaded"), Situation(0, 0, platform="linux"))
    assert d.fixes[0].copy_text == "sudo apt install libusb-1.0-0"


# --- what the open attempt raises on the virtual bus, through list_resources -------------------


def test_a_device_without_winusb_is_diagnosed_with_zadig_steps_for_it(bus_backend, sam7, on):
    on("win32")
    bus_backend.fail_open(sam7, "not_supported")
    info = sam7_info(bus_backend)
    d = info.diagnosis
    assert d.cause is Cause.NOT_WINUSB and d.blocking and info.problem == d.summary
    assert "WinUSB" in d.summary and d.error.startswith("NotImplementedError")
    zadig = d.fixes[0]
    assert zadig.title == "Install WinUSB with Zadig"
    assert any("USB ID reads 1209 0001" in step for step in zadig.steps)
    assert zadig.copy_text == "USB\\VID_1209&PID_0001"
    assert "VISA" in zadig.warning and "Roll Back Driver" in zadig.warning
    assert "UsbDk" in d.fixes[1].title  # offered after Zadig when not installed


def test_usbdk_comes_first_when_it_is_installed(bus_backend, sam7, on):
    on("win32", usbdk=True)
    bus_backend.fail_open(sam7, "not_supported")
    fixes = sam7_info(bus_backend).diagnosis.fixes
    assert [f.title.split(" ")[0:2] for f in fixes] == [["Use", "UsbDk"], ["Install", "WinUSB"]]
    assert fixes[0].copy_text == "setx TMC_LIBUSB_USBDK 1"


def test_a_composite_device_names_its_mi_interface():
    d = diagnose(NotImplementedError("Operation not supported or unimplemented on this platform"),
                 Situation(0x0957, 0x1796, interface_number=2, composite=True, platform="win32"))
    assert d.fixes[0].copy_text == "USB\\VID_0957&PID_1796&MI_02"
    assert any("0957 1796 02" in step and "(Interface 2)" in step for step in d.fixes[0].steps)


def test_linux_permissions_give_the_exact_udev_rule(bus_backend, sam7, on, no_sysfs):
    on("linux")
    bus_backend.fail_open(sam7, "access")  # pyusb hides this behind ValueError("no langid") when reading strings
    d = sam7_info(bus_backend).diagnosis
    assert d.cause is Cause.ACCESS_DENIED
    assert d.fixes[0].copy_text == 'SUBSYSTEM=="usb", ATTR{idVendor}=="1209", MODE="0666"'
    assert "Access denied" in d.error


def test_windows_access_denied_means_another_program_has_it(bus_backend, sam7, on):
    on("win32")
    bus_backend.fail_open(sam7, "access")
    d = sam7_info(bus_backend).diagnosis
    assert d.cause is Cause.BUSY and "WinUSB lets one program" in d.fixes[0].steps[0]


def test_busy(bus_backend, sam7, on, no_sysfs):
    on("linux")
    bus_backend.fail_open(sam7, "busy")
    assert sam7_info(bus_backend).diagnosis.cause is Cause.BUSY


def test_the_kernel_usbtmc_driver_is_noted_but_does_not_block(bus_backend, sam7, on, no_sysfs):
    on("linux")
    bus_backend.bind_kernel_driver(sam7, 0)
    info = sam7_info(bus_backend)
    assert info.problem is None  # opening detaches it
    assert info.diagnosis.cause is Cause.KERNEL_DRIVER and not info.diagnosis.blocking
    assert "usbtmc" in info.diagnosis.summary
    assert info.diagnosis.device == "XYZ Company Ltd SAM7-EK (1209:0001)"  # strings read in the same scan
    assert "blacklist usbtmc" in info.diagnosis.fixes[1].steps[-1]


def test_a_session_opens_past_the_kernel_driver(bus_backend, sam7):
    from app.usbtmc import Instrument

    bus_backend.bind_kernel_driver(sam7, 0)
    with Instrument(SAM7, backend=bus_backend) as inst:
        assert "SAM7" in inst.query("*IDN?")


def test_an_open_device_has_no_diagnosis(bus_backend, sam7):
    assert sam7_info(bus_backend).diagnosis is None


def test_sysfs_names_the_instrument_that_cannot_be_opened(bus_backend, sam7, on, tmp_path, monkeypatch):
    on("linux")
    info = sam7_info(bus_backend)
    name = f"{info.bus}-{bus_backend.bus.entries()[0].port}"
    device = tmp_path / name
    device.mkdir()
    (device / "manufacturer").write_text("Rigol Technologies\n")
    (device / "product").write_text("DS1104Z\n")
    (device / "serial").write_text("DS1ZA000001\n")
    (tmp_path / "drivers" / "usbtmc").mkdir(parents=True)
    (tmp_path / f"{name}:1.0").mkdir()
    (tmp_path / f"{name}:1.0" / "driver").symlink_to(tmp_path / "drivers" / "usbtmc")
    monkeypatch.setattr(doctor, "SYSFS_USB_DEVICES", tmp_path)
    bus_backend.fail_open(sam7, "access")
    info = sam7_info(bus_backend)
    assert (info.manufacturer, info.product, info.serial) == ("Rigol Technologies", "DS1104Z", "DS1ZA000001")
    assert info.resource == "USB0::0x1209::0x0001::DS1ZA000001::INSTR"
    d = info.diagnosis
    assert d.device == "Rigol Technologies DS1104Z (1209:0001)" and "DS1104Z" in d.summary
    assert any("usbtmc driver is bound" in step for step in d.fixes[0].steps)


def test_unknown_open_failures_are_refused_by_name(bus_backend, sam7):
    with pytest.raises(ValueError, match="unknown open failure"):
        bus_backend.fail_open(sam7, "gremlins")


def test_the_virtual_bus_raises_what_pyusb_raises(bus_backend, sam7):
    bus_backend.fail_open(sam7, "access")
    dev = next(usb.core.find(find_all=True, backend=bus_backend, idProduct=0x0001))
    with pytest.raises(usb.core.USBError) as caught:
        dev.ctrl_transfer(0x80, 0, 0, 0, 2)
    assert (caught.value.backend_error_code, caught.value.errno) == (-3, errno.EACCES)
    assert usb_error(LIBUSB_ERROR_BUSY).errno == errno.EBUSY
