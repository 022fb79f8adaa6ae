"""Regenerate the waveform panel's screenshots from the real window on the virtual bus.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/screenshots/make_waveform_screenshots.py

Every upload goes to the virtual AWG through the real worker thread; the graph shows the
runs as they happened (unpaced, the high-speed wire model, a 1.8 MB/s instrument).
Settings go to a temporary file, so your own are left alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from PySide6.QtWidgets import QApplication  # noqa: E402
from make_screenshots import demo_window, save, wait  # noqa: E402  (this folder's shared helpers)

MIB = 1 << 20


def upload(panel, points: int, wire: str = "off", ingest: str = "off") -> None:
    panel.set_pacing(wire, ingest)
    panel.points.setValue(points)
    wait(lambda: panel.plan is not None and panel.plan.source.points == points)
    done = []
    panel.upload_finished.connect(done.append)
    panel.start_upload()
    wait(lambda: done)
    panel.upload_finished.disconnect(done.append)


def main() -> int:
    qapp = QApplication(sys.argv[:1])
    window, _backend, ref, tmp = demo_window(qapp, "AWG", (1280, 860))
    window.browser.select(ref)
    window.browser.activate()
    tab = window.tab_for(ref)
    wait(lambda: tab.console.idn is not None and tab.session.state == "idle")
    tab.panels.setCurrentWidget(tab.waveform)
    panel = tab.waveform.panel()
    wait(lambda: panel.plan is not None)

    # Three runs to compare: as fast as the host, the high-speed wire model, a 33622A-like instrument.
    upload(panel, 16 * MIB)
    upload(panel, 8 * MIB, wire="high")
    upload(panel, MIB, ingest="33622a")
    panel.graph.log_scale.setChecked(True)
    save(window, "waveform-panel.png")

    # An upload in progress, then Cancel.
    panel.set_pacing("off", "33622a")
    panel.shape.setCurrentText("noise")
    panel.points.setValue(4 * MIB)
    wait(lambda: panel.plan is not None and panel.plan.source.points == 4 * MIB)
    done = []
    panel.upload_finished.connect(done.append)
    panel.start_upload()
    wait(lambda: panel.progress.value() >= 250)
    save(tab, "waveform-uploading.png")
    panel.cancel_upload()
    wait(lambda: done)
    save(tab, "waveform-cancelled.png")
    panel.set_pacing()

    # A file that cannot be read: the previous waveform stays.
    bad = Path(tmp) / "scope-export.csv"
    bad.write_text("time,value\n0.000,0.10\n0.001,0.12\n0.002,0.1O\n")
    panel.source_kind.setCurrentIndex(1)
    panel.path.setText(str(bad))
    panel.load_path()
    save(tab, "waveform-bad-file.png")

    # Rigol's chained messages, in the target preview.
    panel.source_kind.setCurrentIndex(0)
    panel.shape.setCurrentText("pulse")
    panel.points.setValue(40000)
    panel.template.setCurrentIndex(panel.template.findData("rigol"))
    wait(lambda: panel.plan is not None and panel.plan.template.key == "rigol" and panel.plan.source.points == 40000)
    save(tab, "waveform-rigol.png")

    from app.ui.theme import apply_theme

    apply_theme(qapp, "dark")
    panel.template.setCurrentIndex(panel.template.findData("awg-dac"))
    panel.shape.setCurrentText("sine")
    wait(lambda: panel.plan is not None and panel.plan.template.key == "awg-dac")
    upload(panel, 2 * MIB, wire="high")
    save(window, "waveform-panel-dark.png")

    window.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
