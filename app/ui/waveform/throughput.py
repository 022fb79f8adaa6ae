"""A live graph of upload throughput: MB/s against time, redrawn from a timer.

Samples arrive in batches from the worker (one ``(elapsed_s, done_bytes)`` pair per
transfer); they are appended to the current run's buffers and the plot is redrawn at most
every :data:`REDRAW_MS` by a timer, never per sample, so drawing never slows the transfer.
Reference lines mark the USB 2.0 full- and high-speed bulk limits and the run's average;
earlier runs stay on the plot, dimmed, for comparison. Samples export as CSV, the plot as PNG.
"""

from __future__ import annotations

import csv
import io
import math
from html import escape as _escape
from dataclasses import dataclass, field

import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QEvent, QIODevice, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QCheckBox, QLabel, QSizePolicy, QPushButton, QVBoxLayout, QWidget

from app.sim.wire import FULL_SPEED, HIGH_SPEED
from app.usbtmc.files import save_bytes, save_text

from ..flow import FlowLayout
from ..theme import colors

REDRAW_MS = 40  # 25 Hz at most
RATE_WINDOW_S = 0.1  # each point is the rate over at least this long, so single transfers do not jitter it
MAX_RUNS = 6  # runs kept for comparison, the current one included
LEGEND_LINES = 2  # legend lines the graph's minimum height holds: a run, and the key with its average
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def escape(text: str) -> str:
    return _escape(text, quote=False)


def style_plot(plot: pg.PlotWidget, palette: QPalette) -> None:
    """Colour a plot from the widget palette (light or dark), instead of pyqtgraph's black."""
    base = palette.color(QPalette.ColorRole.Base)
    text = palette.color(QPalette.ColorRole.Text)
    frame = palette.color(QPalette.ColorRole.Mid)
    plot.setBackground(base)
    item = plot.getPlotItem()
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(frame))
        axis.setTextPen(pg.mkPen(text))


@dataclass
class Run:
    """One upload's samples: times (s), bytes done, and the rate (MB/s) at each time."""

    number: int
    label: str
    times_s: list[float] = field(default_factory=list)
    done_bytes: list[int] = field(default_factory=list)
    rates_MBps: list[float] = field(default_factory=list)
    finished: bool = False
    ok: bool = True
    outcome: str = "done"  # "done", "cancelled" or "failed"
    _window_start: int = 0

    @property
    def average_MBps(self) -> float:
        if not self.times_s or self.times_s[-1] <= 0:
            return 0.0
        return self.done_bytes[-1] / self.times_s[-1] / 1e6

    def add(self, elapsed_s: float, done: int) -> None:
        if self.times_s and (elapsed_s <= self.times_s[-1] or done < self.done_bytes[-1]):
            return  # out of order or repeated: keep the curve monotonic in time
        self.times_s.append(elapsed_s)
        self.done_bytes.append(done)
        i = len(self.times_s) - 1
        while self._window_start < i - 1 and elapsed_s - self.times_s[self._window_start + 1] >= RATE_WINDOW_S:
            self._window_start += 1
        j = self._window_start if self._window_start < i else i - 1
        if j < 0:
            rate = done / elapsed_s / 1e6 if elapsed_s > 0 else 0.0
        else:
            span = elapsed_s - self.times_s[j]
            rate = (done - self.done_bytes[j]) / span / 1e6 if span > 0 else self.rates_MBps[-1]
        self.rates_MBps.append(rate)


class ThroughputGraph(QWidget):
    """MB/s against time for the current upload and the previous ones."""

    exported = Signal(str)  # a file written (CSV or PNG)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("throughputGraph")
        self.runs: list[Run] = []
        self.redraws = 0  # how often the plot was redrawn (tests check it follows the timer)
        self._dirty = False
        self._run_numbers = 0

        self.plot = pg.PlotWidget(self)
        self.plot.setObjectName("throughputPlot")
        self.plot.setMinimumHeight(self.fontMetrics().height() * 7)  # 1024x700 leaves about 120 px
        item = self.plot.getPlotItem()
        # Fixed units: pyqtgraph's SI prefixes would turn 2000 MB/s into "2 kMB/s".
        item.setLabel("left", "throughput (MB/s)")
        item.setLabel("bottom", "time since the upload started (s)")
        for name in ("left", "bottom"):
            item.getAxis(name).enableAutoSIPrefix(False)
        # No grid: it is most of the cost of a repaint, and the reference lines give the scale.
        item.setMenuEnabled(False)
        # Ranges move in round steps (see _fit_range), not on every redraw: each change of range
        # makes pyqtgraph lay its axes out again, the dearest part of a repaint.
        item.enableAutoRange(False)
        item.setMouseEnabled(x=False, y=False)
        self._range = (0.0, 0.0)
        self._curves: dict[int, pg.PlotDataItem] = {}
        c = colors(self.palette())
        muted = QColor(c.muted)
        self.reference_lines = []
        # The lines carry no text on the plot, where labels of close values would overlap each
        # other and the curves: the key under the plot names them.
        for model, text in ((FULL_SPEED, "full speed"), (HIGH_SPEED, "high speed")):
            mbps = model.bytes_per_s / 1e6
            line = pg.InfiniteLine(pos=mbps, angle=0, movable=False,
                                   pen=pg.mkPen(muted, width=1, style=Qt.PenStyle.DashLine))
            line.value_MBps = mbps
            line.setToolTip(f"USB {text} bulk limit: {mbps:g} MB/s")
            line.name = text
            item.addItem(line, ignoreBounds=False)
            self.reference_lines.append(line)
        self.average_line = pg.InfiniteLine(pos=0, angle=0, movable=False,
                                            pen=pg.mkPen(QColor(c.ok), width=1, style=Qt.PenStyle.DotLine))
        self.average_line.value_MBps = 0.0
        self.average_line.hide()
        item.addItem(self.average_line, ignoreBounds=True)

        # The legend, under the plot rather than on it: no curve hides it, and it changes only
        # when a run begins or ends, never per redraw.
        self.legend = QLabel(self)
        self.legend.setObjectName("throughputLegend")
        self.legend.setWordWrap(True)
        # Long legends wrap between entries; they never widen the panel.
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.legend.setMinimumWidth(1)
        self.legend.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_scale = QCheckBox("Log scale", self)
        self.log_scale.setToolTip("Show slow and fast runs, and both bus limits, at once")
        self.log_scale.toggled.connect(self._set_log)
        self.clear_button = QPushButton("Clear runs", self)
        self.clear_button.clicked.connect(self.clear)
        self.csv_button = QPushButton("Export CSV…", self)
        self.csv_button.setToolTip("The samples of every run on the plot: run, time, bytes, MB/s")
        self.png_button = QPushButton("Export PNG…", self)
        self.png_button.setToolTip("The plot as an image")
        self.csv_button.clicked.connect(lambda: self._export("csv"))
        self.png_button.clicked.connect(lambda: self._export("png"))

        # The buttons wrap onto a second row when the graph is narrow instead of widening the panel.
        bar_widget = QWidget(self)
        bar = FlowLayout(bar_widget)
        for widget in (self.log_scale, self.clear_button, self.csv_button, self.png_button):
            bar.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.legend)
        layout.addWidget(bar_widget)
        style_plot(self.plot, self.palette())

        # The legend gains a line with each run. The graph's minimum height is fixed (room for
        # LEGEND_LINES of it), so a new run squeezes the plot instead of relaying the window
        # out, which would move the docks and repaint everything in the middle of an upload.
        empty = self.minimumSizeHint().height()
        self.setMinimumHeight(empty + (LEGEND_LINES - 1) * self.legend.fontMetrics().lineSpacing())

        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self._redraw)
        self._update_buttons()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.PaletteChange:
            style_plot(self.plot, self.palette())
        super().changeEvent(event)

    # --- data in -----------------------------------------------------------------------

    def begin_run(self, label: str) -> Run:
        """Start a new run (the oldest is dropped beyond :data:`MAX_RUNS`) and the redraw timer."""
        self._run_numbers += 1
        run = Run(self._run_numbers, label)
        self.runs.append(run)
        while len(self.runs) > MAX_RUNS:
            old = self.runs.pop(0)
            curve = self._curves.pop(old.number, None)
            if curve is not None:
                self.plot.getPlotItem().removeItem(curve)
        self.average_line.hide()
        self._dirty = True
        self.timer.start()
        self._update_buttons()
        self._update_legend()
        return run

    def add_samples(self, samples) -> None:
        """Append ``(elapsed_s, done_bytes)`` pairs to the current run; drawn at the next tick."""
        if not self.runs or self.runs[-1].finished:
            return
        run = self.runs[-1]
        for elapsed_s, done in samples:
            run.add(float(elapsed_s), int(done))
        self._dirty = True

    def end_run(self, ok: bool, seconds: float | None = None, total_bytes: int | None = None,
                outcome: str | None = None) -> None:
        """The current run is over: fix its average (from the upload's own timing when given).
        ``outcome`` says how a run that is not ok ended: "cancelled" or "failed" (the default)."""
        if not self.runs or self.runs[-1].finished:
            return
        run = self.runs[-1]
        if seconds and total_bytes and ok:
            run.add(seconds, total_bytes)
        run.finished, run.ok = True, ok
        run.outcome = "done" if ok else (outcome or "failed")
        self._dirty = True
        self._redraw()
        self.timer.stop()
        self._update_buttons()
        self._update_legend()

    @Slot()
    def clear(self) -> None:
        for curve in self._curves.values():
            self.plot.getPlotItem().removeItem(curve)
        self._curves.clear()
        self.runs = [run for run in self.runs if not run.finished]
        self.average_line.hide()
        self._range = (0.0, 0.0)
        self._dirty = True
        self._redraw()
        self._update_buttons()
        self._update_legend()

    # --- drawing -------------------------------------------------------------------------

    @Slot()
    def _redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.redraws += 1
        item = self.plot.getPlotItem()
        current = self.runs[-1] if self.runs else None
        for index, run in enumerate(self.runs):
            curve = self._curves.get(run.number)
            color = QColor(RUN_COLORS[(run.number - 1) % len(RUN_COLORS)])
            latest = run is current
            if not latest:
                color.setAlpha(110)
            pen = pg.mkPen(color, width=2.2 if latest else 1.2,
                           style=Qt.PenStyle.SolidLine if run.ok else Qt.PenStyle.DashLine)
            if curve is None:
                curve = item.plot([], [], pen=pen)
                self._curves[run.number] = curve
            curve.setPen(pen)
            curve.setData(run.times_s, run.rates_MBps)
        self._fit_range()
        if current is not None and current.times_s:
            average = current.average_MBps
            self.average_line.value_MBps = average
            self.average_line.setPos(self._y(average))
            if not self.average_line.isVisible():
                self.average_line.show()
                self._update_legend()

    def _update_legend(self) -> None:
        entries = []
        for run in self.runs:
            color = RUN_COLORS[(run.number - 1) % len(RUN_COLORS)]
            if not run.finished:
                figures = "running…"
            elif run.times_s:
                figures = f"{run.average_MBps:.3g} MB/s, {run.times_s[-1]:.3g} s"
                figures += "" if run.ok else f", {run.outcome}"
            else:
                figures = run.outcome
            # A narrow graph may break a line between what the run was and its figures, never
            # inside either.
            entries.append(f"<span style='color:{color}'>■</span>&nbsp;"
                           + _unbroken(f"run {run.number}: {run.label}") + " " + _unbroken(f"— {figures}"))
        c = colors(self.palette())
        limits = " ".join(_unbroken(f"{line.value_MBps:g} MB/s ({line.name})") for line in self.reference_lines)
        key = f"<span style='color:{c.muted}'>{_unbroken('- - USB limits:')} {limits}</span>"
        current = self.runs[-1] if self.runs else None
        # A running run's key names its average from the start: the legend then keeps its lines
        # while the run draws (a line appearing would squeeze the plot mid-upload).
        if current is not None and (self.average_line.isVisible() or not current.finished):
            key += f" <span style='color:{c.ok}'>{_unbroken(f'··· run {current.number} average')}</span>"
        entries.append(key)
        # One entry a line.
        text = "<br>".join(entries)
        if text != self.legend.text():
            self.legend.setText(text)

    def _fit_range(self) -> None:
        """Show every run and the bus limits near it: time and rate rounded up to a step of
        :data:`FITTED_STEPS`, so the data fill most of the plot."""
        times = [run.times_s[-1] for run in self.runs if run.times_s]
        rates = [max(run.rates_MBps) for run in self.runs if run.rates_MBps]
        x_top = _nice(max(times, default=1.0) * 1.02, FITTED_STEPS)
        top = max(rates, default=1.0)
        limits = [line.value_MBps for line in self.reference_lines]
        # A bus limit is worth showing when it is within reach of the fastest run.
        y_top = max([top * 1.08] + [limit * 1.08 for limit in limits if limit <= top * 4])
        y_top = _nice(y_top, FITTED_STEPS)
        if (x_top, y_top) == self._range:
            return
        self._range = (x_top, y_top)
        item = self.plot.getPlotItem()
        item.setXRange(0, x_top, padding=0)
        axis = item.getAxis("left")
        if self.log_scale.isChecked():
            low = min([r for run in self.runs for r in run.rates_MBps if r > 0] + [limits[0]])
            bottom, top = math.log10(low / 2), math.log10(y_top)
            item.setYRange(bottom, top + 0.04, padding=0)  # room for the top tick's label
            # Decades, with 2 and 5 between them: pyqtgraph would label every 2..9 x 10^n.
            first, last = math.floor(bottom), math.ceil(top)
            major = [(k, f"{10.0 ** k:g}") for k in range(first, last + 1)]
            minor = [(k + math.log10(m), f"{m * 10.0 ** k:g}") for k in range(first, last + 1) for m in (2, 5)]
            axis.setTicks([major, minor])
        else:
            axis.setTicks(None)
            item.setYRange(0, y_top * 1.03, padding=0)

    def _y(self, mbps: float) -> float:
        if self.log_scale.isChecked():
            import math

            return math.log10(max(mbps, 1e-3))
        return mbps

    @Slot(bool)
    def _set_log(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(y=on)
        for line in [*self.reference_lines, self.average_line]:
            line.setPos(self._y(line.value_MBps))
        self._range = (0.0, 0.0)
        self._dirty = True
        self._redraw()

    # --- export --------------------------------------------------------------------------

    def samples_csv(self) -> str:
        """Every run's samples: run, label, time_s, bytes, MB_per_s."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["run", "label", "time_s", "bytes", "MB_per_s"])
        for run in self.runs:
            for t, done, rate in zip(run.times_s, run.done_bytes, run.rates_MBps):
                writer.writerow([run.number, run.label, f"{t:.6f}", done, f"{rate:.4f}"])
        return out.getvalue()

    def export_csv(self, path: str) -> None:
        save_text(path, self.samples_csv())  # SaveError (an OSError) leaves an older file intact
        self.exported.emit(path)

    def export_png(self, path: str) -> bool:
        self._redraw()
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not self.plot.grab().save(buffer, "PNG"):
            return False
        save_bytes(path, bytes(data))  # SaveError (an OSError) leaves an older file intact
        self.exported.emit(path)
        return True

    def _export(self, kind: str) -> None:
        from PySide6.QtWidgets import QFileDialog, QMessageBox

        title = "Export throughput samples" if kind == "csv" else "Export throughput plot"
        pattern = "CSV files (*.csv)" if kind == "csv" else "PNG images (*.png)"
        path, _ = QFileDialog.getSaveFileName(self, title, f"throughput.{kind}", pattern)
        if not path:
            return
        try:
            if kind == "csv":
                self.export_csv(path)
            elif not self.export_png(path):
                raise OSError("the image could not be written")
        except OSError as exc:
            QMessageBox.warning(self, title, f"{path}: {exc.strerror or exc}")

    def _update_buttons(self) -> None:
        has = any(run.times_s for run in self.runs)
        self.csv_button.setEnabled(has)
        self.png_button.setEnabled(bool(self.runs))
        self.clear_button.setEnabled(any(run.finished for run in self.runs))


def _unbroken(text: str) -> str:
    """``text`` for rich text, with no place to break a line: no-break spaces, and a word joiner
    after "/" and "-", where Unicode line breaking would otherwise allow a break ("MB/" | "s")."""
    return escape(text).replace(" ", "&nbsp;").replace("/", "/\u2060").replace("-", "-\u2060")


NICE_STEPS = (1, 2, 5, 10)
FITTED_STEPS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)  # at most 25 % above the data


def _nice(value: float, steps=NICE_STEPS) -> float:
    """The smallest of ``steps`` x 10^n that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in steps if step * power >= value * (1 - 1e-9))
