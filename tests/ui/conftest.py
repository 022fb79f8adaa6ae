"""Fixtures for the GUI tests: throwaway settings, the main window on the virtual bus, and a
check that no test leaves a thread running. (Qt runs offscreen: the root conftest sees to it.)"""

import threading

import pytest
from PySide6.QtCore import QSettings
from support.ui import no_usb, open_from_browser


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


@pytest.fixture
def awg_tab(window, qtbot):
    """The virtual AWG's tab, opened from the browser."""
    return open_from_browser(window, qtbot, "Virtual AWG")


@pytest.fixture
def panel(awg_tab, qtbot):
    """The AWG tab's waveform panel, built and ready to upload (test_sam7_panel has its own ``panel``)."""
    awg_tab.panels.setCurrentWidget(awg_tab.waveform)
    qtbot.waitUntil(lambda: awg_tab.waveform.built, timeout=2000)
    panel = awg_tab.waveform.panel()
    qtbot.waitUntil(lambda: panel.plan is not None and panel.upload_button.isEnabled(), timeout=2000)
    return panel
