"""The waveform panel of an instrument tab: pick a source, see it, encode it for the
instrument, upload it through the session's worker, and watch the throughput.

Everything about waveforms that needs no Qt lives in :mod:`app.waveforms`; the upload runs
in the worker thread as :class:`~app.session.upload.UploadWaveform`. The panel keeps
the last good source: a file that cannot be read leaves it (and every setting) alone and
says what was wrong with the file.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from html import escape as _escape
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.session import FailureKind, Origin
from app.session.events import Failed, Finished, Started
from app.session.upload import UploadAborted, UploadChecking, UploadDone, UploadProgress, UploadWaveform
from app.waveforms import (
    FILE_KINDS,
    LoadCancelled,
    RAW_DTYPES,
    SAMPLE_TYPES,
    SCALING_MODES,
    SHAPES,
    TEMPLATES,
    Scaling,
    ShapeSource,
    Source,
    UploadPlan,
    WaveformError,
    default_template,
    format_bytes,
    load_file,
)

from ..live_text import LiveText
from ..theme import colors
from .throughput import ThroughputGraph, style_plot

ORIGIN = Origin.WAVEFORM
PREVIEW_POINTS = 4000
HEADER_PREVIEW_BYTES = 12
SETTINGS_WIDTH_EM = 30  # the settings column's starting width, in font heights
MAX_POINTS = 512 * 1024 * 1024
BYTE_ORDERS = {"little": "little-endian (LSB first)", "big": "big-endian (MSB first)"}
FILE_FILTER = "Waveforms (*.csv *.txt *.tsv *.npy *.wav *.bin *.raw *.dat);;All files (*)"
WIRE_CHOICES = (("off", "Not modelled: as fast as the host"), ("full", "USB full speed (1.216 MB/s)"),
                ("high", "USB high speed (53.248 MB/s)"))
INGEST_CHOICES = (("off", "Unlimited"), ("33622a", "Like a 33622A (1.8 MB/s)"))


def escape(text: str) -> str:
    """Text for a rich-text label (quotes need no escaping there)."""
    return _escape(text, quote=False)


def _fixed_font():
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


def hex_bytes(data: bytes) -> str:
    return " ".join(f"{b:02X}" for b in data)


def printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02X}" for b in data)


@dataclass(frozen=True)
class FileRead:
    """How reading a waveform file ended: ``source`` (checked, its preview computed) or ``error``."""

    load_id: int
    source: Source | None
    error: str = ""
    cancelled: bool = False


class _FileReader(QObject):
    """Reads one waveform file on a thread of its own, ``waveform-reader``: the parse, the pass that
    checks every value (minimum, maximum, NaN/inf) and the preview envelope all run there, so a
    100 MiB file never stalls the window. Reports through queued signals; ``cancel`` ends it at
    the next chunk. The bridge has no parent, so a report after the panel is gone goes nowhere."""

    progressed = Signal(int, int, int)  # load id, done, total (bytes or points)
    finished = Signal(object)  # FileRead

    PROGRESS_INTERVAL_S = 0.05  # at most 20 progress reports a second

    def start(self, load_id: int, path: str, kind: str | None, options: dict, non_finite: str,
              cancel: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(load_id, path, kind, options, non_finite, cancel),
                                  name="waveform-reader", daemon=True)
        thread.start()
        return thread

    def _run(self, load_id, path, kind, options, non_finite, cancel) -> None:
        last = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= self.PROGRESS_INTERVAL_S:
                last = now
                self.progressed.emit(load_id, done, total)

        try:
            source = load_file(path, kind, non_finite=non_finite, progress=progress, cancel=cancel, **options)
            source.preview(PREVIEW_POINTS)  # kept by the source: the GUI thread draws it without a pass
            result = FileRead(load_id, source)
        except LoadCancelled:
            result = FileRead(load_id, None, cancelled=True)
        except WaveformError as exc:
            result = FileRead(load_id, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file does, the panel says so and goes on
            result = FileRead(load_id, None, f"{Path(path).name}: cannot be read ({type(exc).__name__}: {exc})")
        self.finished.emit(result)


class WaveformPanel(QWidget):
    """Sources, preview, target format, upload with progress, and the throughput graph."""

    upload_finished = Signal(object)  # app.waveforms.UploadResult, or None when the upload failed
    file_loaded = Signal(bool)  # a file read started by load_path() ended: True when it is the source now

    def __init__(self, session, *, device_model=None, console=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("waveformPanel")
        self.session = session
        self.console = console
        self._device_model = device_model  # callable returning the virtual AWG model, or None
        self.source: Source = ShapeSource("sine", 4096)
        self.plan: UploadPlan | None = None
        self.result = None
        self._command_id = 0
        self._started_at = 0.0
        self._last_progress: UploadProgress | None = None
        self._abort_report: UploadAborted | None = None
        self._outcome = "failed"  # how the upload running now ends if it fails: "cancelled" or "failed"
        self._template_chosen = False
        self._file_error = ""
        self._load_id = 0
        self._load_cancel = [threading.Event()]  # the current read's; a list so the lambda below needs no self
        self._reader = _FileReader()  # no parent: see _FileReader
        self._reader.progressed.connect(self._on_file_progress)
        self._reader.finished.connect(self._on_file_read)
        self.destroyed.connect(lambda *_args, current=self._load_cancel: current[0].set())
        self._build()
        if getattr(console, "settings", None) is not None:  # remembered per instrument (waveform/remember.py)
            from .remember import remember

            remember(console.settings, session.resource, self._remembered_controls())
        self._refresh_template()
        self._schedule_update()
        if console is not None:
            console.identified.connect(self._on_identified)
            if getattr(console, "idn", None):
                self._on_identified(console.idn)
        session.listen(self._on_event)
        session.state_changed.connect(self._on_state)

    def _remembered_controls(self) -> dict[str, QWidget]:
        """The waveform's own settings (the target's format follows the instrument's template, the pacing
        of the virtual AWG its defaults: neither is remembered)."""
        return {
            "source": self.source_kind, "shape": self.shape, "points": self.points, "amplitude": self.amplitude,
            "offset": self.offset, "cycles": self.cycles, "duty": self.duty, "path": self.path,
            "file_kind": self.file_kind, "column": self.column, "raw_dtype": self.raw_dtype,
            "raw_order": self.raw_order, "raw_offset": self.raw_offset, "gain": self.gain,
            "gain_offset": self.gain_offset, "name": self.name, "select_after": self.select_after,
            "check_after": self.check_after,
        }

    # --- building ------------------------------------------------------------------------------

    def _build(self) -> None:
        # Source
        self.source_kind = QComboBox(self)
        self.source_kind.addItems(["Built-in shape", "File"])
        self.shape = QComboBox(self)
        self.shape.addItems(SHAPES)
        self.points = QSpinBox(self)
        self.points.setRange(1, MAX_POINTS)
        self.points.setValue(4096)
        self.points.setGroupSeparatorShown(True)
        self.points.setSingleStep(1024)
        self.amplitude = self._double(1.0, -100.0, 100.0, "full scale is 1.0")
        self.offset = self._double(0.0, -100.0, 100.0, "added after the amplitude")
        self.cycles = self._double(1.0, 0.001, 1e6, "periods in the waveform")
        self.duty = self._double(50.0, 0.1, 99.9, "square and pulse: the high part, in %")
        self.duty.setSuffix(" %")
        shape_form = QFormLayout()
        shape_form.addRow("Shape", self.shape)
        shape_form.addRow("Points", self.points)
        shape_form.addRow("Amplitude", self.amplitude)
        shape_form.addRow("Offset", self.offset)
        shape_form.addRow("Cycles", self.cycles)
        shape_form.addRow("Duty cycle", self.duty)
        shape_page = QWidget(self)
        shape_page.setLayout(shape_form)
        shape_form.setContentsMargins(0, 0, 0, 0)

        self.path = QLineEdit(self)
        self.path.setPlaceholderText("CSV, .npy, .wav or raw binary file")
        self.browse = QPushButton("Browse…", self)
        self.browse.clicked.connect(self._browse)
        self.load_button = QPushButton("Load", self)
        self.load_button.clicked.connect(self.load_path)
        self.path.returnPressed.connect(self.load_path)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(self.browse)
        path_row.addWidget(self.load_button)
        self.file_kind = QComboBox(self)
        self.file_kind.addItem("From the file name", "")
        for key, label in (("csv", "CSV / text"), ("npy", "NumPy .npy"), ("wav", "WAV"), ("raw", "Raw binary")):
            self.file_kind.addItem(label, key)
        self.column = QSpinBox(self)
        self.column.setRange(-64, 64)
        self.column.setValue(-1)
        self.column.setToolTip("CSV column or WAV channel (from 0; -1: the last CSV column / the first channel)")
        self.raw_dtype = QComboBox(self)
        self.raw_dtype.addItems(RAW_DTYPES)
        self.raw_dtype.setCurrentText("int16")
        self.raw_order = QComboBox(self)
        self.raw_order.addItem("little-endian", "little")
        self.raw_order.addItem("big-endian", "big")
        self.raw_offset = QSpinBox(self)
        self.raw_offset.setRange(0, 1 << 30)
        self.raw_offset.setSuffix(" bytes")
        file_form = QFormLayout()
        file_form.addRow("File", path_row)
        file_form.addRow("Format", self.file_kind)
        file_form.addRow("Column / channel", self.column)
        file_form.addRow("Raw sample type", self.raw_dtype)
        file_form.addRow("Raw byte order", self.raw_order)
        file_form.addRow("Raw header to skip", self.raw_offset)
        self.non_finite = QComboBox(self)
        self.non_finite.setObjectName("nonFiniteChoice")
        self.non_finite.addItem("Refuse the file", "refuse")
        self.non_finite.addItem("Replace with 0 (counted)", "zero")
        self.non_finite.setToolTip("What to do with NaN or infinite values in a file")
        file_form.addRow("NaN / inf", self.non_finite)
        self.file_progress = QProgressBar(self)
        self.file_progress.setObjectName("fileReadProgress")
        self.file_progress.setRange(0, 1000)
        self.file_progress.hide()
        file_form.addRow("", self.file_progress)
        file_form.setContentsMargins(0, 0, 0, 0)
        file_page = QWidget(self)
        file_page.setLayout(file_form)

        self.source_pages = QStackedWidget(self)
        self.source_pages.addWidget(shape_page)
        self.source_pages.addWidget(file_page)
        self.source_info = QLabel(self)
        self.source_info.setObjectName("waveformSourceInfo")
        self.source_info.setWordWrap(True)
        self.source_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        source_box = QGroupBox("Source", self)
        source_layout = QVBoxLayout(source_box)
        source_layout.addWidget(self.source_kind)
        source_layout.addWidget(self.source_pages)
        source_layout.addWidget(self.source_info)

        # Target
        self.template = QComboBox(self)
        for key, template in TEMPLATES.items():
            self.template.addItem(template.label, key)
            self.template.setItemData(self.template.count() - 1, template.note, Qt.ItemDataRole.ToolTipRole)
        self.name = QLineEdit("tmc_wave", self)
        self.name.setMaxLength(12)
        self.prefix = QLineEdit(self)
        self.prefix.setToolTip("Sent as typed before the block")
        self.sample_type = QComboBox(self)
        self.byte_order = QComboBox(self)
        self.scaling = QComboBox(self)
        for mode, label in zip(SCALING_MODES, ("As is (1.0 = full scale)", "Normalize the peak to full scale",
                                               "Gain and offset")):
            self.scaling.addItem(label, mode)
        self.gain = self._double(1.0, -1e9, 1e9, "values are multiplied by this")
        self.gain.setDecimals(6)
        self.gain_offset = self._double(0.0, -1e9, 1e9, "then this is added")
        self.gain_offset.setDecimals(6)
        # Gain and offset on rows of their own: side by side they set the column's width.
        gain_row = QHBoxLayout()
        gain_row.addWidget(QLabel("×", self))
        gain_row.addWidget(self.gain, 1)
        offset_row = QHBoxLayout()
        offset_row.addWidget(QLabel("+", self))
        offset_row.addWidget(self.gain_offset, 1)
        self.select_after = QCheckBox("Select it afterwards (FUNC:ARB)", self)
        self.select_after.setChecked(True)
        self.check_after = QCheckBox("Check *OPC?, errors and checksum", self)
        self.check_after.setToolTip("After the upload: *OPC?, SYST:ERR? until it answers 0, and the length "
                                    "and CRC-32 the instrument reports (when its command set has them)")
        self.check_after.setChecked(True)
        target_form = QFormLayout()
        target_form.addRow("Command", self.template)
        target_form.addRow("Name", self.name)
        target_form.addRow("Prefix", self.prefix)
        target_form.addRow("Sample type", self.sample_type)
        target_form.addRow("Byte order", self.byte_order)
        target_form.addRow("Scaling", self.scaling)
        target_form.addRow("", gain_row)
        target_form.addRow("", offset_row)
        target_form.addRow(self.select_after)
        target_form.addRow(self.check_after)
        self.target_form = target_form
        self._forms = [shape_form, file_form, target_form]
        for combo in (self.source_kind, self.shape, self.file_kind, self.raw_dtype, self.raw_order, self.template,
                      self.sample_type, self.byte_order, self.scaling):
            self._compact(combo)
        self.header_preview = QLabel(self)
        self.header_preview.setObjectName("waveformHeaderPreview")
        self.header_preview.setFont(_fixed_font())
        self.header_preview.setWordWrap(True)
        self.header_preview.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        target_box = QGroupBox("Target", self)
        target_layout = QVBoxLayout(target_box)
        target_layout.addLayout(target_form)
        target_layout.addWidget(self.header_preview)

        # Virtual instrument pacing (only for the virtual AWG)
        self.wire = QComboBox(self)
        for key, label in WIRE_CHOICES:
            self.wire.addItem(label, key)
        self.ingest = QComboBox(self)
        for key, label in INGEST_CHOICES:
            self.ingest.addItem(label, key)
        for combo in (self.wire, self.ingest):
            self._compact(combo)
        virtual_form = QFormLayout()
        virtual_form.addRow("USB wire", self.wire)
        virtual_form.addRow("Instrument ingest", self.ingest)
        self._forms.append(virtual_form)
        self.virtual_box = QGroupBox("Virtual instrument", self)
        self.virtual_box.setToolTip("How fast the virtual AWG takes data (app.sim.wire)")
        self.virtual_box.setLayout(virtual_form)
        self.virtual_box.setVisible(self._awg() is not None)
        # The virtual AWG starts on the high-speed wire model: unpaced, an in-process bus runs
        # far above what any USB 2.0 instrument can take, which would mislead.
        self.wire.setCurrentIndex(self.wire.findData("high"))
        self._apply_pacing()
        self.wire.currentIndexChanged.connect(self._apply_pacing)
        self.ingest.currentIndexChanged.connect(self._apply_pacing)

        settings = QWidget(self)
        settings_layout = QVBoxLayout(settings)
        settings_layout.setContentsMargins(0, 0, 4, 0)
        settings_layout.addWidget(source_box)
        settings_layout.addWidget(target_box)
        settings_layout.addWidget(self.virtual_box)
        self._setting_boxes = (source_box, target_box, self.virtual_box)
        settings_layout.addStretch(1)
        # A narrow column puts each field under its label, so the combo boxes get the column's
        # whole width and their choices are not cut; a wide one keeps labels beside the fields.
        self._wide_settings_px = self._settings_wide_width()
        settings.installEventFilter(self)
        self._settings_widget = settings
        scroll = QScrollArea(self)
        scroll.setWidget(settings)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.settings_scroll = scroll

        # Preview
        self.preview = pg.PlotWidget(self)
        self.preview.setObjectName("waveformPreview")
        self.preview.setMinimumHeight(self.fontMetrics().height() * 6)  # room for the graph below at 1024x700
        item = self.preview.getPlotItem()
        item.setLabel("bottom", "point")
        item.setLabel("left", "value")
        self.preview.setToolTip("The waveform as it will be scaled; the dashed lines are full scale (±1.0)")
        item.setMenuEnabled(False)
        style_plot(self.preview, self.palette())
        c = colors(self.palette())
        for level in (-1.0, 1.0):
            item.addItem(pg.InfiniteLine(pos=level, angle=0, movable=False,
                                         pen=pg.mkPen(QColor(c.muted), width=1, style=Qt.PenStyle.DashLine)))
        self.preview_curve = item.plot([], [], pen=pg.mkPen(QColor(c.sent), width=1.5))

        # Upload
        self.upload_button = QPushButton("Upload", self)
        self.upload_button.setDefault(True)
        self.upload_button.clicked.connect(self.start_upload)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel_upload)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        # Its text changes with every progress event: it must not relay the window out.
        self.rate_label = LiveText(self)
        self.rate_label.setObjectName("waveformRate")
        self.rate_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.result_label = QLabel(self)
        self.result_label.setObjectName("waveformResult")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Its line is there before the first result, so a result does not push the graph down.
        self.result_label.setMinimumHeight(self.result_label.fontMetrics().lineSpacing())
        upload_row = QHBoxLayout()
        upload_row.addWidget(self.upload_button)
        upload_row.addWidget(self.cancel_button)
        upload_row.addWidget(self.rate_label, 1)
        self.graph = ThroughputGraph(self)

        right = QSplitter(Qt.Orientation.Vertical, self)
        right.setChildrenCollapsible(False)
        right.addWidget(self.preview)
        lower = QWidget(self)
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addLayout(upload_row)
        lower_layout.addWidget(self.progress)
        lower_layout.addWidget(self.result_label)
        lower_layout.addWidget(self.graph, 1)
        right.addWidget(lower)
        right.setStretchFactor(0, 2)
        right.setStretchFactor(1, 3)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(scroll)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        # Wide enough for the settings and their scroll bar: they never get cut off on the right.
        # The narrowest the settings can be: fields under their labels (see eventFilter).
        for form in self._forms:
            form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        self._sized = False  # the columns get their starting widths once the panel has its own
        self.splitter = splitter
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(splitter)

        self._update_timer = QTimer(self)
        self._update_timer.setSingleShot(True)
        self._update_timer.setInterval(120)
        self._update_timer.timeout.connect(self._update_source_and_plan)

        for widget in (self.points, self.amplitude, self.offset, self.cycles, self.duty, self.gain, self.gain_offset):
            widget.valueChanged.connect(self._schedule_update)
        for combo in (self.shape, self.sample_type, self.byte_order, self.scaling):
            combo.currentIndexChanged.connect(self._schedule_update)
        for edit in (self.name, self.prefix):
            edit.textChanged.connect(self._schedule_update)
        self.select_after.toggled.connect(self._schedule_update)
        self.source_kind.currentIndexChanged.connect(self._on_source_kind)
        self._size_source_pages()
        self.template.currentIndexChanged.connect(self._on_template)
        self.file_kind.currentIndexChanged.connect(self._update_file_rows)
        self._update_file_rows()
        self._update_buttons()

    def _settings_wide_width(self) -> int:
        """The width at which every form row fits beside its label with its longest choice whole."""
        labels = fields = 0
        for form in self._forms:
            for row in range(form.rowCount()):
                label = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
                field = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
                if label is not None and label.widget() is not None:
                    labels = max(labels, label.widget().sizeHint().width())
                widget = field.widget() if field is not None else None
                if isinstance(widget, QComboBox):
                    longest = max((widget.fontMetrics().horizontalAdvance(widget.itemText(i))
                                   for i in range(widget.count())), default=0)
                    fields = max(fields, longest + widget.fontMetrics().height() * 3)
        self._fields_px = fields + self.fontMetrics().height() * 3  # a field with its longest choice, under its label
        return labels + fields + self.fontMetrics().height() * 3

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if not self._sized and self.isVisible() and event.size().width() >= self.fontMetrics().height() * 10:
            # Once, when first laid out: the settings get about a third of the width (at least
            # what they need, at most SETTINGS_WIDTH_EM), the plots the rest. Later the divider
            # stays where the user puts it.
            self._sized = True
            settings = self._settings_widget
            for form in self._forms:  # measured at its narrowest; eventFilter picks the policy after
                form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
                form.activate()
            boxes = max(box.minimumSizeHint().width() for box in self._setting_boxes)
            margins = settings.layout().contentsMargins()
            needed = (boxes + margins.left() + margins.right() + self.settings_scroll.verticalScrollBar().sizeHint().width()
                      + 8)
            # Wide enough for the settings and their scroll bar: they never get cut off on the right.
            self.settings_scroll.setMinimumWidth(needed)
            self._settings_min_px = needed
            margins = self.layout().contentsMargins()
            total = event.size().width() - margins.left() - margins.right() - self.splitter.handleWidth()
            wanted = max(total * 3 // 8, self._fields_px + self.settings_scroll.verticalScrollBar().sizeHint().width())
            left = min(wanted, self.fontMetrics().height() * SETTINGS_WIDTH_EM, total // 2)
            left = max(left, self._settings_min_px)
            self.splitter.setSizes([left, max(1, total - left)])

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is getattr(self, "_settings_widget", None) and event.type() == QEvent.Type.Resize:
            policy = (QFormLayout.RowWrapPolicy.DontWrapRows if event.size().width() >= self._wide_settings_px
                      else QFormLayout.RowWrapPolicy.WrapAllRows)
            for form in self._forms:
                if form.rowWrapPolicy() != policy:
                    form.setRowWrapPolicy(policy)
        return super().eventFilter(watched, event)

    @staticmethod
    def _compact(combo: QComboBox, characters: int = 12) -> QComboBox:
        """A combo box whose width does not follow its longest entry (the popup still shows it whole)."""
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(characters)
        return combo

    def _double(self, value: float, low: float, high: float, tip: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox(self)
        box.setRange(low, high)
        box.setDecimals(3)
        box.setSingleStep(0.1)
        box.setValue(value)
        box.setToolTip(tip)
        return box

    # --- the virtual AWG's pacing ---------------------------------------------------------------

    def _awg(self):
        if self._device_model is None:
            return None
        try:
            return self._device_model()
        except Exception:  # noqa: BLE001 - an unplugged or odd model simply has no pacing to offer
            return None

    @Slot()
    def _apply_pacing(self) -> None:
        from app.sim.awg import LIKE_33622A_BYTES_PER_S

        awg = self._awg()
        if awg is None:
            return
        wire = self.wire.currentData()
        ingest = LIKE_33622A_BYTES_PER_S if self.ingest.currentData() == "33622a" else None
        # The model is thread-safe: its lock is taken for the change.
        awg.set_pacing(wire=None if wire == "off" else wire, ingest_bytes_per_s=ingest)

    def set_pacing(self, wire: str = "off", ingest: str = "off") -> None:
        """Choose the virtual AWG's pacing (``wire`` off/full/high, ``ingest`` off/33622a)."""
        self.wire.setCurrentIndex(self.wire.findData(wire))
        self.ingest.setCurrentIndex(self.ingest.findData(ingest))
        self._apply_pacing()

    # --- source and plan ----------------------------------------------------------------------

    @Slot()
    def _on_source_kind(self) -> None:
        self.source_pages.setCurrentIndex(self.source_kind.currentIndex())
        self._size_source_pages()
        if self.source_kind.currentIndex() == 0:
            self._file_error = ""
        self._schedule_update()

    def _size_source_pages(self) -> None:
        """Only the page shown sizes the stack: the shape page gets no blank space under it."""
        for index in range(self.source_pages.count()):
            policy = QSizePolicy.Policy.Preferred if index == self.source_pages.currentIndex() else QSizePolicy.Policy.Ignored
            self.source_pages.widget(index).setSizePolicy(policy, policy)
        self.source_pages.adjustSize()

    @Slot()
    def _update_file_rows(self) -> None:
        kind = self.file_kind.currentData() or FILE_KINDS.get(Path(self.path.text()).suffix.lower(), "")
        raw = kind == "raw"
        form = self.source_pages.widget(1).layout()
        for widget in (self.raw_dtype, self.raw_order, self.raw_offset):
            widget.setEnabled(raw)
            label = form.labelForField(widget)
            if label is not None:
                label.setEnabled(raw)

    @Slot()
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a waveform file", self.path.text(), FILE_FILTER)
        if path:
            self.path.setText(path)
            self.load_path()

    @Slot()
    def load_path(self) -> bool:
        """Start reading the file named in the path field, off the GUI thread, with progress;
        :attr:`file_loaded` says how it ended. On failure the previous source stays and the
        panel says why. Returns False when nothing was started."""
        self._update_file_rows()
        text = self.path.text().strip()
        if not text:
            self._show_file_error("no file chosen")
            self.file_loaded.emit(False)
            return False
        kind = self.file_kind.currentData() or None
        options: dict = {}
        chosen = kind or FILE_KINDS.get(Path(text).suffix.lower())
        if chosen == "csv":
            options["column"] = self.column.value()
        elif chosen == "wav":
            options["channel"] = max(0, self.column.value())
        elif chosen == "npy" and self.column.value() >= 0:
            options["column"] = self.column.value()
        elif chosen == "raw":
            options.update(dtype=self.raw_dtype.currentText(), byte_order=self.raw_order.currentData(),
                           offset_bytes=self.raw_offset.value())
        # Off the GUI thread: the read, the pass that checks every value (a file that cannot be
        # used fails there, not half-way through an upload) and the preview.
        self.cancel_file_read()
        self._load_id += 1
        self._load_cancel[0] = threading.Event()
        self._reading_name = Path(text).name
        self.file_progress.setValue(0)
        self.file_progress.setFormat(f"Reading {self._reading_name}…")
        self.file_progress.show()
        # The last file's message goes now: it must not read as this file's.
        self.source_info.setText(f"<span style='color:{colors(self.palette()).muted}'>Reading "
                                 f"{escape(self._reading_name)}… Still using: {escape(self.source.description)}</span>")
        self._reader.start(self._load_id, text, kind, options, self.non_finite.currentData(), self._load_cancel[0])
        return True

    def cancel_file_read(self) -> None:
        """Stop a file read in progress (its thread ends at its next chunk); the source stays."""
        self._load_cancel[0].set()
        self.file_progress.hide()

    @property
    def reading_file(self) -> bool:
        return not self.file_progress.isHidden()

    @Slot(int, int, int)
    def _on_file_progress(self, load_id: int, done: int, total: int) -> None:
        if load_id != self._load_id or self.file_progress.isHidden():
            return
        self.file_progress.setValue(int(1000 * done / total) if total else 0)
        self.file_progress.setFormat(f"Reading {self._reading_name}: %p%")

    @Slot(object)
    def _on_file_read(self, result: FileRead) -> None:
        if result.load_id != self._load_id:
            return  # a read that was superseded by a newer one
        self.file_progress.hide()
        if result.cancelled:
            return
        if result.source is None:
            self._show_file_error(result.error)
            self.file_loaded.emit(False)
            return
        self._file_error = ""
        self.source = result.source
        self.source_kind.setCurrentIndex(1)
        self._update_source_and_plan()
        self.file_loaded.emit(True)

    def _show_file_error(self, message: str) -> None:
        self._file_error = message
        c = colors(self.palette())
        self.source_info.setText(f"<span style='color:{c.error}'>✗ {escape(message)}</span><br>"
                                 f"<span style='color:{c.muted}'>Still using: {escape(self.source.description)}"
                                 f"</span>")

    @Slot()
    def _schedule_update(self, *_args) -> None:
        self._update_timer.start()

    def _shape_source(self) -> ShapeSource:
        shape = self.shape.currentText()
        duty = self.duty.value() / 100.0 if shape in ("square", "pulse") else None
        return ShapeSource(shape, self.points.value(), self.amplitude.value(), self.offset.value(),
                           self.cycles.value(), duty)

    @Slot()
    def _update_source_and_plan(self) -> None:
        if self.source_kind.currentIndex() == 0:
            try:
                self.source = self._shape_source()
            except WaveformError as exc:
                self._show_source_problem(str(exc))
                return
        self.duty.setEnabled(self.shape.currentText() in ("square", "pulse"))
        self._draw_preview()
        self._build_plan()

    def _show_source_problem(self, text: str) -> None:
        c = colors(self.palette())
        self.source_info.setText(f"<span style='color:{c.error}'>✗ {escape(text)}</span>")

    def _draw_preview(self) -> None:
        x, y = self.source.preview(PREVIEW_POINTS)
        gain, offset = self._scaling().factors(self.source) if self.source.points else (1.0, 0.0)
        self.preview_curve.setData(x, np.clip(y * gain + offset, -1.5, 1.5) if len(y) else y)
        if not self._file_error or self.source_kind.currentIndex() == 0:
            rate = f", {self.source.sample_rate_hz:g} Sa/s in the file" if self.source.sample_rate_hz else ""
            self.source_info.setText(escape(self.source.description + rate))

    def _scaling(self) -> Scaling:
        return Scaling(self.scaling.currentData(), self.gain.value(), self.gain_offset.value())

    def _build_plan(self) -> None:
        c = colors(self.palette())
        key = self.template.currentData()
        try:
            self.plan = UploadPlan(self.source, TEMPLATES[key], name=self.name.text().strip(),
                                   sample_type=self.sample_type.currentData(),
                                   byte_order=self.byte_order.currentData(), scaling=self._scaling(),
                                   prefix=self.prefix.text() if TEMPLATES[key].editable_prefix else None,
                                   select=self.select_after.isChecked())
            head, first = self.plan.head_preview(HEADER_PREVIEW_BYTES)
        except WaveformError as exc:
            self.plan = None
            self.header_preview.setText(f"<span style='color:{c.error}'>✗ {escape(str(exc))}</span>")
            self._update_buttons()
            return
        plan = self.plan
        low, high = self.source.stats()
        gain, offset = plan.scaling.factors(self.source)
        clipped = max(low * gain + offset, high * gain + offset) > 1.0 or min(low * gain + offset,
                                                                             high * gain + offset) < -1.0
        messages = plan.message_count
        lines = [
            f"<span style='color:{c.muted}'>first message:</span> {escape(printable(head))}",
            f"<span style='color:{c.muted}'>first data bytes:</span> {hex_bytes(first)}",
            f"<span style='color:{c.muted}'>{plan.source.points:,} points × {plan.sample_bytes} bytes "
            f"= {format_bytes(plan.total_bytes)} in {messages} message{'s' if messages != 1 else ''}</span>",
        ]
        if plan.template.note:
            lines.append(f"<span style='color:{c.muted}'>{escape(plan.template.note)}</span>")
        if clipped:
            lines.append(f"<span style='color:{c.warning}'>⚠ values reach {min(low * gain + offset, -1.0):.3g} .. "
                         f"{max(high * gain + offset, 1.0):.3g}: beyond full scale they are clipped</span>")
        self.header_preview.setText("<br>".join(lines))
        self._update_buttons()

    # --- template -------------------------------------------------------------------------------

    @Slot(str)
    def _on_identified(self, idn: str) -> None:
        if not self._template_chosen:
            index = self.template.findData(default_template(idn))
            blocked = self.template.blockSignals(True)
            try:
                self.template.setCurrentIndex(index)
            finally:
                self.template.blockSignals(blocked)
            self._refresh_template()
            self._schedule_update()

    @Slot()
    def _on_template(self) -> None:
        self._template_chosen = True
        self._refresh_template()
        self._schedule_update()

    def _refresh_template(self) -> None:
        template = TEMPLATES[self.template.currentData()]
        for combo, keys, labels, default in (
            (self.sample_type, template.sample_types, {k: SAMPLE_TYPES[k].label for k in SAMPLE_TYPES},
             template.sample_type),
            (self.byte_order, template.byte_orders, BYTE_ORDERS, template.byte_order),
        ):
            current = combo.currentData()
            # Not QSignalBlocker as a context manager: in PySide6 6.12 its __exit__ drops a reference to None.
            blocked = combo.blockSignals(True)
            try:
                combo.clear()
                for k in keys:
                    combo.addItem(labels[k], k)
                combo.setCurrentIndex(max(0, combo.findData(current if current in keys else default)))
            finally:
                combo.blockSignals(blocked)
            combo.setEnabled(len(keys) > 1)
        uses_name = "{name}" in template.prefix or bool(template.verify)
        self._set_row_visible(self.name, uses_name)
        self._set_row_visible(self.prefix, template.editable_prefix)
        if template.editable_prefix and not self.prefix.text():
            self.prefix.setText(template.prefix)
        self.select_after.setVisible(bool(template.select))
        self.select_after.setText(f"Select it afterwards ({template.select.split(' ')[0]})" if template.select else "")

    def _set_row_visible(self, field: QWidget, visible: bool) -> None:
        field.setVisible(visible)
        label = self.target_form.labelForField(field)
        if label is not None:
            label.setVisible(visible)

    # --- upload ---------------------------------------------------------------------------------

    @Slot(str)
    def _on_state(self, _state: str) -> None:
        self._update_buttons()

    @property
    def uploading(self) -> bool:
        return self._command_id != 0

    def _update_buttons(self) -> None:
        ready = self.plan is not None and self.session.is_open and not self.uploading
        self.upload_button.setEnabled(ready)
        self.cancel_button.setEnabled(self.uploading)
        if not self.session.is_open and not self.uploading:
            self.upload_button.setToolTip("The instrument is not connected")
        elif self.plan is None:
            self.upload_button.setToolTip("Fix the waveform or target settings first")
        else:
            self.upload_button.setToolTip(f"Send {format_bytes(self.plan.total_bytes)} to the instrument")

    @Slot()
    def start_upload(self) -> int:
        """Submit the current plan to the session's worker; returns the command id (0: not started)."""
        if self._update_timer.isActive():
            self._update_timer.stop()
            self._update_source_and_plan()
        if self.plan is None or self.uploading or not self.session.is_open:
            return 0
        self._command_id = self.session.submit(UploadWaveform(self.plan, check=self.check_after.isChecked()),
                                               origin=ORIGIN)
        if not self._command_id:
            return 0
        self.result = None
        self._started_at = time.perf_counter()
        self._last_progress = None
        self._abort_report = None
        self._outcome = "failed"
        self.result_label.setToolTip("")
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.rate_label.setText("")
        self.result_label.setText("")
        label = f"{format_bytes(self.plan.total_bytes)} {self.plan.kind}"
        paced = not self.virtual_box.isHidden()
        wire = self.wire.currentData() if paced else "off"
        if paced:
            label += f", {self.wire.currentText().split(' (')[0].removeprefix('USB ')}" if wire != "off" else ", bus not modelled"
            label += ", 1.8 MB/s ingest" if self.ingest.currentData() != "off" else ""
        self.graph.begin_run(label)
        self._update_buttons()
        return self._command_id

    @Slot()
    def cancel_upload(self) -> None:
        """Abort at once: the core stops between transfers and runs the USBTMC abort."""
        if self.uploading:
            self.session.abort(self._command_id)
            self.progress.setFormat("cancelling…")

    @Slot(object)
    def _on_event(self, event) -> None:
        if not self._command_id or event.command_id != self._command_id:
            return
        if isinstance(event, UploadProgress):
            self._last_progress = event
            self.graph.add_samples(event.samples)
            self._show_progress(event.done_bytes, event.total_bytes, event.elapsed_s)
        elif isinstance(event, UploadChecking):
            self.graph.end_run(True, event.seconds, event.bytes_sent)
            self._show_progress(event.bytes_sent, event.bytes_sent, event.seconds)
            self.progress.setFormat("sent; checking…")
        elif isinstance(event, UploadDone):
            self.result = event.result
            self._show_result(event.result)
        elif isinstance(event, UploadAborted):
            self._abort_report = event
        elif isinstance(event, Failed):
            self._show_failure(event)
        elif isinstance(event, Finished):
            self._command_id = 0
            if not self.graph.runs or not self.graph.runs[-1].finished:
                self.graph.end_run(event.ok, outcome=self._outcome)
            self._update_buttons()
            self.upload_finished.emit(self.result if event.ok else None)
        elif isinstance(event, Started):
            self.progress.setFormat("sending…")

    def _show_progress(self, done: int, total: int, elapsed_s: float) -> None:
        fraction = done / total if total else 0.0
        self.progress.setValue(int(1000 * fraction))
        self.progress.setFormat(f"{fraction * 100:.0f} %  ·  {format_bytes(done)} of {format_bytes(total)}")
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        self.rate_label.setText(f"{rate / 1e6:.1f} MB/s · ETA {int(eta // 60):02d}:{eta % 60:04.1f}")

    def _show_result(self, result) -> None:
        c = colors(self.palette())
        self.progress.setValue(1000)
        self.progress.setFormat(f"100 %  ·  {format_bytes(result.bytes_sent)}")
        self.rate_label.setText(f"{result.bytes_per_s / 1e6:.1f} MB/s · {result.seconds:.3g} s")
        parts = []
        good = True
        if result.opc is not None:
            parts.append("*OPC? 1" if result.opc else "*OPC? did not answer 1")
            good &= result.opc
        if result.errors:
            good = False
            parts.append("errors: " + "; ".join(result.errors))
        elif self.plan is not None and self.plan.template.errors:
            parts.append("no errors")
        if result.verified is True:
            parts.append(f"verified: {result.device_points:,} points, CRC-32 {result.device_crc32:08X}")
        elif result.verified is False:
            good = False
            parts.append(f"the instrument holds {result.device_points:,} points with CRC-32 "
                         f"{result.device_crc32:08X}; sent {result.points:,} points with CRC-32 {result.crc32:08X}")
        else:
            parts.append(f"sent {result.points:,} points, CRC-32 {result.crc32:08X} (not verified by this instrument)")
        if result.clipped:
            parts.append(f"{result.clipped:,} values clipped to full scale")
        parts += list(result.problems)
        mark, color = ("✓", c.ok) if good else ("✗", c.error)
        text = f"<span style='color:{color}'>{mark}</span> " + escape(" · ".join(parts))
        if result.earlier_errors:
            text += (f"<br><span style='color:{c.muted}'>already in the error queue before this upload: "
                     f"{escape('; '.join(result.earlier_errors))}</span>")
        self.result_label.setText(text)

    def _show_failure(self, event: Failed) -> None:
        c = colors(self.palette())
        cancelled = event.kind == FailureKind.ABORTED
        self._outcome = "cancelled" if cancelled else "failed"
        self.progress.setFormat(self._outcome)
        last = self._last_progress
        total = self.plan.total_bytes if self.plan is not None else 0
        sent = f"{format_bytes(last.done_bytes)} of {format_bytes(total)}" if last is not None else ""
        if last is not None:
            rate = last.done_bytes / last.elapsed_s / 1e6 if last.elapsed_s > 0 else 0.0
            self.rate_label.setText(f"{self._outcome} after {sent} · {rate:.1f} MB/s")
        else:
            self.rate_label.setText("")
        if cancelled:
            # Plain words; the protocol details (bTag, which abort ran) stay in the tooltip.
            text = f"Upload cancelled after {sent} sent." if sent else "Upload cancelled before any data was sent."
            if "usable" in f"{event.message} {event.recovery}":  # the core says so when its recovery worked
                text = escape(text + " The instrument was told to discard the partial waveform; the session is usable.")
            else:
                text = escape(text) + f"<br><span style='color:{c.muted}'>{escape(event.message)}</span>"
        else:
            text = escape(event.message)
            if event.recovery:
                text += f"<br><span style='color:{c.muted}'>recovery: {escape(event.recovery)}</span>"
        report = self._abort_report
        if report is not None:
            said = "; ".join(report.errors) if report.errors else "its error queue is empty"
            text += f"<br><span style='color:{c.muted}'>the instrument says: {escape(report.problem or said)}</span>"
        self.result_label.setText(f"<span style='color:{c.error}'>✗</span> {text}")
        details = event.message + (f"\nrecovery: {event.recovery}" if event.recovery else "")
        self.result_label.setToolTip(details)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.PaletteChange:
            style_plot(self.preview, self.palette())
        super().changeEvent(event)
