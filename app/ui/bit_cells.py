"""Register bits as cells: a name in a rounded box, filled when the bit is set, clickable
when the register is writable. The status view and the SAM7 panel both draw registers with them.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import QAbstractButton, QLabel, QWidget

from app.session.device_profile import UNUSED
from app.usbtmc import ieee488

from .theme import colors

ESR_ERROR_BITS = int(ieee488.ESR_ERROR_MASK)  # CME, EXE, DDE, QYE (488.2 11.5.1.1)


def text_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background``."""
    luminance = 0.2126 * background.redF() + 0.7152 * background.greenF() + 0.0722 * background.blueF()
    return QColor("#111111") if luminance > 0.45 else QColor("#ffffff")


def set_text(label: QLabel, text: str) -> None:
    """Change a label only when its text changes (a repeated poll repaints nothing)."""
    if label.text() != text:
        label.setText(text)


def bit_kind(register: str, bit: int, name: str) -> str:
    """How a set bit is coloured: summary, error, info, state, data or enable."""
    if name == UNUSED:
        return "unused"
    if register in ("ESE", "SRE"):
        return "enable"
    if register == "STB":
        return "summary" if bit == 6 else "data"
    if register == "ESR":
        return "error" if ESR_ERROR_BITS >> bit & 1 else "info"
    return "data"


class BitCell(QAbstractButton):
    """One bit of a register: its name, filled when set; clickable when the register is writable."""

    def __init__(self, bit: int, name: str, description: str, kind: str, *, editable: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bit = bit
        self.kind = kind
        self.editable = editable
        self.pending = False  # written, not read back yet
        self.setCheckable(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus if editable else Qt.FocusPolicy.NoFocus)
        if editable:
            self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.set_name(name, description)

    def set_name(self, name: str, description: str) -> None:
        self.setText(name)
        self.description = description
        self._update_tip()
        self.updateGeometry()
        self.update()

    def set_value(self, on: bool, *, pending: bool = False) -> None:
        if on == self.isChecked() and pending == self.pending:
            return  # polls repeat values: repaint only on a change
        self.pending = pending
        self.setChecked(on)
        self._update_tip()
        self.update()

    def _update_tip(self) -> None:
        state = "set" if self.isChecked() else "clear"
        tip = f"bit {self.bit} (value {1 << self.bit}): {self.text()}, {state}"
        if self.description:
            tip += f"\n{self.description}"
        if self.editable:
            tip += "\nClick to " + ("clear" if self.isChecked() else "set") + " it on the device"
        if self.pending:
            tip += "\n(written; reading back…)"
        self.setToolTip(tip)

    def nextCheckState(self) -> None:
        # The device owns the value: a click asks for a change, the read-back sets the state.
        pass

    def mousePressEvent(self, event) -> None:
        if self.editable and self.isEnabled():
            super().mousePressEvent(event)
        else:
            event.ignore()

    def keyPressEvent(self, event) -> None:
        if self.editable:
            super().keyPressEvent(event)
        else:
            event.ignore()

    def sizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        width = max(metrics.horizontalAdvance(self.text() or "0"), metrics.horizontalAdvance("RQS/MSS"))
        return QSize(width + metrics.averageCharWidth() * 2, metrics.height() + metrics.height() // 2 + 4)

    def minimumSizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        return QSize(metrics.horizontalAdvance(self.text() or "0") + 8, metrics.height() + 6)

    def fill_color(self) -> QColor:
        palette = self.palette()
        if self.kind == "enable":
            return palette.color(QPalette.ColorRole.Highlight)
        c = colors(palette)
        return QColor({"summary": c.warning, "error": c.error, "info": c.info, "state": c.ok}.get(self.kind, c.sent))

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        rect = QRectF(self.rect()).adjusted(1.5, 1.5, -1.5, -1.5)
        on = self.isChecked()
        unused = self.kind == "unused"
        if on:
            background = self.fill_color()
            foreground = text_on(background)
            border = background.darker(130) if background.lightness() > 128 else background.lighter(140)
        else:
            background = palette.color(QPalette.ColorRole.Base)
            foreground = palette.color(QPalette.ColorRole.PlaceholderText if unused else QPalette.ColorRole.Text)
            border = palette.color(QPalette.ColorRole.Mid)
        if self.editable and self.underMouse() and self.isEnabled():
            border = palette.color(QPalette.ColorRole.Highlight)
        pen = QPen(border, 1.5 if not self.hasFocus() else 2.5)
        if self.pending:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(background)
        radius = min(rect.height() / 4, 5.0)
        painter.drawRoundedRect(rect, radius, radius)
        if not self.isEnabled():
            foreground = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        painter.setPen(foreground)
        font = self.font()
        if on:
            font.setBold(True)
        painter.setFont(font)
        text = self.text() if not unused else str(self.bit)
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), text)
