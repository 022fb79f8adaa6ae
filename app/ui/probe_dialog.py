"""The compliance probe's dialog: asks first, runs :func:`app.usbtmc.probe.probe` on a worker
thread, shows each check's result as it finishes, and saves the report as JSON or as a quirk
entry merged with the entries that already apply.

Before anything is sent the dialog lists the steps, says which are risky for this device
(its quirk flags, :data:`app.usbtmc.probe.STEPS`) and offers a safe run, which skips them,
or the full run. When the instrument stops answering it offers the way back
(:mod:`app.ui.recovery`: a USB port reset, or a replug of a virtual instrument).

The probe opens the interface itself, so the instrument must not have a session open. It
runs on its own :class:`~app.ui.worker.WorkerThread` and talks to the dialog only through
queued signals; Cancel sets a :class:`threading.Event` the probe checks between checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from html import escape
from pathlib import Path

from PySide6.QtCore import QObject, QSize, Qt, QThread, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSplitter,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.usbtmc.errors import SaveError, TmcError
from app.usbtmc.files import save_text
from app.usbtmc.probe import (
    FAIL,
    INFO,
    PASS,
    SKIP,
    STEPS,
    WARN,
    Finding,
    PlannedStep,
    ProbeReport,
    Step,
    plan,
    prepare_quirk_entry,
    probe,
    write_quirk_save,
)
from app.usbtmc.quirks import QuirkDatabase, Quirks, default_database, user_quirks_path
from app.usbtmc.resource import parse_resource

from .recovery import Recovered, start_recovery
from .theme import colors
from .worker import WorkerThread

FINDING_ROLE = Qt.ItemDataRole.UserRole
VERDICT_LABELS = {FAIL: "Fails", WARN: "Warning", INFO: "Note", PASS: "Passes", SKIP: "Skipped"}
NOTE = (
    "The probe opens the instrument itself and sends only queries (*IDN?, *ESR?) and USBTMC/USB488 "
    "requests: no setting changes. Each failing check costs one timeout. Nothing is sent until you "
    "start it."
)


class ProbeRunner(QObject):
    """Runs one probe in its thread and reports by signal."""

    progressed = Signal(str)  # the label of the step about to run
    step_done = Signal(object, object)  # Step, tuple[Finding, ...]: one step's results, as it finishes
    finished = Signal(object)  # ProbeReport
    failed = Signal(str)  # why the probe could not run at all

    def __init__(self, resource: str, backend, timeout_ms: int, db: QuirkDatabase | None,
                 cancel: threading.Event, safe: bool = True) -> None:
        super().__init__()
        self.resource = resource
        self.backend = backend
        self.timeout_ms = timeout_ms
        self.db = db
        self.cancel = cancel
        self.safe = safe

    @Slot()
    def run(self) -> None:
        try:
            report = probe(self.resource, self.backend, timeout_ms=self.timeout_ms, db=self.db,
                           progress=self.progressed.emit, cancel=self.cancel, safe=self.safe,
                           on_step=self.step_done.emit)
        except TmcError as exc:
            self.failed.emit(str(exc))
        else:
            self.finished.emit(report)
        finally:
            QThread.currentThread().quit()


class ProbeDialog(QDialog):
    """Ask first, then probe one instrument and show what it does against USBTMC 1.0 / USB488 1.0."""

    report_ready = Signal(object)  # ProbeReport, once the probe has finished
    recovered = Signal(object)  # Recovered, after "Reset the USB port"

    def __init__(self, resource: str, backend, *, title: str = "", timeout_ms: int = 1000,
                 db: QuirkDatabase | None = None, quirks_path: Path | None = None, product: str = "",
                 session_open: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.resource = resource
        self.backend = backend
        self.timeout_ms = timeout_ms
        self.db = db
        self.quirks_path = quirks_path
        self.session_open = session_open
        self.quirks = _device_quirks(resource, product, db)
        self.report: ProbeReport | None = None
        self.error = ""
        self._cancel = threading.Event()
        self._thread: WorkerThread | None = None
        self._recovery: WorkerThread | None = None
        self._busy = False
        self._start_pending = False  # start_after() waits for a session thread to end
        self._runner: ProbeRunner | None = None
        self._steps_done = 0
        # Called instead of start() when the user chooses Start: the window closes the
        # instrument's session first, then starts the probe (start_after).
        self.starter: Callable[[], None] | None = None
        self.setWindowTitle(f"Compliance probe: {title or resource}")
        self.setSizeGripEnabled(True)
        self._build(title)
        self.resize(self._fitting_size(980, 700))
        self.show_plan()

    def _fitting_size(self, width: int, height: int):
        """``width`` x ``height``, made smaller where the screen is: on a 1024x700 screen a
        700-pixel-high dialog put its buttons under the taskbar, out of reach."""
        parent = self.parentWidget()
        screen = (parent.screen() if parent is not None else None) or QGuiApplication.primaryScreen()
        if screen is None:
            return QSize(width, height)
        free = screen.availableGeometry()
        # Room for the window frame and title bar the window manager adds.
        return QSize(min(width, free.width() - 40), min(height, free.height() - 80))

    # --- layout ---

    def _build(self, title: str) -> None:
        layout = QVBoxLayout(self)
        self.header = QLabel(f"<b>{escape(title or 'Instrument')}</b><br>{escape(self.resource)}", self)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.header)
        self.note = QLabel(NOTE, self)
        self.note.setWordWrap(True)
        layout.addWidget(self.note)

        mode_row = QHBoxLayout()
        self.safe_button = QRadioButton("Safe run: skip the steps that are risky for this device", self)
        self.full_button = QRadioButton("Full run: every step", self)
        self.safe_button.setChecked(True)
        self.safe_button.toggled.connect(lambda _on: self.show_plan() if not self.running else None)
        mode_row.addWidget(self.safe_button)
        mode_row.addWidget(self.full_button)
        mode_row.addStretch(1)
        layout.addLayout(mode_row)

        status_row = QHBoxLayout()
        self.progress = QProgressBar(self)
        self.progress.setRange(0, len(STEPS))
        self.progress.setFormat("%v of %m")
        self.progress.setMaximumWidth(160)
        self.status = QLabel("Not started.", self)
        self.status.setWordWrap(True)
        status_row.addWidget(self.progress)
        status_row.addWidget(self.status, 1)
        layout.addLayout(status_row)

        splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.findings = QTreeWidget(splitter)
        self.findings.setRootIsDecorated(False)
        self.findings.setUniformRowHeights(True)
        self.findings.setAlternatingRowColors(True)
        header = self.findings.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.findings.currentItemChanged.connect(self._show_details)
        self.details = QTextBrowser(splitter)
        self.details.setOpenExternalLinks(False)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([440, 150])
        layout.addWidget(splitter, 1)

        buttons = QDialogButtonBox(self)
        self.start_button = QPushButton("Start probe", self)
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self._start_clicked)
        self.cancel_button = QPushButton("Cancel probe", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.reset_button = QPushButton("Reset the USB port", self)
        self.reset_button.setToolTip("For an instrument that stopped answering: reset its USB port (a virtual "
                                     "instrument is unplugged and plugged in again), then ask *IDN?")
        self.reset_button.clicked.connect(self.reset_port)
        self.save_json_button = QPushButton("Save as JSON…", self)
        self.save_json_button.clicked.connect(lambda: self.save_json())
        self.save_quirk_button = QPushButton("Save as quirk entry…", self)
        self.save_quirk_button.clicked.connect(lambda: self.save_quirk_entry())
        self.copy_button = QPushButton("Copy report", self)
        self.copy_button.clicked.connect(self.copy_report)
        for button in (self.start_button, self.cancel_button, self.reset_button, self.save_json_button,
                       self.save_quirk_button, self.copy_button):
            buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        close = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.clicked.connect(self.reject)
        layout.addWidget(buttons)
        self._set_running(False)
        self.reset_button.setVisible(False)
        for button in (self.save_json_button, self.save_quirk_button, self.copy_button):
            button.setEnabled(False)

    # --- asking first ---

    @property
    def safe(self) -> bool:
        return self.safe_button.isChecked()

    def planned(self) -> tuple[PlannedStep, ...]:
        return plan(self.quirks, safe=self.safe)

    def show_plan(self) -> None:
        """The steps this run will take, which are risky for this device and which it skips."""
        c = colors(self.palette())
        planned = self.planned()
        self.findings.clear()
        self.findings.setHeaderLabels(["This run", "Step", "Risk"])
        risky_here = [p for p in plan(self.quirks, safe=False) if p.risky_because]
        for entry in planned:
            step = entry.step
            if not entry.runs:
                what, tint = "Skipped", c.muted
            elif entry.risky_because:
                what, tint = "Runs: risky here", c.error
            else:
                what, tint = "Runs", c.ok
            if entry.risky_because:
                because = "; ".join(f"{flag} = {_toml(value)}: {reason}" for flag, value, reason in entry.risky_because)
                risk = f"Risky for this device ({step.risk}). Its quirk entry says {because}"
            else:
                risk = step.risk[:1].upper() + step.risk[1:] if step.risk else "Only asks"
            item = QTreeWidgetItem([what, step.label, risk])
            item.setData(0, FINDING_ROLE, entry)
            item.setForeground(0, _brush(tint))
            item.setToolTip(2, risk)
            if entry.risky_because:
                item.setForeground(2, _brush(c.warning))
            self.findings.addTopLevelItem(item)
        skipped = sum(1 for p in planned if not p.runs)
        if risky_here:
            names = ", ".join(p.step.label for p in risky_here)
            intro = (f"Risky for this device: {names}. The safe run skips "
                     f"{'it' if len(risky_here) == 1 else 'them'}; the full run takes "
                     f"{'it' if len(risky_here) == 1 else 'them'} too, and the instrument may then need a "
                     "USB port reset or a replug.")
        else:
            intro = "No step is known to be risky for this device: the safe run and the full run are the same."
        if self.session_open:
            intro += " Its open session is closed when the probe starts."
        self.status.setText(f"{intro} {len(planned) - skipped} of {len(planned)} steps will run.")
        self.findings.setCurrentItem(self.findings.topLevelItem(0))
        self._fit_columns()

    @Slot()
    def _start_clicked(self) -> None:
        if self.starter is not None:
            self.starter()
        else:
            self.start()

    # --- running ---

    def start(self) -> None:
        """Run the probe on a worker thread (never on the GUI thread)."""
        if self.running:
            return
        self.report, self.error = None, ""
        self.findings.clear()
        self.findings.setHeaderLabels(["Result", "Check", "What the device did"])
        self.details.clear()
        self._cancel.clear()
        self._steps_done = 0
        self.progress.setValue(0)
        self._thread = WorkerThread(f"probe {self.resource}", self)
        self._runner = ProbeRunner(self.resource, self.backend, self.timeout_ms, self.db, self._cancel, self.safe)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        self._runner.progressed.connect(self._on_progress)
        self._runner.step_done.connect(self._on_step_done)
        self._runner.finished.connect(self._on_finished)
        self._runner.failed.connect(self._on_failed)
        self._thread.finished.connect(self._runner.deleteLater)
        self._thread.finished.connect(lambda: self._set_running(False))
        self._set_running(True)
        self.status.setText("Opening the instrument…")
        self._thread.start()

    def start_after(self, thread) -> None:
        """Start once ``thread`` (the session that held the interface) has ended, or now if it has."""
        self._start_pending = True
        self.start_button.setEnabled(False)
        self.status.setText("Waiting for the instrument's session to close…")
        thread.finished.connect(self._start_once)
        # Checked after connecting: a thread that ended in between has emitted finished already.
        if not thread.isRunning():
            self._start_once()

    @Slot()
    def _start_once(self) -> None:
        if self._start_pending:
            self._start_pending = False
            self.start()

    @property
    def running(self) -> bool:
        """From :meth:`start` until the dialog has shown the probe's end (its thread may end a moment earlier)."""
        return self._busy

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    @Slot()
    def cancel(self) -> None:
        """Stop after the check that is running (the probe checks between checks)."""
        if self.running:
            self._cancel.set()
            self.status.setText("Cancelling after the current check…")
            self.cancel_button.setEnabled(False)

    def _set_running(self, running: bool) -> None:
        self._busy = running
        self.progress.setVisible(running)
        self.cancel_button.setEnabled(running)
        self.cancel_button.setVisible(running)
        self.start_button.setVisible(not running and self.report is None and not self.error)
        self.start_button.setEnabled(not running and not self._start_pending)
        self.safe_button.setEnabled(not running and self.report is None)
        self.full_button.setEnabled(not running and self.report is None)

    @Slot(str)
    def _on_progress(self, label: str) -> None:
        self.status.setText(f"Step {min(self._steps_done + 1, len(STEPS))} of {len(STEPS)}: {label}…")

    @Slot(object, object)
    def _on_step_done(self, step: Step, findings: tuple) -> None:
        """One step's results, shown as they come (the final report re-sorts them)."""
        for finding in findings:
            self.findings.addTopLevelItem(self._item(finding))
        self.findings.scrollToBottom()
        self._fit_columns()
        self._steps_done += 1
        self.progress.setValue(self._steps_done)

    @Slot(object)
    def _on_finished(self, report: ProbeReport) -> None:
        self.report = report
        c = colors(self.palette())
        fails, warns = report.count(FAIL), report.count(WARN)
        if fails:
            verdict = f"<span style='color:{c.error}'><b>{fails} deviation{'s' if fails > 1 else ''}</b></span>"
        else:
            verdict = f"<span style='color:{c.ok}'><b>no deviation found</b></span>"
        parts = [verdict, f"{report.count(PASS)} passed"]
        if warns:
            parts.append(f"<span style='color:{c.warning}'>{warns} warning{'s' if warns > 1 else ''}</span>")
        if report.count(SKIP):
            parts.append(f"{report.count(SKIP)} skipped")
        suffix = " (cancelled)" if report.cancelled else ""
        suffix += " (safe run)" if report.safe else ""
        text = ", ".join(parts) + f" in {report.duration_s:.1f} s{suffix}."
        if report.stopped_answering:
            text += (f" <span style='color:{c.error}'><b>The instrument stopped answering.</b></span> "
                     "Reset its USB port to bring it back.")
        self.status.setText(text)
        speed = report.speed.replace(" (", " speed (", 1)
        self.header.setText(
            f"<b>{escape(report.manufacturer)} {escape(report.product)}</b> &nbsp;·&nbsp; "
            f"{report.vid:04X}:{report.pid:04X} &nbsp;·&nbsp; {escape(report.protocol)} &nbsp;·&nbsp; "
            f"{escape(speed)}<br>{escape(report.resource)}"
            + (f"<br>*IDN? {escape(report.idn)}" if report.idn else ""))
        self._fill(report)
        self.save_json_button.setEnabled(True)
        self.copy_button.setEnabled(True)
        self.reset_button.setVisible(report.stopped_answering)
        self._offer_quirk_entry(report)
        self._set_running(self.running)
        self.report_ready.emit(report)

    def _offer_quirk_entry(self, report: ProbeReport) -> None:
        try:
            prepared = self._prepare(report)
        except ValueError as exc:  # nothing to add: say why on the button
            self.save_quirk_button.setEnabled(False)
            self.save_quirk_button.setToolTip(
                "No quirk flag would help this device" if not report.suggested_flags() else str(exc)[:1].upper()
                + str(exc)[1:])
            return
        except TmcError as exc:  # the user's quirks file does not load
            self.save_quirk_button.setEnabled(False)
            self.save_quirk_button.setToolTip(str(exc))
            return
        self.save_quirk_button.setEnabled(True)
        flags = ", ".join(prepared.flags)
        self.save_quirk_button.setToolTip(
            f"Add {flags} to your entry {prepared.merged_into!r}" if prepared.merged_into
            else f"Append an entry with {flags} to your quirks file")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.error = message
        c = colors(self.palette())
        advice = ""
        if "held by another" in message or "busy" in message.lower():
            advice = " Close the instrument's session and probe again."
        elif "timed out" in message or "did not answer" in message:
            advice = " If it stopped answering, reset its USB port."
            self.reset_button.setVisible(True)
        self.status.setText(f"<span style='color:{c.error}'>The probe could not run: {escape(message)}.{advice}</span>")
        self._set_running(self.running)

    # --- the way back ---

    @Slot()
    def reset_port(self) -> None:
        """Reset the instrument's USB port (replug a virtual one) on a worker thread, then ask *IDN?."""
        if self.running or self._recovery is not None:
            return
        self.reset_button.setEnabled(False)
        self.status.setText("Resetting the USB port…")
        self._recovery = start_recovery(self.resource, self.backend, self, self._on_recovered)

    @Slot(object)
    def _on_recovered(self, result: Recovered) -> None:
        self._recovery = None
        c = colors(self.palette())
        tint = c.ok if result.answers else c.error
        self.status.setText(f"<span style='color:{tint}'>{escape(result.message)}</span>")
        self.reset_button.setEnabled(True)
        self.reset_button.setVisible(not result.answers)
        self.recovered.emit(result)

    # --- the report ---

    def _item(self, finding: Finding) -> QTreeWidgetItem:
        c = colors(self.palette())
        tint = {FAIL: c.error, WARN: c.warning, INFO: c.info, PASS: c.ok, SKIP: c.muted}
        item = QTreeWidgetItem([VERDICT_LABELS.get(finding.verdict, finding.verdict), finding.title,
                                finding.observed])
        item.setData(0, FINDING_ROLE, finding)
        item.setForeground(0, _brush(tint.get(finding.verdict, c.muted)))
        if finding.verdict == FAIL:
            font = item.font(0)
            font.setBold(True)
            item.setFont(0, font)
        item.setToolTip(2, finding.observed)
        return item

    def _fill(self, report: ProbeReport) -> None:
        self.findings.clear()
        first_problem = None
        # Deviations first, then warnings and notes, then what passed or was skipped; the
        # probe's order within each.
        order = {FAIL: 0, WARN: 1, INFO: 2, PASS: 3, SKIP: 4}
        for finding in sorted(report.findings, key=lambda f: order.get(f.verdict, 5)):
            item = self._item(finding)
            self.findings.addTopLevelItem(item)
            if first_problem is None and finding.verdict in (FAIL, WARN):
                first_problem = item
        self.findings.setCurrentItem(first_problem or self.findings.topLevelItem(0))
        self._fit_columns()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self._fit_columns()  # the plan is filled before the dialog is polished: fit again once shown

    def _fit_columns(self) -> None:
        """Result and check columns as wide as their words (at most 45 % of the table), the rest for the text."""
        for column in (0, 1):
            self.findings.resizeColumnToContents(column)
            limit = int(self.findings.viewport().width() * 0.45) or 420
            self.findings.setColumnWidth(column, min(self.findings.columnWidth(column) + 12, limit))

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _show_details(self, current: QTreeWidgetItem | None, _previous=None) -> None:
        if current is None:
            self.details.clear()
            return
        finding = current.data(0, FINDING_ROLE)
        if isinstance(finding, PlannedStep):
            self.details.setHtml(self._step_details(finding))
            return
        c = colors(self.palette())
        rows = [f"<h3>{escape(finding.title)}: {escape(VERDICT_LABELS.get(finding.verdict, finding.verdict))}</h3>"]
        if finding.spec:
            rows.append(f"<p><b>The specification:</b> {escape(finding.spec)}</p>")
        rows.append(f"<p><b>The device:</b> {escape(finding.observed)}</p>")
        if finding.flags:
            flags = ", ".join(f"<code>{escape(k)} = {escape(_toml(v))}</code>" for k, v in finding.flags.items())
            rows.append(f"<p style='color:{c.ok}'><b>Quirk flags that work around it:</b> {flags}</p>")
        elif finding.verdict == FAIL:
            rows.append("<p><b>No quirk flag works around this.</b></p>")
        self.details.setHtml("".join(rows))

    def _step_details(self, entry: PlannedStep) -> str:
        step = entry.step
        rows = [f"<h3>{escape(step.label)}</h3>"]
        if step.risk:
            rows.append(f"<p><b>Risk:</b> {escape(step.risk)}.</p>")
        else:  # the pane stayed empty under the title, as if something had failed to load
            rows.append("<p><b>Only asks:</b> it reads what the instrument says about itself or answers to "
                        "queries; nothing on the instrument is set or aborted.</p>")
        for flag, value, reason in entry.risky_because:
            rows.append(f"<p><b>This device:</b> <code>{escape(flag)} = {escape(_toml(value))}</code>: "
                        f"{escape(reason)}</p>")
        if not entry.runs:
            rows.append(f"<p>{escape(entry.skip_reason[:1].upper() + entry.skip_reason[1:])}; choose the full "
                        "run to take it.</p>")
        return "".join(rows)

    # --- saving ---

    def save_json(self, path: str | Path | None = None) -> Path | None:
        """Write the report as JSON (asks for a file name when ``path`` is None)."""
        if self.report is None:
            return None
        if path is None:
            suggested = f"probe-{self.report.vid:04x}-{self.report.pid:04x}.json"
            chosen, _ = QFileDialog.getSaveFileName(self, "Save the probe report", suggested, "JSON (*.json)")
            if not chosen:
                return None
            path = chosen
        path = Path(path)
        try:
            save_text(path, self.report.to_json() + "\n")
        except SaveError as exc:
            self.status.setText(escape(str(exc)))
            return None
        self.status.setText(f"Report saved to {escape(str(path))}.")
        return path

    def _prepare(self, report: ProbeReport):
        """What saving would change, merged with the entries that already apply (raises ValueError when nothing)."""
        target = self.quirks_path or user_quirks_path()
        base = None
        if self.db is not None:  # the entries this dialog was given, less those read from the file itself
            base = [e for e in self.db.entries if not e.origin.startswith(f"{target}:")]
        return prepare_quirk_entry(report, target, base=base)

    def save_quirk_entry(self, *, confirm: bool = True) -> Path | None:
        """Save the suggested flags to the user's quirks file, merged with what already applies."""
        if self.report is None or not self.report.suggested_flags():
            return None
        try:
            prepared = self._prepare(self.report)
        except (TmcError, ValueError) as exc:
            self.status.setText(f"Nothing saved: {escape(str(exc))}.")
            return None
        if confirm:
            if prepared.merged_into:
                question = (f"Add {', '.join(prepared.flags)} to your entry {prepared.merged_into!r} in "
                            f"{prepared.path}?")
            else:
                question = f"Append this entry to {prepared.path}?"
            box = QMessageBox(QMessageBox.Icon.Question, "Save as quirk entry",
                              question + "\nNew sessions with this instrument will use it.",
                              QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel, self)
            box.setDetailedText(prepared.entry)
            if box.exec() != QMessageBox.StandardButton.Save:
                return None
        try:
            saved = write_quirk_save(prepared)
        except (SaveError, OSError) as exc:
            QMessageBox.warning(self, "Save as quirk entry", f"The entry was not saved: {exc}")
            return None
        if prepared.merged_into:
            self.status.setText(f"Added to your entry {escape(prepared.merged_into)!r} in {escape(str(saved))}; "
                                "new sessions use it.")
        else:
            self.status.setText(f"Quirk entry appended to {escape(str(saved))}; new sessions use it.")
        self._offer_quirk_entry(self.report)
        return saved

    def copy_report(self) -> None:
        if self.report is not None:
            QGuiApplication.clipboard().setText(self.report.text())

    # --- closing ---

    def stop(self, timeout_ms: int) -> bool:
        """Cancel a running probe and wait for its thread (and a recovery's); True when they have ended."""
        ended = True
        if self._recovery is not None:
            try:
                ended = self._recovery.wait(max(0, timeout_ms))
            except RuntimeError:
                pass  # deleted once it finished
        if not self._thread_alive():
            return ended
        self._cancel.set()
        ended = self._thread.wait(max(0, timeout_ms)) and ended
        if ended:
            self._set_running(False)  # the thread's finished signal may not be delivered before shutdown
        return ended

    def reject(self) -> None:
        """Close; a running probe is cancelled and its thread ends on its own."""
        if self._recovery is not None:
            self._recovery.wait(5000)  # a reset is short (one *IDN? of 1 s at most); it is a child thread
        if self._thread_alive():
            self.cancel()
            thread = self._thread
            self.hide()
            thread.finished.connect(lambda: QDialog.reject(self))
            return
        super().reject()


def _device_quirks(resource: str, product: str, db: QuirkDatabase | None) -> Quirks:
    """The quirks in force for the device ``resource`` names (what makes a step risky for it)."""
    try:
        parsed = parse_resource(resource)
    except ValueError:
        return Quirks()
    return (db if db is not None else default_database()).lookup(parsed.vid, parsed.pid, product or None)


def _brush(color: str):
    from PySide6.QtGui import QBrush, QColor

    return QBrush(QColor(color))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
