"""Help > About names what a bug report needs and copies it."""

from __future__ import annotations

import platform

from PySide6.QtGui import QGuiApplication

from app import __version__
from app.ui.about import AboutDialog, libusb_description
from app.ui.discovery import BackendProvider
from app.usbtmc.transport import default_backend


def test_about_lists_the_versions_and_backends_and_copies_them(window, qtbot):
    dialog = window.show_about()
    qtbot.addWidget(dialog)
    names = dict(dialog.rows)
    assert names["TMC Console"] == __version__ and names["Python"].startswith(platform.python_version())
    import PySide6
    import usb

    assert names["Qt"] and names["PySide6"] == PySide6.__version__ and names["pyusb"] == usb.__version__
    assert names["virtual backend"].endswith("VirtualBackend")
    assert names["usb backend"].startswith("unavailable:")  # the test window has no USB
    dialog.copy_button.click()
    copied = QGuiApplication.clipboard().text()
    assert copied.startswith("TMC Console") and __version__ in copied.splitlines()[0]
    assert "virtual backend" in copied and "pyusb" in copied


def test_about_names_the_libusb_path_and_version(qtbot):
    backend = default_backend()
    path, version = libusb_description(backend)
    assert "libusb" in path and version.count(".") >= 3
    dialog = AboutDialog(BackendProvider({"usb": lambda: backend}))
    qtbot.addWidget(dialog)
    assert dict(dialog.rows)["libusb"] == f"{version} ({path})"
