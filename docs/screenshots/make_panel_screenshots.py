"""Every panel at the two window sizes the app is checked at, in light and dark colours:
docs/screenshots/panels/<panel>-<width>x<height>-<theme>.png, from the real window on the
virtual bus. Look at them after a layout change: nothing cut, nothing overlapping.

Panels: the welcome page, the browser with a device's details, the console, the status
view, the SAM7 panel, the waveform panel (SAM7: why not; AWG: two uploads with their graph),
an SRQ notice, the I/O trace dock, a stuck instrument's banner with its reset, and the driver
doctor. Dialogs (probe, About, Settings) are drawn over the window at its size, centred as
the window manager places them, so a dialog too large for the screen shows cut.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/screenshots/make_panel_screenshots.py
    QT_QPA_PLATFORM=offscreen python docs/screenshots/make_panel_screenshots.py   # also works

Settings go to a temporary file, so your own are left alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from PySide6.QtGui import QPainter, QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from make_doctor_screenshots import CASES as DOCTOR_CASES  # noqa: E402
from make_doctor_screenshots import shoot as doctor_shoot  # noqa: E402
from make_screenshots import demo_window, pump, wait  # noqa: E402  (this folder's shared helpers)

OUT = HERE / "panels"
SIZES = ((1024, 700), (1600, 1000))
THEMES = ("light", "dark")
MIB = 1 << 20


def shoot(window, name: str, size: tuple[int, int], theme: str) -> None:
    pump(0.4)
    path = OUT / f"{name}-{size[0]}x{size[1]}-{theme}.png"
    window.grab().save(str(path))
    print(path)


def shoot_dialog(window, dialog, name: str, size: tuple[int, int], theme: str) -> None:
    """The window with ``dialog`` over it, centred, as a user at this screen size sees both."""
    pump(0.4)
    picture = window.grab()
    shown = dialog.grab()
    painter = QPainter(picture)
    x, y = max(0, (picture.width() - shown.width()) // 2), max(0, (picture.height() - shown.height()) // 2)
    painter.drawPixmap(x, y, shown)
    painter.setPen(dialog.palette().color(QPalette.ColorRole.Shadow))  # the frame a window manager draws
    painter.drawRect(x - 1, y - 1, shown.width() + 1, shown.height() + 1)
    painter.end()
    path = OUT / f"{name}-{size[0]}x{size[1]}-{theme}.png"
    picture.save(str(path))
    print(path, f"(dialog {dialog.width()}x{dialog.height()})")


def open_tab(window, product: str):
    ref = next(r for r in window.browser.devices("virtual") if product in (window.browser.device(r).product or ""))
    window.browser.select(ref)
    window.browser.activate()
    tab = window.tab_for(ref)
    wait(lambda: tab.console.idn is not None and tab.session.state == "idle")
    return tab


def upload(panel, points: int, wire: str) -> None:
    panel.set_pacing(wire)
    panel.points.setValue(points)
    wait(lambda: panel.plan is not None and panel.plan.source.points == points)
    done = []
    panel.upload_finished.connect(done.append)
    panel.start_upload()
    wait(lambda: done)
    panel.upload_finished.disconnect(done.append)


def one_window(qapp, size: tuple[int, int], theme: str) -> None:
    window, _backend, sam7_ref, _tmp = demo_window(qapp, "SAM7", size)
    window.set_theme(theme)
    shoot(window, "welcome", size, theme)
    about = window.show_about()
    shoot_dialog(window, about, "about", size, theme)
    about.close()
    from app.ui.settings_dialog import SettingsDialog

    settings_dialog = SettingsDialog(window.settings, window)
    settings_dialog.show()
    shoot_dialog(window, settings_dialog, "settings", size, theme)
    settings_dialog.reject()

    sam7 = open_tab(window, "SAM7")
    for line in ("*IDN?", "COUNT:READ?", "PARAM:SET 1200,-35", "FOO:BAR 1"):
        sam7.console.submit_line(line)
        wait(lambda: sam7.session.outstanding == 0, 5)
    shoot(window, "console", size, theme)
    item = window.browser._device_items[sam7_ref]
    item.setExpanded(True)
    for i in range(item.childCount()):
        if item.child(i).text(0) in ("Capabilities", "Endpoints"):
            item.child(i).setExpanded(True)
    shoot(window, "browser", size, theme)
    item.setExpanded(False)
    window.trace_dock.show()
    shoot(window, "trace", size, theme)
    window.trace_dock.hide()
    status = sam7.panel("statusView")
    sam7.panels.setCurrentWidget(status)
    wait(lambda: status.state["ESE"].value is not None)
    status.read_device_register("DEBUG:FLAGS")
    wait(lambda: "DEBUG:FLAGS" in status.device_values)
    shoot(window, "status", size, theme)
    panel = sam7.panel("sam7Panel")
    sam7.panels.setCurrentWidget(panel)
    shoot(window, "sam7", size, theme)
    sam7.panels.setCurrentWidget(sam7.waveform)
    shoot(window, "waveform-sam7", size, theme)

    # An SRQ from the SAM7 while another instrument is in front: the notice in the status bar.
    status.toggle_bit("ESE", 5)
    wait(lambda: status.state["ESE"].value == 32)
    status.toggle_bit("SRE", 5)
    wait(lambda: status.state["SRE"].value == 32)
    loop = open_tab(window, "Loopback")
    sam7.console.submit_line("NOSUCH:CMD")
    wait(lambda: window.srq_center.notices.cards)
    shoot(window, "srq", size, theme)
    window.close_tab(window.tabs.indexOf(loop))

    awg = open_tab(window, "AWG")
    awg.panels.setCurrentWidget(awg.waveform)
    wave = awg.waveform.panel()
    wait(lambda: wave.plan is not None)
    upload(wave, 2 * MIB, "high")
    upload(wave, MIB // 2, "full")
    shoot(window, "waveform", size, theme)

    # The compliance probe on the SAM7, asked first, then its safe run's results.
    probe = window.probe_device(sam7_ref)
    shoot_dialog(window, probe, "probe-asks", size, theme)
    probe.start_button.click()
    wait(lambda: probe.report is not None and not probe.running, 60)
    shoot_dialog(window, probe, "probe", size, theme)
    probe.close()

    # A stuck instrument: the DS1104Z twin opened without its quirks hangs on the clear on open.
    window.set_quirky_virtual(True)
    ds = None

    def listed():
        nonlocal ds
        ds = next((r for r in window.browser.devices("virtual") if "DS1104Z" in (window.browser.device(r).product or "")),
                  None)
        return ds is not None

    wait(listed)
    stuck = window.open_device(ds, use_quirks=False)
    wait(lambda: stuck.session.state == "failed", 20)
    shoot(window, "stuck", size, theme)
    window.shutdown()


def main() -> int:
    OUT.mkdir(exist_ok=True)
    qapp = QApplication(sys.argv[:1])
    for size in SIZES:
        for theme in THEMES:
            one_window(qapp, size, theme)
            # The driver doctor (one cause here; docs/screenshots/doctor-*.png have each cause).
            name = f"doctor-{size[0]}x{size[1]}-{theme}.png"
            doctor_shoot(qapp, (f"panels/{name}", *DOCTOR_CASES[0][1:]), theme=theme, size=size, whole_window=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
