"""The SAM7 counter demo panel: the board's command set on buttons, its count, LEDs and SW1.

Shown for instruments whose ``*IDN?`` matches the SAM7 entry of the instrument table
(``app/instruments/instruments.toml``, which also holds the board's limits and the demo
script), real or virtual. Everything it sends goes through the session worker like the console's
lines; what the user asks for appears in the transcript (tagged "SAM7 panel"), the polling of
the count does not. For the virtual board (reached through the virtual bus) it also shows the
board's front (:mod:`app.ui.board_view`) and a pulse-train source on SW1's input that shows
the firmware's 30 ms glitch filter at work.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from PySide6.QtCore import QEvent, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QBoxLayout,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.session import Origin
from app.session.device_profile import DeviceProfile, shipped_profiles
from app.session.events import Failed, Finished, Query, Reply
from app.sim.pulse_train import PulsePlan
from app.usbtmc import ieee488

from .bit_cells import BitCell, bit_kind, set_text
from .board_view import BoardView
from .theme import colors

PANEL_TAG = "SAM7 panel"
POLL_CHOICES = [(0, "Off"), (1000, "1 per second"), (500, "2 per second"), (200, "5 per second"), (100, "10 per second")]
DEFAULT_POLL_MS = 200
# The firmware's limits and the demo script are the SAM7's entry in the instrument table
# (app/instruments/instruments.toml); the panel is offered only for an instrument that entry
# matched, so without it there is nothing to show.
_SAM7 = next((p for p in shipped_profiles() if p.panel == "sam7"), DeviceProfile("sam7", "SAM7 counter"))
COUNT_MAX = _SAM7.limits.get("count_max", 0)  # COUNT:READ? stops here and sets the overflow flag
PARAM_MIN = _SAM7.limits.get("param_min", 0)  # PARAM:SET takes two whole numbers in this range
PARAM_MAX = _SAM7.limits.get("param_max", 0)
FILTER_MS = float(_SAM7.limits.get("glitch_filter_ms", 0))  # SW1's input counts a level held this long
DEMO = _SAM7.demo
_INTEGER = re.compile(r"[+-]?\d+")


def check_param(text: str, label: str) -> tuple[int | None, str]:
    """(value, "") for a valid PARAM:SET field, else (None, why) in words."""
    body = text.strip()
    if not body:
        return None, f"{label} is empty"
    if not _INTEGER.fullmatch(body):
        return None, f"{label} must be a whole number; {body!r} is not"
    value = int(body)
    if not PARAM_MIN <= value <= PARAM_MAX:
        return None, f"{label} must be from {PARAM_MIN:,} to {PARAM_MAX:,}; {value:,} is out of range"
    return value, ""


# --- the pulse-train source (virtual board only) ---------------------------------------------


class PulseSource(QWidget):
    """Rate, pulse width and glitches for SW1's input; sent versus counted."""

    running_changed = Signal(bool)

    def __init__(self, board: Callable[[], object | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pulseSource")
        self._board = board
        self.plan: PulsePlan | None = None
        self.count_at_start = 0
        self.last_edge_s = 0.0
        self.rate = QDoubleSpinBox(self)
        self.rate.setObjectName("pulseRate")
        self.rate.setRange(0.5, 50.0)
        self.rate.setDecimals(1)
        self.rate.setSuffix(" Hz")
        self.rate.setValue(5.0)
        self.low = QSpinBox(self)
        self.low.setObjectName("pulseLow")
        self.low.setRange(1, 1000)
        self.low.setSuffix(" ms")
        self.low.setValue(60)
        self.low.setToolTip("How long each pulse holds the input low; under 30 ms the firmware ignores it")
        self.glitch = QCheckBox("5 ms glitch in each pulse's high phase", self)
        self.glitch.setObjectName("pulseGlitch")
        self.glitch.setToolTip("A short low blip between pulses: the 30 ms filter should ignore it")
        self.start_button = QPushButton("Start", self)
        self.start_button.setObjectName("pulseStart")
        self.start_button.clicked.connect(self.toggle)
        self.sent_label = QLabel("not running", self)
        self.sent_label.setObjectName("pulseSent")
        self.sent_label.setWordWrap(True)
        self.problem_label = QLabel("", self)
        self.problem_label.setWordWrap(True)
        explain = QLabel(
            f"The firmware takes a level only after it has held for {FILTER_MS:.0f} ms, so shorter pulses "
            "and glitches are not counted. Try 20 ms pulses, or 25 Hz.", self)
        explain.setWordWrap(True)
        explain.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(QLabel("Rate", self), 0, 0)
        grid.addWidget(self.rate, 0, 1)
        grid.addWidget(QLabel("Low for", self), 0, 2)
        grid.addWidget(self.low, 0, 3)
        grid.addWidget(self.start_button, 0, 4)
        grid.addWidget(self.glitch, 1, 0, 1, 6)
        grid.addWidget(self.sent_label, 2, 0, 1, 6)
        grid.addWidget(self.problem_label, 3, 0, 1, 6)
        grid.addWidget(explain, 4, 0, 1, 6)
        grid.setColumnStretch(5, 1)
        self.problem_label.hide()
        self.timer = QTimer(self)
        self.timer.setInterval(50)
        self.timer.timeout.connect(self.tick)

    @property
    def running(self) -> bool:
        return self.plan is not None and self.timer.isActive()

    def toggle(self) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def start(self) -> bool:
        board = self._board()
        if board is None:
            self._problem("the board is not on the virtual bus")
            return False
        try:
            self.plan = PulsePlan(self.rate.value(), self.low.value(), 5.0 if self.glitch.isChecked() else 0.0)
        except ValueError as exc:
            self._problem(str(exc))
            return False
        high_ms = 1000 / self.plan.rate_hz - self.plan.low_ms
        if self.plan.glitch_ms and high_ms < 2 * FILTER_MS + self.plan.glitch_ms:
            self._problem(f"With {high_ms:.0f} ms high phases, the input around a glitch never stays high for "
                          f"{FILTER_MS:.0f} ms, so pulses merge and fewer are counted.", warning=True)
        else:
            self._problem("")
        self.count_at_start = board.count
        self.timer.start()
        for widget in (self.rate, self.low, self.glitch):
            widget.setEnabled(False)
        self.start_button.setText("Stop")
        self.running_changed.emit(True)
        self.tick()
        return True

    def stop(self) -> None:
        self.timer.stop()
        for widget in (self.rate, self.low, self.glitch):
            widget.setEnabled(True)
        self.start_button.setText("Start")
        self.running_changed.emit(False)
        self.update_label()

    def hideEvent(self, event) -> None:
        if self.running:
            self.stop()
        super().hideEvent(event)

    @Slot()
    def tick(self) -> None:
        board = self._board()
        if board is None or self.plan is None:
            self.stop()
            return
        now = board.clock.now()
        # A little margin: the device's filter may have settled up to "now" by the time we feed.
        edges = self.plan.schedule(now, max(now + 0.02, self.last_edge_s))
        if edges:
            try:
                board.feed_edges(edges)
            except ValueError as exc:
                self._problem(str(exc))
                self.stop()
                return
            self.last_edge_s = edges[-1][0]
        self.update_label()

    def update_label(self) -> None:
        board = self._board()
        if self.plan is None or board is None:
            return
        pulses, glitches = self.plan.sent(board.clock.now())
        counted = board.count - self.count_at_start
        text = f"sent {pulses} pulses"
        if glitches:
            text += f" ({glitches} with a glitch)"
        text += f" · counted {counted} · filtered out {max(0, pulses - counted)}"
        self.sent_label.setText(text)

    def _problem(self, text: str, *, warning: bool = False) -> None:
        c = colors(self.palette())
        self.problem_label.setText(f"<span style='color:{c.warning if warning else c.error}'>{text}</span>"
                                   if text else "")
        self.problem_label.setVisible(bool(text))


# --- the panel -------------------------------------------------------------------------------------


def _group(title: str, parent: QWidget) -> tuple[QGroupBox, QVBoxLayout]:
    box = QGroupBox(title, parent)
    layout = QVBoxLayout(box)
    return box, layout


class Sam7Panel(QWidget):
    """Demo panel for the SAM7 counter board."""

    count_changed = Signal(int)
    demo_finished = Signal(bool)  # True when every step ran

    def __init__(self, session, console, settings, profile: DeviceProfile, *, status_view=None,
                 monitor=None, board: Callable[[], object | None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sam7Panel")
        self.session = session
        self.console = console
        self.settings = settings
        self.profile = profile
        self.status_view = status_view
        self.monitor = monitor
        self._board = board
        self.resource = session.resource
        self.count: int | None = None
        self.overflow = False
        self.indicator: str | None = None
        self._poll_ids: dict[int, str] = {}  # command id -> what it reads
        self._user_ids: dict[int, str] = {}
        self._demo_index = -1
        self._demo_waiting = 0
        self.demo_step_ms = 900
        self.params_text = self.busy_text = self.flags_text = ""
        self.registers: dict[str, int] = {}
        self.built = False
        self.board_view = self.pulse_source = None
        self.poll_ms = self.settings.instrument_value(self.resource, "sam7_poll_ms", DEFAULT_POLL_MS, int)
        if self.poll_ms not in dict(POLL_CHOICES):
            self.poll_ms = DEFAULT_POLL_MS
        self.poll_timer = QTimer(self)
        self.poll_timer.timeout.connect(self.poll)
        self.demo_timer = QTimer(self)
        self.demo_timer.setSingleShot(True)
        self.demo_timer.timeout.connect(self._demo_next)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        session.listen(self._on_event)
        session.state_changed.connect(self._on_session_state)  # a bound slot: disconnected when the panel goes
        if status_view is not None:
            status_view.register_changed.connect(self._on_register)

    @property
    def virtual(self) -> bool:
        return self._board is not None

    def board(self):
        return self._board() if self._board is not None else None

    # --- layout (built on first show) ---

    def build(self) -> None:
        if self.built:
            return
        self.built = True
        inner = QWidget(self)
        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

        count_box, count_layout = _group("Count (SW1 hits)", inner)
        self.count_label = QLabel("—", count_box)
        self.count_label.setObjectName("sam7Count")
        big = QFont(fixed)
        big.setPointSizeF(max(big.pointSizeF(), 9.0) * 4)
        big.setBold(True)
        self.count_label.setFont(big)
        self.count_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.count_label.setMinimumWidth(self.count_label.fontMetrics().horizontalAdvance("30,000") + 12)
        of = QLabel(f"of {COUNT_MAX:,}", count_box)
        of.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        count_row = QHBoxLayout()
        count_row.addWidget(self.count_label, 1)
        count_row.addWidget(of, 0, Qt.AlignmentFlag.AlignBottom)
        self.overflow_label = QLabel("", count_box)
        self.overflow_label.setObjectName("sam7Overflow")
        self.overflow_label.setWordWrap(True)
        self.reset_button = QPushButton("COUNT:RESET", count_box)
        self.reset_button.setToolTip("Reset the count to 0 and clear the overflow flag")
        self.reset_button.clicked.connect(lambda: self._user("COUNT:RESET", "send", "reset"))
        self.read_button = QPushButton("Read now", count_box)
        self.read_button.setToolTip("COUNT:READ? now")
        self.read_button.clicked.connect(self.poll)
        self.poll_combo = QComboBox(count_box)
        self.poll_combo.setObjectName("sam7PollCombo")
        for ms, label in POLL_CHOICES:
            self.poll_combo.addItem(label, ms)
        self.poll_combo.setCurrentIndex(max(0, self.poll_combo.findData(self.poll_ms)))
        self.poll_combo.setToolTip("How often COUNT:READ? and INDICATOR? are sent while this panel is shown "
                                   "(not shown in the transcript)")
        self.poll_combo.currentIndexChanged.connect(self._poll_changed)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reset_button)
        buttons.addWidget(self.read_button)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Poll", count_box))
        buttons.addWidget(self.poll_combo)
        count_layout.addLayout(count_row)
        count_layout.addWidget(self.overflow_label)
        count_layout.addLayout(buttons)

        ready_box, ready_layout = _group("Ready indicator (LED3)", inner)
        self.indicator_label = QLabel("—", ready_box)
        self.indicator_label.setObjectName("sam7Indicator")
        self.on_button = QPushButton("On", ready_box)
        self.on_button.setToolTip("INDICATOR 1")
        self.on_button.clicked.connect(lambda: self._user("INDICATOR 1", "send", "indicator"))
        self.off_button = QPushButton("Off", ready_box)
        self.off_button.setToolTip("INDICATOR 0")
        self.off_button.clicked.connect(lambda: self._user("INDICATOR 0", "send", "indicator"))
        self.pulse_button = QPushButton("Indicator Pulse", ready_box)
        self.pulse_button.setToolTip("USB488 INDICATOR_PULSE: the board toggles Ready for 500 ms")
        self.pulse_button.clicked.connect(self.indicator_pulse)
        row = QHBoxLayout()
        row.addWidget(QLabel("INDICATOR?", ready_box))
        row.addWidget(self.indicator_label, 1)
        row.addWidget(self.on_button)
        row.addWidget(self.off_button)
        row.addWidget(self.pulse_button)
        ready_layout.addLayout(row)

        param_box, param_layout = _group("Parameters (PARAM:SET n1,n2)", inner)
        self.param1 = QLineEdit("0", param_box)
        self.param1.setObjectName("sam7Param1")
        self.param2 = QLineEdit("0", param_box)
        self.param2.setObjectName("sam7Param2")
        for edit in (self.param1, self.param2):
            edit.setMaximumWidth(edit.fontMetrics().horizontalAdvance("-10000000") + 16)
            edit.setToolTip(f"A whole number from {PARAM_MIN:,} to {PARAM_MAX:,}")
            edit.textChanged.connect(self._validate)
            edit.returnPressed.connect(self.set_params)
        self.set_button = QPushButton("PARAM:SET", param_box)
        self.set_button.clicked.connect(self.set_params)
        self.force_button = QPushButton("Send anyway", param_box)
        self.force_button.setObjectName("sam7Force")
        self.force_button.setToolTip("Send the values as typed: the board refuses them with an execution error "
                                     "(EXE), which the status view shows")
        self.force_button.clicked.connect(lambda: self.set_params(force=True))
        self.enq_button = QPushButton("PARAM:ENQ?", param_box)
        self.enq_button.clicked.connect(lambda: self._user("PARAM:ENQ?", "query", "params"))
        self.params_label = QLabel("—", param_box)
        self.params_label.setObjectName("sam7Params")
        self.param_message = QLabel("", param_box)
        self.param_message.setObjectName("sam7ParamMessage")
        self.param_message.setWordWrap(True)
        prow = QHBoxLayout()
        prow.addWidget(QLabel("n1", param_box))
        prow.addWidget(self.param1)
        prow.addWidget(QLabel("n2", param_box))
        prow.addWidget(self.param2)
        prow.addWidget(self.set_button)
        prow.addWidget(self.force_button)
        prow.addStretch(1)
        erow = QHBoxLayout()
        erow.addWidget(self.enq_button)
        erow.addWidget(self.params_label, 1)
        param_layout.addLayout(prow)
        param_layout.addWidget(self.param_message)
        param_layout.addLayout(erow)

        query_box, query_layout = _group("Queries", inner)
        self.busy_button = QPushButton("BUSY?", query_box)
        self.busy_button.clicked.connect(lambda: self._user("BUSY?", "query", "busy"))
        self.busy_label = QLabel("—", query_box)
        self.busy_label.setObjectName("sam7Busy")
        self.flags_button = QPushButton("DEBUG:FLAGS?", query_box)
        self.flags_button.setToolTip("The USBTMC debug flags; reading clears the event bits (0-14)")
        self.flags_button.clicked.connect(lambda: self._user("DEBUG:FLAGS?", "query", "flags"))
        self.flags_label = QLabel("—", query_box)
        self.flags_label.setObjectName("sam7Flags")
        self.flags_label.setWordWrap(True)
        self.flags_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        qgrid = QGridLayout()
        qgrid.addWidget(self.busy_button, 0, 0)
        qgrid.addWidget(self.busy_label, 0, 1)
        qgrid.addWidget(self.flags_button, 1, 0, Qt.AlignmentFlag.AlignTop)
        qgrid.addWidget(self.flags_label, 1, 1)
        qgrid.setColumnStretch(1, 1)
        query_layout.addLayout(qgrid)

        status_box, status_layout = _group("Status at a glance", inner)
        self.mini: dict[str, dict[int, BitCell]] = {}
        sgrid = QGridLayout()
        sgrid.setHorizontalSpacing(3)
        for row_index, (name, bits) in enumerate((("STB", self.profile.stb_bits), ("ESR", self.profile.esr_bits))):
            sgrid.addWidget(QLabel(f"<b>{name}</b>", status_box), row_index, 0)
            cells = {}
            for column, bit in enumerate(range(7, -1, -1), start=1):
                bit_name, description = bits.get(bit, (str(bit), ""))
                cell = BitCell(bit, bit_name, description, bit_kind(name, bit, bit_name), parent=status_box)
                cell.setObjectName(f"sam7{name}bit{bit}")
                cell.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
                cells[bit] = cell
                sgrid.addWidget(cell, row_index, column)
            self.mini[name] = cells
        status_layout.addLayout(sgrid)
        glance = QLabel("From the status view: STB live while this panel is shown, ESR as last read.", status_box)
        glance.setWordWrap(True)
        glance.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        status_layout.addWidget(glance)

        demo_box, demo_layout = _group("Demo", inner)
        self.demo_button = QPushButton("Run the demo script", demo_box)
        self.demo_button.setObjectName("sam7Demo")
        self.demo_button.setToolTip("Walk through the command set, with errors on purpose and *CLS; "
                                    "each step goes to the transcript and the status view follows")
        self.demo_button.clicked.connect(self.toggle_demo)
        self.demo_label = QLabel(f"{len(DEMO)} steps", demo_box)
        self.demo_label.setObjectName("sam7DemoStep")
        self.demo_label.setWordWrap(True)
        drow = QHBoxLayout()
        drow.addWidget(self.demo_button)
        drow.addWidget(self.demo_label, 1)
        demo_layout.addLayout(drow)

        left = QVBoxLayout()
        for box in (count_box, ready_box, param_box, query_box, demo_box):
            left.addWidget(box)
        left.addStretch(1)

        right = QVBoxLayout()
        if self.virtual:
            board_box, board_layout = _group("The virtual board", inner)
            self.board_view = BoardView(self.board, board_box)
            self.board_view.refused.connect(self._board_refused)
            self.board_note = QLabel("Click SW1 to count a hit (hold it for at least 30 ms).", board_box)
            self.board_note.setWordWrap(True)
            self.board_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            board_layout.addWidget(self.board_view)
            board_layout.addWidget(self.board_note)
            source_box, source_layout = _group("Pulse-train source on SW1 (PA19)", inner)
            self.pulse_source = PulseSource(self.board, source_box)
            self.pulse_source.running_changed.connect(self._source_running)
            source_layout.addWidget(self.pulse_source)
            right.addWidget(board_box)
            right.addWidget(source_box)
        else:
            note = QLabel("The board picture and the pulse source are there for the virtual board, which the "
                          "console can reach through the virtual bus. On real hardware, press SW1 on the board.",
                          inner)
            note.setWordWrap(True)
            note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            right.addWidget(note)
        right.addWidget(status_box)
        right.addStretch(1)

        # Two columns when they fit side by side, one above the other when the window is narrow
        # (1024x700, 200 %): the board and its source then follow the controls, never cut off.
        self.columns = QBoxLayout(QBoxLayout.Direction.LeftToRight, inner)
        self.columns.addLayout(left, 1)
        self.columns.addLayout(right, 1)
        self._two_columns_px = left.minimumSize().width() + right.minimumSize().width() + self.columns.spacing() + 24

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(inner)
        scroll.viewport().installEventFilter(self)
        self.scroll = scroll
        self._layout.addWidget(scroll)
        self._refresh()
        self._update_enabled()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        scroll = getattr(self, "scroll", None)
        if scroll is not None and watched is scroll.viewport() and event.type() == QEvent.Type.Resize:
            wide = event.size().width() >= self._two_columns_px
            direction = QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom
            if self.columns.direction() != direction:
                self.columns.setDirection(direction)
        return super().eventFilter(watched, event)

    # --- visibility and polling ---

    def showEvent(self, event) -> None:
        self.build()
        super().showEvent(event)
        self._apply_polling()
        if self.status_view is not None:
            self.status_view.want_live("sam7", True)

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.poll_timer.stop()
        if self.status_view is not None:
            self.status_view.want_live("sam7", False)

    @Slot(int)
    def _poll_changed(self, _index: int) -> None:
        self.set_poll_interval(self.poll_combo.currentData())

    def set_poll_interval(self, interval_ms: int) -> None:
        """How often the count is read while the panel is shown (0: only on request); remembered."""
        self.poll_ms = int(interval_ms or 0)
        self.settings.set_instrument_value(self.resource, "sam7_poll_ms", self.poll_ms)
        self._apply_polling()

    def _apply_polling(self) -> None:
        interval = self.poll_ms
        if interval and self.isVisible() and self.session.is_open:
            self.poll_timer.start(interval)
            self.poll()
        else:
            self.poll_timer.stop()

    @Slot()
    def poll(self) -> None:
        """Read the count and the Ready indicator (and, at 30,000, whether hits were lost)."""
        if self._poll_ids or not self.session.is_open:
            return  # the previous poll is still queued: never pile them up
        reads = [("count", "COUNT:READ?"), ("indicator", "INDICATOR?")]
        if self.count == COUNT_MAX and not self.overflow:
            reads.append(("flags", "DEBUG:FLAGS?"))
        term = self.console.termination() or b"\n"
        for what, text in reads:
            cid = self.session.submit(Query(text.encode("ascii") + term, label=text), origin=Origin.SAM7_POLL)
            if cid:
                self._poll_ids[cid] = what

    def _poll_soon(self, *delays_ms: int) -> None:
        for delay in delays_ms or (0,):
            QTimer.singleShot(delay, self.poll)

    # --- user actions ---

    def _user(self, text: str, mode: str, what: str, *, check: bool = True, tag: str = PANEL_TAG) -> int:
        cid = self.console.submit_line(text, mode, origin=Origin.ACTION, tag=tag, check=check, remember=False)
        if cid:
            self._user_ids[cid] = what
        return cid

    def indicator_pulse(self) -> int:
        cid = self.console.control("indicator_pulse")
        if cid:
            self._user_ids[cid] = "pulse"
        return cid

    def _validate(self) -> bool:
        if not self.built:
            return False
        _first, why1 = check_param(self.param1.text(), "n1")
        _second, why2 = check_param(self.param2.text(), "n2")
        problems = [w for w in (why1, why2) if w]
        c = colors(self.palette())
        if problems:
            self.param_message.setText(f"<span style='color:{c.error}'>{'; '.join(problems)}. "
                                       "The board would refuse this with an execution error (EXE).</span>")
        else:
            self.param_message.setText("")
        self.param_message.setVisible(bool(problems))
        valid = not problems
        is_open = self.session.is_open
        self.set_button.setEnabled(is_open and valid)
        self.force_button.setEnabled(is_open and not valid)
        return valid

    def set_params(self, force: bool = False) -> int:
        """PARAM:SET with the two fields; refused here unless valid or ``force``d."""
        if not self.built or (not self._validate() and not force):
            return 0
        text = f"PARAM:SET {self.param1.text().strip()},{self.param2.text().strip()}"
        cid = self._user(text, "send", "forced" if force else "set")
        if cid and force and self.console.check_method() is None and self.status_view is not None:
            self.status_view.read_esr()  # the console's error check is off: show the EXE anyway
        if cid and not force:
            self._user("PARAM:ENQ?", "query", "params")
        return cid

    def _board_refused(self, why: str) -> None:
        if self.board_view is not None:
            self.board_note.setText(f"SW1: {why}")

    def _source_running(self, running: bool) -> None:
        if self.board_view is not None:
            self.board_view.set_sw1_enabled(not running, "the pulse source drives SW1's input")
            self.board_note.setText("The pulse source drives SW1's input." if running else
                                    "Click SW1 to count a hit (hold it for at least 30 ms).")

    # --- the demo script ---

    @property
    def demo_running(self) -> bool:
        return self._demo_index >= 0

    def toggle_demo(self) -> None:
        if self.demo_running:
            self.stop_demo()
        else:
            self.run_demo()

    def run_demo(self) -> bool:
        if self.demo_running or not self.session.is_open:
            return False
        self._demo_index = 0
        self._demo_waiting = 0
        if self.monitor is not None:
            self.monitor.suspend_follow_up = True  # the demo reads ESR itself, on purpose
        if self.built:
            self.demo_button.setText("Stop the demo")
        self.console.transcript.add("note", f"SAM7 demo: {len(DEMO)} steps; the status view follows them")
        self._demo_next()
        return True

    def stop_demo(self, completed: bool = False) -> None:
        if not self.demo_running:
            return
        self.demo_timer.stop()
        if not completed:
            self.console.transcript.add("warning", f"SAM7 demo stopped at step {self._demo_index}/{len(DEMO)}")
        self._demo_index = -1
        self._demo_waiting = 0
        if self.monitor is not None:
            self.monitor.suspend_follow_up = False
        if self.built:
            self.demo_button.setText("Run the demo script")
            self.demo_label.setText("done: the transcript holds every step" if completed else "stopped")
        self.demo_finished.emit(completed)

    @Slot()
    def _demo_next(self) -> None:
        if not self.demo_running:
            return
        if self._demo_index >= len(DEMO):
            self.console.transcript.add("note", "SAM7 demo: done")
            self.stop_demo(completed=True)
            return
        step = DEMO[self._demo_index]
        self._demo_index += 1
        number = f"{self._demo_index}/{len(DEMO)}"
        if self.built:
            self.demo_label.setText(f"step {number}: {step.explain}")
        self.console.transcript.add("note", f"demo {number}: {step.explain}")
        if step.mode == "control":
            cid = self.console.control(step.text)
        else:
            cid = self._user(step.text, step.mode, step.reads or "demo", check=False, tag=f"demo {number}")
        if not cid:
            self.stop_demo()
            return
        self._demo_waiting = cid
        if step.text.upper().startswith(("COUNT", "INDICATOR", "*RST", "PARAM")) or step.text == "indicator_pulse":
            self._poll_soon(0, 600)

    # --- events ---

    @Slot(object)
    def _on_event(self, event) -> None:
        cid = event.command_id
        if isinstance(event, Reply):
            what = self._poll_ids.get(cid) or self._user_ids.get(cid)
            if what:
                self._on_reply(what, event.data.decode("ascii", errors="replace").strip())
        elif isinstance(event, Failed) and cid in self._poll_ids and self.built:
            self.overflow_label.setText(f"polling: {event.message}")
        elif isinstance(event, Finished):
            self._poll_ids.pop(cid, None)
            what = self._user_ids.pop(cid, None)
            if what == "pulse":
                self._poll_soon(0, 600)  # Ready toggles back after 500 ms
            elif what in ("reset", "indicator", "set", "forced"):
                self._poll_soon(0)
            if self.demo_running and cid == self._demo_waiting:
                self._demo_waiting = 0
                self.demo_timer.start(self.demo_step_ms)

    def _on_reply(self, what: str, text: str) -> None:
        if what == "count" and text.isdigit():
            self.set_count(int(text))
            return
        if what == "indicator" and text in ("ON", "OFF"):
            self.indicator = text
        elif what == "params":
            self.params_text = text.replace(",", ", ")
        elif what == "busy":
            self.busy_text = text
        elif what == "flags":
            self._flags_answer(text)
        self._refresh()

    def set_count(self, count: int) -> None:
        if count < COUNT_MAX:
            self.overflow = False
        if count != self.count:
            self.count = count
            self.count_changed.emit(count)
        self._refresh()

    def _flags_answer(self, text: str) -> None:
        try:
            value = ieee488.parse_register_value(text)
        except ValueError:
            self.flags_text = f"unexpected answer {text!r}"
            return
        register = self.profile.register("DEBUG:FLAGS")
        names = [name for _, name, _ in register.decode(value)] if register is not None else []
        self.flags_text = f"#H{value:08X}: " + (", ".join(names) or "no flags set")
        if value >> 15 & 1:  # COUNT_OVERFLOW: a hit was lost at 30,000
            self.overflow = True

    @Slot(str, int)
    def _on_register(self, name: str, value: int) -> None:
        if name == "DEBUG:FLAGS":
            self._flags_answer(f"#H{value:08X}")
        else:
            self.registers[name] = value
        self._refresh()

    def _refresh(self) -> None:
        """Show what the panel knows (after the widgets are built)."""
        if not self.built:
            return
        c = colors(self.palette())
        set_text(self.count_label, "—" if self.count is None else f"{self.count:,}")
        if self.count == COUNT_MAX:
            lost = (" Hits were lost (DEBUG:FLAGS COUNT_OVERFLOW)." if self.overflow else
                    " Further hits are lost; DEBUG:FLAGS shows whether any were.")
            set_text(self.overflow_label, f"<span style='color:{c.error}'><b>Overflow:</b> the count stops at "
                                          f"{COUNT_MAX:,}.{lost} COUNT:RESET starts again.</span>")
        else:
            set_text(self.overflow_label, "")
        if self.indicator is not None:
            color = c.ok if self.indicator == "ON" else c.muted
            set_text(self.indicator_label, f"<span style='color:{color}'>●</span> {self.indicator}")
        set_text(self.params_label, self.params_text or "—")
        set_text(self.busy_label, self.busy_text or "—")
        set_text(self.flags_label, self.flags_text or "—")
        for name, cells in self.mini.items():
            value = self.registers.get(name)
            for bit, cell in cells.items():
                cell.set_value(value is not None and bool(value >> bit & 1))

    @Slot(str)
    def _on_session_state(self, _state: str) -> None:
        self._update_enabled()

    def _update_enabled(self) -> None:
        is_open = self.session.is_open
        if self.built:
            for widget in (self.reset_button, self.read_button, self.on_button, self.off_button, self.enq_button,
                           self.busy_button, self.flags_button, self.demo_button, self.pulse_button):
                widget.setEnabled(is_open)
            self._validate()
        if is_open:
            self._apply_polling()
        else:
            self.poll_timer.stop()
            self._poll_ids.clear()
            if self.demo_running:
                self.stop_demo()
