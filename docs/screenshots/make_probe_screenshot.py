"""Regenerate probe-dialog.png: the compliance probe's dialog on the virtual Siglent SDS1204X-E.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/screenshots/make_probe_screenshot.py

(``QT_QPA_PLATFORM=offscreen`` works too, with plainer fonts.) ``--dark`` takes the dark palette.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from PySide6.QtWidgets import QApplication  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dark", action="store_true")
    args = parser.parse_args()
    qapp = QApplication(sys.argv[:1])
    from app.sim.bus import VirtualBus
    from app.sim.pyusb_backend import VirtualBackend
    from app.sim.quirky import plug_quirky
    from app.ui.probe_dialog import ProbeDialog
    from app.ui.theme import apply_theme
    from app.usbtmc.quirks import QuirkDatabase, shipped_entries

    apply_theme(qapp, "dark" if args.dark else "light")
    bus = VirtualBus()
    plug_quirky(bus, keys=["siglent-sds1000x-e"])
    dialog = ProbeDialog("USB0::0xF4EC::0xEE38::SDSMMEBX000001::INSTR", VirtualBackend(bus), title="SDS1204X-E",
                         timeout_ms=300, db=QuirkDatabase(entries=shipped_entries()))
    dialog.show()
    dialog.start()
    end = time.monotonic() + 30
    while dialog.report is None or dialog.running:
        if time.monotonic() > end:
            raise SystemExit("the probe did not finish")
        qapp.processEvents()
        time.sleep(0.01)
    for _ in range(30):
        qapp.processEvents()
        time.sleep(0.01)
    name = "probe-dialog-dark.png" if args.dark else "probe-dialog.png"
    dialog.grab().save(str(HERE / name))
    print(HERE / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
