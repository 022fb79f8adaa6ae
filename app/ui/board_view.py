"""A picture of the virtual SAM7-EK board's front: its four LEDs and the SW1 button.

The LEDs are read from the device model (``Sam7Counter.leds()``) by a timer at 25 Hz while
the picture is shown. SW1 is pressed with the mouse (or Space when the picture has focus):
the press and the release drive the board's raw SW1 input at the moments they happen, so
a click shorter than the firmware's 30 ms glitch filter is not counted, just as on the board.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPalette, QPen, QRadialGradient
from PySide6.QtWidgets import QSizePolicy, QWidget

REFRESH_MS = 40  # 25 Hz: the 10 Hz USB activity blink and the 1 Hz heartbeat both show

# (attribute of Leds, silkscreen label, pin, lit colour)
LEDS = (
    ("usb", "USB", "LED1 PA0", "#3ddc5a"),
    ("remote", "REMOTE", "LED2 PA1", "#ffbf1f"),
    ("ready", "READY", "LED3 PA2", "#ff4a3d"),
    ("heartbeat", "HEARTBEAT", "LED4 PA3", "#3ddc5a"),
)

PCB = QColor("#1d5c3a")
PCB_EDGE = QColor("#123d26")
SILK = QColor("#f2f2e9")
COPPER = QColor("#c9a45c")


class BoardView(QWidget):
    """The board's front, drawn with QPainter. ``board`` returns the device model, or None when gone."""

    refused = Signal(str)  # why a press could not be applied

    def __init__(self, board: Callable[[], object | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("boardView")
        self._board = board
        self.leds = None  # the last Leds read
        self.pressed = False
        self.sw1_enabled = True
        self.sw1_disabled_reason = ""
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMouseTracking(True)
        self.setToolTip("The virtual SAM7-EK. Press SW1 with the mouse (or Space): "
                        "presses shorter than 30 ms are filtered out by the firmware.")
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)

    # --- model ---

    def board(self):
        return self._board()

    def refresh(self) -> None:
        board = self.board()
        leds = board.leds() if board is not None else None
        if leds != self.leds:
            self.leds = leds
            self.update()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()
        self.timer.start()

    def hideEvent(self, event) -> None:
        self.timer.stop()
        super().hideEvent(event)

    # --- SW1 ---

    def set_sw1_enabled(self, enabled: bool, reason: str = "") -> None:
        self.sw1_enabled = enabled
        self.sw1_disabled_reason = reason
        if not enabled and self.pressed:
            self.release_sw1()
        self.update()

    def press_sw1(self) -> bool:
        """Pull SW1's input low now (the button goes down)."""
        return self._drive(0)

    def release_sw1(self) -> bool:
        """Let SW1's input go high now (the button comes up)."""
        return self._drive(1)

    def _drive(self, level: int) -> bool:
        if (level == 0) == self.pressed:
            return True
        board = self.board()
        if board is None:
            self.refused.emit("the board is not on the virtual bus")
            return False
        if level == 0 and not self.sw1_enabled:
            self.refused.emit(self.sw1_disabled_reason or "SW1 cannot be pressed now")
            return False
        try:
            board.feed_edges([(board.clock.now(), level)])
        except ValueError as exc:  # edges queued for later (the pulse source) own the input
            self.refused.emit(str(exc))
            return False
        self.pressed = level == 0
        self.update()
        return True

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.sw1_rect().contains(event.position()):
            self.press_sw1()
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.pressed:
            self.release_sw1()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseMoveEvent(self, event) -> None:
        over = self.sw1_rect().contains(event.position())
        self.setCursor(Qt.CursorShape.PointingHandCursor if over and self.sw1_enabled else Qt.CursorShape.ArrowCursor)
        super().mouseMoveEvent(event)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.press_sw1()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.release_sw1()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event) -> None:
        if self.pressed:
            self.release_sw1()
        super().focusOutEvent(event)

    # --- geometry ---

    def sizeHint(self) -> QSize:
        unit = self.fontMetrics().height()
        return QSize(unit * 26, unit * 15)

    def minimumSizeHint(self) -> QSize:
        unit = self.fontMetrics().height()
        return QSize(unit * 18, unit * 11)

    def board_rect(self) -> QRectF:
        """The PCB, as large as fits with the board's 100:58 aspect ratio."""
        w, h = self.width() - 8, self.height() - 8
        if w * 0.58 > h:
            w = h / 0.58
        else:
            h = w * 0.58
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def _unit(self) -> float:
        return self.board_rect().width() / 100

    def led_center(self, index: int) -> QPointF:
        r, u = self.board_rect(), self._unit()
        return QPointF(r.left() + u * (50 + index * 12.5), r.top() + u * 16)

    def sw1_rect(self) -> QRectF:
        r, u = self.board_rect(), self._unit()
        return QRectF(r.left() + u * 74, r.top() + u * 32, u * 14, u * 14)

    # --- painting ---

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        r, u = self.board_rect(), self._unit()
        board_present = self.board() is not None

        # The PCB with its mounting holes.
        painter.setPen(QPen(PCB_EDGE, max(1.0, u * 0.5)))
        painter.setBrush(PCB)
        painter.drawRoundedRect(r, u * 2.5, u * 2.5)
        painter.setPen(QPen(COPPER, u * 0.6))
        painter.setBrush(self.palette().color(QPalette.ColorRole.Window))
        for x, y in ((4, 4), (96, 4), (4, 54), (96, 54)):
            painter.drawEllipse(QPointF(r.left() + u * x, r.top() + u * y), u * 1.6, u * 1.6)

        font = QFont(self.font())
        font.setPixelSize(max(7, int(u * 2.6)))
        font.setBold(True)
        small = QFont(self.font())
        small.setPixelSize(max(6, int(u * 2.1)))

        # The USB device socket on the left edge.
        usb = QRectF(r.left() - u * 1.5, r.top() + u * 20, u * 10, u * 9)
        painter.setPen(QPen(QColor("#8c8c8c"), u * 0.4))
        painter.setBrush(QColor("#c8c8c8"))
        painter.drawRect(usb)
        painter.setBrush(QColor("#5a5a5a"))
        painter.drawRect(usb.adjusted(u * 2.5, u * 2.5, -u * 2.5, -u * 2.5))
        self._silk(painter, small, QRectF(r.left() + u * 1.5, usb.bottom() + u, u * 14, u * 3), "USB",
                   Qt.AlignmentFlag.AlignLeft)

        # The microcontroller.
        chip = QRectF(r.left() + u * 18, r.top() + u * 26, u * 20, u * 20)
        painter.setPen(QPen(QColor("#9a9a9a"), u * 0.3))
        for i in range(8):
            offset = u * (2.5 + i * 2.1)
            for x1, y1, x2, y2 in ((chip.left() - u * 1.5, chip.top() + offset, chip.left(), chip.top() + offset),
                                   (chip.right(), chip.top() + offset, chip.right() + u * 1.5, chip.top() + offset),
                                   (chip.left() + offset, chip.top() - u * 1.5, chip.left() + offset, chip.top()),
                                   (chip.left() + offset, chip.bottom(), chip.left() + offset, chip.bottom() + u * 1.5)):
                painter.drawLine(QPointF(x1, y1), QPointF(x2, y2))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#1b1b1b"))
        painter.drawRect(chip)
        painter.setPen(QColor("#d0d0d0"))
        painter.setFont(small)
        painter.drawText(chip, int(Qt.AlignmentFlag.AlignCenter), "AT91\nSAM7S")

        self._silk(painter, font, QRectF(r.left() + u * 8, r.top() + u * 3.5, u * 40, u * 5), "AT91SAM7S-EK",
                   Qt.AlignmentFlag.AlignLeft)
        self._silk(painter, small, QRectF(r.left() + u * 8, r.top() + u * 8.5, u * 40, u * 4),
                   "USBTMC counter (virtual)", Qt.AlignmentFlag.AlignLeft)

        # The four LEDs.
        for index, (attr, label, pin, lit_color) in enumerate(LEDS):
            center = self.led_center(index)
            lit = bool(self.leds is not None and getattr(self.leds, attr))
            self._led(painter, center, u * 3.2, QColor(lit_color), lit)
            self._silk(painter, small, QRectF(center.x() - u * 6.5, center.y() + u * 4.2, u * 13, u * 3), label)
            self._silk(painter, small, QRectF(center.x() - u * 6.5, center.y() + u * 7.2, u * 13, u * 3), pin,
                       muted=True)

        # SW1: a tactile switch.
        sw = self.sw1_rect()
        painter.setPen(QPen(QColor("#6d6d6d"), u * 0.4))
        painter.setBrush(QColor("#b9b9b9"))
        painter.drawRoundedRect(sw, u, u)
        cap_radius = u * (4.4 if self.pressed else 4.9)
        cap = QRadialGradient(sw.center() - QPointF(u, u), cap_radius * 1.6)
        base = QColor("#2a2a2a") if not self.pressed else QColor("#111111")
        cap.setColorAt(0, base.lighter(230 if not self.pressed else 160))
        cap.setColorAt(1, base)
        painter.setBrush(cap)
        painter.setPen(QPen(QColor("#000000"), u * 0.3))
        painter.drawEllipse(sw.center(), cap_radius, cap_radius)
        if self.hasFocus():
            painter.setPen(QPen(self.palette().color(QPalette.ColorRole.Highlight), u * 0.5, Qt.PenStyle.DotLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(sw.adjusted(-u, -u, u, u), u, u)
        self._silk(painter, font, QRectF(sw.left() - u * 4, sw.bottom() + u * 1.2, sw.width() + u * 8, u * 3.5), "SW1")
        self._silk(painter, small, QRectF(sw.left() - u * 6, sw.bottom() + u * 4.6, sw.width() + u * 12, u * 3),
                   "PA19 · click" if self.sw1_enabled else "PA19 · pulse source", muted=True)

        if not board_present:
            painter.setPen(Qt.PenStyle.NoPen)
            veil = QColor(self.palette().color(QPalette.ColorRole.Window))
            veil.setAlpha(200)
            painter.setBrush(veil)
            painter.drawRoundedRect(r, u * 2.5, u * 2.5)
            painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
            painter.setFont(font)
            painter.drawText(r, int(Qt.AlignmentFlag.AlignCenter), "The board is not on the virtual bus")

    def _silk(self, painter: QPainter, font: QFont, rect: QRectF, text: str,
              align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignHCenter, *, muted: bool = False) -> None:
        painter.setFont(font)
        color = QColor(SILK)
        if muted:
            color.setAlpha(170)
        painter.setPen(color)
        painter.drawText(rect, int(align | Qt.AlignmentFlag.AlignVCenter), text)

    @staticmethod
    def _led(painter: QPainter, center: QPointF, radius: float, color: QColor, lit: bool) -> None:
        if lit:
            glow = QRadialGradient(center, radius * 3)
            halo = QColor(color)
            halo.setAlpha(150)
            glow.setColorAt(0, halo)
            glow.setColorAt(1, QColor(0, 0, 0, 0))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(glow)
            painter.drawEllipse(center, radius * 3, radius * 3)
        body = QRadialGradient(center - QPointF(radius * 0.3, radius * 0.3), radius * 1.3)
        if lit:
            body.setColorAt(0, color.lighter(170))
            body.setColorAt(1, color)
        else:
            dark = QColor(color).darker(380)
            body.setColorAt(0, dark.lighter(160))
            body.setColorAt(1, dark)
        path = QPainterPath()
        path.addEllipse(center, radius, radius)
        painter.setPen(QPen(QColor("#0d0d0d"), radius * 0.15))
        painter.setBrush(body)
        painter.drawPath(path)
