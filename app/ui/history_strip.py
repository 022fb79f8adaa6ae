"""The status byte's history as a strip of lanes, one per bit, with markers for commands,
SRQs and errors. It repaints from a timer while shown, never per event.
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer, Slot
from PySide6.QtGui import QColor, QFontMetrics, QPalette
from PySide6.QtWidgets import QWidget

from app.session.device_profile import UNUSED
from app.session.status_history import StatusHistory

from .bit_cells import bit_kind
from .theme import colors

HISTORY_SPAN_S = 60.0
REPAINT_INTERVAL_MS = 200  # the history strip scrolls at 5 Hz while shown (<= 25 Hz); 0.2 s is 1/300 of its width


class ClockAxis(pg.AxisItem):
    """A time axis in wall-clock time ("08:45:50"), ticks far enough apart for their labels."""

    STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600)

    def __init__(self, strip: HistoryStrip, **kwargs) -> None:
        super().__init__("bottom", **kwargs)
        self.strip = strip

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802, N803 - pyqtgraph's names
        label_px = QFontMetrics(self.font()).horizontalAdvance("00:00:00") * 1.6
        fits = max(1.0, size / label_px)
        span = max(maxVal - minVal, 1e-9)
        step = next((s for s in self.STEPS_S if span / s <= fits), self.STEPS_S[-1])
        return [(step, 0)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        origin = self.strip.origin
        return [time.strftime("%H:%M:%S", time.localtime(origin + v)) for v in values]


class HistoryStrip(pg.PlotWidget):
    """Lanes for the status byte's bits over the last minute; markers for commands, SRQs and errors.

    Data is plotted against seconds since the strip was made, so new data needs no redraw of the
    old. A timer (5 Hz, only while shown) looks at the history: when it changed, the curves are
    redrawn and the view scrolls to now; otherwise the view scrolls once a second. A status byte
    polled with the same value only stretches the last bar, which is redrawn once a second.
    Time nobody read the status byte (polling off or held off, the view hidden) stays blank.
    The axis shows wall-clock time.
    """

    def __init__(self, history: StatusHistory, parent: QWidget | None = None) -> None:
        self.origin = time.time()
        self.now_x = -1e9  # where the view was last scrolled to
        self.history = history
        self.span_s = HISTORY_SPAN_S
        self.repaints = 0  # curve redraws, for tests: the timer's, never one per event
        self._painted = (-1, 0.0)  # (history.changes, history.last_seen) at the last redraw
        super().__init__(parent, axisItems={"bottom": ClockAxis(self)})
        self.setObjectName("statusHistory")
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.plot_item = self.getPlotItem()
        self.plot_item.setYRange(-0.7, 9.1, padding=0)
        self.plot_item.showGrid(x=True, y=False, alpha=0.25)
        self.plot_item.setLabel("bottom", "time")
        # Three curves for all eight lanes (segments joined in pairs): thin baselines where the status
        # byte was observed, thick bars where a bit was set (the summary bit in its own colour).
        self.baseline = pg.PlotDataItem(connect="pairs")
        self.high = {"data": pg.PlotDataItem(connect="pairs"), "summary": pg.PlotDataItem(connect="pairs")}
        for item in (self.baseline, *self.high.values()):
            self.plot_item.addItem(item)
        self.command_lines = pg.PlotDataItem(connect="pairs")
        self.command_ticks = pg.ScatterPlotItem(symbol="s", size=6, hoverable=True, tip=self._tip)
        self.srq_marks = pg.ScatterPlotItem(symbol="t1", size=11, hoverable=True, tip=self._tip)
        self.error_marks = pg.ScatterPlotItem(symbol="x", size=11, hoverable=True, tip=self._tip)
        for item in (self.command_lines, self.command_ticks, self.srq_marks, self.error_marks):
            self.plot_item.addItem(item)
        self.kinds: dict[int, str] = {bit: "data" for bit in range(8)}
        self.timer = QTimer(self)
        self.timer.setInterval(REPAINT_INTERVAL_MS)
        self.timer.timeout.connect(self.tick)
        self.setMinimumHeight(self.fontMetrics().lineSpacing() * 13)
        self.apply_palette()
        self.tick()

    @staticmethod
    def _tip(x: float, y: float, data) -> str:
        return str(data)

    def x_of(self, t: float) -> float:
        return t - self.origin

    def set_lanes(self, bits: dict[int, tuple[str, str]]) -> None:
        ticks = []
        for bit in range(8):
            name = bits.get(bit, (str(bit), ""))[0]
            ticks.append((bit, f"bit {bit}" if name == UNUSED else name))
            self.kinds[bit] = bit_kind("STB", bit, name)
        self.plot_item.getAxis("left").setTicks([ticks, []])
        self.apply_palette()

    def apply_palette(self) -> None:
        palette = self.palette()
        c = colors(palette)
        self.setBackground(palette.color(QPalette.ColorRole.Base))
        text = palette.color(QPalette.ColorRole.Text)
        for name in ("left", "bottom"):
            axis = self.plot_item.getAxis(name)
            axis.setPen(pg.mkPen(palette.color(QPalette.ColorRole.Mid)))
            axis.setTextPen(pg.mkPen(text))
        self.plot_item.getAxis("bottom").setLabel("time", color=text.name())
        bar_px = max(4, self.fontMetrics().height() // 2)
        self.high["data"].setPen(pg.mkPen(c.sent, width=bar_px))
        self.high["summary"].setPen(pg.mkPen(c.warning, width=bar_px))
        self.baseline.setPen(pg.mkPen(palette.color(QPalette.ColorRole.Mid), width=1))
        muted = QColor(c.muted)
        muted.setAlpha(150)
        self.command_lines.setPen(pg.mkPen(muted, width=1, style=Qt.PenStyle.DashLine))
        self.command_ticks.setBrush(pg.mkBrush(c.muted))
        self.command_ticks.setPen(pg.mkPen(None))
        self.srq_marks.setBrush(pg.mkBrush(c.warning))
        self.srq_marks.setPen(pg.mkPen(QColor(c.warning).darker(140)))
        self.error_marks.setPen(pg.mkPen(c.error, width=2))
        self.error_marks.setBrush(pg.mkBrush(c.error))

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and "high" in self.__dict__:  # not while constructing
            self.apply_palette()
            self.redraw(time.time())

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.timer.start()
        self.tick()

    def hideEvent(self, event) -> None:
        self.timer.stop()
        super().hideEvent(event)

    @Slot()
    def tick(self, now: float | None = None) -> None:
        """Redraw if the history changed, and scroll to ``now`` (default: the wall clock)."""
        now = time.time() if now is None else now
        changes, seen = self._painted
        changed = self.history.changes != changes or self.history.last_seen - seen >= 1.0
        if changed:
            self.redraw(now)
        if changed or self.x_of(now) - self.now_x >= 1.0:
            self.now_x = self.x_of(now)
            self.plot_item.setXRange(self.now_x - self.span_s, self.now_x, padding=0)

    def redraw(self, now: float) -> None:
        self.repaints += 1
        self._painted = (self.history.changes, self.history.last_seen)
        keep = now - self.span_s * 2  # draw a little more than is shown, so scrolling needs no redraw
        segments = self.history.segments(keep, now)
        high: dict[str, tuple[list[float], list[float]]] = {"data": ([], []), "summary": ([], [])}
        base_x: list[float] = []
        base_y: list[float] = []
        # The baseline runs only where the byte was read: joined segments form one stretch.
        stretches: list[list[float]] = []
        for t0, t1, _value in segments:
            if stretches and t0 <= stretches[-1][1]:
                stretches[-1][1] = max(stretches[-1][1], t1)
            else:
                stretches.append([t0, t1])
        for t0, t1 in stretches:
            for bit in range(8):
                base_x += [self.x_of(t0), self.x_of(t1)]
                base_y += [bit, bit]
        for t0, t1, value in segments:
            for bit in range(8):
                if value >> bit & 1:
                    xs, ys = high["summary" if self.kinds[bit] == "summary" else "data"]
                    xs += [self.x_of(t0), self.x_of(t1)]
                    ys += [bit, bit]
        self.baseline.setData(base_x, base_y)
        for kind, (xs, ys) in high.items():
            self.high[kind].setData(xs, ys)
        commands = [(t, label) for t, label in self.history.commands if t >= keep]
        if commands:
            self.command_lines.setData(np.repeat([self.x_of(t) for t, _ in commands], 2),
                                       np.tile([-0.45, 8.45], len(commands)))
            self.command_ticks.setData([self.x_of(t) for t, _ in commands], [-0.45] * len(commands),
                                       data=[f"sent: {label}" for _, label in commands])
        else:
            self.command_lines.setData([], [])
            self.command_ticks.setData([], [])
        srqs = [(t, stb) for t, stb in self.history.srqs if t >= keep]
        self.srq_marks.setData([self.x_of(t) for t, _ in srqs], [8.75] * len(srqs),
                               data=[f"SRQ: status byte #H{stb:02X}" for _, stb in srqs])
        errors = [(t, text) for t, text in self.history.errors if t >= keep]
        self.error_marks.setData([self.x_of(t) for t, _ in errors], [8.3] * len(errors),
                                 data=[text for _, text in errors])
