"""The compliance probe's dialog: runs :func:`app.usbtmc.probe.probe` on a worker thread and
shows the report check by check, with saving as JSON or as a quirk entry.

The probe opens the interface itself, so the instrument must not have a session open. It
runs on its own :class:`~app.ui.worker.WorkerThread` and talks to the dialog only through
queued signals; Cancel sets a :class:`threading.Event` the probe checks between checks.
"""

from __future__ import annotations

import threading
from html import escape
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
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
    QSplitter,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.usbtmc.errors import SaveError, TmcError
from app.usbtmc.files import save_text
from app.usbtmc.probe import FAIL, INFO, PASS, SKIP, WARN, ProbeReport, probe, save_quirk_entry
from app.usbtmc.quirks import QuirkDatabase, user_quirks_path

from .theme import colors
from .worker import WorkerThread

FINDING_ROLE = Qt.ItemDataRole.UserRole
VERDICT_LABELS = {FAIL: "Fails", WARN: "Warning", INFO: "Note", PASS: "Passes", SKIP: "Skipped"}
NOTE = (
    "The probe opens the instrument itself and sends only queries (*IDN?, *ESR?) and USBTMC/USB488 "
    "requests: no setting changes. A device clear (INITIATE_CLEAR) comes last; some instruments, such "
    "as the Rigol DS1000Z, then stop answering until they are replugged. Each failing check costs one "
    "timeout."
)


class ProbeRunner(QObject):
    """Runs one probe in its thread and reports by signal."""

    progressed = Signal(str)  # the title of the check about to run
    finished = Signal(object)  # ProbeReport
    failed = Signal(str)  # why the probe could not run at all

    def __init__(self, resource: str, backend, timeout_ms: int, db: QuirkDatabase | None,
                 cancel: threading.Event) -> None:
        super().__init__()
        self.resource = resource
        self.backend = backend
        self.timeout_ms = timeout_ms
        self.db = db
        self.cancel = cancel

    @Slot()
    def run(self) -> None:
        try:
            report = probe(self.resource, self.backend, timeout_ms=self.timeout_ms, db=self.db,
                           progress=self.progressed.emit, cancel=self.cancel)
        except TmcError as exc:
            self.failed.emit(str(exc))
        else:
            self.finished.emit(report)
        finally:
            QThread.currentThread().quit()


class ProbeDialog(QDialog):
    """Probe one instrument and show what it does against USBTMC 1.0 / USB488 1.0."""

    report_ready = Signal(object)  # ProbeReport, once the probe has finished

    def __init__(self, resource: str, backend, *, title: str = "", timeout_ms: int = 1000,
                 db: QuirkDatabase | None = None, quirks_path: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.resource = resource
        self.backend = backend
        self.timeout_ms = timeout_ms
        self.db = db
        self.quirks_path = quirks_path
        self.report: ProbeReport | None = None
        self.error = ""
        self._cancel = threading.Event()
        self._thread: WorkerThread | None = None
        self._busy = False
        self._start_pending = False  # start_after() waits for a session thread to end
        self._runner: ProbeRunner | None = None
        self.setWindowTitle(f"Compliance probe: {title or resource}")
        self.setSizeGripEnabled(True)
        self._build(title)
        self.resize(980, 700)

    # --- layout ---

    def _build(self, title: str) -> None:
        layout = QVBoxLayout(self)
        self.header = QLabel(f"<b>{escape(title or 'Instrument')}</b><br>{escape(self.resource)}", self)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.header)
        self.note = QLabel(NOTE, self)
        self.note.setWordWrap(True)
        layout.addWidget(self.note)

        status_row = QHBoxLayout()
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 0)
        self.progress.setTextVisible(False)
        self.progress.setMaximumWidth(160)
        self.status = QLabel("Not started.", self)
        status_row.addWidget(self.progress)
        status_row.addWidget(self.status, 1)
        layout.addLayout(status_row)

        splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.findings = QTreeWidget(splitter)
        self.findings.setHeaderLabels(["Result", "Check", "What the device did"])
        self.findings.setRootIsDecorated(False)
        self.findings.setUniformRowHeights(True)
        self.findings.setAlternatingRowColors(True)
        header = self.findings.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.findings.currentItemChanged.connect(self._show_details)
        self.details = QTextBrowser(splitter)
        self.details.setOpenExternalLinks(False)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([440, 150])
        layout.addWidget(splitter, 1)

        buttons = QDialogButtonBox(self)
        self.cancel_button = QPushButton("Cancel probe", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_json_button = QPushButton("Save as JSON…", self)
        self.save_json_button.clicked.connect(lambda: self.save_json())
        self.save_quirk_button = QPushButton("Save as quirk entry…", self)
        self.save_quirk_button.clicked.connect(lambda: self.save_quirk_entry())
        self.copy_button = QPushButton("Copy report", self)
        self.copy_button.clicked.connect(self.copy_report)
        for button in (self.cancel_button, self.save_json_button, self.save_quirk_button, self.copy_button):
            buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        close = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.clicked.connect(self.reject)
        layout.addWidget(buttons)
        self._set_running(False)
        for button in (self.save_json_button, self.save_quirk_button, self.copy_button):
            button.setEnabled(False)

    # --- running ---

    def start(self) -> None:
        """Run the probe on a worker thread (never on the GUI thread)."""
        if self.running:
            return
        self.report, self.error = None, ""
        self.findings.clear()
        self.details.clear()
        self._cancel.clear()
        self._thread = WorkerThread(f"probe {self.resource}", self)
        self._runner = ProbeRunner(self.resource, self.backend, self.timeout_ms, self.db, self._cancel)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        self._runner.progressed.connect(self._on_progress)
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

    @Slot(str)
    def _on_progress(self, title: str) -> None:
        self.status.setText(f"Checking: {title}…")

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
        self.status.setText(", ".join(parts) + f" in {report.duration_s:.1f} s{suffix}.")
        speed = report.speed.replace(" (", " speed (", 1)
        self.header.setText(
            f"<b>{escape(report.manufacturer)} {escape(report.product)}</b> &nbsp;·&nbsp; "
            f"{report.vid:04X}:{report.pid:04X} &nbsp;·&nbsp; {escape(report.protocol)} &nbsp;·&nbsp; "
            f"{escape(speed)}<br>{escape(report.resource)}"
            + (f"<br>*IDN? {escape(report.idn)}" if report.idn else ""))
        self._fill(report)
        self.save_json_button.setEnabled(True)
        self.copy_button.setEnabled(True)
        flags = report.suggested_flags()
        self.save_quirk_button.setEnabled(bool(flags))
        self.save_quirk_button.setToolTip(
            "Append the suggested entry to your quirks file" if flags else "No quirk flag would help this device")
        self.report_ready.emit(report)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.error = message
        c = colors(self.palette())
        advice = ""
        if "held by another" in message or "busy" in message.lower():
            advice = " Close the instrument's session and probe again."
        self.status.setText(f"<span style='color:{c.error}'>The probe could not run: {escape(message)}.{advice}</span>")

    # --- the report ---

    def _fill(self, report: ProbeReport) -> None:
        c = colors(self.palette())
        tint = {FAIL: c.error, WARN: c.warning, INFO: c.info, PASS: c.ok, SKIP: c.muted}
        self.findings.clear()
        first_problem = None
        # Deviations first, then warnings and notes, then what passed or was skipped; the
        # probe's order within each.
        order = {FAIL: 0, WARN: 1, INFO: 2, PASS: 3, SKIP: 4}
        for finding in sorted(report.findings, key=lambda f: order.get(f.verdict, 5)):
            item = QTreeWidgetItem([VERDICT_LABELS.get(finding.verdict, finding.verdict), finding.title,
                                    finding.observed])
            item.setData(0, FINDING_ROLE, finding)
            item.setForeground(0, _brush(tint.get(finding.verdict, c.muted)))
            if finding.verdict == FAIL:
                font = item.font(0)
                font.setBold(True)
                item.setFont(0, font)
            item.setToolTip(2, finding.observed)
            self.findings.addTopLevelItem(item)
            if first_problem is None and finding.verdict in (FAIL, WARN):
                first_problem = item
        self.findings.setCurrentItem(first_problem or self.findings.topLevelItem(0))

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _show_details(self, current: QTreeWidgetItem | None, _previous=None) -> None:
        if current is None:
            self.details.clear()
            return
        finding = current.data(0, FINDING_ROLE)
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

    def save_quirk_entry(self, *, confirm: bool = True) -> Path | None:
        """Append the suggested entry to the user's quirks file, after showing it."""
        if self.report is None or not self.report.suggested_flags():
            return None
        target = self.quirks_path or user_quirks_path()
        entry = self.report.quirk_entry()
        if confirm:
            box = QMessageBox(QMessageBox.Icon.Question, "Save as quirk entry",
                              f"Append this entry to {target}?\nNew sessions with this instrument will use it.",
                              QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel, self)
            box.setDetailedText(entry)
            if box.exec() != QMessageBox.StandardButton.Save:
                return None
        try:
            saved = save_quirk_entry(self.report, target)
        except (TmcError, OSError, ValueError) as exc:
            QMessageBox.warning(self, "Save as quirk entry", f"The entry was not saved: {exc}")
            return None
        self.status.setText(f"Quirk entry appended to {escape(str(saved))}; new sessions use it.")
        return saved

    def copy_report(self) -> None:
        if self.report is not None:
            QGuiApplication.clipboard().setText(self.report.text())

    # --- closing ---

    def stop(self, timeout_ms: int) -> bool:
        """Cancel a running probe and wait for its thread; True when it has ended."""
        if not self._thread_alive():
            return True
        self._cancel.set()
        ended = self._thread.wait(max(0, timeout_ms))
        if ended:
            self._set_running(False)  # the thread's finished signal may not be delivered before shutdown
        return ended

    def reject(self) -> None:
        """Close; a running probe is cancelled and its thread ends on its own."""
        if self._thread_alive():
            self.cancel()
            thread = self._thread
            self.hide()
            thread.finished.connect(lambda: QDialog.reject(self))
            return
        super().reject()


def _brush(color: str):
    from PySide6.QtGui import QBrush, QColor

    return QBrush(QColor(color))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
