"""A dialog showing the bytes of a reply: hex dump, escaped text, and save to file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.usbtmc import files
from app.usbtmc.errors import SaveError


SHOWN_BYTES = 256 * 1024  # larger replies are shown in part; "save" writes all of it


from app.session import scpi

class RawViewDialog(QDialog):
    def __init__(self, data: bytes, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Raw reply: {title}")
        self.data = data
        block = scpi.find_block(data)
        self.block = block
        summary = f"{len(data):,} bytes"
        if block is not None:
            summary += f"; holds an IEEE 488.2 block {block.header.decode('ascii', 'replace')} of {block.payload_bytes:,} bytes"
        if len(data) > SHOWN_BYTES:
            summary += f"; the first {SHOWN_BYTES // 1024} KiB are shown"
        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        tabs = QTabWidget(self)
        self.hex_view = QPlainTextEdit(self)
        self.hex_view.setReadOnly(True)
        self.hex_view.setFont(fixed)
        self.hex_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.hex_view.setPlainText(scpi.hexdump(data, limit_bytes=SHOWN_BYTES))
        self.escaped_view = QPlainTextEdit(self)
        self.escaped_view.setReadOnly(True)
        self.escaped_view.setFont(fixed)
        self.escaped_view.setPlainText(scpi.escape_bytes(data[:SHOWN_BYTES]))
        tabs.addTab(self.hex_view, "Hex")
        tabs.addTab(self.escaped_view, "Escaped")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        save = QPushButton("Save reply…", self)
        save.clicked.connect(lambda: self.save(None, payload_only=False))
        buttons.addButton(save, QDialogButtonBox.ButtonRole.ActionRole)
        if block is not None:
            save_block = QPushButton("Save block data…", self)
            save_block.clicked.connect(lambda: self.save(None, payload_only=True))
            buttons.addButton(save_block, QDialogButtonBox.ButtonRole.ActionRole)
        copy = QPushButton("Copy escaped", self)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(scpi.escape_bytes(data[:SHOWN_BYTES])))
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(summary, self))
        self.save_problem = QLabel(self)  # a failed save says why here, in one line
        self.save_problem.setObjectName("saveProblem")
        self.save_problem.setWordWrap(True)
        self.save_problem.setTextFormat(Qt.TextFormat.PlainText)
        self.save_problem.hide()
        layout.addWidget(tabs, 1)
        layout.addWidget(self.save_problem)
        layout.addWidget(buttons)
        metrics = self.hex_view.fontMetrics()
        self.resize(metrics.horizontalAdvance("0" * 84), metrics.lineSpacing() * 24)

    def save(self, path: str | None, *, payload_only: bool) -> Path | None:
        data = self.block.payload(self.data) if payload_only and self.block is not None else self.data
        try:
            return save_bytes(self, data, path, "block.bin" if payload_only else "reply.bin")
        except SaveError as exc:
            self.save_problem.setText(str(exc))
            self.save_problem.show()
            return None


def save_bytes(parent: QWidget, data: bytes, path: str | None, suggestion: str) -> Path | None:
    """Write ``data`` to ``path`` (asking for one when None); returns where it went.

    Raises :class:`SaveError` (one line saying why) when the save fails."""
    if path is None:
        path, _ = QFileDialog.getSaveFileName(parent, "Save data", suggestion, "All files (*)")
        if not path:
            return None
    return files.save_bytes(path, data)  # SaveError: the old file is unchanged
