"""Regenerate the I/O trace screenshots: the trace dock under the SAM7's console, at 1024x700 and
1600x1000, light and dark, and the text of a tshark run over the exported trace.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/screenshots/make_trace_screenshots.py [--dark]

(``QT_QPA_PLATFORM=offscreen`` works too, with plainer fonts.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from make_screenshots import demo_window, pump, save, wait  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dark", action="store_true")
    args = parser.parse_args()
    qapp = QApplication(sys.argv[:1])
    from app.ui.theme import apply_theme
    from app.usbtmc import trace as tr

    suffix = "-dark" if args.dark else ""
    for size in ((1024, 700), (1600, 1000)):
        window, backend, ref, _tmp = demo_window(qapp, "SAM7", size)
        if args.dark:
            apply_theme(qapp, "dark")
        window.browser.select(ref)
        window.browser.activate()
        tab = window.tab_for(ref)
        wait(lambda: tab.console.idn is not None and tab.session.state == "idle")
        console = tab.console
        console.timeout_spin.setValue(300)
        console.timeout_spin.editingFinished.emit()
        for line in ("*IDN?", "*ESE 32;*SRE 32", "PARAM:SET 1200,-35", "PARAM:ENQ?", "NOSUCH:QUERY?", "BOGUS"):
            console.submit_line(line)
            wait(lambda: tab.session.outstanding == 0, 10)
        pump(0.5)
        dock = window.trace_dock
        dock.show()
        window.resizeDocks([dock], [int(size[1] * 0.5)], __import__("PySide6.QtCore").QtCore.Qt.Orientation.Vertical)
        panel = dock.panel
        pump(0.4)
        # Unfold the query that timed out and select its INITIATE_ABORT_BULK_IN.
        panel.search_edit.setText("NOSUCH")
        row = panel.table.currentIndex().row()
        entry = panel.model.entry_at(row)
        if entry is not None and entry.kind == tr.MESSAGE and entry.seq not in panel.model._expanded:
            panel.model.toggle(row)
        panel.search_edit.setText("DEV_DEP_MSG_IN bTag")
        pump(0.3)
        from app.ui.srq import NoticeArea

        for area in window.findChildren(NoticeArea):
            area.hide()  # the SRQ's notice would cover the detail pane
        save(window, f"trace-dock-{size[0]}{suffix}.png")
        window.shutdown(5000)
        window.close()
        pump(0.3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
