"""Fitting a narrow window (1024x700, or 200 % scaling) without cutting anything off.

:class:`FlowLayout` puts its items in a row and wraps them onto further rows when the row is too
narrow, so every control stays visible instead of being cut off or folded into a tool bar's "››"
menu. The rows are laid out from the width the layout is given (height-for-width), so wrapping
follows the user resizing the window and nothing else: a control never moves by itself.
:class:`FittingPlaceholder` picks the longest of several hints that fits a line edit.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QLineEdit, QSizePolicy, QWidget


class FlowLayout(QLayout):
    """Items left to right, wrapping; an item with a horizontal stretch policy (Expanding or
    Ignored) takes the rest of its row."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._gap = spacing
        self.setContentsMargins(0, 0, 0, 0)

    # --- QLayout's interface ------------------------------------------------------------------

    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 - Qt's name
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt's name
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt's name
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 - Qt's name
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt's name
        return self._arrange(QRect(0, 0, width, 0), apply=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 - Qt's name
        super().setGeometry(rect)
        self._arrange(rect, apply=True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """All items on one row."""
        visible = self._visible()
        width = sum(i.sizeHint().width() for i in visible) + self._gap * max(0, len(visible) - 1)
        height = max((i.sizeHint().height() for i in visible), default=0)
        m = self.contentsMargins()
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802 - Qt's name
        """As narrow as the widest single item: everything else wraps."""
        size = QSize()
        for item in self._visible():
            size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    # --- arranging ----------------------------------------------------------------------------

    def _visible(self) -> list[QLayoutItem]:
        return [i for i in self._items if not i.isEmpty()]

    @staticmethod
    def _stretches(item: QLayoutItem) -> bool:
        widget = item.widget()
        policy = widget.sizePolicy().horizontalPolicy() if widget is not None else QSizePolicy.Policy.Fixed
        return policy in (QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored, QSizePolicy.Policy.MinimumExpanding)

    def _arrange(self, rect: QRect, apply: bool) -> int:
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        rows: list[list[QLayoutItem]] = []
        row: list[QLayoutItem] = []
        used = 0
        for item in self._visible():
            width = max(item.sizeHint().width(), item.minimumSize().width())
            if self._stretches(item):
                width = item.minimumSize().width()
            if row and used + self._gap + width > area.width():
                rows.append(row)
                row, used = [], 0
            used += (self._gap if row else 0) + width
            row.append(item)
        if row:
            rows.append(row)
        y = area.y()
        for row in rows:
            height = max(i.sizeHint().height() for i in row)
            widths = [i.minimumSize().width() if self._stretches(i) else max(i.sizeHint().width(), i.minimumSize().width())
                      for i in row]
            spare = max(0, area.width() - sum(widths) - self._gap * (len(row) - 1))
            stretching = [k for k, i in enumerate(row) if self._stretches(i)]
            for k in stretching:
                widths[k] += spare // len(stretching)
            x = area.x()
            for item, width in zip(row, widths):
                if apply:
                    item_height = min(height, max(item.sizeHint().height(), item.minimumSize().height()))
                    top = y + (height - item_height) // 2
                    item.setGeometry(QRect(QPoint(x, top), QSize(min(width, area.width()), item_height)))
                x += width + self._gap
            y += height + self._gap
        return max(0, y - self._gap - area.y()) + m.top() + m.bottom()


class FittingPlaceholder(QObject):
    """Gives a line edit the longest of several placeholder texts that fits its width, so a
    narrow window shows a shorter hint rather than one cut off in the middle of a word."""

    def __init__(self, edit: QLineEdit, variants: list[str]) -> None:
        super().__init__(edit)
        self.edit = edit
        self.variants = variants
        edit.installEventFilter(self)
        self.fit()

    def fit(self) -> None:
        edit = self.edit
        # The text area: the box less its frame, margins and the clear button (about a line high).
        room = edit.contentsRect().width() - edit.fontMetrics().height() * (2 if edit.isClearButtonEnabled() else 1)
        metrics = edit.fontMetrics()
        text = next((v for v in self.variants if metrics.horizontalAdvance(v) <= room), self.variants[-1])
        if edit.placeholderText() != text:
            edit.setPlaceholderText(text)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.edit and event.type() in (QEvent.Type.Resize, QEvent.Type.FontChange):
            self.fit()
        return False
