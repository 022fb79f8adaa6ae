"""The driver doctor's explanation for one device: the cause, then the fixes, least invasive first."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QTextBrowser, QWidget

from app.usbtmc.doctor import Diagnosis

from .theme import colors

_COPY_SCHEME = "copy"


def diagnosis_html(diagnosis: Diagnosis, palette=None) -> str:
    """The explanation as rich text; each line to copy has a "Copy" link (copy:N)."""
    c = colors(palette)
    tone = c.error if diagnosis.blocking else c.warning
    parts = [
        f"<p style='margin:0'><b style='color:{tone}'>{escape(diagnosis.summary)}</b></p>",
        f"<p style='margin-top:4px'>{escape(diagnosis.explanation)}</p>",
    ]
    copies = 0
    for number, fix in enumerate(diagnosis.fixes, 1):
        title = escape(fix.title) if len(diagnosis.fixes) == 1 else f"{number}. {escape(fix.title)}"
        parts.append(f"<p style='margin-bottom:0'><b>{title}</b></p>")
        parts.append("<ol style='margin-top:0'>" + "".join(f"<li>{escape(step)}</li>" for step in fix.steps) + "</ol>")
        if fix.copy_text:
            parts.append(
                f"<p style='margin-left:12px'><code>{escape(fix.copy_text)}</code>&nbsp;&nbsp;"
                f"<a href='{_COPY_SCHEME}:{copies}' style='color:{c.link}'>Copy</a></p>"
            )
            copies += 1
        if fix.warning:
            parts.append(f"<p style='margin-left:12px; color:{c.warning}'>&#9888; {escape(fix.warning)}</p>")
    if diagnosis.error:
        parts.append(f"<p style='color:{c.muted}'>libusb said: {escape(diagnosis.error)}</p>")
    return "".join(parts)


class DoctorView(QTextBrowser):
    """Read-only, scrolling; its "Copy" links put the line beside them on the clipboard."""

    copied = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("driverDoctor")
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        self._diagnosis: Diagnosis | None = None

    @property
    def diagnosis(self) -> Diagnosis | None:
        return self._diagnosis

    def show_diagnosis(self, diagnosis: Diagnosis | None) -> None:
        self._diagnosis = diagnosis
        self.setVisible(diagnosis is not None)
        self.setHtml(diagnosis_html(diagnosis, self.palette()) if diagnosis is not None else "")

    def copy_line(self, index: int) -> str:
        """Put the ``index``-th line to copy on the clipboard; returns it."""
        texts = self._diagnosis.copy_texts if self._diagnosis is not None else ()
        if not 0 <= index < len(texts):
            return ""
        QGuiApplication.clipboard().setText(texts[index])
        self.copied.emit(texts[index])
        return texts[index]

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == _COPY_SCHEME:
            try:
                self.copy_line(int(url.path()))
            except ValueError:
                pass
            return
        QDesktopServices.openUrl(url)
