"""Regenerate the screenshots in this folder from the real window on the virtual bus.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/screenshots/make_screenshots.py
    DISPLAY=:99 QT_QPA_PLATFORM=xcb QT_SCALE_FACTOR=2 python docs/screenshots/make_screenshots.py --scaled

Settings go to a temporary file, so your own are left alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def pump(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def wait(predicate, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            raise SystemExit("timed out while preparing a screenshot")
        pump(0.02)


def save(widget, name: str) -> None:
    pump(0.2)
    widget.grab().save(str(HERE / name))
    print(HERE / name)


def save_screen(name: str, rect) -> None:
    """The screen area ``rect`` (global coordinates): includes popups such as the completion list."""
    pump(0.2)
    screen = QGuiApplication.primaryScreen()
    screen.grabWindow(0, rect.x(), rect.y(), rect.width(), rect.height()).save(str(HERE / name))
    print(HERE / name)


def demo_window(qapp, product: str, size: tuple[int, int]):
    """The real main window on a fresh virtual bus, light theme, settings in a temporary file and no
    USB access; returns (window, backend, ref of the first virtual device whose product has
    ``product``, the temporary folder) once that device is listed."""
    import app.sim
    from app.ui.icon import app_icon
    from app.ui.main_window import MainWindow
    from app.ui.settings import Settings
    from app.ui.theme import apply_theme
    from app.usbtmc.errors import BackendUnavailableError

    qapp.setOrganizationName("TMC Console")
    qapp.setApplicationName("TMC Console")
    qapp.setWindowIcon(app_icon())
    apply_theme(qapp, "light")
    tmp = tempfile.mkdtemp(prefix="tmc-shots-")
    settings = Settings(QSettings(f"{tmp}/s.ini", QSettings.Format.IniFormat))
    backend = app.sim.backend()

    def no_usb():
        raise BackendUnavailableError(
            "libusb could not be loaded, so USB instruments cannot be reached; "
            "install libusb-1.0 (Linux: the libusb-1.0-0 package) or use the virtual instruments"
        )

    window = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: backend}, discovery_interval_ms=300)
    window.resize(*size)
    window.move(0, 0)
    window.show()
    window.start()

    def listed():
        return next((r for r in window.browser.devices("virtual") if product in (window.browser.device(r).product or "")),
                    None)

    wait(lambda: listed() is not None)
    return window, backend, listed(), tmp


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scaled", action="store_true", help="only the 200 % screenshot")
    args = parser.parse_args()
    qapp = QApplication(sys.argv[:1])
    window, backend, sam7_ref, _tmp = demo_window(qapp, "SAM7", (1280, 800))

    if not args.scaled:
        save(window, "welcome.png")

    window.browser.select(sam7_ref)
    window.browser.activate()
    tab = window.tab_for(sam7_ref)
    wait(lambda: tab.console.idn is not None and tab.session.state == "idle")
    console = tab.console
    board = backend.bus.find(vid=0x1209, pid=0x0001)
    pump(board.pulse_train(rate_hz=10, count=3) - board.clock.now() + 0.1)
    console.timeout_spin.setValue(500)
    console.timeout_spin.editingFinished.emit()
    for line in ("*IDN?", "COUNT:READ?", "INDICATOR 1", "INDICATOR?", "PARAM:SET 1200,-35", "PARAM:ENQ?",
                 "FOO:BAR 1", "NOSUCH:QUERY?", "DEBUG:FLAGS?"):
        console.submit_line(line)
        wait(lambda: tab.session.outstanding == 0, 5)
    console.control("read_stb")
    wait(lambda: tab.session.outstanding == 0)
    item = window.browser._device_items[sam7_ref]
    item.setExpanded(True)
    for i in range(item.childCount()):
        if item.child(i).text(0) in ("Capabilities", "Endpoints"):
            item.child(i).setExpanded(True)
    window.browser.tree.scrollToTop()
    console.input.setText("COUNT:RE")

    if args.scaled:
        save(window, "main-window-200pct.png")
        window.shutdown()
        return 0

    save(window, "main-window.png")
    save(window.dock, "browser.png")
    save(tab, "console.png")

    # Completion: type a header; the list is a popup window, so grab the screen.
    console.input.clear()
    console.input.setFocus()
    from PySide6.QtTest import QTest

    QTest.keyClicks(console.input, "COUNT:R")
    wait(console.input.completion_popup_visible)
    top_left = tab.mapToGlobal(tab.rect().topLeft())
    rect = tab.rect().translated(top_left)
    save_screen("completion.png", rect)
    console.input.hide_completions()
    console.input.clear()

    # The raw view of a reply.
    entry = [e for e in console.transcript.entries() if e.kind == "received"][-1]
    dialog = console.show_raw(entry.id)
    save(dialog, "raw-view.png")
    dialog.close()

    # The status view: click CME into ESE and ESB into SRE, then an undefined command raises an SRQ.
    status = tab.panel("statusView")
    tab.panels.setCurrentWidget(status)
    wait(lambda: status.state["ESE"].value is not None and status.state["SRE"].value is not None)
    status.toggle_bit("ESE", 5)
    wait(lambda: status.state["ESE"].value == 32)
    status.toggle_bit("SRE", 5)
    wait(lambda: status.state["SRE"].value == 32)
    # ESB stays set until *CLS: neither the error check nor an SRQ follow-up reads ESR meanwhile.
    console.check_combo.setCurrentIndex(console.check_combo.findData("off"))
    window.srq_center.monitor(tab).follow_up = False
    for line, pause_s in (("COUNT:READ?", 0.6), ("FOO:BAR", 2.0), ("*CLS", 0.8), ("PARAM:SET 20000,0", 0.6)):
        console.submit_line(line)
        wait(lambda: tab.session.outstanding == 0)
        pump(pause_s)
    status.read_esr()
    status.read_device_register("DEBUG:FLAGS")
    wait(lambda: "DEBUG:FLAGS" in status.device_values)
    console.check_combo.setCurrentIndex(console.check_combo.findData("auto"))
    window.srq_center.monitor(tab).follow_up = True
    window.resize(1280, 990)  # tall enough for the whole view
    pump(1.2)
    save(tab, "status-view.png")
    window.resize(1280, 800)

    # An SRQ from the SAM7 while another instrument is in front: a notice and a badge.
    loop_ref = next(r for r in window.browser.devices("virtual") if "Loopback" in window.browser.device(r).product)
    window.open_device(loop_ref)
    loop = window.tab_for(loop_ref)
    wait(lambda: loop.console.idn is not None and loop.session.state == "idle")
    console.submit_line("NOSUCH:CMD")
    wait(lambda: window.browser.device(sam7_ref) is not None and "⚑" in window.browser._device_items[sam7_ref].text(0))
    pump(0.5)
    save(window, "srq-notification.png")

    # The SAM7 panel with the virtual board: Ready on, remote, a pulse train with glitches running.
    window.tabs.setCurrentWidget(tab)
    sam7 = tab.panel("sam7Panel")
    tab.panels.setCurrentWidget(sam7)
    for line in ("COUNT:RESET", "INDICATOR 1", "PARAM:SET 1200,-35"):
        console.submit_line(line)
        wait(lambda: tab.session.outstanding == 0)
    console.control("remote")
    console.submit_line("BUSY?")
    sam7.busy_button.click()
    sam7.flags_button.click()
    sam7.enq_button.click()
    sam7.pulse_source.rate.setValue(4)
    sam7.pulse_source.glitch.setChecked(True)
    sam7.pulse_source.start()
    pump(3.0)
    sam7.param1.setText("20000")
    wait(lambda: sam7.busy_text and sam7.params_text and sam7.flags_text)
    pump(0.5)
    save(tab, "sam7-panel.png")

    # Dark colours.
    window.set_theme("dark")
    pump(0.5)
    save(tab, "sam7-panel-dark.png")
    tab.panels.setCurrentWidget(status)
    window.resize(1280, 990)
    pump(1.2)
    save(tab, "status-view-dark.png")
    window.resize(1280, 800)
    sam7.pulse_source.stop()
    tab.panels.setCurrentWidget(console)
    pump(0.3)
    save(window, "main-window-dark.png")
    window.set_theme("light")
    pump(0.3)

    # Pull the board out while its tab is open.
    backend.bus.unplug(board)
    wait(lambda: tab.session.state == "gone")
    save(window, "device-gone.png")
    window.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
