"""The driver doctor in the device browser: the explanation for the selected device, with copyable lines."""

import pytest
from PySide6.QtGui import QGuiApplication

from app.ui.browser import DeviceBrowser, DeviceRef
from app.ui.discovery import Snapshot
from app.usbtmc import doctor, list_resources
from app.usbtmc.doctor import Cause, Situation, diagnose
from app.usbtmc.errors import BackendUnavailableError


@pytest.fixture
def browser(qtbot, settings):
    widget = DeviceBrowser(settings)
    qtbot.addWidget(widget)
    widget.resize(420, 700)
    widget.show()
    return widget


def test_the_selected_device_shows_its_diagnosis(browser, sim_backend, monkeypatch):
    monkeypatch.setattr(doctor, "PLATFORM", "win32")
    monkeypatch.setattr(doctor, "usbdk_installed", lambda: False)
    sam7 = sim_backend.bus.devices()[0]
    sim_backend.fail_open(sam7, "not_supported")
    infos = tuple(list_resources(sim_backend))
    browser.apply_snapshot(Snapshot("usb", infos))
    broken = next(i for i in infos if i.diagnosis is not None)
    assert browser.doctor.isHidden()
    browser.select(DeviceRef("usb", broken.resource))
    assert browser.doctor.isVisible() and browser.doctor.diagnosis.cause is Cause.NOT_WINUSB
    text = browser.doctor.toPlainText()
    assert "needs WinUSB" in text and "Replace Driver" in text and "Roll Back Driver" in text
    # The hardware ID for Zadig's list is one click away.
    assert browser.doctor.copy_line(0) == "USB\\VID_1209&PID_0001"
    assert QGuiApplication.clipboard().text() == "USB\\VID_1209&PID_0001"
    # A device that opens has nothing to say.
    fine = next(i for i in infos if i.diagnosis is None)
    browser.select(DeviceRef("usb", fine.resource))
    assert browser.doctor.isHidden()


def test_no_libusb_is_explained_when_nothing_is_selected(browser):
    d = diagnose(BackendUnavailableError("libusb could not be loaded"), Situation(0, 0, platform="linux"))
    browser.apply_snapshot(Snapshot("usb", (), "No USB access: libusb could not be loaded.", diagnosis=d))
    assert browser.doctor.isVisible()
    assert "libusb cannot be loaded" in browser.doctor.toPlainText()


def test_the_copy_link_copies(browser, qtbot):
    d = diagnose(NotImplementedError("Operation not supported or unimplemented on this platform"),
                 Situation(0x1AB1, 0x04CE, platform="win32"))
    browser.doctor.show_diagnosis(d)
    with qtbot.waitSignal(browser.doctor.copied) as blocker:
        from PySide6.QtCore import QUrl

        browser.doctor.anchorClicked.emit(QUrl("copy:0"))
    assert blocker.args == ["USB\\VID_1AB1&PID_04CE"]
