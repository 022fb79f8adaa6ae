"""The status-register view of an instrument: STB, ESR, ESE, SRE and the device's own registers.

* The status byte is read live with the USB488 READ_STATUS_BYTE request (which leaves the
  output queue alone, unlike ``*STB?``) by the session worker's idle poll, so a poll never
  collides with a transfer; the view asks for it only while it is shown.
* ESE and SRE are edited by clicking their bits: ``*ESE n`` / ``*SRE n``, then read back.
* ESR is read only when asked (reading clears it); values that the console's error check,
  an SRQ follow-up or a typed ``*ESR?`` read are shown too, with where they came from.
* A history strip plots the status byte's bits over time with markers where commands were
  sent; it repaints from a timer (10 Hz) while shown, never per event.
* Device-specific registers (the SAM7's ``DEBUG:FLAGS?``) come from the device profile.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFontDatabase, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.usbtmc import ieee488

from .device_profile import GENERIC, UNUSED, DeviceProfile, DeviceRegister, profile_for_idn
from .events import Closed, ErrorReport, Failed, Finished, Opened, Query, Reply, Sent, SetIdlePolling, Srq, Started, StatusByte, Write
from .flow import FlowLayout
from .srq import is_background
from .theme import colors
from .transcript import format_time

PANEL_TAG = "status view"
POLL_CHOICES_MS = [(0, "Off"), (100, "100 ms"), (200, "200 ms"), (500, "500 ms"), (1000, "1 s"), (2000, "2 s")]
DEFAULT_POLL_MS = 200
HISTORY_SPAN_S = 60.0
# A gap between two reads of the status byte longer than this is unread time: longer than the
# slowest live polling (2 s) allows, so it means the polling stopped or was held off.
UNREAD_GAP_S = 3.0
REPAINT_INTERVAL_MS = 200  # the history strip scrolls at 5 Hz while shown (<= 25 Hz); 0.2 s is 1/300 of its width

ESR_ERROR_BITS = int(ieee488.ESR_ERROR_MASK)  # CME, EXE, DDE, QYE (488.2 11.5.1.1)
_ENABLE_WRITE = re.compile(r"^\s*(\*ESE|\*SRE)\s+(\S+)\s*$", re.IGNORECASE)


def text_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background``."""
    luminance = 0.2126 * background.redF() + 0.7152 * background.greenF() + 0.0722 * background.blueF()
    return QColor("#111111") if luminance > 0.45 else QColor("#ffffff")


def set_text(label: QLabel, text: str) -> None:
    """Change a label only when its text changes (a repeated poll repaints nothing)."""
    if label.text() != text:
        label.setText(text)


def bit_kind(register: str, bit: int, name: str) -> str:
    """How a set bit is coloured: summary, error, info, state, data or enable."""
    if name == UNUSED:
        return "unused"
    if register in ("ESE", "SRE"):
        return "enable"
    if register == "STB":
        return "summary" if bit == 6 else "data"
    if register == "ESR":
        return "error" if ESR_ERROR_BITS >> bit & 1 else "info"
    return "data"


class BitCell(QAbstractButton):
    """One bit of a register: its name, filled when set; clickable when the register is writable."""

    def __init__(self, bit: int, name: str, description: str, kind: str, *, editable: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bit = bit
        self.kind = kind
        self.editable = editable
        self.pending = False  # written, not read back yet
        self.setCheckable(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus if editable else Qt.FocusPolicy.NoFocus)
        if editable:
            self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.set_name(name, description)

    def set_name(self, name: str, description: str) -> None:
        self.setText(name)
        self.description = description
        self._update_tip()
        self.updateGeometry()
        self.update()

    def set_value(self, on: bool, *, pending: bool = False) -> None:
        if on == self.isChecked() and pending == self.pending:
            return  # polls repeat values: repaint only on a change
        self.pending = pending
        self.setChecked(on)
        self._update_tip()
        self.update()

    def _update_tip(self) -> None:
        state = "set" if self.isChecked() else "clear"
        tip = f"bit {self.bit} (value {1 << self.bit}): {self.text()}, {state}"
        if self.description:
            tip += f"\n{self.description}"
        if self.editable:
            tip += "\nClick to " + ("clear" if self.isChecked() else "set") + " it on the device"
        if self.pending:
            tip += "\n(written; reading back…)"
        self.setToolTip(tip)

    def nextCheckState(self) -> None:
        # The device owns the value: a click asks for a change, the read-back sets the state.
        pass

    def mousePressEvent(self, event) -> None:
        if self.editable and self.isEnabled():
            super().mousePressEvent(event)
        else:
            event.ignore()

    def keyPressEvent(self, event) -> None:
        if self.editable:
            super().keyPressEvent(event)
        else:
            event.ignore()

    def sizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        width = max(metrics.horizontalAdvance(self.text() or "0"), metrics.horizontalAdvance("RQS/MSS"))
        return QSize(width + metrics.averageCharWidth() * 2, metrics.height() + metrics.height() // 2 + 4)

    def minimumSizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        return QSize(metrics.horizontalAdvance(self.text() or "0") + 8, metrics.height() + 6)

    def fill_color(self) -> QColor:
        palette = self.palette()
        if self.kind == "enable":
            return palette.color(QPalette.ColorRole.Highlight)
        c = colors(palette)
        return QColor({"summary": c.warning, "error": c.error, "info": c.info, "state": c.ok}.get(self.kind, c.sent))

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        rect = QRectF(self.rect()).adjusted(1.5, 1.5, -1.5, -1.5)
        on = self.isChecked()
        unused = self.kind == "unused"
        if on:
            background = self.fill_color()
            foreground = text_on(background)
            border = background.darker(130) if background.lightness() > 128 else background.lighter(140)
        else:
            background = palette.color(QPalette.ColorRole.Base)
            foreground = palette.color(QPalette.ColorRole.PlaceholderText if unused else QPalette.ColorRole.Text)
            border = palette.color(QPalette.ColorRole.Mid)
        if self.editable and self.underMouse() and self.isEnabled():
            border = palette.color(QPalette.ColorRole.Highlight)
        pen = QPen(border, 1.5 if not self.hasFocus() else 2.5)
        if self.pending:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(background)
        radius = min(rect.height() / 4, 5.0)
        painter.drawRoundedRect(rect, radius, radius)
        if not self.isEnabled():
            foreground = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        painter.setPen(foreground)
        font = self.font()
        if on:
            font.setBold(True)
        painter.setFont(font)
        text = self.text() if not unused else str(self.bit)
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), text)


@dataclass
class RegisterState:
    """What the view knows about one register: its value, when and how it was learned."""

    value: int | None = None
    at: float = 0.0  # wall-clock seconds
    how: str = ""
    pending: int | None = None  # written, read-back outstanding
    unreadable: str = ""  # why it cannot be read back ("" when it can)


class RegisterRow:
    """A register as a row of a grid: name, eight bit cells, value, where it came from, an action."""

    def __init__(self, grid: QGridLayout, row: int, name: str, subtitle: str, parent: QWidget, *,
                 editable: bool = False) -> None:
        self.name = name
        self.editable = editable
        self.title = QLabel(f"<b>{name}</b><br><span>{subtitle}</span>", parent)
        self.title.setObjectName(f"register{name}Title")
        self.cells: dict[int, BitCell] = {}
        grid.addWidget(self.title, row, 0)
        for column, bit in enumerate(range(7, -1, -1), start=1):
            cell = BitCell(bit, str(bit), "", "data", editable=editable, parent=parent)
            cell.setObjectName(f"{name}bit{bit}")
            cell.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
            self.cells[bit] = cell
            grid.addWidget(cell, row, column)
        self.value_label = QLabel("—", parent)
        self.value_label.setObjectName(f"register{name}Value")
        self.value_label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.value_label.setMinimumWidth(self.value_label.fontMetrics().horizontalAdvance("#HFF · 255") + 2)
        self.source_label = QLabel("", parent)
        self.source_label.setObjectName(f"register{name}Source")
        self.source_label.setWordWrap(True)
        self.source_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.source_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # Where the value came from goes under it, not in a column of its own: a narrow window
        # (1024x700) keeps the row's buttons on screen.
        self.source_label.setMinimumWidth(self.value_label.minimumWidth())
        value_box = QVBoxLayout()
        value_box.setSpacing(0)
        value_box.addWidget(self.value_label)
        value_box.addWidget(self.source_label)
        grid.addLayout(value_box, row, 9, 1, 2)
        self.actions = QHBoxLayout()
        self.actions.setSpacing(4)
        grid.addLayout(self.actions, row, 11)

    def set_names(self, bits: dict[int, tuple[str, str]], register: str) -> None:
        for bit, cell in self.cells.items():
            name, description = bits.get(bit, (str(bit), ""))
            cell.kind = bit_kind(register, bit, name)
            cell.set_name(name, description)

    def show(self, state: RegisterState) -> None:
        shown = state.pending if state.pending is not None else state.value
        for bit, cell in self.cells.items():
            cell.set_value(shown is not None and bool(shown >> bit & 1), pending=state.pending is not None)
        set_text(self.value_label, "—" if shown is None else f"#H{shown:02X} · {shown}")
        parts = []
        if state.pending is not None:
            parts.append(f"wrote {state.pending}, reading back…")
        elif state.how:
            parts.append(f"{state.how} · {format_time(state.at)[:8]}")
        if state.unreadable:
            parts.append(state.unreadable)
        set_text(self.source_label, "; ".join(parts))
        self.source_label.setToolTip(self.source_label.text())


class StatusHistory:
    """The status byte over time, and what happened meanwhile (no Qt). Times are wall-clock seconds."""

    def __init__(self, max_samples: int = 20000) -> None:
        self.samples: deque[tuple[float, int]] = deque(maxlen=max_samples)  # (t, stb) at each change
        self.last_seen = 0.0  # when the status byte was last observed (value unchanged since the last sample)
        self.commands: deque[tuple[float, str]] = deque(maxlen=2000)
        self.srqs: deque[tuple[float, int]] = deque(maxlen=2000)
        self.errors: deque[tuple[float, str]] = deque(maxlen=2000)
        self.changes = 0  # bumped when a value changes or a mark is added (not on a repeated value)
        # (from, to): stretches longer than UNREAD_GAP_S in which nothing read the status byte.
        # The value before such a stretch is not known to have lasted through it.
        self.unread: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def observe(self, t: float, stb: int) -> None:
        if self.last_seen and t - self.last_seen > UNREAD_GAP_S:
            self.unread.append((self.last_seen, t))
            self.changes += 1
        if not self.samples or self.samples[-1][1] != stb or t < self.samples[-1][0]:
            self.samples.append((t, stb))
            self.changes += 1
        self.last_seen = max(self.last_seen, t)

    def command(self, t: float, label: str) -> None:
        self.commands.append((t, label))
        self.changes += 1

    def srq(self, t: float, stb: int) -> None:
        self.srqs.append((t, stb))
        self.observe(t, stb)

    def error(self, t: float, text: str) -> None:
        self.errors.append((t, text))
        self.changes += 1

    def segments(self, start: float, end: float) -> list[tuple[float, float, int]]:
        """(from, to, status byte) for each stretch of one value between ``start`` and ``end``.

        The last value lasts until it was last observed (``last_seen``), not until now: when
        nobody reads the status byte, the strip shows nothing rather than a guess.
        """
        samples = list(self.samples)
        unread = [(a, b) for a, b in self.unread if b > start and a < end]
        out = []
        for i, (t, value) in enumerate(samples):
            t_next = samples[i + 1][0] if i + 1 < len(samples) else self.last_seen
            t0, t1 = max(t, start), min(t_next, end)
            if t1 < t0:
                continue
            # Cut out the time nobody read the byte: unread time is blank, not the old value.
            cut = False
            for a, b in unread:
                if a < t1 and b > t0:
                    if a > t0:
                        out.append((t0, a, value))
                    t0, cut = max(t0, b), True
            if t1 > t0 or (t1 == t0 and not cut):  # a single read is a point; what a gap leaves is not
                out.append((t0, t1, value))
        return out


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


class DeviceRegisterBox(QGroupBox):
    """A device-specific register from the profile: read it, see its named bits."""

    read_requested = Signal(str)  # the register's name

    def __init__(self, register: DeviceRegister, parent: QWidget | None = None) -> None:
        super().__init__(register.name, parent)
        self.setObjectName(f"deviceRegister_{register.name}")
        self.register = register
        self.value: int | None = None
        self.read_button = QPushButton(f"Read {register.query}", self)
        self.read_button.setToolTip(f"Send {register.query} and decode the answer. {register.clears}".strip())
        self.read_button.clicked.connect(lambda: self.read_requested.emit(register.name))
        self.value_label = QLabel("not read yet", self)
        self.value_label.setObjectName("deviceRegisterValue")
        self.value_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        note = QLabel(register.clears, self)
        note.setWordWrap(True)
        note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        top = QHBoxLayout()
        top.addWidget(self.read_button)
        top.addWidget(self.value_label, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        if register.clears:
            layout.addWidget(note)
        self.cells: dict[int, BitCell] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(4)
        grid.setVerticalSpacing(4)
        row = 0
        groups = register.groups or ()
        spans = [(g.name, [b for b in sorted(register.bits) if g.covers(b)]) for g in groups]
        grouped = {b for _, bits in spans for b in bits}
        rest = [b for b in sorted(register.bits) if b not in grouped]
        if rest:
            spans.append(("", rest))
        kinds = {"events": "info", "latched": "error", "state": "state"}
        for group, bits in spans:
            if not bits:
                continue
            if group:
                label = QLabel(group, self)
                label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
                grid.addWidget(label, row, 0)
            # The cells flow: as many to a row as the width allows, so no bit is cut off.
            cells = QWidget(self)
            flow = FlowLayout(cells, spacing=4)
            for bit in bits:
                name, description = register.bits[bit]
                cell = BitCell(bit, name, description, kinds.get(group, "data"), parent=cells)
                cell.setObjectName(f"{register.name}bit{bit}")
                cell.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
                self.cells[bit] = cell
                flow.addWidget(cell)
            grid.addWidget(cells, row, 1)
            row += 1
        layout.addLayout(grid)

    def set_value(self, value: int, how: str) -> None:
        self.value = value
        digits = (self.register.width + 3) // 4
        named = [name for _, name, _ in self.register.decode(value)]
        unnamed = self.register.unnamed_bits(value)
        text = f"#H{value:0{digits}X} · {value}  ({how} · {format_time(time.time())[:8]})"
        if unnamed:
            text += f"; unnamed bits set: {', '.join(map(str, unnamed))}"
        self.value_label.setText(text)
        self.value_label.setToolTip(", ".join(named) or "no named bits set")
        for bit, cell in self.cells.items():
            cell.set_value(bool(value >> bit & 1))


def register_for_query(profile: DeviceProfile, command) -> str | None:
    """Which register a query reads: "STB", "ESR", "ESE", "SRE", a device register's name, or None."""
    if not isinstance(command, Query):
        return None
    text = command.data.decode("ascii", errors="replace").strip().upper()
    if ";" in text:
        return None
    fixed = {"*STB?": "STB", "*ESR?": "ESR", profile.ese_query.upper(): "ESE"}
    if profile.sre_query:
        fixed[profile.sre_query.upper()] = "SRE"
    if text in fixed:
        return fixed[text]
    register = profile.register_for_query(text)
    return register.name if register is not None else None


class StatusView(QWidget):
    """The status registers of one instrument session (a panel of its tab).

    What the view knows (register values, the history) is kept from the moment the tab
    opens; its widgets are built the first time it is shown.
    """

    register_changed = Signal(str, int)  # register name, value (after every read or SRQ)

    def __init__(self, session, console, settings, *, monitor=None, center=None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusView")
        self.session = session
        self.console = console
        self.settings = settings
        self.monitor = monitor
        self.center = center
        self.resource = session.resource
        self.profile: DeviceProfile = profile_for_idn(console.idn) if console.idn else GENERIC
        self.state: dict[str, RegisterState] = {name: RegisterState() for name in ("STB", "ESR", "ESE", "SRE")}
        self.device_values: dict[str, tuple[int, str]] = {}  # device register -> (value, how it was read)
        self.history = StatusHistory()
        self.poll_ms = self.settings.instrument_value(self.resource, "stb_poll_ms", DEFAULT_POLL_MS, int)
        if self.poll_ms not in dict(POLL_CHOICES_MS):
            self.poll_ms = DEFAULT_POLL_MS
        self.built = False
        self._own: dict[int, str] = {}  # command id -> what this view asked for ("read ESE", "write SRE"...)
        self._labels: dict[int, str] = {}  # command id -> label, for "read by the error check after ..."
        self._enables_stale = True
        self._polling_ms = -1  # what the worker was last told
        self._live_wanted: set[str] = set()  # other panels showing the live status byte
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        session.event.connect(self._on_event)
        session.state_changed.connect(self._on_session_state)  # a bound slot: disconnected when the view goes
        if monitor is not None:
            monitor.counted.connect(self._on_srq_count)

    # --- layout (built on first show) ---

    def build(self) -> None:
        if self.built:
            return
        self.built = True
        inner = QWidget(self)
        self.inner = inner
        poll_row = QHBoxLayout()
        poll_row.addWidget(QLabel("Live status byte (READ_STATUS_BYTE)", inner))
        self.poll_combo = QComboBox(inner)
        self.poll_combo.setObjectName("stbPollCombo")
        for ms, label in POLL_CHOICES_MS:
            self.poll_combo.addItem(label, ms)
        self.poll_combo.setCurrentIndex(max(0, self.poll_combo.findData(self.poll_ms)))
        self.poll_combo.setToolTip(
            "How often the worker reads the status byte while the session is idle and this view is shown. "
            "READ_STATUS_BYTE leaves the output queue alone, unlike *STB?, and never interrupts a transfer."
        )
        self.poll_combo.currentIndexChanged.connect(lambda _i: self.set_poll_interval(self.poll_combo.currentData()))
        poll_row.addWidget(self.poll_combo)
        self.poll_note = QLabel("", inner)
        self.poll_note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.poll_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        poll_row.addWidget(self.poll_note, 1)
        self.cls_button = QPushButton("*CLS", inner)
        self.cls_button.setToolTip("Clear the event status register (and a pending service request)")
        self.cls_button.clicked.connect(lambda: self._send("*CLS", "send", "clear status"))
        poll_row.addWidget(self.cls_button)

        grid = QGridLayout()
        grid.setHorizontalSpacing(2)  # the IEEE 488.2 names (RQS/MSS, RQC/RTL) fit 1024x700 with it
        grid.setVerticalSpacing(6)
        grid.setColumnStretch(10, 1)
        self.rows = {
            "STB": RegisterRow(grid, 0, "STB", "status byte", inner),
            "ESR": RegisterRow(grid, 1, "ESR", "event status", inner),
            "ESE": RegisterRow(grid, 2, "ESE", "event enable", inner, editable=True),
            "SRE": RegisterRow(grid, 3, "SRE", "service enable", inner, editable=True),
        }
        self.read_stb_button = QPushButton("Read", inner)
        self.read_stb_button.setToolTip("Read the status byte now (USB488 READ_STATUS_BYTE)")
        self.read_stb_button.clicked.connect(lambda: self.console.control("read_stb"))
        self.rows["STB"].actions.addWidget(self.read_stb_button)
        self.read_esr_button = QPushButton("Read (clears it)", inner)
        self.read_esr_button.setObjectName("readEsrButton")
        self.read_esr_button.setToolTip("Send *ESR?. Reading the event status register clears it on the device.")
        self.read_esr_button.clicked.connect(self.read_esr)
        self.rows["ESR"].actions.addWidget(self.read_esr_button)
        self.read_back_buttons: dict[str, QPushButton] = {}
        for name in ("ESE", "SRE"):
            button = QPushButton("Read back", inner)
            button.setToolTip(f"Read {name} from the device")
            button.clicked.connect(lambda _=False, n=name: self.read_enable(n))
            self.rows[name].actions.addWidget(button)
            self.read_back_buttons[name] = button
            for bit, cell in self.rows[name].cells.items():
                cell.clicked.connect(lambda _=False, n=name, b=bit: self.toggle_bit(n, b))
        self.esr_note = QLabel("Reading ESR clears it on the device. The value shown was read by this view, "
                               "the console's error check, an SRQ follow-up or a typed *ESR?.", inner)
        self.esr_note.setWordWrap(True)
        self.esr_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        srq_bar = QWidget(inner)
        srq_row = FlowLayout(srq_bar)  # wraps in a narrow window
        srq_row.addWidget(QLabel("<b>Service requests</b>", inner))
        self.notify_box = QCheckBox("Notify", inner)
        self.notify_box.setObjectName("srqNotifyBox")
        self.notify_box.setToolTip("Show a desktop notification (or a notice in the window) for each service request")
        self.follow_box = QCheckBox("Follow up: read *ESR? (clears it) and the error queue", inner)
        self.follow_box.setObjectName("srqFollowBox")
        self.follow_box.setToolTip("After a service request, find out what raised it. Several at once are followed up once.")
        if self.center is not None:
            self.notify_box.setChecked(self.center.notify)
            self.notify_box.toggled.connect(lambda on: setattr(self.center, "notify", on))
        else:
            self.notify_box.setEnabled(False)
        if self.monitor is not None:
            self.follow_box.setChecked(self.monitor.follow_up)
            self.follow_box.toggled.connect(lambda on: setattr(self.monitor, "follow_up", on))
        else:
            self.follow_box.setEnabled(False)
        self.srq_count = QLabel("", inner)
        self.srq_count.setObjectName("srqCount")
        srq_row.addWidget(self.notify_box)
        srq_row.addWidget(self.follow_box)
        srq_row.addWidget(self.srq_count)

        self.strip = HistoryStrip(self.history, inner)
        legend = QLabel("┆ command sent    ▲ service request    ✕ error bits read from ESR    "
                        "(hover a mark for details)", inner)
        legend.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        legend.setWordWrap(True)

        self.device_box = QVBoxLayout()
        self.device_boxes: dict[str, DeviceRegisterBox] = {}

        layout = QVBoxLayout(inner)
        layout.addLayout(poll_row)
        layout.addLayout(grid)
        layout.addWidget(self.esr_note)
        layout.addWidget(srq_bar)
        layout.addWidget(self.strip, 1)
        layout.addWidget(legend)
        layout.addLayout(self.device_box)

        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(inner)
        self._layout.addWidget(self.scroll)
        self._apply_profile()
        self._on_srq_count(self.monitor.total if self.monitor is not None else 0)

    # --- profile ---

    def set_profile(self, profile: DeviceProfile) -> None:
        self.profile = profile
        if not profile.sre_command:
            self.state["SRE"].unreadable = "the device has no service request enable register"
        self._apply_profile()
        if self.isVisible():
            self._refresh_enables()

    def _apply_profile(self) -> None:
        if not self.built:
            return
        profile = self.profile
        self.rows["STB"].set_names(profile.stb_bits, "STB")
        self.rows["ESR"].set_names(profile.esr_bits, "ESR")
        self.rows["ESE"].set_names(profile.esr_bits, "ESE")
        self.rows["SRE"].set_names(profile.stb_bits, "SRE")
        sre6 = self.rows["SRE"].cells[6]
        sre6.editable = False
        sre6.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        sre6.unsetCursor()
        sre6.kind = "unused"
        sre6.set_name(sre6.text(), "Bit 6 of SRE is ignored (IEEE 488.2 11.3.2.3): "
                                   "the summary bit cannot itself request service")
        self.strip.set_lanes(profile.stb_bits)
        for box in self.device_boxes.values():
            box.setParent(None)
            box.deleteLater()
        self.device_boxes.clear()
        for register in profile.registers:
            box = DeviceRegisterBox(register, self.inner)
            box.read_requested.connect(self.read_device_register)
            self.device_box.addWidget(box)
            self.device_boxes[register.name] = box
            if register.name in self.device_values:
                box.set_value(*self.device_values[register.name])
        for name, row in self.rows.items():
            row.show(self.state[name])
        self._update_enabled()

    # --- visibility and polling ---

    def showEvent(self, event) -> None:
        self.build()
        super().showEvent(event)
        self._apply_polling()
        if self._enables_stale:
            self._refresh_enables()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self._apply_polling()

    @Slot(str)
    def _on_session_state(self, _state: str) -> None:
        self._apply_polling()

    def want_live(self, who: str, on: bool) -> None:
        """Another panel shows the live status byte (``on``) or stopped showing it."""
        if on:
            self._live_wanted.add(who)
        else:
            self._live_wanted.discard(who)
        self._apply_polling()

    def set_poll_interval(self, interval_ms: int) -> None:
        """How often the live status byte is read (0: not at all); remembered per instrument."""
        self.poll_ms = int(interval_ms or 0)
        self.settings.set_instrument_value(self.resource, "stb_poll_ms", self.poll_ms)
        self._apply_polling()

    def _usb488(self) -> bool:
        info = self.session.info
        return info is not None and (info.protocol == "USB488" or getattr(info, "reads_stb", False))  # LAN: app.lan

    def _apply_polling(self) -> None:
        """Tell the worker to poll the status byte while someone shows it, and not otherwise."""
        self._update_enabled()
        if not self.session.is_open and self.session.state != "opening":
            self._polling_ms = -1
            return
        shown = self.isVisible() or bool(self._live_wanted)
        wanted = self.poll_ms if shown and self._usb488() else 0
        if wanted != self._polling_ms:
            if self.session.submit(SetIdlePolling(stb_interval_ms=wanted), origin="status-poll"):
                self._polling_ms = wanted

    def _update_enabled(self) -> None:
        if not self.built:
            return
        is_open = self.session.is_open
        usb488 = self._usb488()
        self.read_stb_button.setEnabled(is_open and usb488)
        self.poll_combo.setEnabled(usb488 or self.session.info is None)
        if self.session.info is not None and not usb488:
            self.poll_note.setText("needs a USB488 interface; this one is USBTMC only")
        elif not is_open:
            self.poll_note.setText("the session is not open")
        elif self.poll_ms:
            self.poll_note.setText("while idle and shown")
        else:
            self.poll_note.setText("")
        for widget in (self.read_esr_button, self.read_back_buttons["ESE"], self.cls_button):
            widget.setEnabled(is_open)
        self.read_back_buttons["SRE"].setEnabled(is_open and bool(self.profile.sre_command))
        for name in ("ESE", "SRE"):
            for cell in self.rows[name].cells.values():
                cell.setEnabled(is_open and not (name == "SRE" and not self.profile.sre_command))
        for box in self.device_boxes.values():
            box.read_button.setEnabled(is_open)

    # --- actions ---

    def _send(self, text: str, mode: str, what: str) -> int:
        cid = self.console.submit_line(text, mode, origin="action", tag=PANEL_TAG, check=False, remember=False)
        if cid:
            self._own[cid] = what
        return cid

    def read_esr(self) -> int:
        """Send ``*ESR?`` (which clears ESR on the device); the reply updates the ESR row."""
        return self._send("*ESR?", "query", "read ESR")

    def read_enable(self, name: str) -> int:
        query = self.profile.ese_query if name == "ESE" else self.profile.sre_query
        if not query or self.state[name].unreadable:
            return 0
        return self._send(query, "query", f"read {name}")

    def _refresh_enables(self) -> None:
        if not self.session.is_open or self.console.idn is None:
            return
        self._enables_stale = False
        for name in ("ESE", "SRE"):
            self.read_enable(name)

    def toggle_bit(self, name: str, bit: int) -> int:
        """Flip one bit of ESE or SRE on the device: ``*ESE n`` / ``*SRE n``, then read it back."""
        state = self.state[name]
        if name == "SRE" and (bit == 6 or not self.profile.sre_command):
            return 0
        current = state.pending if state.pending is not None else (state.value or 0)
        return self.write_enable(name, current ^ (1 << bit))

    def write_enable(self, name: str, value: int) -> int:
        command = "*ESE" if name == "ESE" else self.profile.sre_command
        if not command:
            return 0
        value &= 0xFF if name == "ESE" else 0xBF
        cid = self._send(f"{command} {value}", "send", f"write {name}")
        if not cid:
            return 0
        state = self.state[name]
        state.pending = value
        self._show_row(name)
        if state.unreadable:
            self._set(name, value, "written (not read back)")
        else:
            self.read_enable(name)
        return cid

    def read_device_register(self, name: str) -> int:
        register = self.profile.register(name)
        return self._send(register.query, "query", f"read {name}") if register is not None else 0

    # --- events ---

    def _show_row(self, name: str) -> None:
        if self.built:
            self.rows[name].show(self.state[name])

    def _set(self, name: str, value: int, how: str) -> None:
        state = self.state[name]
        state.value = value
        state.at = time.time()
        state.how = how
        state.pending = None
        self._show_row(name)
        self.register_changed.emit(name, value)

    @Slot(object)
    def _on_event(self, event) -> None:
        record = self.session.record(event.command_id)
        origin = record.origin if record is not None else ""
        if isinstance(event, Started) and record is not None:
            self._labels[event.command_id] = record.command.describe()
            if len(self._labels) > 256:
                self._labels.pop(next(iter(self._labels)))
        elif isinstance(event, StatusByte):
            self._set("STB", event.value, "polled" if event.polled else "READ_STATUS_BYTE")
            self.history.observe(event.at, event.value)
        elif isinstance(event, Srq):
            self._set("STB", event.status_byte, "from a service request")
            self.history.srq(event.at, event.status_byte)
        elif isinstance(event, Sent) and record is not None:
            if not is_background(origin):
                self.history.command(event.at, record.command.describe())
            if isinstance(record.command, Write) and event.command_id not in self._own:
                self._note_enable_write(record.command)
        elif isinstance(event, Reply) and record is not None:
            self._on_reply(event, record)
        elif isinstance(event, ErrorReport) and event.esr is not None:
            after = self._labels.get(event.after, "")
            how = "SRQ follow-up" if origin == "srq" else (f"error check after {after}" if after else "error check")
            self._set("ESR", event.esr, how)
            self._note_errors(event.at, event.esr)
        elif isinstance(event, Failed) and event.command_id in self._own:
            self._on_failed(event, self._own.pop(event.command_id))
        elif isinstance(event, Finished):
            self._own.pop(event.command_id, None)
        elif isinstance(event, Opened):
            self._enables_stale = True
            self._polling_ms = -1
            self.state["ESE"].unreadable = ""
            if self.profile.sre_command:
                self.state["SRE"].unreadable = ""
            self._apply_polling()
            if self.isVisible():
                self._refresh_enables()
        elif isinstance(event, Closed):
            self._polling_ms = -1
            self._update_enabled()

    def _on_failed(self, event: Failed, what: str) -> None:
        name = what[5:] if what.startswith("read ") else ""
        if name not in ("ESE", "SRE") or event.kind != "timeout":
            return
        query = self.profile.ese_query if name == "ESE" else self.profile.sre_query
        state = self.state[name]
        state.unreadable = f"the device does not answer {query}"
        if state.pending is not None:
            self._set(name, state.pending, "written (not read back)")
        else:
            self._show_row(name)

    def _on_reply(self, event: Reply, record) -> None:
        self._own.pop(event.command_id, None)
        name = register_for_query(self.profile, record.command)
        if name is None:
            return
        try:
            value = ieee488.parse_register_value(event.data.decode("ascii", errors="replace"))
        except ValueError:
            return  # not a number: nothing to show
        how = record.command.describe()
        if name in ("STB", "ESR", "ESE", "SRE"):
            self._set(name, value, how)
            if name == "STB":
                self.history.observe(event.at, value)
            elif name == "ESR":
                self._note_errors(event.at, value)
            return
        self.device_values[name] = (value, how)
        if self.built and name in self.device_boxes:
            self.device_boxes[name].set_value(value, how)
        self.register_changed.emit(name, value)

    def _note_errors(self, t: float, esr: int) -> None:
        if esr & ESR_ERROR_BITS:
            names = ieee488.set_bit_names(esr & ESR_ERROR_BITS, self.profile.esr_bits)
            self.history.error(t, f"ESR #H{esr:02X}: {', '.join(names)}")

    def _note_enable_write(self, command: Write) -> None:
        """``*ESE n`` or ``*SRE n`` sent from elsewhere (the console, a script): read the register back."""
        text = command.data.decode("ascii", errors="replace")
        for unit in ieee488.split_compound(text):
            match = _ENABLE_WRITE.match(unit)
            if not match:
                continue
            name = "ESE" if match.group(1).upper() == "*ESE" else "SRE"
            try:  # our own line, not the device's word: shown until the device is asked
                value = ieee488.parse_register_value(match.group(2))
            except ValueError:
                value = None
            if value is not None and 0 <= value <= 255:  # else the device refuses it (EXE)
                self._set(name, value & (0xFF if name == "ESE" else 0xBF), f"written by {command.describe()}")
            if self.isVisible():
                self.read_enable(name)
            else:
                self._enables_stale = True

    @Slot(int)
    def _on_srq_count(self, total: int) -> None:
        if self.built:
            self.srq_count.setText(f"{total} so far" if total else "none so far")

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self.built:
            for row in self.rows.values():
                for cell in row.cells.values():
                    cell.update()
