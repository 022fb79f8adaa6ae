"""Screenshots of the driver doctor, one per cause, from the real window.

    QT_QPA_PLATFORM=offscreen python docs/screenshots/make_doctor_screenshots.py

The "USB instruments" bus is a second virtual bus whose SAM7 fails to open the way each
platform's libusb makes it fail (app.sim's fail_open/bind_kernel_driver), with the
doctor told which platform's rules to apply. Settings go to a temporary file.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from make_screenshots import save, wait  # noqa: E402

# (file, platform, UsbDk installed, how the SAM7 fails, fake sysfs strings and driver)
CASES = [
    ("doctor-not-winusb.png", "win32", False, "not_supported", None),
    ("doctor-not-winusb-usbdk.png", "win32", True, "not_supported", None),
    ("doctor-windows-busy.png", "win32", False, "access", None),
    ("doctor-linux-permissions.png", "linux", False, "access", ("Rigol Technologies", "DS1104Z", "usbtmc")),
    ("doctor-busy.png", "linux", False, "busy", None),
    ("doctor-kernel-usbtmc.png", "linux", False, "kernel", None),
    ("doctor-no-libusb.png", "win32", False, "no_libusb", None),
]


def fake_sysfs(root: Path, name: str, strings) -> None:
    manufacturer, product, driver = strings
    (root / name).mkdir(parents=True)
    (root / name / "manufacturer").write_text(manufacturer + "\n")
    (root / name / "product").write_text(product + "\n")
    (root / name / "serial").write_text("DS1ZA000001\n")
    (root / "drivers" / driver).mkdir(parents=True)
    (root / f"{name}:1.0").mkdir()
    (root / f"{name}:1.0" / "driver").symlink_to(root / "drivers" / driver)


def shoot(qapp, case, theme: str = "light", size=(1024, 700), whole_window: bool = False) -> None:
    import app.sim
    from app.ui.main_window import MainWindow
    from app.ui.settings import Settings
    from app.ui.theme import apply_theme
    from app.usbtmc import doctor
    from app.usbtmc.errors import BackendUnavailableError

    name, platform, usbdk, failure, strings = case
    saved = doctor.PLATFORM, doctor.usbdk_installed, doctor.SYSFS_USB_DEVICES  # put back afterwards
    doctor.PLATFORM = platform
    doctor.usbdk_installed = lambda: usbdk
    tmp = Path(tempfile.mkdtemp(prefix="tmc-doctor-shots-"))
    doctor.SYSFS_USB_DEVICES = tmp / "sysfs"
    apply_theme(qapp, theme)
    settings = Settings(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    settings.virtual_mode = "off"
    usb_bus = app.sim.backend()
    sam7 = usb_bus.bus.devices()[0]
    if strings is not None:
        fake_sysfs(tmp / "sysfs", f"{usb_bus.bus.entries()[0].bus_number}-{usb_bus.bus.entries()[0].port}", strings)
    if failure == "kernel":
        usb_bus.bind_kernel_driver(sam7, 0)
    elif failure != "no_libusb":
        usb_bus.fail_open(sam7, failure)

    def usb():
        if failure == "no_libusb":
            raise BackendUnavailableError("libusb could not be loaded (libusb-1.0.dll is missing)")
        return usb_bus

    window = MainWindow(settings, backend_factories={"usb": usb, "virtual": app.sim.backend},
                        discovery_interval_ms=300)
    window.resize(*size)
    window.show()
    window.start()
    browser = window.browser
    if failure == "no_libusb":
        wait(lambda: browser.source_error("usb"))
        browser.tree.setCurrentItem(None)
        browser.tree.clearSelection()
    else:
        wait(lambda: any(browser.device(r).diagnosis for r in browser.devices("usb")))
        ref = next(r for r in browser.devices("usb") if browser.device(r).diagnosis)
        browser.select(ref)
    wait(lambda: browser.doctor.isVisible())
    save(window if whole_window else window.dock, name)
    window.shutdown(3000)
    window.deleteLater()
    doctor.PLATFORM, doctor.usbdk_installed, doctor.SYSFS_USB_DEVICES = saved


def main() -> int:
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    for case in CASES:
        shoot(qapp, case)
    shoot(qapp, ("doctor-window-1024x700.png", *CASES[0][1:]), whole_window=True)
    shoot(qapp, ("doctor-window-1600x1000-dark.png", *CASES[3][1:]), theme="dark", size=(1600, 1000),
          whole_window=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
