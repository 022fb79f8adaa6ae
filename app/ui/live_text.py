"""A one-line text that changes many times a second without relaying the window out.

``QLabel.setText`` always asks its layout to recompute, and the request climbs to the main
window: every layout and size hint on the way is asked again, several of them Python code
that must take the interpreter lock from a busy worker thread. Progress and counter texts
change at 10 to 20 Hz, so they use this widget instead: a new text repaints the widget and
nothing else. Its width hint only grows, in steps, and only then is the layout asked again.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

HINT_STEP_CHARS = 6  # the width hint grows in steps of this many average characters


class LiveText(QWidget):
    """A label-like widget for a frequently changing single line (elided with a tooltip when cut)."""

    def __init__(self, parent: QWidget | None = None, *, sample: str = "",
                 alignment: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft) -> None:
        super().__init__(parent)
        self._text = ""
        self._alignment = alignment | Qt.AlignmentFlag.AlignVCenter
        self._hint_px = self.fontMetrics().horizontalAdvance(sample)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 - QLabel's name, so it drops in for one
        if text == self._text:
            return
        self._text = text
        metrics = self.fontMetrics()
        wide = metrics.horizontalAdvance(text)
        if wide > self._hint_px:
            step = metrics.averageCharWidth() * HINT_STEP_CHARS
            self._hint_px = wide + step - wide % step
            self.updateGeometry()
        self._update_tooltip(wide)
        self.update()

    def _update_tooltip(self, wide: int) -> None:
        self.setToolTip(self._text if wide > self.contentsRect().width() - 4 else "")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        margins = self.contentsMargins()
        return QSize(self._hint_px + 4 + margins.left() + margins.right(),
                     self.fontMetrics().height() + 2 + margins.top() + margins.bottom())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(self.fontMetrics().averageCharWidth() * 4, self.sizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._update_tooltip(self.fontMetrics().horizontalAdvance(self._text))
        super().resizeEvent(event)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if not self._text:
            return
        painter = QPainter(self)
        painter.setPen(self.palette().windowText().color())
        rect = self.contentsRect().adjusted(2, 0, -2, 0)
        text = self.fontMetrics().elidedText(self._text, Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(rect, int(self._alignment), text)
        painter.end()


def hold_size(label: QLabel, texts: Iterable[str]) -> None:
    """Fix ``label``'s size to fit the widest of ``texts`` (as plain text, on one line), so a
    change among them relays nothing out: a widget of fixed size does not ask its layout again.
    For a state shown at the start and the end of every upload. Cheap enough to call before each
    change (the same size changes nothing), which also follows a change of font."""
    metrics = label.fontMetrics()
    margins = label.contentsMargins()
    width = max(metrics.horizontalAdvance(text) for text in texts)
    width += margins.left() + margins.right() + 2 * label.margin() + metrics.averageCharWidth()
    height = metrics.height() + margins.top() + margins.bottom() + 2 * label.margin()
    label.setFixedSize(width, height)
