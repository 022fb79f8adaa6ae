"""The status-register view of an instrument: STB, ESR, ESE, SRE and the device's own registers.

* The status byte is read live with the USB488 READ_STATUS_BYTE request (which leaves the
  output queue alone, unlike ``*STB?``) by the session worker's idle poll, so a poll never
  collides with a transfer; the view asks for it only while it is shown.
* ESE and SRE are edited by clicking their bits: ``*ESE n`` / ``*SRE n``, then read back.
* ESR is read only when asked (reading clears it); values that the console's error check,
  an SRQ follow-up or a typed ``*ESR?`` read are shown too, with where they came from.
* A history strip plots the status byte's bits over time with markers where commands were
  sent; it repaints from a timer (5 Hz) while shown, never per event (:mod:`.history_strip`,
  drawing the model in :mod:`.status_history`).
* Device-specific registers (the SAM7's ``DEBUG:FLAGS?``) come from the device profile.

Registers are drawn with the bit cells of :mod:`.bit_cells`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from PySide6.QtCore import QEvent, Qt, Signal, Slot
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import (
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

from app.session import FailureKind, Origin, SessionState, is_users_command
from app.session.device_profile import GENERIC, DeviceProfile, DeviceRegister, profile_for_idn
from app.session.events import Closed, ErrorReport, Failed, Finished, Opened, Query, Reply, Sent, SetIdlePolling, Srq, Started, StatusByte, Write
from app.session.status_history import StatusHistory
from app.usbtmc import ieee488

from .bit_cells import ESR_ERROR_BITS, BitCell, bit_kind, set_text
from .flow import FlowLayout
from .history_strip import HistoryStrip
from .transcript import format_time

PANEL_TAG = "status view"
POLL_CHOICES_MS = [(0, "Off"), (100, "100 ms"), (200, "200 ms"), (500, "500 ms"), (1000, "1 s"), (2000, "2 s")]
DEFAULT_POLL_MS = 200
_ENABLE_WRITE = re.compile(r"^\s*(\*ESE|\*SRE)\s+(\S+)\s*$", re.IGNORECASE)


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
        session.listen(self._on_event)
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
        if not self.session.is_open and self.session.state != SessionState.OPENING:
            self._polling_ms = -1
            return
        shown = self.isVisible() or bool(self._live_wanted)
        wanted = self.poll_ms if shown and self._usb488() else 0
        if wanted != self._polling_ms:
            if self.session.submit(SetIdlePolling(stb_interval_ms=wanted), origin=Origin.STATUS_POLL):
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
        cid = self.console.submit_line(text, mode, origin=Origin.ACTION, tag=PANEL_TAG, check=False, remember=False)
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
            if is_users_command(origin):
                self.history.command(event.at, record.command.describe())
            if isinstance(record.command, Write) and event.command_id not in self._own:
                self._note_enable_write(record.command)
        elif isinstance(event, Reply) and record is not None:
            self._on_reply(event, record)
        elif isinstance(event, ErrorReport) and event.esr is not None:
            after = self._labels.get(event.after, "")
            how = "SRQ follow-up" if origin == Origin.SRQ else (f"error check after {after}" if after else "error check")
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
        if name not in ("ESE", "SRE") or event.kind != FailureKind.TIMEOUT:
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
