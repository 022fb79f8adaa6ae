"""Regenerate the LAN screenshots: the virtual loopback as one instrument with its USB and LAN
connections (a LAN instrument added by hand that cannot be reached below it), and the loopback's
console on a HiSLIP session after an upload, a status read and an SRQ, at 1024x700 and 1600x1000,
light and dark.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/screenshots/make_lan_screenshots.py [--dark]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from make_screenshots import pump, save, wait  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def lan_window(qapp, size):
    import app.sim
    from app.ui.icon import app_icon
    from app.ui.main_window import MainWindow
    from app.ui.settings import Settings
    from app.ui.theme import apply_theme
    from app.usbtmc.errors import BackendUnavailableError

    qapp.setWindowIcon(app_icon())
    apply_theme(qapp, "light")
    tmp = tempfile.mkdtemp(prefix="tmc-shots-")
    settings = Settings(QSettings(f"{tmp}/s.ini", QSettings.Format.IniFormat))
    settings.virtual_mode = "on"
    settings.lan_resources = ["TCPIP::192.0.2.17::hislip0::INSTR"]  # a documentation address: not reachable
    backend = app.sim.backend()
    holder = {}

    def no_usb():
        raise BackendUnavailableError("libusb could not be loaded, so USB instruments cannot be reached")

    window = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: backend,
                                                     "lan": lambda: holder["w"].lan_directory(discover=False)},
                        discovery_interval_ms=300)
    holder["w"] = window
    window.resize(*size)
    window.move(0, 0)
    window.show()
    window.start()
    return window


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dark", action="store_true")
    args = parser.parse_args()
    qapp = QApplication(sys.argv[:1])
    from app.ui.theme import apply_theme

    suffix = "-dark" if args.dark else ""
    for size in ((1024, 700), (1600, 1000)):
        window = lan_window(qapp, size)
        if args.dark:
            apply_theme(qapp, "dark")

        def ref_of(protocol, product="Loopback"):
            for ref in window.browser.devices("lan"):
                info = window.browser.device(ref)
                if info.protocol == protocol and product in (info.product or ""):
                    return ref
            return None

        wait(lambda: ref_of("HiSLIP") is not None and len(window.browser.devices("lan")) >= 10)
        ref = ref_of("HiSLIP")
        window.browser.select(ref)
        window.browser.activate()
        tab = window.tab_for(ref)
        wait(lambda: tab.console.idn is not None and tab.session.state == "idle")
        for line in ("*IDN?", "MEM:DATA #210HiSLIP-ok!", "MEM:DATA?", "*CLS;*ESE 1;*SRE 32;*OPC"):
            tab.console.submit_line(line)
            wait(lambda: tab.session.outstanding == 0, 10)
        tab.console.actions_by_name["read_stb"].trigger()
        wait(lambda: tab.session.outstanding == 0, 10)
        browser = window.browser
        wait(lambda: len(browser.connections(ref)) == 4)
        entry = browser._instrument_items[browser.connections(ref)[0]]
        entry.setExpanded(True)
        browser._device_items[ref].setExpanded(True)  # the HiSLIP connection's own facts
        browser.select(ref)  # the HiSLIP connection's row, the session's
        browser.tree.scrollToItem(entry)
        pump(1.0)
        save(window, f"lan-{size[0]}x{size[1]}{suffix}.png")
        window.shutdown(5000)
        window.close()
        pump(0.3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
