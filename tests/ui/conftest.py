"""Fixtures for the GUI tests: offscreen Qt, throwaway settings, the virtual bus, and a
check that no test leaves a thread running."""

import os
import threading

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any QApplication exists: no display needed

import pytest
from PySide6.QtCore import QSettings
from ui_helpers import open_from_browser

from app.usbtmc.errors import BackendUnavailableError

NO_USB = (
    "libusb could not be loaded, so USB instruments cannot be reached; "
    "install libusb-1.0 (Linux: the libusb-1.0-0 package) or use the virtual instruments"
)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path):
    """QSettings in a temporary INI file: tests never see or change the user's settings."""
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, str(tmp_path / "settings" / scope.name))
    yield tmp_path / "settings"


def _foreign_threads(before: set[int]) -> list[threading.Thread]:
    return [
        t for t in threading.enumerate()
        if t.ident not in before and t.is_alive() and not isinstance(t, threading._DummyThread)
    ]


@pytest.fixture(autouse=True)
def no_thread_left(qtbot):
    """Fail a test that leaves a worker QThread or a Python thread running."""
    from app.ui.worker import live_threads

    before = {t.ident for t in threading.enumerate()}
    yield
    try:
        # Closing a session is asynchronous: give worker threads a moment to end.
        qtbot.waitUntil(lambda: not live_threads() and not _foreign_threads(before), timeout=5000)
    except Exception:
        names = [t.objectName() for t in live_threads()] + [t.name for t in _foreign_threads(before)]
        pytest.fail(f"threads left running after the test: {names}")


def no_usb():
    raise BackendUnavailableError(NO_USB)


@pytest.fixture
def sim_backend():
    """A fresh virtual bus with the default instruments, as a pyusb backend."""
    import app.sim

    return app.sim.backend()


@pytest.fixture
def settings():
    from app.ui.settings import Settings

    return Settings()


@pytest.fixture
def window(qtbot, sim_backend, settings):
    """The real main window on the virtual bus, with no USB access (like a machine without libusb)."""
    from app.ui.main_window import MainWindow

    settings.virtual_mode = "auto"
    win = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: sim_backend},
                     discovery_interval_ms=100)
    qtbot.addWidget(win)
    win.resize(1200, 760)
    win.show()
    win.activateWindow()  # menu shortcuts (Ctrl+R, Ctrl+L...) need an active window
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)
    win.start()
    yield win
    assert win.shutdown(timeout_ms=5000), "sessions or discovery did not stop"


@pytest.fixture
def sam7_tab(window, qtbot):
    return open_from_browser(window, qtbot)
