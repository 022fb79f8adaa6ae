"""The SCPI console panel of an instrument tab."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QFontDatabase, QFontMetrics, QKeySequence, QPainter, QPalette, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.session import FailureKind, Origin, SessionState, scpi
from app.session.catalog import Profile, profile_for
from app.session.events import (
    CONTROL_LABELS,
    CheckErrors,
    Closed,
    Configure,
    Configured,
    Control,
    Done,
    ErrorReport,
    Failed,
    Learned,
    Finished,
    Opened,
    Query,
    Read,
    Reply,
    Sent,
    Srq,
    Started,
    StatusByte,
    Write,
)
from app.usbtmc import ieee488
from app.usbtmc.errors import SaveError
from app.usbtmc.files import save_text

from .cmdline import CommandLine
from .flow import FittingPlaceholder, FlowLayout
from .rawview import RawViewDialog, save_bytes
from .settings import TERMINATIONS, TIMEOUT_RANGE_MS, Settings
from .transcript import MAX_TEXT_CHARS, Transcript, format_ms

REPLY_TEXT_BYTES = MAX_TEXT_CHARS  # of a reply decoded for the transcript when it arrives
from .worker import Session

# Commands from these origins appear in the transcript; other panels' polling does not.
VISIBLE_ORIGINS = {Origin.CONSOLE, Origin.SCRIPT, Origin.OPEN, Origin.ACTION}

FAILURE_TITLES = {
    FailureKind.TIMEOUT: "timeout",
    FailureKind.GONE: "device gone",
    FailureKind.PROTOCOL: "protocol error",
    FailureKind.NOT_SUPPORTED: "not supported",
    FailureKind.ABORTED: "aborted",
    FailureKind.ACCESS: "no access",
    FailureKind.NOT_FOUND: "not found",
    FailureKind.NO_BACKEND: "no USB access",
    FailureKind.ERROR: "error",
    FailureKind.INTERNAL: "internal error",
}

MAX_LABELS = 2000

CHECK_CHOICES = [("auto", "Auto"), ("syst_err", "SYST:ERR?"), ("esr", "*ESR?"), ("off", "Off")]


@dataclass
class ScriptRun:
    name: str
    lines: list[tuple[int, str]]  # (line number in the file, text)
    index: int = 0
    waiting_for: int = 0  # the id whose Finished moves the script on
    line_ids: set[int] = field(default_factory=set)
    failed: str = ""
    stop_on_error: bool = True


class ElidedLabel(QLabel):
    """A one-line label that ends in "…" when it is too narrow (the full text is the tooltip)."""

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, self.contentsRect().width())
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        painter.drawText(self.contentsRect(), int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft), text)


class HistoryPanel(QWidget):
    """The instrument's command history, newest first, with a filter (Ctrl+R)."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter = QLineEdit(self)
        self.filter.setObjectName("historyFilter")
        self.filter.setClearButtonEnabled(True)
        FittingPlaceholder(self.filter, ["Search history (Ctrl+R)", "Search (Ctrl+R)", "Search"])
        self.list = QListWidget(self)
        self.list.setObjectName("historyList")
        self.list.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.filter.textChanged.connect(self._apply_filter)
        self.filter.returnPressed.connect(self._choose_first_visible)
        self.list.itemActivated.connect(lambda item: self.chosen.emit(item.text()))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("History", self)
        font = title.font()  # not a style sheet: those stop following palette changes
        font.setBold(True)
        title.setFont(font)
        layout.addWidget(title)
        layout.addWidget(self.filter)
        layout.addWidget(self.list, 1)

    def set_lines(self, lines: list[str]) -> None:
        self.list.clear()
        for line in reversed(lines):
            item = QListWidgetItem(line)
            item.setToolTip(line)
            self.list.addItem(item)
        self._apply_filter(self.filter.text())

    def visible_lines(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count()) if not self.list.item(i).isHidden()]

    @Slot(str)
    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().lower())

    @Slot()
    def _choose_first_visible(self) -> None:
        current = self.list.currentItem()
        if current is not None and not current.isHidden():
            self.chosen.emit(current.text())
            return
        lines = self.visible_lines()
        if lines:
            self.chosen.emit(lines[0])


class ConsolePanel(QWidget):
    """Send SCPI to the session's instrument and show what happened."""

    identified = Signal(str)  # the *IDN? answer, once known
    actions_changed = Signal()  # which device actions are available changed

    def __init__(self, session: Session, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("consolePanel")
        self.session = session
        self.settings = settings
        self.resource = session.resource
        self.idn: str | None = None
        self.info = None
        self.profile: Profile = profile_for(None, None)
        self._labels: dict[int, tuple[str, str]] = {}  # command id -> (label, tag)
        self._checks: dict[int, int] = {}  # check id -> id of the command it checks
        self._idn_id = 0
        self._auto_fallback: str | None = None
        self._busy_what = ""
        self._busy_since = 0.0
        self._script: ScriptRun | None = None
        self._last_check = ""
        # False once app.ui.srq watches this session: it writes rate-limited SRQ entries itself.
        self.srq_entries = True
        self._build()
        session.listen(self.handle_event)
        session.state_changed.connect(self._on_state)
        self._on_state(session.state)

    # --- layout ---------------------------------------------------------------

    def _build(self) -> None:
        # The buttons wrap onto a second row in a narrow window rather than hide behind a "››" menu.
        self.toolbar = QWidget(self)
        self.toolbar.setObjectName("consoleToolbar")
        toolbar_layout = FlowLayout(self.toolbar, spacing=2)
        self.actions_by_name: dict[str, QAction] = {}

        def add(name: str, text: str, tip: str, slot) -> QAction:
            action = QAction(text, self)
            action.setToolTip(tip)
            action.setStatusTip(tip)
            action.triggered.connect(slot)
            button = QToolButton(self.toolbar)
            button.setDefaultAction(action)
            button.setAutoRaise(True)
            button.setObjectName(f"console_{name}")
            toolbar_layout.addWidget(button)
            self.actions_by_name[name] = action
            return action

        def separator() -> None:
            line = QFrame(self.toolbar)
            line.setFrameShape(QFrame.Shape.VLine)
            line.setFrameShadow(QFrame.Shadow.Sunken)
            toolbar_layout.addWidget(line)

        add("clear", "Device clear", "USBTMC INITIATE_CLEAR: empty the device's input and output buffers",
            lambda: self.control("clear"))
        add("read_stb", "Read STB", "USB488 READ_STATUS_BYTE control request (leaves the output queue alone, unlike *STB?)",
            lambda: self.control("read_stb"))
        add("trigger", "Trigger", "USB488 TRIGGER message (like GPIB GET)", lambda: self.control("trigger"))
        add("indicator_pulse", "Pulse", "USBTMC INDICATOR_PULSE: blink the instrument's activity light",
            lambda: self.control("indicator_pulse"))
        separator()
        add("remote", "Remote", "USB488 REN_CONTROL: assert Remote Enable", lambda: self.control("remote"))
        add("local", "Local", "USB488 GO_TO_LOCAL: give the front panel back", lambda: self.control("local"))
        add("lockout", "Lockout", "USB488 LOCAL_LOCKOUT: disable the front panel's Local key", lambda: self.control("lockout"))
        spacer = QWidget(self)
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        toolbar_layout.addWidget(spacer)
        add("run_file", "Run file…", "Send each line of a text file, with the error check after each", lambda: self.run_file())
        add("save_transcript", "Save…", "Save the transcript as a text file", lambda: self.save_transcript())
        add("clear_view", "Clear view", "Clear the transcript view (the history stays)", lambda: self.transcript.clear_entries())

        self.transcript = Transcript(self)
        self.transcript.raw_requested.connect(self.show_raw)
        self.transcript.save_requested.connect(self._save_block)
        self.history_panel = HistoryPanel(self)
        self.history_panel.chosen.connect(self._use_history_line)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setObjectName("consoleSplitter")
        self.splitter.addWidget(self.transcript)
        self.splitter.addWidget(self.history_panel)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setCollapsible(0, False)
        # A typical command ("PARAM:SET 1200,-35", "SOUR1:FREQ 1E3") fits the history without
        # scrolling sideways, even where the window is 1024 wide.
        fixed = QFontMetrics(self.history_panel.list.font())
        self.history_panel.setMinimumWidth(fixed.horizontalAdvance("0" * 22) + 2 * self.history_panel.list.frameWidth()
                                           + self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent))

        self.input = CommandLine(self)
        FittingPlaceholder(self.input, [
            r"SCPI command, e.g. *IDN?   (Enter: send, and read if it is a query;  \n \r \xNN escapes)",
            "SCPI command, e.g. *IDN?   (Enter: send, and read if it is a query)",
            "SCPI command, e.g. *IDN?",
            "SCPI command",
        ])
        self.input.submitted.connect(lambda _text, mode: self.submit_line(None, mode))
        self.input.set_history(self.settings.history(self.resource))
        self.history_panel.set_lines(self.input.history())
        self.send_button = QPushButton("Send", self)
        self.send_button.setToolTip("Send the line without reading a reply (Shift+Enter)")
        self.send_button.clicked.connect(lambda: self.submit_line(None, "send"))
        self.query_button = QPushButton("Query", self)
        self.query_button.setToolTip("Send the line and read the reply (Ctrl+Enter)")
        self.query_button.clicked.connect(lambda: self.submit_line(None, "query"))
        self.read_button = QPushButton("Read", self)
        self.read_button.setToolTip("Read one reply")
        self.read_button.clicked.connect(lambda: self.submit_line(None, "read"))
        self.always_read = QCheckBox("Always read", self)
        self.always_read.setToolTip("Read a reply after every line, even when it does not look like a query")
        input_row = QHBoxLayout()
        input_row.addWidget(self.input, 1)
        for widget in (self.send_button, self.query_button, self.read_button, self.always_read):
            input_row.addWidget(widget)

        self.timeout_spin = QSpinBox(self)
        self.timeout_spin.setObjectName("timeoutSpin")
        self.timeout_spin.setRange(*TIMEOUT_RANGE_MS)
        self.timeout_spin.setSingleStep(500)
        self.timeout_spin.setSuffix(" ms")
        self.timeout_spin.setValue(
            self.settings.instrument_int(self.resource, "timeout_ms", self.session.timeout_ms, *TIMEOUT_RANGE_MS,
                                         what=f"timeout (ms) of {self.resource}")
        )
        self.timeout_spin.setToolTip("How long a transfer may take before the session aborts it")
        self.timeout_spin.editingFinished.connect(self._apply_timeout)
        self.termination_combo = QComboBox(self)
        self.termination_combo.setObjectName("terminationCombo")
        for label, value in TERMINATIONS.items():
            self.termination_combo.addItem(label, value)
        stored = self.settings.instrument_value(self.resource, "termination", "\n")
        index = self.termination_combo.findData(stored)
        self.termination_combo.setCurrentIndex(max(0, index))
        self.termination_combo.setToolTip("Added to each line you send (unless it already ends with it), and removed from replies")
        self.termination_combo.currentIndexChanged.connect(self._termination_changed)
        self.term_char_box = QCheckBox("TermChar", self)
        self.term_char_box.setToolTip("Ask the device to end replies at the termination character (USBTMC TermChar)")
        self.term_char_box.setChecked(self.settings.instrument_value(self.resource, "term_char", "false") == "true")
        self.term_char_box.toggled.connect(self._term_char_changed)
        self.check_combo = QComboBox(self)
        self.check_combo.setObjectName("errorCheckCombo")
        for value, label in CHECK_CHOICES:
            self.check_combo.addItem(label, value)
        choice = self.settings.instrument_value(self.resource, "error_check", self.settings.error_check)
        self.check_combo.setCurrentIndex(max(0, self.check_combo.findData(choice)))
        self.check_combo.setToolTip(
            "After each command, ask the instrument for errors: SYST:ERR? drained until 0 (SCPI), "
            "or *ESR? decoded (IEEE 488.2; reading it clears it)"
        )
        self.check_combo.currentIndexChanged.connect(self._check_changed)
        self.state_label = ElidedLabel(self)
        self.state_label.setObjectName("consoleState")
        # Long states must not widen the window: the label gives way and shows the full text as a tooltip.
        self.state_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.abort_button = QPushButton("Abort", self)
        self.abort_button.setToolTip("Abort what is running or queued (takes effect between transfers; Esc)")
        self.abort_button.clicked.connect(self.abort)
        # The session settings wrap onto further rows in a narrow window (1024x700, 200 % scaling)
        # instead of growing the window or hiding behind a "››" menu; each label stays with its box.
        self.settings_bar = QWidget(self)
        self.settings_bar.setObjectName("sessionSettingsBar")
        settings_row = FlowLayout(self.settings_bar, spacing=self.fontMetrics().averageCharWidth() * 2)

        def group(*widgets: QWidget) -> QWidget:
            box = QWidget(self.settings_bar)
            row = QHBoxLayout(box)
            row.setContentsMargins(0, 0, 0, 0)
            for widget in widgets:
                row.addWidget(widget)
            return box

        # Wide enough for the longest choice, "Auto (SYST:ERR?)": it is never cut.
        shown = self.check_combo.itemText(0)
        self.check_combo.setItemText(0, "Auto (SYST:ERR?)")
        self.check_combo.setMinimumWidth(self.check_combo.sizeHint().width())
        self.check_combo.setItemText(0, shown)
        for widget in (group(QLabel("Timeout", self), self.timeout_spin),
                       group(QLabel("Termination", self), self.termination_combo), self.term_char_box,
                       group(QLabel("Error check", self), self.check_combo)):
            settings_row.addWidget(widget)
        # The state takes the rest of its row; "ready · errors reported by the last check" needs
        # about 40 characters, and anything longer is elided with the full text as its tooltip.
        state = group(self.state_label, self.abort_button)
        state.layout().setStretch(0, 1)
        state.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.state_label.setMinimumWidth(self.fontMetrics().averageCharWidth() * 40)
        settings_row.addWidget(state)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(input_row)
        layout.addWidget(self.settings_bar)

        # Ctrl+R and Ctrl+L are the main window's (View menu), which acts on the current console.
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.abort, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

        self._busy_timer = QTimer(self)
        self._busy_timer.setInterval(100)
        self._busy_timer.timeout.connect(self._update_state_label)
        self._restore_splitter()
        self._update_check_label()
        for note in self.settings.take_notes():  # stored values that were replaced by defaults
            self.transcript.add("warning", note)

    def _restore_splitter(self) -> None:
        state = self.settings.state_value("console/splitter", "console layout")
        if state is None:
            return
        default = self.splitter.saveState()
        if not self.splitter.restoreState(state) or any(size < 0 for size in self.splitter.sizes()):
            self.splitter.restoreState(default)
            self.settings.note("console layout", bytes(state.data()).hex(), "is not a usable layout", "the default layout")

    # --- sending --------------------------------------------------------------

    def termination(self) -> bytes:
        return str(self.termination_combo.currentData() or "").encode("ascii")

    def submit_line(self, text: str | None = None, mode: str = "auto", *, origin: str = Origin.CONSOLE, tag: str = "",
                    check: bool = True, remember: bool = True) -> int:
        """Send a line as the Enter key does; returns the command id (0 when nothing was sent).

        ``mode``: "auto" reads a reply when the line is a query (or "Always read" is on),
        "send" never reads, "query" always reads, "read" only reads. Panels that send on the
        user's behalf pass ``remember=False`` (their lines stay out of the history) and
        ``check=False`` where the automatic error check would read away what they show.
        """
        from_input = text is None
        text = self.input.text() if from_input else text
        if mode == "read":
            return self._submit(Read(), "read", origin, tag)
        if not text.strip():
            return 0
        try:
            payload = scpi.decode_escapes(text)
        except scpi.EscapeError as exc:
            self.transcript.add("error", f"{text}: {exc}")
            return 0
        term = self.termination()
        if term and not payload.endswith(term):
            payload += term
        query = mode == "query" or (mode == "auto" and (self.always_read.isChecked() or ieee488.is_query(text)))
        command = Query(payload, label=text) if query else Write(payload, label=text)
        cid = self._submit(command, text, origin, tag, check=check and not scpi.asks_for_errors(text))
        if cid and remember:
            self.input.remember(text)
            self.settings.set_history(self.resource, self.input.history())
            self.history_panel.set_lines(self.input.history())
            if from_input:
                self.input.clear()
        return cid

    def control(self, action: str) -> int:
        """A USBTMC/USB488 request: clear, read_stb, trigger, indicator_pulse, remote, local, lockout."""
        return self._submit(Control(action), CONTROL_LABELS.get(action, action), "action", check=False)

    def _submit(self, command, label: str, origin: str, tag: str = "", *, check: bool = True) -> int:
        cid = self.session.submit(command, origin=origin)
        if not cid:
            self.transcript.add("error", f"{label}: the session is not open")
            return 0
        self._labels[cid] = (label, tag)
        if self._script is not None and origin == Origin.SCRIPT:
            self._script.line_ids.add(cid)
            self._script.waiting_for = cid
        method = self.check_method() if check else None
        if method:
            check_id = self.session.submit(CheckErrors(after=cid, method=method, termination=self.termination() or b"\n"),
                                           origin=Origin.CHECK)
            if check_id:
                self._checks[check_id] = cid
                if self._script is not None and origin == Origin.SCRIPT:
                    self._script.line_ids.add(check_id)
                    self._script.waiting_for = check_id
        return cid

    def abort(self) -> None:
        """Abort everything outstanding and stop a running script."""
        if self._script is not None:
            self.transcript.add("warning", f"script {self._script.name} stopped by the user")
            self._script = None
        if self.session.outstanding:
            self.session.abort()

    # --- error check ----------------------------------------------------------

    def check_method(self) -> str | None:
        """The error check to run after a command now (None: off)."""
        choice = self.check_combo.currentData()
        if choice == "off":
            return None
        if choice in ("syst_err", "esr"):
            return choice
        if self._auto_fallback is not None:
            return None if self._auto_fallback == "off" else self._auto_fallback
        speaks = self.profile.speaks_scpi
        if speaks is None and self.info is not None and self.info.capabilities is not None:
            speaks = self.info.capabilities.scpi
        return "syst_err" if speaks else "esr"

    def _update_check_label(self) -> None:
        method = None
        if self.check_combo.currentData() == "auto":
            method = self.check_method()
            label = {"syst_err": "Auto (SYST:ERR?)", "esr": "Auto (*ESR?)", None: "Auto (off)"}[method]
            self.check_combo.setItemText(0, label)

    @Slot(int)
    def _check_changed(self, _index: int) -> None:
        self._auto_fallback = None
        self.settings.set_instrument_value(self.resource, "error_check", self.check_combo.currentData())
        self._update_check_label()

    def _on_error_report(self, report: ErrorReport) -> None:
        label = self._labels.get(report.after, ("the command", ""))[0]
        self._checks.pop(report.command_id, None)
        if report.problem:
            if self.check_combo.currentData() == "auto":
                if report.method == "syst_err":
                    self._auto_fallback = "esr"
                    what = "SYST:ERR? got no usable answer, so the automatic check uses *ESR? from now on"
                else:
                    self._auto_fallback = "off"
                    what = "*ESR? got no usable answer, so the automatic check is off for this session"
                self.transcript.add("warning", f"error check after {label}: {what}", detail=report.problem)
                self._update_check_label()
            else:
                self.transcript.add("warning", f"error check after {label} failed", detail=report.problem)
            self._last_check = "error check failed"
            return
        severe = [e for e in report.entries if e.severe]
        mild = [e for e in report.entries if not e.severe]
        if report.method == "esr":
            value = f"*ESR? #H{report.esr:02X}" if report.esr is not None else "*ESR?"
            if severe:
                self.transcript.add(
                    "error", f"{', '.join(e.message for e in severe)} after {label}",
                    detail=f"{value}" + (f"; also {', '.join(e.message for e in mild)}" if mild else ""),
                )
                self._fail_script(f"{label}: {severe[0].message}", report.after)
            elif mild:
                self.transcript.add("note", f"{value}: {', '.join(e.message for e in mild)} (no errors)")
        else:
            for entry in severe:
                self.transcript.add("error", f'{entry.code},"{entry.message}" after {label}', detail="from SYST:ERR?")
            for entry in mild:
                self.transcript.add("note", entry.message)
            if severe:
                self._fail_script(f"{label}: {severe[0].code},{severe[0].message}", report.after)
        self._last_check = "errors reported" if severe else "no errors"

    # --- events ---------------------------------------------------------------

    @Slot(object)
    def handle_event(self, event) -> None:
        record = self.session.record(event.command_id)
        origin = record.origin if record else ""
        if isinstance(event, Srq):
            if not self.srq_entries:
                return
            names = ", ".join(ieee488.set_bit_names(event.status_byte, ieee488.STB_BITS)) or "no bits set"
            self.transcript.add("srq", f"service request: status byte #H{event.status_byte:02X} ({names})", at=event.at)
        elif isinstance(event, Learned):
            self.transcript.add("note", event.text)
        elif isinstance(event, Opened):
            self._on_opened(event)
        elif isinstance(event, Closed):
            if event.gone:
                self.transcript.add("error", "the device is gone", detail=event.reason)
            else:
                self.transcript.add("note", f"session closed ({event.reason})")
            self._script = None
        elif origin == Origin.CHECK:
            if isinstance(event, ErrorReport):
                self._on_error_report(event)
            elif isinstance(event, Failed):
                after = self._checks.pop(event.command_id, 0)
                label = self._labels.get(after, ("the command", ""))[0]
                self.transcript.add("warning", f"error check after {label} failed: {event.message}",
                                    detail=f"recovery: {event.recovery}" if event.recovery else "")
            elif isinstance(event, Finished):
                self._finished(event)
        elif event.command_id == 0 and isinstance(event, Failed):
            self.transcript.add("warning", event.message, detail=event.recovery)
        elif origin in VISIBLE_ORIGINS:
            self._show(event, origin)

    def _show(self, event, origin: str) -> None:
        label, tag = self._labels.get(event.command_id, ("", ""))
        record = self.session.record(event.command_id)
        if origin == Origin.OPEN and record is not None and record.command.__class__.__name__ == "Open":
            if isinstance(event, Failed):
                self.transcript.add("error", f"cannot open {self.resource}: {event.message}", detail=event.recovery)
            elif isinstance(event, Finished):
                self._finished(event)
            return
        if isinstance(event, Started):
            self._busy_what = label or event.what
            self._busy_since = time.monotonic()
            self._update_state_label()
        elif isinstance(event, Sent):
            command = record.command if record else None
            duration = event.duration_ms if isinstance(command, Write) else None
            self.transcript.add("sent", label, duration_ms=duration, tag=tag, command_id=event.command_id)
        elif isinstance(event, Reply):
            self._show_reply(event, label, tag)
        elif isinstance(event, Failed):
            title = FAILURE_TITLES.get(event.kind, event.kind)
            kind = "warning" if event.kind == FailureKind.ABORTED else "error"
            text = f"{label}: {title}: {event.message}" if label else f"{title}: {event.message}"
            if event.kind == FailureKind.TIMEOUT:
                text += f" (after {format_ms(event.duration_ms)})"
            detail = f"recovery: {event.recovery}" if event.recovery else ""
            self.transcript.add(kind, text, detail=detail, tag=tag, command_id=event.command_id)
            self._fail_script(f"{label}: {event.message}", event.command_id)
        elif isinstance(event, StatusByte) and not event.polled:
            names = ", ".join(ieee488.set_bit_names(event.value, ieee488.STB_BITS)) or "no bits set"
            # How it was read: USB488's request, or a LAN protocol's own (app.lan) or *STB? on a raw socket.
            how = {"VXI-11": "device_readstb", "HiSLIP": "AsyncStatusQuery", "SOCKET": "*STB?"}.get(
                getattr(self.info, "protocol", ""), "READ_STATUS_BYTE")
            self.transcript.add("info", f"status byte #H{event.value:02X} ({event.value}): {names}",
                                tag=how, command_id=event.command_id)
        elif isinstance(event, Done):
            self.transcript.add("info", f"{event.what}: done", duration_ms=event.duration_ms, command_id=event.command_id)
        elif isinstance(event, Configured):
            pass
        elif isinstance(event, Finished):
            self._finished(event)

    def _show_reply(self, event: Reply, label: str, tag: str) -> None:
        data = event.data
        term = self.termination() or b"\n"
        block = scpi.find_block(data)
        full_text_from = None
        if block is None and len(data) > REPLY_TEXT_BYTES:
            # Only the start is decoded here, on the GUI thread; a saved transcript decodes the rest.
            text = scpi.display_text(data[:REPLY_TEXT_BYTES], b"") + f" … ({len(data):,} bytes in all)"
            full_text_from = term
        else:
            text = scpi.display_text(data, term) if block is None else ""
        if block is None and not text:
            text = "(empty reply)"
        self.transcript.add(
            "received", text, duration_ms=event.round_trip_ms, data=data, block=block, tag=tag,
            command_id=event.command_id, full_text_from=full_text_from,
        )
        if event.command_id == self._idn_id and block is None:
            self._idn_id = 0
            self.set_identity(scpi.display_text(data, term))

    def _on_opened(self, event: Opened) -> None:
        self.info = event.info
        info = event.info
        self.transcript.add("note", f"session open: {info.product or info.vid_pid} ({info.resource}, {info.protocol}, {info.speed})")
        if info.quirks:
            self.transcript.add("note", quirks_line(info.quirks), extra={"details": quirks_details(info.quirks)})
        if event.pipelined:
            self.transcript.add("note", "queries go out as one batch (command, read request and first read "
                                        "submitted together through libusb)")
        self._apply_capabilities()
        if self.timeout_spin.value() != self.session.timeout_ms or self.term_char_box.isChecked():
            self._apply_timeout()
            self._term_char_changed(self.term_char_box.isChecked())
        self._update_check_label()
        if self.idn is None:
            self._idn_id = self._submit(Query(b"*IDN?" + (self.termination() or b"\n"), label="*IDN?"), "*IDN?",
                                        "open", "on open", check=False)

    def set_identity(self, idn: str) -> None:
        """Use the ``*IDN?`` answer: pick the command catalogues and the error check."""
        self.idn = idn
        caps = self.info.capabilities if self.info is not None else None
        self.profile = profile_for(idn, caps.scpi if caps is not None else None)
        self.input.set_catalog(self.profile.entries)
        self._update_check_label()
        if self.profile.device_catalog is not None:
            self.transcript.add("note", f"command set: {self.profile.device_catalog.name} (matched by *IDN?)")
        self.identified.emit(idn)

    def _apply_capabilities(self) -> None:
        info = self.info or self.session.info
        caps = info.capabilities if info is not None else None
        is_open = self.session.is_open
        usb488 = info is not None and (info.protocol == "USB488" or getattr(info, "reads_stb", False))

        def enable(name: str, ok: bool, why: str) -> None:
            action = self.actions_by_name[name]
            action.setEnabled(is_open and ok)
            base = action.statusTip()
            action.setToolTip(base if ok else f"{base}\nNot available: {why}")

        enable("clear", True, "")
        enable("read_stb", usb488, "the interface is USBTMC, not USB488")
        enable("trigger", bool(caps and caps.trigger), "the device's capabilities do not include TRIGGER")
        enable("indicator_pulse", bool(caps and caps.indicator_pulse), "the device does not support INDICATOR_PULSE")
        for name in ("remote", "local", "lockout"):
            enable(name, bool(caps and caps.ren_control), "the device does not support REN_CONTROL/GO_TO_LOCAL/LOCAL_LOCKOUT")
        self.term_char_box.setEnabled(bool(caps and caps.term_char))
        if caps is not None and not caps.term_char:
            self.term_char_box.setToolTip("The device does not support TermChar; replies end at EOM")
        self.actions_changed.emit()

    # --- state ------------------------------------------------------------------

    @Slot(str)
    def _on_state(self, state: str) -> None:
        is_open = SessionState(state).is_open
        for widget in (self.input, self.send_button, self.query_button, self.read_button):
            widget.setEnabled(is_open)
        for name in ("run_file",):
            self.actions_by_name[name].setEnabled(is_open)
        if is_open:
            self._apply_capabilities()
        else:
            for name in ("clear", "read_stb", "trigger", "indicator_pulse", "remote", "local", "lockout"):
                self.actions_by_name[name].setEnabled(False)
            self.actions_changed.emit()
        self.abort_button.setEnabled(state == SessionState.BUSY)
        if state == SessionState.BUSY:
            if not self._busy_timer.isActive():
                self._busy_timer.start()
        else:
            self._busy_timer.stop()
        self._update_state_label()

    def _update_state_label(self) -> None:
        state = self.session.state
        if state == SessionState.BUSY:
            if self._busy_what:
                elapsed = time.monotonic() - self._busy_since
                text = f"busy: {self._busy_what} ({elapsed:.1f} s)"
            else:
                text = "busy"
            queued = max(0, self.session.outstanding - 1)
            if queued:
                text += f", {queued} queued"
        elif state == SessionState.IDLE:
            text = "ready" + (f" · {self._last_check}" if self._last_check else "")
        else:
            text = {SessionState.OPENING: "opening…", SessionState.GONE: "device gone", SessionState.FAILED: "not open",
                    SessionState.CLOSING: "closing…", SessionState.CLOSED: "closed"}.get(state, state)
        if self._script is not None:
            text = f"script {self._script.name}: line {self._script.index}/{len(self._script.lines)}; " + text
        self.state_label.setText(text)
        self.state_label.setToolTip(text)

    def _finished(self, event: Finished) -> None:
        self._busy_what = ""
        if len(self._labels) > MAX_LABELS:  # labels outlive their command: checks and raw views name it later
            for old in list(self._labels)[: len(self._labels) - MAX_LABELS]:
                del self._labels[old]
        script = self._script
        if script is not None and event.command_id == script.waiting_for:
            if script.failed and script.stop_on_error:
                self.transcript.add("warning", f"script {script.name} stopped at line {script.lines[script.index - 1][0]}",
                                    detail=script.failed)
                self._script = None
            else:
                self._script_next()
        self._update_state_label()

    # --- settings ---------------------------------------------------------------

    @Slot()
    def _apply_timeout(self) -> None:
        value = self.timeout_spin.value()
        self.settings.set_instrument_value(self.resource, "timeout_ms", value)
        self.session.timeout_ms = value
        if self.session.thread.isRunning():
            self.session.submit(Configure(timeout_ms=value), origin=Origin.CONFIG)

    @Slot(int)
    def _termination_changed(self, _index: int) -> None:
        self.settings.set_instrument_value(self.resource, "termination", self.termination_combo.currentData())
        if self.term_char_box.isChecked():
            self._term_char_changed(True)

    @Slot(bool)
    def _term_char_changed(self, on: bool) -> None:
        self.settings.set_instrument_value(self.resource, "term_char", "true" if on else "false")
        term = self.termination()
        char = term[-1] if (on and term) else -1
        if self.session.thread.isRunning():
            self.session.submit(Configure(term_char=char), origin=Origin.CONFIG)

    # --- history -----------------------------------------------------------------

    def search_history(self) -> None:
        self.history_panel.filter.setFocus()
        self.history_panel.filter.selectAll()

    @Slot(str)
    def _use_history_line(self, line: str) -> None:
        self.input.setText(line)
        self.input.setFocus()

    # --- raw view and files ---------------------------------------------------------

    @Slot(int)
    def show_raw(self, entry_id: int) -> RawViewDialog | None:
        entry = self.transcript.entry(entry_id)
        if entry is None or entry.data is None:
            return None
        label = self._labels.get(entry.command_id, (entry.text[:40], ""))[0] or "reply"
        dialog = RawViewDialog(entry.data, label, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    @Slot(int)
    def _save_block(self, entry_id: int, path: str | None = None) -> Path | None:
        entry = self.transcript.entry(entry_id)
        if entry is None or entry.data is None or entry.block is None:
            return None
        try:
            written = save_bytes(self, entry.block.payload(entry.data), path, "block.bin")
        except SaveError as exc:
            self.transcript.add("error", str(exc))
            return None
        if written is not None:
            self.transcript.add("note", f"saved {entry.block.payload_bytes:,} bytes of block data to {written}")
        return written

    def save_transcript(self, path: str | None = None) -> Path | None:
        if path is None:
            name = (self.info.product if self.info and self.info.product else "instrument").replace(" ", "-")
            suggestion = f"{name}-transcript-{time.strftime('%Y%m%d-%H%M%S')}.txt"
            path, _ = QFileDialog.getSaveFileName(self, "Save transcript", suggestion, "Text files (*.txt);;All files (*)")
            if not path:
                return None
        try:
            return save_text(path, self.transcript.plain_text())
        except SaveError as exc:
            self.transcript.add("error", str(exc))
            return None

    def run_file(self, path: str | None = None, *, stop_on_error: bool = True) -> bool:
        """Send each non-empty line of a file (``#`` starts a comment line), in order."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Run a file of SCPI lines", "", "SCPI scripts (*.scpi *.txt);;All files (*)")
            if not path:
                return False
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.transcript.add("error", f"cannot read {source}: {exc}")
            return False
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
                 if line.strip() and not line.lstrip().startswith("#")]
        return self.run_lines(source.name, lines, stop_on_error=stop_on_error)

    def run_lines(self, name: str, lines: list[tuple[int, str]], *, stop_on_error: bool = True) -> bool:
        if self._script is not None:
            self.transcript.add("warning", f"script {self._script.name} is still running")
            return False
        if not lines:
            self.transcript.add("note", f"{name} holds no commands")
            return False
        self._script = ScriptRun(name, lines, stop_on_error=stop_on_error)
        self.transcript.add("note", f"running {name}: {len(lines)} line(s)")
        self._script_next()
        return True

    def _script_next(self) -> None:
        script = self._script
        if script is None:
            return
        if script.index >= len(script.lines):
            self.transcript.add("note", f"{script.name}: done, {len(script.lines)} line(s) sent")
            self._script = None
            return
        number, line = script.lines[script.index]
        script.index += 1
        script.failed = ""
        if not self.submit_line(line, "auto", origin=Origin.SCRIPT, tag=f"{script.name}:{number}"):
            self.transcript.add("warning", f"script {script.name} stopped at line {number}")
            self._script = None

    def _fail_script(self, why: str, command_id: int) -> None:
        if self._script is not None and command_id in self._script.line_ids:
            self._script.failed = why

    @property
    def script_running(self) -> bool:
        return self._script is not None

    def save_state(self) -> None:
        self.settings.set_value("console/splitter", self.splitter.saveState())


def quirks_line(quirks) -> str:
    """One transcript line for the quirk flags in force: ``4 quirks applied: a, b = 48, ...``."""
    names = [q.flag if q.value is True else f"{q.flag} = {_flag_value(q.value)}" for q in quirks]
    return f"{len(names)} quirk{'s' if len(names) != 1 else ''} applied: {', '.join(names)}"


def quirks_details(quirks) -> str:
    """Why, once per quirk entry (its flags share one reason), for the line's details link."""
    by_entry: dict[str, list] = {}
    for quirk in quirks:
        by_entry.setdefault(quirk.entry, []).append(quirk)
    return "\n".join(f"{entry} ({', '.join(q.flag for q in group)}): {group[0].reason}"
                     for entry, group in by_entry.items())


def _flag_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
