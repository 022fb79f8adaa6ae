"""The compliance probe's dialog: the probe runs on a worker thread, the report shows check
by check, and it saves as JSON or as a quirk entry."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt, QThread

import app.sim
from app.sim.bus import VirtualBus
from app.sim.pyusb_backend import VirtualBackend
from app.sim.quirky import plug_quirky
from app.ui.probe_dialog import ProbeDialog
from app.usbtmc import Instrument
from app.usbtmc.quirks import QuirkDatabase, load_database, shipped_entries

DHO = "USB0::0x1AB1::0x044D::DHO8A000000001::INSTR"
SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


@pytest.fixture
def quirky_backend():
    bus = VirtualBus()
    plug_quirky(bus, keys=["rigol-dho800"])
    return VirtualBackend(bus)


def _dialog(qtbot, resource, backend, tmp_path, **kwargs):
    kwargs.setdefault("db", QuirkDatabase(entries=shipped_entries()))
    dialog = ProbeDialog(resource, backend, title="the instrument", timeout_ms=300,
                         quirks_path=tmp_path / "quirks.toml", **kwargs)
    qtbot.addWidget(dialog)
    return dialog


def test_the_probe_runs_off_the_gui_thread_and_shows_its_findings(qtbot, quirky_backend, tmp_path, monkeypatch):
    import app.ui.probe_dialog as module

    threads = []
    real = module.probe

    def spy(*args, **kwargs):
        threads.append(QThread.currentThread())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "probe", spy)
    dialog = _dialog(qtbot, DHO, quirky_backend, tmp_path)
    dialog.show()
    with qtbot.waitSignal(dialog.report_ready, timeout=15000) as ready:
        dialog.start()
        assert dialog.running and dialog.cancel_button.isEnabled()
    report = ready.args[0]
    assert threads and threads[0] is not dialog.thread()
    qtbot.waitUntil(lambda: not dialog.running)
    rows = [dialog.findings.topLevelItem(i) for i in range(dialog.findings.topLevelItemCount())]
    assert len(rows) == len(report.findings)
    current = dialog.findings.currentItem()
    assert current.text(0) == "Fails" and current.text(1) == "bTag echo and bTagInverse"
    html = dialog.details.toPlainText()
    assert "USBTMC 1.0 §3.3.1" in html and "tolerate_stale_btag = true" in html
    assert "1 deviation" in dialog.status.text()
    assert dialog.save_json_button.isEnabled()  # (the shipped entry already cures it: see below)
    assert not dialog.cancel_button.isVisible()


def test_save_as_json_and_as_quirk_entry(qtbot, quirky_backend, tmp_path):
    dialog = _dialog(qtbot, DHO, quirky_backend, tmp_path, db=QuirkDatabase())  # as if nothing shipped knew it
    with qtbot.waitSignal(dialog.report_ready, timeout=15000):
        dialog.start()
    qtbot.waitUntil(lambda: not dialog.running)
    saved = dialog.save_json(tmp_path / "report.json")
    data = json.loads(saved.read_text())
    assert data["resource"] == DHO and data["suggested_flags"] == {"tolerate_stale_btag": True}
    path = dialog.save_quirk_entry(confirm=False)
    assert path == tmp_path / "quirks.toml" and "appended" in dialog.status.text()
    db = load_database(path)
    assert db.lookup(0x1AB1, 0x044D).tolerate_stale_btag and not db.problems
    user = QuirkDatabase(entries=[e for e in db.entries if e.origin == str(path) or e.origin.startswith(f"{path}:")])
    with Instrument(DHO, backend=quirky_backend, timeout_ms=300, quirk_db=user) as scope:
        assert scope.query("*IDN?") == scope.query("*IDN?")


def test_a_compliant_instrument_has_nothing_to_save(qtbot, tmp_path):
    dialog = _dialog(qtbot, SAM7, app.sim.backend(), tmp_path)
    with qtbot.waitSignal(dialog.report_ready, timeout=15000) as ready:
        dialog.start()
    qtbot.waitUntil(lambda: not dialog.running)
    assert ready.args[0].compliant
    assert "no deviation found" in dialog.status.text()
    assert not dialog.save_quirk_button.isEnabled() and dialog.save_quirk_entry(confirm=False) is None


def test_an_open_session_is_reported_not_crashed(qtbot, tmp_path):
    backend = app.sim.backend()
    with Instrument(SAM7, backend=backend, timeout_ms=300):
        dialog = _dialog(qtbot, SAM7, backend, tmp_path)
        dialog.start()
        qtbot.waitUntil(lambda: bool(dialog.error) and not dialog.running, timeout=10000)
    assert "held by another" in dialog.error and "Close the instrument's session" in dialog.status.text()
    assert not dialog.save_json_button.isEnabled()


def test_closing_cancels_a_running_probe(qtbot, quirky_backend, tmp_path):
    dialog = _dialog(qtbot, DHO, quirky_backend, tmp_path)
    dialog.show()
    dialog.start()
    dialog.reject()
    assert dialog._cancel.is_set() and not dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.running, timeout=10000)


# --- the hooks in the window and the device browser ----------------------------------------

@pytest.fixture
def quirky_window(qtbot, settings):
    """The main window whose virtual group also carries the virtual DHO804 (a stale bTag)."""
    from app.ui.main_window import MainWindow
    from support.ui import no_usb

    bus = app.sim.default_bus()
    plug_quirky(bus, keys=["rigol-dho800"])
    backend = VirtualBackend(bus)
    settings.virtual_mode = "auto"
    win = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: backend},
                     discovery_interval_ms=100)
    qtbot.addWidget(win)
    win.resize(1200, 760)
    win.show()
    win.start()
    yield win
    assert win.shutdown(timeout_ms=8000), "sessions, probes or discovery did not stop"


def _menu_actions(browser, ref):
    from PySide6.QtWidgets import QMenu

    assert browser.select(ref)
    item = browser.tree.currentItem()
    browser._context_menu(browser.tree.visualItemRect(item).center())
    menu = browser.findChildren(QMenu)[-1]
    actions = {a.text(): a for a in menu.actions()}
    menu.close()
    return actions


def test_the_browser_offers_the_probe_and_opening_without_quirks(quirky_window, qtbot):
    from support.ui import find_ref

    dho = find_ref(quirky_window, "DHO804", qtbot)
    sam7 = find_ref(quirky_window, "SAM7", qtbot)
    actions = _menu_actions(quirky_window.browser, dho)
    assert actions["Probe compliance…"].isEnabled() and actions["Open without quirks"].isEnabled()
    actions = _menu_actions(quirky_window.browser, sam7)
    assert actions["Probe compliance…"].isEnabled() and not actions["Open without quirks"].isEnabled()
    with qtbot.waitSignal(quirky_window.browser.probe_requested) as probe:
        _menu_actions(quirky_window.browser, dho)["Probe compliance…"].trigger()
    assert probe.args == [dho]
    qtbot.waitUntil(lambda: not quirky_window._probes or not any(d.running for d in quirky_window._probes),
                    timeout=15000)


def test_open_without_quirks_and_back(quirky_window, qtbot):
    from support.ui import find_ref

    dho = find_ref(quirky_window, "DHO804", qtbot)
    quirky_window.browser.open_without_quirks_requested.emit(dho)
    tab = quirky_window.tab_for(dho)
    qtbot.waitUntil(lambda: tab.session.info is not None and tab.session.state == "idle", timeout=5000)
    assert not tab.session.use_quirks and tab.session.info.quirks == ()
    assert "without quirks" in quirky_window.statusBar().currentMessage()
    quirky_window.open_device(dho)  # with its quirks again: the tab reopens
    qtbot.waitUntil(lambda: tab.session.state == "idle" and tab.session.info.quirks != (), timeout=5000)
    assert tab.session.use_quirks
    assert [q.flag for q in tab.session.info.quirks] == ["tolerate_stale_btag"]


def test_probing_an_open_instrument_closes_its_session_first(quirky_window, qtbot, monkeypatch):
    from PySide6.QtWidgets import QMessageBox
    from support.ui import find_ref

    dho = find_ref(quirky_window, "DHO804", qtbot)
    tab = quirky_window.open_device(dho)
    qtbot.waitUntil(lambda: tab.session.state == "idle", timeout=5000)
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: pytest.fail("asked twice"))
    dialog = quirky_window.probe_device(dho)
    assert quirky_window.tab_for(dho) is tab and not dialog.running  # nothing happens before Start
    assert "session is closed when the probe starts" in dialog.status.text()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert quirky_window.tab_for(dho) is None and dialog in quirky_window._probes
    qtbot.waitUntil(lambda: dialog.report is not None and not dialog.running, timeout=20000)
    assert dialog.report.suggested_flags() == {"tolerate_stale_btag": True} and not dialog.error
    dialog.close()


def test_a_running_probe_is_stopped_when_the_window_shuts_down(quirky_window, qtbot):
    from support.ui import find_ref

    dialog = quirky_window.probe_device(find_ref(quirky_window, "DHO804", qtbot))
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.running, timeout=2000)
    assert quirky_window.shutdown(timeout_ms=8000)
    assert not dialog.running


def test_the_probe_starts_once_when_the_session_thread_it_waits_for_ends(qtbot, quirky_backend, tmp_path):
    import threading

    from app.ui.worker import WorkerThread

    release = threading.Event()

    class Holder(WorkerThread):
        def run(self) -> None:
            release.wait(5)

    # A thread that ended before start_after() was called: the probe starts at once.
    ended = Holder("ended session")
    release.set()
    ended.start()
    assert ended.wait(3000)
    dialog = _dialog(qtbot, DHO, quirky_backend, tmp_path)
    dialog.start_after(ended)
    assert dialog.running
    qtbot.waitUntil(lambda: dialog.report is not None and not dialog.running, timeout=15000)
    # A thread still running: nothing starts until it ends, and then only once.
    release.clear()
    busy = Holder("busy session")
    busy.start()
    second = _dialog(qtbot, DHO, quirky_backend, tmp_path)
    reports = []
    second.report_ready.connect(reports.append)
    second.start_after(busy)
    assert not second.running and second.report is None
    release.set()
    qtbot.waitUntil(lambda: second.report is not None and not second.running, timeout=15000)
    assert busy.wait(3000)
    assert len(reports) == 1 and not second.running


# --- asking first, live results, the way back, merging ----------------------------------------

DS1104Z = "USB0::0x1AB1::0x04CE::DS1ZA000000001::INSTR"


@pytest.fixture
def ds1104z_backend():
    bus = VirtualBus()
    plug_quirky(bus, keys=["rigol-ds1000z"])
    return VirtualBackend(bus)


def _rows(dialog):
    tree = dialog.findings
    return [[tree.topLevelItem(i).text(c) for c in range(3)] for i in range(tree.topLevelItemCount())]


def test_the_dialog_asks_first_and_says_what_is_risky_for_this_device(qtbot, ds1104z_backend, tmp_path):
    dialog = _dialog(qtbot, DS1104Z, ds1104z_backend, tmp_path, product="DS1104Z")
    dialog.show()
    assert not dialog.running and dialog.start_button.isVisible() and dialog.safe_button.isChecked()
    rows = {row[1]: row for row in _rows(dialog)}
    clear = rows["Device clear (INITIATE_CLEAR)"]
    assert clear[0] == "Skipped" and "no_initiate_clear = true" in clear[2] and "replugged" in clear[2]
    assert rows["Short packet at a packet boundary"][0] == "Runs"
    assert all("_" not in label.split(" (")[0] for label in rows)  # readable words, not internal names
    # Every step says something when selected, including those that only ask.
    dialog.findings.setCurrentItem(dialog.findings.topLevelItem(0))
    assert "Only asks" in dialog.details.toPlainText()
    assert "Risky for this device: Device clear (INITIATE_CLEAR)" in dialog.status.text()
    dialog.full_button.setChecked(True)
    assert {row[1]: row for row in _rows(dialog)}["Device clear (INITIATE_CLEAR)"][0] == "Runs: risky here"
    dialog.safe_button.setChecked(True)
    sam7 = _dialog(qtbot, SAM7, app.sim.backend(), tmp_path)
    assert "No step is known to be risky" in sam7.status.text()
    assert all(row[0] == "Runs" for row in _rows(sam7))


def test_results_show_as_each_check_finishes_and_the_safe_run_leaves_the_scope_answering(
        qtbot, ds1104z_backend, tmp_path):
    dialog = _dialog(qtbot, DS1104Z, ds1104z_backend, tmp_path, product="DS1104Z")
    seen = []  # the rows in the table each time a step is counted done (on the GUI thread)
    dialog.progress.valueChanged.connect(lambda value: value and seen.append(dialog.findings.topLevelItemCount()))
    with qtbot.waitSignal(dialog.report_ready, timeout=20000):
        dialog.start_button.click()
    report = dialog.report
    assert report.safe and not report.stopped_answering
    # Rows arrived step by step, before the report: more than one distinct count on the way.
    assert len(seen) == 14 and seen[0] >= 1 and len(set(seen)) > 3
    assert any("not run in safe mode" in row[2] for row in _rows(dialog))
    assert "(safe run)" in dialog.status.text() and not dialog.reset_button.isVisible()
    assert not dialog.start_button.isVisible()
    with Instrument(DS1104Z, backend=ds1104z_backend, timeout_ms=300) as scope:
        assert scope.query("*IDN?").startswith("RIGOL")


def test_a_full_run_that_hangs_the_scope_offers_the_way_back(qtbot, ds1104z_backend, tmp_path):
    dialog = _dialog(qtbot, DS1104Z, ds1104z_backend, tmp_path, product="DS1104Z")
    dialog.show()
    dialog.full_button.setChecked(True)
    with qtbot.waitSignal(dialog.report_ready, timeout=20000):
        dialog.start_button.click()
    qtbot.waitUntil(lambda: not dialog.running)
    assert dialog.report.stopped_answering and "stopped answering" in dialog.status.text()
    assert dialog.reset_button.isVisible()
    with pytest.raises(Exception):  # the virtual scope hangs as the real one does
        Instrument(DS1104Z, backend=ds1104z_backend, timeout_ms=300).query("*IDN?")
    with qtbot.waitSignal(dialog.recovered, timeout=10000) as recovered:
        dialog.reset_button.click()
    result = recovered.args[0]
    assert result.answers and result.idn.startswith("RIGOL") and "plugged in again" in result.action
    assert "answers again" in dialog.status.text() and not dialog.reset_button.isVisible()


def test_save_as_quirk_entry_proposes_no_duplicate(qtbot, quirky_backend, tmp_path):
    """The shipped entry already sets what the probe finds on the DHO800: nothing to save."""
    dialog = _dialog(qtbot, DHO, quirky_backend, tmp_path)
    with qtbot.waitSignal(dialog.report_ready, timeout=15000):
        dialog.start()
    qtbot.waitUntil(lambda: not dialog.running)
    assert dialog.report.suggested_flags() == {"tolerate_stale_btag": True}
    assert not dialog.save_quirk_button.isEnabled()
    assert "already apply" in dialog.save_quirk_button.toolTip()
    assert dialog.save_quirk_entry(confirm=False) is None and not (tmp_path / "quirks.toml").exists()



def test_the_dialog_fits_the_screen_it_opens_on(qtbot, tmp_path):
    """A 980x700 dialog put its buttons under the taskbar on a 1024x700 screen."""
    from PySide6.QtGui import QGuiApplication

    free = QGuiApplication.primaryScreen().availableGeometry()  # offscreen: 800x800
    dialog = _dialog(qtbot, SAM7, app.sim.backend(), tmp_path)
    assert dialog.width() <= free.width() - 40 and dialog.height() <= free.height() - 80
    assert dialog.width() >= dialog.minimumSizeHint().width()
