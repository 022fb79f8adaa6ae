"""The compliance probe's dialog: the probe runs on a worker thread, the report shows check
by check, and it saves as JSON or as a quirk entry."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QThread

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
    dialog = ProbeDialog(resource, backend, title="the instrument", timeout_ms=300,
                         db=QuirkDatabase(entries=shipped_entries()), quirks_path=tmp_path / "quirks.toml", **kwargs)
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
    assert dialog.save_quirk_button.isEnabled() and dialog.save_json_button.isEnabled()
    assert not dialog.cancel_button.isVisible()


def test_save_as_json_and_as_quirk_entry(qtbot, quirky_backend, tmp_path):
    dialog = _dialog(qtbot, DHO, quirky_backend, tmp_path)
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
