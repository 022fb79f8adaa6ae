"""Every panel at the two window sizes the app is checked at, in light and dark colours:
docs/screenshots/panels/<panel>-<width>x<height>-<theme>.png, from the real window on the
virtual bus. Look at them after a layout change: nothing cut, nothing overlapping.

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

from PySide6.QtWidgets import QApplication  # noqa: E402
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
    window, _backend, _ref, _tmp = demo_window(qapp, "SAM7", size)
    window.set_theme(theme)
    shoot(window, "welcome", size, theme)

    sam7 = open_tab(window, "SAM7")
    for line in ("*IDN?", "COUNT:READ?", "PARAM:SET 1200,-35", "FOO:BAR 1"):
        sam7.console.submit_line(line)
        wait(lambda: sam7.session.outstanding == 0, 5)
    shoot(window, "console", size, theme)
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

    awg = open_tab(window, "AWG")
    awg.panels.setCurrentWidget(awg.waveform)
    wave = awg.waveform.panel()
    wait(lambda: wave.plan is not None)
    upload(wave, 2 * MIB, "high")
    upload(wave, MIB // 2, "full")
    shoot(window, "waveform", size, theme)
    window.shutdown()


def main() -> int:
    OUT.mkdir(exist_ok=True)
    qapp = QApplication(sys.argv[:1])
    for size in SIZES:
        for theme in THEMES:
            one_window(qapp, size, theme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
