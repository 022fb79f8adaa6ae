"""The main window: device browser, discovery of plug/unplug, tabs, settings, smoke test."""

import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from support.ui import find_ref, open_from_browser, plug_again, transcript_has, unplug

from app.ui.browser import TITLE_ROLE, DeviceRef
from app.ui.worker import live_threads

ROOT = Path(__file__).resolve().parents[2]


def tree_texts(item):
    out = [(item.text(0), item.text(1))]
    for i in range(item.childCount()):
        out += tree_texts(item.child(i))
    return out


def test_no_usb_access_is_shown_calmly_and_the_virtual_group_works(window, qtbot):
    qtbot.waitUntil(lambda: window.browser.has_scanned("usb"), timeout=2000)
    usb = window.browser._groups["usb"]
    assert usb.text(0) == "USB instruments: no access"
    assert any("No USB access" in text for text, _ in tree_texts(usb))
    assert "USB: no access" in window.bus_label.text()
    # No hardware found, so the virtual group is on by default.
    ref = find_ref(window, "SAM7", qtbot)
    assert window.browser.is_source_visible("virtual")
    assert window.virtual_action.isChecked()
    assert ref.resource.startswith("USB0::0x1209::")


def test_the_browser_describes_each_device(window, qtbot):
    ref = find_ref(window, "SAM7", qtbot)
    info = window.browser.device(ref)
    item = window.browser._device_items[ref]
    rows = dict((label, value) for label, value in tree_texts(item)[1:])
    assert rows["Resource"] == ref.resource
    assert rows["VID:PID"] == f"{info.vid:04X}:{info.pid:04X}"
    assert rows["Speed"].startswith("full")
    assert rows["Protocol"].startswith(info.protocol)
    assert rows["Serial"] == info.serial
    assert rows["Capabilities"]  # decoded GET_CAPABILITIES summary
    assert any(label.startswith("0x") and "bytes per packet" in value for label, value in rows.items())
    assert "Quirks" in rows
    assert info.capabilities is not None
    for label, value in info.capabilities.describe():
        assert f"{label}: {'yes' if value else 'no'}" in rows, label


def test_plugging_and_unplugging_is_noticed(window, qtbot, sim_backend):
    ref = find_ref(window, "Loopback", qtbot)
    token = unplug(sim_backend, ref)
    qtbot.waitUntil(lambda: window.browser.device(ref) is None, timeout=3000)
    plug_again(sim_backend, token)
    qtbot.waitUntil(lambda: window.browser.device(ref) is not None, timeout=3000)


def test_unplugging_a_device_while_its_tab_is_open(window, qtbot, sim_backend):
    tab = open_from_browser(window, qtbot)
    token = unplug(sim_backend, tab.ref)
    qtbot.waitUntil(lambda: tab.session.state == "gone", timeout=3000)
    assert tab.banner.isVisible() and "gone" in tab.banner.text()
    assert transcript_has(tab.console, "error", "the device is gone")
    assert not tab.console.input.isEnabled()
    assert tab.reconnect_button.isVisible()
    # The app keeps running: the other virtual instrument still opens and answers.
    other = open_from_browser(window, qtbot, "Loopback")
    assert other.session.is_open
    # Plug it back and reconnect.
    plug_again(sim_backend, token)
    qtbot.waitUntil(lambda: window.browser.device(tab.ref) is not None, timeout=3000)
    assert "back" in tab.banner.text()
    qtbot.mouseClick(tab.reconnect_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.session.state == "idle", timeout=3000)
    assert not tab.banner.isVisible()


def test_closing_a_tab_ends_its_worker_thread(window, qtbot):
    tab = open_from_browser(window, qtbot)
    thread = tab.session.thread
    assert thread.isRunning()
    window.close_tab(window.tabs.indexOf(tab))
    qtbot.waitUntil(lambda: not thread.isRunning(), timeout=3000)
    assert window.stack.currentWidget() is window.welcome
    assert window.tab_for(tab.ref) is None


def test_opening_twice_focuses_the_existing_tab(window, qtbot):
    tab = open_from_browser(window, qtbot)
    assert window.open_device(tab.ref) is tab
    assert window.tabs.count() == 1


def test_an_alias_is_remembered_and_names_the_tab(window, qtbot, settings):
    tab = open_from_browser(window, qtbot)
    window.browser.set_alias(tab.ref, "Bench counter")
    assert settings.alias(tab.ref.resource) == "Bench counter"
    assert window.tabs.tabText(window.tabs.indexOf(tab)) == "Bench counter"
    assert window.browser._device_items[tab.ref].data(0, TITLE_ROLE) == "Bench counter"


def test_identify_pulses_the_indicator_without_an_open_tab(window, qtbot):
    ref = find_ref(window, "SAM7", qtbot)
    window.identify(ref)
    qtbot.waitUntil(lambda: "indicator pulsed" in window.statusBar().currentMessage(), timeout=3000)


def test_the_virtual_group_can_be_switched_off_and_stays_off(window, qtbot, settings):
    find_ref(window, "SAM7", qtbot)
    window.virtual_action.trigger()
    assert not window.browser.is_source_visible("virtual")
    assert settings.virtual_mode == "off"
    window.virtual_action.trigger()
    assert window.browser.is_source_visible("virtual") and settings.virtual_mode == "on"


def test_the_dark_palette_recolours_the_transcript(window, sam7_tab, qtbot):
    from PySide6.QtWidgets import QApplication

    from app.ui.theme import colors, is_dark

    window.set_theme("dark")
    try:
        assert is_dark(QApplication.palette())
        received = colors(QApplication.palette()).received
        qtbot.waitUntil(lambda: received in sam7_tab.console.transcript.toHtml().lower(), timeout=2000)
    finally:
        window.set_theme("light")
    assert not is_dark(QApplication.palette())
    window.set_theme("system")
    assert window.settings.theme == "system" and window.theme_actions["system"].isChecked()


def test_window_layout_is_remembered(qtbot, sim_backend, settings):
    from support.ui import no_usb

    from app.ui.main_window import MainWindow

    first = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: sim_backend})
    qtbot.addWidget(first)
    first.show()
    qtbot.waitExposed(first)
    first.resize(700, 500)  # the offscreen screen is 800x600: stay inside it
    qtbot.waitUntil(lambda: first.width() == 700)
    first.dock.hide()
    assert first.shutdown(2000)
    second = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: sim_backend})
    qtbot.addWidget(second)
    second.show()
    qtbot.waitExposed(second)
    assert second.size().width() == 700
    assert second.dock.isHidden()
    assert second.shutdown(2000)


def test_the_smoke_test_entry_point_passes():
    result = subprocess.run(
        [sys.executable, "-m", "app", "--smoke-test"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # one machine-readable line
    report = __import__("json").loads(lines[0])
    assert report["smoke_test"] == "passed" and "SAM7" in report["idn"]
    assert report["awg_points"] == 4096 and report["stb"] == 0
    assert report["libusb_path"] and report["libusb_version"] and report["qt"] and report["os"]


def test_the_smoke_test_fails_with_the_reason(qapp, capsys):
    from support.ui import no_usb

    from app.ui.main import run_smoke_test
    from app.usbtmc.errors import BackendUnavailableError

    def no_virtual_bus():
        raise BackendUnavailableError("switched off for this test")

    assert run_smoke_test(qapp, timeout_s=5, backend_factories={"usb": no_usb, "virtual": no_virtual_bus}) == 1
    err = capsys.readouterr().err
    assert "smoke test FAILED" in err and "switched off for this test" in err


def test_no_threads_are_left_after_shutdown(window, qtbot):
    open_from_browser(window, qtbot)
    open_from_browser(window, qtbot, "Loopback")
    assert window.shutdown(5000)
    assert live_threads() == []


def test_device_refs_are_values():
    assert DeviceRef("virtual", "X") == DeviceRef("virtual", "X")
    assert len({DeviceRef("usb", "X"), DeviceRef("virtual", "X")}) == 2


def test_the_welcome_button_opens_the_virtual_sam7_even_when_hidden(window, qtbot, settings):
    find_ref(window, "SAM7", qtbot)
    window.virtual_action.trigger()  # off
    assert not window.browser.is_source_visible("virtual")
    qtbot.mouseClick(window.welcome.open_virtual, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.current_tab() is not None, timeout=3000)
    tab = window.current_tab()
    assert "SAM7" in tab.ref.resource and window.browser.is_source_visible("virtual")
    qtbot.waitUntil(lambda: tab.session.state == "idle", timeout=3000)


def test_device_menu_follows_the_instruments_capabilities(window, qtbot):
    tab = open_from_browser(window, qtbot)
    caps = tab.session.info.capabilities
    assert window.device_actions["read_stb"].isEnabled()
    assert window.device_actions["indicator_pulse"].isEnabled() == caps.indicator_pulse
    assert window.device_actions["trigger"].isEnabled() == caps.trigger
    window.device_actions["read_stb"].trigger()
    qtbot.waitUntil(lambda: transcript_has(tab.console, "info", "status byte"), timeout=2000)


def test_without_a_display_the_gui_says_so(monkeypatch, capsys):
    from app.ui import main as main_module

    monkeypatch.setattr(main_module.sys, "platform", "linux")
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert main_module.main([]) == main_module.EXIT_USAGE
    assert "no display" in capsys.readouterr().err


def test_help_shows_the_documentation_offline(window, qtbot):
    from app.ui.docs_viewer import DocsViewer

    viewer = DocsViewer(window)
    qtbot.addWidget(viewer)
    titles = [page.title for page in viewer.pages]
    assert viewer.pages[0].file_name == "ui.md"
    assert any("Virtual instruments" in t for t in titles)
    assert viewer.pages[0].title in viewer.view.toPlainText()  # the first page is rendered
    other = next(i for i, p in enumerate(viewer.pages) if p.file_name == "virtual-instruments.md")
    from PySide6.QtCore import QUrl

    viewer._on_link(QUrl("virtual-instruments.md"))
    assert viewer.list.currentRow() == other


def _stuck_in_a_600_s_transfer(window, qtbot):
    """A SAM7 tab whose worker waits in a Bulk-IN transfer with a 600 s timeout, and its events."""
    from support.ui import open_from_browser

    from app.session.events import Started

    tab = open_from_browser(window, qtbot)
    console = tab.console
    console.timeout_spin.setValue(600_000)
    console.timeout_spin.editingFinished.emit()
    qtbot.waitUntil(lambda: tab.session.outstanding == 0, timeout=3000)
    events = []
    tab.session.event.connect(events.append)
    with qtbot.waitSignal(tab.session.event, timeout=3000, check_params_cb=lambda e: isinstance(e, Started)):
        console.submit_line("NOSUCH:QUERY?", "query")  # the SAM7 never answers it
    return tab, events


def test_closing_the_window_during_a_long_transfer_cancels_it(window, qtbot):
    """The window cancels the transfer its worker waits in: it neither sits out a 600 s
    timeout nor leaves the thread behind (the worker ends; before, it stayed in the transfer)."""
    from app.ui import main_window

    tab, _events = _stuck_in_a_600_s_transfer(window, qtbot)
    assert main_window.CLOSE_WAIT_MS <= 1000
    window.close()
    assert window.isHidden()
    qtbot.waitUntil(lambda: not tab.session.thread.isRunning(), timeout=10_000)  # far below the 600 s


def test_closing_a_tab_during_a_long_transfer_cancels_it(window, qtbot):
    tab, _events = _stuck_in_a_600_s_transfer(window, qtbot)
    window.close_tab(window.tabs.indexOf(tab))
    qtbot.waitUntil(lambda: not tab.session.thread.isRunning(), timeout=10_000)
    assert window.isVisible()


def test_instruments_open_at_quit_are_opened_again_unless_switched_off(qtbot, sim_backend, settings):
    from app.ui.main_window import MainWindow
    from support.ui import no_usb
    from support.ui import find_ref

    def start():
        win = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: sim_backend},
                         discovery_interval_ms=100)
        qtbot.addWidget(win)
        win.show()
        win.start()
        return win

    settings.virtual_mode = "auto"
    first = start()
    loop = find_ref(first, "Loopback", qtbot)
    tab = first.open_device(loop)
    qtbot.waitUntil(lambda: tab.session.state == "idle", timeout=5000)
    assert first.shutdown(timeout_ms=5000)
    assert settings.open_at_quit == [("virtual", loop.resource)]
    second = start()
    qtbot.waitUntil(lambda: second.tab_for(loop) is not None, timeout=5000)
    reopened = second.tab_for(loop)
    qtbot.waitUntil(lambda: reopened.session.state == "idle", timeout=5000)
    assert second.shutdown(timeout_ms=5000)
    settings.reopen_sessions = False
    third = start()
    find_ref(third, "Loopback", qtbot)
    qtbot.waitUntil(lambda: third.browser.has_scanned("virtual"), timeout=3000)
    assert third.tab_for(loop) is None
    assert third.shutdown(timeout_ms=5000)
