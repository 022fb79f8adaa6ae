"""The I/O trace dock: every transfer of every session, live, decoded, filtered and searchable.

The GUI thread never touches pyusb: the sessions' worker threads record into the
window's :class:`~app.usbtmc.trace.Recorder` (a lock-protected ring), and a timer here
reads what is new at most 10 times a second, decoding within a time budget per tick so a
flood of transfers never stalls the event loop. The table is a model/view pair with one
row object per entry (no widget per row); rows are positions into the model's own list,
which follows the recorder's ring and so is bounded like it.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFontDatabase, QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollBar,
    QSplitter,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.usbtmc import trace as tr
from app.usbtmc.files import save_text

from .live_text import LiveText
from .theme import colors
from .transcript import format_ms

#: How often new entries are taken from the recorder (at most 25 Hz: the repaint rate the house allows).
POLL_MS = 100
#: How long one tick may spend decoding; the rest waits for the next tick.
TICK_BUDGET_S = 0.012
#: Rows the model may hold beyond the recorder's ring before it drops the oldest in one go.
SLACK = 0.2

# The description comes early, so it is in view on a narrow window; the rest can be scrolled to.
COLUMNS = ("#", "Time", "Kind", "Description", "Status", "Duration", "Bytes", "Endpoint", "Session")
DESCRIPTION = COLUMNS.index("Description")
LAYERS = {"All layers": None, "SCPI messages": (tr.MESSAGE, tr.RECOVERY, tr.MARKER),
          "USB transfers": tr.USB_KINDS, "LAN packets": (tr.TCP,)}
KINDS = {"All kinds": None, "Control": (tr.CONTROL,), "Bulk": (tr.BULK,), "Interrupt": (tr.INTERRUPT,),
         "TCP": (tr.TCP,), "Messages": (tr.MESSAGE,), "Recovery": (tr.RECOVERY,), "Markers": (tr.MARKER,)}
PROBLEMS = "Problems and SRQs"


def kind_label(entry: tr.Entry) -> str:
    if entry.kind == tr.BULK:
        return f"bulk {entry.direction}"
    if entry.kind == tr.INTERRUPT:
        return f"intr {entry.direction}"
    if entry.kind == tr.CONTROL:
        return f"ctrl {entry.direction}"
    if entry.kind == tr.TCP:
        return f"tcp {entry.direction}"
    return entry.op or entry.kind if entry.kind == tr.MESSAGE else entry.kind


def short_name(name: str) -> str:
    """``USB0::0x1209::0x0001::SAM7-0001::INSTR`` -> ``SAM7-0001`` (the serial names the device)."""
    parts = name.split("::")
    return parts[3] if len(parts) >= 5 else name


def is_srq(entry: tr.Entry) -> bool:
    if entry.kind == tr.TCP:  # HiSLIP AsyncServiceRequest (IVI-6.1 6.17), VXI-11 device_intr_srq (B.7)
        return (entry.endpoint == tr.LAN_HISLIP_ASYNC and entry.data[:3] == b"HS\x14") or (
            entry.endpoint == tr.LAN_VXI11_INTR and entry.actual > 0)
    return entry.kind == tr.INTERRUPT and entry.data[:1] == b"\x81"


def is_problem(entry: tr.Entry) -> bool:
    return entry.status != tr.OK or (entry.kind == tr.RECOVERY)


@dataclass
class Filters:
    session: str | None = None  # a session's name (all reopenings of one resource), or None: all
    layer: tuple | None = None
    kind: tuple | None = None
    status: str | None = None  # one status, PROBLEMS, or None: all
    text: str = ""
    grouped: bool = True  # transfers fold under the message they serve

    @property
    def flat(self) -> bool:
        """A status or text filter shows matching rows wherever they are, folded or not."""
        return bool(self.status or self.text) or not self.grouped


class TraceModel(QAbstractTableModel):
    """The entries taken from a recorder; the view shows those the filters accept.

    Rows are kept as ordinals (positions since the model began), so dropping the oldest
    entries never renumbers the rest.
    """

    def __init__(self, recorder: tr.Recorder, parent=None) -> None:
        super().__init__(parent)
        self.recorder = recorder
        self.filters = Filters()
        self._entries: list[tr.Entry] = []
        self._texts: list[str] = []  # the decoded description, per entry
        self._lower: list[str] = []  # the same, lower case, for filters and search
        self._base = 0  # ordinal of self._entries[0]
        self._visible: list[int] = []  # ordinals shown, ascending
        self._members: dict[int, list[int]] = {}  # message seq -> ordinals of what it folds
        self._marks: list[int] = []  # ordinals of problems and SRQs, ascending
        self._open_messages: list[int] = []  # ordinals of messages still running (their row changes)
        self._expanded: set[int] = set()
        self._decoder = tr.Decoder()
        self._last_seq = 0
        self._sessions: dict[int, str] = {}
        self.search = ""
        self.paused = False

    # --- Qt model ---

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt's name
        return 0 if parent.isValid() else len(self._visible)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def entry_at(self, row: int) -> tr.Entry | None:
        if 0 <= row < len(self._visible):
            return self._entries[self._visible[row] - self._base]
        return None

    def text_at(self, row: int) -> str:
        return self._texts[self._visible[row] - self._base]

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        k = self._visible[index.row()]
        entry = self._entries[k - self._base]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cell(entry, k, col)
        if role == Qt.ItemDataRole.ForegroundRole:
            c = colors()
            if entry.status != tr.OK:
                return QBrush(QColor(c.error))
            if is_srq(entry) or entry.kind == tr.RECOVERY:
                return QBrush(QColor(c.warning))
            if entry.kind == tr.MESSAGE:
                return QBrush(QColor(c.sent))
            if entry.kind == tr.MARKER:
                return QBrush(QColor(c.info))
            return None
        if role == Qt.ItemDataRole.BackgroundRole and self.search and self.search in self._lower[k - self._base]:
            return QBrush(QColor("#5c4d12") if _dark() else QColor("#fff1a8"))  # a highlighter's yellow
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (0, 5, 6):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and col == DESCRIPTION:
            return self._texts[k - self._base]
        return None

    def _cell(self, e: tr.Entry, k: int, col: int) -> str:
        name = COLUMNS[col]
        if name == "#":
            return str(e.seq)
        if name == "Time":
            t = e.t_ns // 1000
            return time.strftime("%H:%M:%S", time.localtime(t // 1_000_000)) + f".{t % 1_000_000:06d}"
        if name == "Duration":
            return format_ms(e.duration_ns / 1e6) if e.duration_ns else ""
        if name == "Session":
            return short_name(self._sessions.get(e.session, ""))
        if name == "Kind":
            return kind_label(e)
        if name == "Endpoint":
            if e.kind == tr.TCP:
                return tr.LAN_CHANNELS.get(e.endpoint, f"0x{e.endpoint:02X}")
            return f"0x{e.endpoint:02X}" if e.kind in (tr.BULK, tr.INTERRUPT) else ""
        if name == "Bytes":
            if e.is_transfer:
                return f"{e.actual}/{e.requested}" if e.direction == "in" else str(e.actual)
            return str(e.requested) if e.kind == tr.MESSAGE and e.requested else ""
        if name == "Status":
            return e.status
        text = self._texts[k - self._base]
        if e.kind == tr.MESSAGE and e.seq in self._members and self.filters.grouped and not self.filters.flat:
            glyph = "▾ " if e.seq in self._expanded else "▸ "
            return glyph + text
        if e.group or e.step:
            return "    " + text
        return text

    # --- taking entries from the recorder ---

    def poll(self, budget_s: float = TICK_BUDGET_S) -> int:
        """Take what the recorder has that is new (within ``budget_s``); returns the entries taken."""
        if self.paused:
            return 0
        self._refresh_open_messages()
        if self.recorder.cleared_before > self._last_seq and self._entries:
            self.reset()
        started = time.perf_counter()
        taken = 0
        while time.perf_counter() - started < budget_s:
            batch = self.recorder.since(self._last_seq, limit=200)
            if not batch:
                break
            self._ingest(batch)
            taken += len(batch)
        self._drop_evicted()
        return taken

    def _ingest(self, batch: list[tr.Entry]) -> None:
        if self._entries and batch[0].seq != self._last_seq + 1:
            self.reset()  # the recorder dropped entries this model never took: all it holds is older
        sessions = self.recorder.sessions
        accepted = []
        for entry in batch:
            if entry.session not in self._sessions and entry.session in sessions:
                self._sessions[entry.session] = sessions[entry.session].name
            k = self._base + len(self._entries)
            if entry.is_transfer:
                decoded = self._decoder.decode(entry)
                text = decoded.summary or decoded.usb
            else:
                text = self._describe(entry)
            self._entries.append(entry)
            self._texts.append(text)
            self._lower.append(text.lower())
            if entry.group:
                self._members.setdefault(entry.group, []).append(k)
            if entry.kind in (tr.MESSAGE, tr.RECOVERY) and entry.duration_ns == 0:
                self._open_messages.append(k)
            if is_problem(entry) or is_srq(entry):
                self._marks.append(k)
            if self._accept(entry, k):
                accepted.append(k)
            self._last_seq = entry.seq
        if accepted:
            first = len(self._visible)
            self.beginInsertRows(QModelIndex(), first, first + len(accepted) - 1)
            self._visible.extend(accepted)
            self.endInsertRows()

    @staticmethod
    def _describe(entry: tr.Entry) -> str:
        if entry.kind == tr.MESSAGE:
            text = tr.message_text(entry)
            if entry.reply:
                text += f" → {tr.escape(entry.reply[:80])}"
            if entry.detail:
                text += f"  ({entry.detail})"
            return text
        if entry.kind == tr.RECOVERY:
            return f"recovery: {entry.text}" + (f" → {entry.detail}" if entry.detail else "")
        return entry.text

    def _refresh_open_messages(self) -> None:
        """Messages and recoveries end after their transfers: update their rows when they do."""
        still = []
        for k in self._open_messages:
            i = k - self._base
            if i < 0:
                continue
            entry = self._entries[i]
            if entry.duration_ns == 0:
                still.append(k)
                continue
            text = self._describe(entry)
            self._texts[i], self._lower[i] = text, text.lower()
            if entry.status != tr.OK and (not self._marks or self._marks[-1] != k):
                bisect.insort(self._marks, k)
            row = bisect.bisect_left(self._visible, k)
            if row < len(self._visible) and self._visible[row] == k:
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
        self._open_messages = still

    def _drop_evicted(self) -> None:
        """Forget entries the recorder dropped, once they are more than :data:`SLACK` of it."""
        first = self.recorder.first_seq
        if not self._entries or first <= self._entries[0].seq:
            return
        # The model takes every entry in order, so its seqs are consecutive.
        cut = min(len(self._entries), first - self._entries[0].seq)
        if cut < len(self._entries) * SLACK and first <= self._entries[-1].seq:
            return
        gone = self._base + cut
        rows = bisect.bisect_left(self._visible, gone)
        if rows:
            self.beginRemoveRows(QModelIndex(), 0, rows - 1)
            del self._visible[:rows]
            self.endRemoveRows()
        for entry in self._entries[:cut]:
            self._members.pop(entry.seq, None)
            self._expanded.discard(entry.seq)
        del self._entries[:cut], self._texts[:cut], self._lower[:cut]
        self._base = gone
        del self._marks[: bisect.bisect_left(self._marks, gone)]
        self._open_messages = [k for k in self._open_messages if k >= gone]

    def reset(self) -> None:
        """Forget every entry (after the recorder was cleared)."""
        self.beginResetModel()
        self._base += len(self._entries)
        self._entries, self._texts, self._lower, self._visible = [], [], [], []
        self._members.clear()
        self._marks.clear()
        self._open_messages.clear()
        self._expanded.clear()
        self._decoder = tr.Decoder()
        self._last_seq = max(self._last_seq, self.recorder.cleared_before - 1)
        self.endResetModel()

    # --- filtering, folding and search ---

    def _accept(self, entry: tr.Entry, k: int) -> bool:
        f = self.filters
        if f.session is not None and self._sessions.get(entry.session) != f.session:
            return False
        if f.layer is not None and entry.kind not in f.layer:
            return False
        if f.kind is not None and entry.kind not in f.kind:
            return False
        if f.status == PROBLEMS:
            if not (is_problem(entry) or is_srq(entry)):
                return False
        elif f.status is not None and entry.status != f.status:
            return False
        if f.text and f.text not in self._lower[k - self._base]:
            return False
        if not f.flat and entry.group and entry.group not in self._expanded:
            return False
        return True

    def set_filters(self, filters: Filters) -> None:
        self.filters = filters
        self.refilter()

    def refilter(self) -> None:
        self.beginResetModel()
        base = self._base
        self._visible = [base + i for i, e in enumerate(self._entries) if self._accept(e, base + i)]
        self.endResetModel()

    def toggle(self, row: int) -> bool:
        """Fold or unfold the message at ``row``; True when it has anything to fold."""
        entry = self.entry_at(row)
        if entry is None or entry.kind != tr.MESSAGE or entry.seq not in self._members or self.filters.flat:
            return False
        members = [k for k in self._members[entry.seq] if k >= self._base]
        if entry.seq in self._expanded:
            self._expanded.discard(entry.seq)
            for k in reversed(members):
                at = bisect.bisect_left(self._visible, k)
                if at < len(self._visible) and self._visible[at] == k:
                    self.beginRemoveRows(QModelIndex(), at, at)
                    del self._visible[at]
                    self.endRemoveRows()
        else:
            self._expanded.add(entry.seq)
            for k in members:
                if self._accept(self._entries[k - self._base], k):
                    at = bisect.bisect_left(self._visible, k)
                    if at < len(self._visible) and self._visible[at] == k:
                        continue
                    self.beginInsertRows(QModelIndex(), at, at)
                    self._visible.insert(at, k)
                    self.endInsertRows()
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
        return True

    def row_of_seq(self, seq: int) -> int:
        """The row showing the entry ``seq``, or -1."""
        if not self._entries or not self._entries[0].seq <= seq <= self._entries[-1].seq:
            return -1
        k = self._base + seq - self._entries[0].seq  # seqs are consecutive (see _drop_evicted)
        at = bisect.bisect_left(self._visible, k)
        return at if at < len(self._visible) and self._visible[at] == k else -1

    def reveal(self, entry: tr.Entry) -> int:
        """Make ``entry`` visible (unfolding its message) and return its row, or -1 when filtered out."""
        if entry.group and entry.group not in self._expanded and not self.filters.flat:
            row = self.row_of_seq(entry.group)
            if row >= 0:
                self.toggle(row)
        return self.row_of_seq(entry.seq)

    def find_command(self, session_name: str, command_id: int) -> tr.Entry | None:
        """The first entry of ``session_name`` tagged with the command ``command_id`` (the newest such run)."""
        found = None
        for entry in reversed(self._entries):
            if entry.command == command_id and self._sessions.get(entry.session) == session_name:
                found = entry
            elif found is not None and entry.command != command_id:
                if self._sessions.get(entry.session) == session_name:
                    break
        return found

    def set_search(self, text: str) -> None:
        self.search = text.lower()
        if self._visible:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._visible) - 1, len(COLUMNS) - 1))

    def find_match(self, start_row: int, backwards: bool = False) -> tr.Entry | None:
        """The next entry after ``start_row`` (wrapping) that holds the search text and passes the
        filters, shown or folded inside its message."""
        if not self.search or not self._entries:
            return None
        if 0 <= start_row < len(self._visible):
            start = self._visible[start_row] - self._base
        else:
            start = len(self._entries) - 1 if not backwards else 0
        n = len(self._entries)
        step = -1 if backwards else 1
        grouped = Filters(**{**self.filters.__dict__, "grouped": False})
        keep, self.filters = self.filters, grouped
        try:
            for i in range(1, n + 1):
                j = (start + step * i) % n
                if self.search in self._lower[j] and self._accept(self._entries[j], self._base + j):
                    return self._entries[j]
        finally:
            self.filters = keep
        return None

    def mark_fractions(self, limit: int = 2000) -> list[tuple[float, bool]]:
        """Where problems (True) and SRQs (False) sit along the visible rows, as fractions 0..1."""
        n = len(self._visible)
        if not n:
            return []
        out = []
        for k in self._marks[-limit:]:
            at = bisect.bisect_left(self._visible, k)
            if at < n and self._visible[at] == k:
                entry = self._entries[k - self._base]
                out.append((at / n, not is_srq(entry)))
        return out

    @property
    def sessions(self) -> list[str]:
        return sorted(set(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._entries)


def _dark() -> bool:
    from .theme import is_dark

    return is_dark()


class MarkedScrollBar(QScrollBar):
    """A vertical scroll bar with ticks where errors (red) and SRQs (amber) are."""

    def __init__(self, model: TraceModel, parent=None) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self.model = model

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().paintEvent(event)
        marks = self.model.mark_fractions()
        if not marks:
            return
        c = colors(self.palette())
        painter = QPainter(self)
        height = max(1, self.height() - 2 * self.width())  # between the arrow buttons
        seen = set()
        for fraction, error in marks:
            y = self.width() + int(fraction * height)
            if (y, error) in seen:
                continue
            seen.add((y, error))
            painter.fillRect(2, y, self.width() - 4, 2, QColor(c.error if error else c.warning))
        painter.end()


class TracePanel(QWidget):
    """Filters, the table, and the detail pane of the selected entry."""

    transcript_requested = Signal(str, int)  # session name, command id

    def __init__(self, recorder: tr.Recorder, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tracePanel")
        self.recorder = recorder
        self.model = TraceModel(recorder, self)
        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

        self.session_box = QComboBox(self)
        self.session_box.setObjectName("traceSession")
        self.session_box.addItem("All sessions", None)
        self.layer_box = QComboBox(self)
        self.layer_box.addItems(list(LAYERS))
        self.kind_box = QComboBox(self)
        self.kind_box.addItems(list(KINDS))
        self.status_box = QComboBox(self)
        self.status_box.addItem("All statuses", None)
        self.status_box.addItem(PROBLEMS, PROBLEMS)
        for status in tr.STATUSES:
            self.status_box.addItem(status, status)
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter")
        self.filter_edit.setClearButtonEnabled(True)
        self.grouped = QCheckBox("Group by message", self)
        self.grouped.setChecked(True)
        self.grouped.setToolTip("Fold each message's transfers under it (click ▸ to unfold)")
        for box in (self.session_box, self.layer_box, self.kind_box, self.status_box):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            box.currentIndexChanged.connect(self._apply_filters)
        self.filter_edit.textChanged.connect(self._apply_filters)
        self.grouped.toggled.connect(self._apply_filters)

        self.pause_button = QToolButton(self)
        self.pause_button.setText("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Stop following the trace (recording goes on)")
        self.pause_button.toggled.connect(self._on_pause)
        self.clear_button = QToolButton(self)
        self.clear_button.setText("Clear")
        self.clear_button.setToolTip("Forget every entry recorded so far")
        self.clear_button.clicked.connect(self.clear)
        self.marker_button = QToolButton(self)
        self.marker_button.setText("Marker…")
        self.marker_button.setToolTip("Put a note of your own on the timeline")
        self.marker_button.clicked.connect(self._ask_marker)
        self.export_button = QToolButton(self)
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        menu.addAction("Trace as pcapng, CSV or JSON lines…", self.export_trace)
        menu.addAction("Session as a Python script…", lambda: self.export_script("python"))
        menu.addAction("Session as a PyVISA script…", lambda: self.export_script("pyvisa"))
        self.export_button.setMenu(menu)

        self.search_edit = QLineEdit(self)
        self.search_edit.setObjectName("traceSearch")
        self.search_edit.setPlaceholderText("Find (Enter: next, Shift+Enter: previous)")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_search)
        self.search_edit.returnPressed.connect(lambda: self.find(False))
        QShortcut(QKeySequence("Shift+Return"), self.search_edit, lambda: self.find(True))
        # Its text changes with every tick that takes entries: it must not relay the window out.
        self.count_label = LiveText(self, sample="100,000 shown of 100,000")
        self.count_label.setObjectName("traceCount")

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        for w in (self.session_box, self.layer_box, self.kind_box, self.status_box):
            top.addWidget(w)
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.grouped)
        second = QHBoxLayout()
        second.setContentsMargins(0, 0, 0, 0)
        second.addWidget(self.search_edit, 1)
        for w in (self.pause_button, self.clear_button, self.marker_button, self.export_button):
            second.addWidget(w)
        second.addWidget(self.count_label)

        self.table = QTableView(self)
        self.table.setObjectName("traceTable")
        self.table.setModel(self.model)
        self.table.setFont(fixed)
        self.table.setVerticalScrollBar(MarkedScrollBar(self.model, self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(False)
        self.table.setShowGrid(False)
        self.table.verticalHeader().setVisible(False)
        rows = self.table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(self.table.fontMetrics().height() + 4)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        char = self.table.fontMetrics().averageCharWidth()
        for col, chars in enumerate((6, 15, 9, 60, 8, 9, 9, 8, 12)):
            header.resizeSection(col, char * chars + 12)
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        self.table.clicked.connect(self._on_clicked)

        self.detail = QPlainTextEdit(self)
        self.detail.setObjectName("traceDetail")
        self.detail.setReadOnly(True)
        self.detail.setFont(fixed)
        self.detail.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.detail.setPlaceholderText("Select an entry: its decoded header and its bytes appear here.")
        self.to_transcript = QPushButton("Show in transcript", self)
        self.to_transcript.setEnabled(False)
        self.to_transcript.clicked.connect(self._show_in_transcript)
        detail_box = QWidget(self)
        detail_layout = QVBoxLayout(detail_box)
        detail_layout.setContentsMargins(0, 0, 0, 0)
        detail_layout.addWidget(self.detail, 1)
        detail_layout.addWidget(self.to_transcript, 0, Qt.AlignmentFlag.AlignLeft)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(detail_box)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(second)
        layout.addWidget(self.splitter, 1)

        self._follow = True
        self.table.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        # Polls only while shown (showEvent/hideEvent): a hidden panel takes nothing from the
        # recorder, so a console used without the dock spends no GUI time or memory on it; shown
        # again, it catches up from the ring in budgeted ticks.
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.tick)
        self._update_count()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.timer.start()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.timer.stop()

    # --- live ---

    @Slot()
    def tick(self) -> None:
        """Take new entries; keep the view at the newest row while it was there."""
        taken = self.model.poll()
        if taken:
            self._update_sessions()
            if self._follow:
                self.table.scrollToBottom()
            self.table.verticalScrollBar().update()
        self._update_count()

    def _on_scrolled(self, value: int) -> None:
        bar = self.table.verticalScrollBar()
        self._follow = value >= bar.maximum() - 1

    def _update_count(self) -> None:
        shown, held = self.model.rowCount(), len(self.model)
        text = f"{shown:,} shown of {held:,}"
        if self.recorder.dropped:
            text += f" · {self.recorder.dropped:,} oldest dropped"
        if self.model.paused:
            text += " · paused"
        self.count_label.setText(text)

    def _update_sessions(self) -> None:
        names = self.model.sessions
        have = [self.session_box.itemData(i) for i in range(1, self.session_box.count())]
        for name in names:
            if name not in have:
                self.session_box.addItem(short_name(name), name)
                self.session_box.setItemData(self.session_box.count() - 1, name, Qt.ItemDataRole.ToolTipRole)

    @Slot(bool)
    def _on_pause(self, paused: bool) -> None:
        self.model.paused = paused
        self.pause_button.setText("Resume" if paused else "Pause")
        if not paused:
            self.tick()
        self._update_count()

    @Slot()
    def clear(self) -> None:
        self.recorder.clear()
        self.model.reset()
        self.detail.clear()
        self._update_count()

    def _ask_marker(self) -> None:
        text, ok = QInputDialog.getText(self, "Marker", "A note on the timeline:")
        if ok and text.strip():
            self.recorder.marker(text.strip())
            self.tick()

    # --- filters and search ---

    @Slot()
    def _apply_filters(self) -> None:
        self.model.set_filters(Filters(
            session=self.session_box.currentData(), layer=LAYERS[self.layer_box.currentText()],
            kind=KINDS[self.kind_box.currentText()], status=self.status_box.currentData(),
            text=self.filter_edit.text().strip().lower(), grouped=self.grouped.isChecked()))
        self._update_count()
        self.table.verticalScrollBar().update()

    @Slot(str)
    def _on_search(self, text: str) -> None:
        self.model.set_search(text.strip())
        if text.strip():
            self.find(False, from_row=self.table.currentIndex().row() - 1 if self.table.currentIndex().isValid() else -1)

    def find(self, backwards: bool, from_row: int | None = None) -> int:
        start = self.table.currentIndex().row() if from_row is None else from_row
        entry = self.model.find_match(start, backwards)
        row = self.model.reveal(entry) if entry is not None else -1
        if row >= 0:
            self.select_row(row)
        return row

    def select_row(self, row: int) -> None:
        index = self.model.index(row, 0)
        self.table.setCurrentIndex(index)
        self.table.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)

    # --- details and links ---

    @Slot(QModelIndex)
    def _on_clicked(self, index: QModelIndex) -> None:
        if index.column() == DESCRIPTION:
            text = self.model.data(index)
            if text and text[:1] in "▸▾":
                self.model.toggle(index.row())

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.key() in (Qt.Key.Key_Right, Qt.Key.Key_Left, Qt.Key.Key_Space) and self.table.hasFocus():
            row = self.table.currentIndex().row()
            entry = self.model.entry_at(row)
            if entry is not None and entry.kind == tr.MESSAGE:
                unfolded = entry.seq in self.model._expanded
                if (event.key() == Qt.Key.Key_Right) != unfolded or event.key() == Qt.Key.Key_Space:
                    self.model.toggle(row)
                return
        super().keyPressEvent(event)

    @Slot(QModelIndex, QModelIndex)
    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        entry = self.model.entry_at(current.row()) if current.isValid() else None
        if entry is None:
            self.detail.clear()
            self.to_transcript.setEnabled(False)
            return
        self.detail.setPlainText(describe(entry, self.model.text_at(current.row()),
                                          self.recorder.sessions.get(entry.session)))
        self.to_transcript.setEnabled(bool(entry.command))

    def current_entry(self) -> tr.Entry | None:
        index = self.table.currentIndex()
        return self.model.entry_at(index.row()) if index.isValid() else None

    def _show_in_transcript(self) -> None:
        entry = self.current_entry()
        if entry is not None and entry.command:
            info = self.recorder.sessions.get(entry.session)
            if info is not None:
                self.transcript_requested.emit(info.name, entry.command)

    def show_command(self, session_name: str, command_id: int) -> bool:
        """Select the first entry of the command (a transcript line's), unfolding its message."""
        while self.model.poll():  # all of it: the panel may have been hidden (not polling) for long
            pass
        self.tick()
        entry = self.model.find_command(session_name, command_id)
        if entry is None:
            return False
        row = self.model.reveal(entry)
        if row < 0:  # filtered out: show everything, then look again
            self.session_box.setCurrentIndex(0)
            self.layer_box.setCurrentIndex(0)
            self.kind_box.setCurrentIndex(0)
            self.status_box.setCurrentIndex(0)
            self.filter_edit.clear()
            row = self.model.reveal(entry)
        if row >= 0:
            self._follow = False
            self.select_row(row)
            if entry.kind == tr.MESSAGE and entry.seq not in self.model._expanded:
                self.model.toggle(row)
        return row >= 0

    # --- exports ---

    def export_trace(self) -> None:
        from app.trace_export import ExportError, export

        path, _ = QFileDialog.getSaveFileName(self, "Export the I/O trace", "trace.pcapng",
                                              "Wireshark (*.pcapng);;CSV (*.csv);;JSON lines (*.jsonl)")
        if not path:
            return
        session = self._selected_session_number()
        try:
            count = export(self.recorder, path, session=None if self.session_box.currentData() is None else session)
        except (ExportError, OSError) as exc:
            QMessageBox.warning(self, "Export the I/O trace", f"The trace was not written: {exc}")
            return
        self.window().statusBar().showMessage(f"{count:,} trace records written to {path}", 8000)

    def _selected_session_number(self) -> int | None:
        entry = self.current_entry()
        name = self.session_box.currentData()
        numbers = [n for n, info in self.recorder.sessions.items() if name is None or info.name == name]
        if entry is not None and entry.session in numbers:
            return entry.session
        from app.trace_export.script import default_session

        newest = default_session(self.recorder)
        return newest if newest in numbers else (numbers[-1] if numbers else None)

    def export_script(self, flavour: str) -> None:
        from app.trace_export.script import pyvisa_script, python_script

        number = self._selected_session_number()
        if number is None or number not in self.recorder.sessions:
            QMessageBox.information(self, "Export a script", "No traced session to export yet.")
            return
        default = "replay.py" if flavour == "python" else "replay_pyvisa.py"
        path, _ = QFileDialog.getSaveFileName(self, "Export the session as a script", default, "Python (*.py)")
        if not path:
            return
        from pathlib import Path

        make = python_script if flavour == "python" else pyvisa_script
        text = make(self.recorder, number, Path(path).name)
        try:
            save_text(path, text)  # a failed write leaves the file it would replace as it was
        except OSError as exc:
            QMessageBox.warning(self, "Export a script", f"The script was not written: {exc.strerror or exc}")
            return
        self.window().statusBar().showMessage(f"Script written to {path}", 8000)


def describe(entry: tr.Entry, summary: str, info: tr.SessionInfo | None) -> str:
    """The detail pane's text: what the entry is, layer by layer, then its bytes."""
    lines = [f"#{entry.seq}  {kind_label(entry)}  {entry.status}" + (f"  ({info.name})" if info else "")]
    t = entry.t_ns // 1000
    lines.append(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t // 1_000_000)) + f".{t % 1_000_000:06d}"
                 + (f"  took {format_ms(entry.duration_ns / 1e6)}" if entry.duration_ns else ""))
    if entry.kind == tr.TCP:
        decoded = tr.decode(entry)
        lines += ["", decoded.usb, summary or decoded.summary]
        if decoded.summary == summary:  # decoded alone as in order: it starts a PDU, whose fields these are
            lines += [f"    {key}: {value}" for key, value in decoded.fields.items()]
        if entry.truncated:
            lines.append(f"(kept {len(entry.data)} of {entry.actual} bytes: the trace's cap per transfer)")
        data = entry.data
    elif entry.is_transfer:
        decoded = tr.decode(entry)
        lines += ["", "USB: " + decoded.usb]
        if entry.setup:
            lines.append("setup: " + " ".join(f"{b:02X}" for b in entry.setup))
        lines += ["USBTMC: " + (summary or "(no USBTMC header: message data, or not USBTMC)")]
        for key, value in decoded.fields.items():
            shown = f"0x{value:02X}" if key in ("TermChar", "STB") and isinstance(value, int) else value
            lines.append(f"    {key}: {shown}")
        if entry.truncated:
            moved = entry.requested if entry.direction == "out" else entry.actual
            lines.append(f"(kept {len(entry.data)} of {moved} bytes: the trace's cap per transfer)")
        data = entry.data
    else:
        lines += ["", summary]
        if entry.kind == tr.MESSAGE:
            lines.append(f"sent {entry.requested} bytes" + (f", received {entry.actual}" if entry.reply else ""))
        if entry.detail:
            lines.append(entry.detail)
        data = entry.data
    if data:
        lines += ["", "sent:" if entry.kind == tr.MESSAGE else "bytes:", tr.hex_dump(data[:4096])]
    if entry.kind == tr.MESSAGE and entry.reply:
        lines += ["", "reply:", tr.hex_dump(entry.reply[:4096])]
    return "\n".join(lines)


class TraceDock(QDockWidget):
    """The trace panel as a dock of the main window (View > I/O trace)."""

    def __init__(self, recorder: tr.Recorder, parent: QWidget | None = None) -> None:
        super().__init__("I/O trace", parent)
        self.setObjectName("traceDock")
        self.panel = TracePanel(recorder, self)
        self.setWidget(self.panel)
        self.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)

