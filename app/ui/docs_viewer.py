"""Help > Documentation: the user documentation shipped with the app, readable offline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QHBoxLayout, QListWidget, QTextBrowser, QWidget

# Shown first, in this order; any other page follows alphabetically.
PREFERRED = ("ui.md", "virtual-instruments.md", "quirks.md", "waveforms.md", "testing-your-scripts.md",
             "benchmarks.md", "architecture.md")


@dataclass(frozen=True)
class Page:
    file_name: str
    title: str
    markdown: str


def docs_folder():
    """The installed ``app.docs`` package, or the source tree's ``docs/`` when running from a checkout."""
    try:
        return resources.files("app.docs")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "docs"


_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _drop_images(markdown: str) -> str:
    """Leave out the screenshots: they are not installed, and the window itself is right there."""
    return _IMAGE.sub("", markdown)


def pages() -> list[Page]:
    """Every page, the preferred ones first."""
    folder = docs_folder()
    found = {entry.name: entry for entry in folder.iterdir() if entry.name.endswith(".md")}
    order = [name for name in PREFERRED if name in found] + sorted(set(found) - set(PREFERRED))
    result = []
    for name in order:
        text = found[name].read_text(encoding="utf-8")
        heading = next((line for line in text.splitlines() if line.startswith("# ")), name)
        result.append(Page(name, heading.lstrip("#").strip(), _drop_images(text)))
    return result


class DocsViewer(QDialog):
    """A page list beside a markdown view; links between pages switch pages, web links open the browser."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("TMC Console documentation")
        self.resize(1000, 700)
        self.list = QListWidget(self)
        self.list.setMaximumWidth(self.fontMetrics().averageCharWidth() * 44)
        self.list.setWordWrap(True)
        self.view = QTextBrowser(self)
        self.view.setOpenLinks(False)  # relative links would load files; handled in _on_link
        self.view.anchorClicked.connect(self._on_link)
        layout = QHBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(self.view, 1)
        self.pages = pages()
        self.list.addItems([page.title for page in self.pages])
        self.list.currentRowChanged.connect(self._show)
        if self.pages:
            self.list.setCurrentRow(0)
        else:
            self.view.setPlainText("No documentation was installed with this copy of TMC Console.")

    def _show(self, row: int) -> None:
        if 0 <= row < len(self.pages):
            self.view.setMarkdown(self.pages[row].markdown)

    def _on_link(self, url: QUrl) -> None:
        for row, page in enumerate(self.pages):
            if page.file_name == url.fileName():
                self.list.setCurrentRow(row)
                return
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)
