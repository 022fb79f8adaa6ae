"""The console's input line: history recall with Up/Down and completion from catalogues."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QFontDatabase, QKeyEvent, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QCompleter, QHeaderView, QLineEdit, QTreeView, QWidget

from app.session.catalog import CatalogEntry, complete, current_unit

COMPLETION_ROLE = Qt.ItemDataRole.UserRole


class CommandLine(QLineEdit):
    """Enter submits (``submitted``); Shift+Enter sends without reading, Ctrl+Enter queries.

    Up/Down walk the history (the line being typed is kept as a draft); Tab or
    typing a header offers catalogue completions for the unit under the cursor.
    """

    submitted = Signal(str, str)  # text, mode: "auto", "send" or "query"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("commandLine")
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setPlaceholderText(r"SCPI command, e.g. *IDN?   (Enter: send, and read if it is a query;  \n \r \xNN escapes)")
        self.setClearButtonEnabled(True)
        self._history: list[str] = []
        self._pos = 0  # index into history; len(history) means "the draft"
        self._draft = ""
        self._entries: tuple[CatalogEntry, ...] = ()
        self._unit_start = -1

        self.model = QStandardItemModel(0, 2, self)
        self.completer = QCompleter(self.model, self)
        self.completer.setWidget(self)
        self.completer.setCompletionMode(QCompleter.CompletionMode.UnfilteredPopupCompletion)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        popup = QTreeView()
        popup.setObjectName("completionPopup")
        popup.setHeaderHidden(True)
        popup.setRootIsDecorated(False)
        popup.setUniformRowHeights(True)
        popup.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        popup.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        popup.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.completer.setPopup(popup)
        self.completer.setMaxVisibleItems(12)
        self.completer.activated[QModelIndex].connect(self._insert_completion)
        self.textEdited.connect(self._on_edited)

    # --- history ---

    def set_history(self, lines: list[str]) -> None:
        self._history = list(lines)
        self._pos = len(self._history)
        self._draft = ""

    def history(self) -> list[str]:
        return list(self._history)

    def remember(self, line: str) -> None:
        """Add ``line`` as the newest entry (moving it if it was already there)."""
        if line.strip():
            if line in self._history:
                self._history.remove(line)
            self._history.append(line)
        self._pos = len(self._history)
        self._draft = ""

    def history_up(self) -> None:
        if not self._history or self._pos == 0:
            return
        if self._pos == len(self._history):
            self._draft = self.text()
        self._pos -= 1
        self.setText(self._history[self._pos])

    def history_down(self) -> None:
        if self._pos >= len(self._history):
            return
        self._pos += 1
        self.setText(self._history[self._pos] if self._pos < len(self._history) else self._draft)

    # --- completion ---

    def set_catalog(self, entries: tuple[CatalogEntry, ...]) -> None:
        self._entries = entries
        self.hide_completions()

    def completions(self) -> list[str]:
        """What the completion list currently offers (texts to insert)."""
        return [self.model.item(row, 0).data(COMPLETION_ROLE) for row in range(self.model.rowCount())]

    def completion_popup_visible(self) -> bool:
        return self.completer.popup().isVisible()

    def hide_completions(self) -> None:
        self.completer.popup().hide()

    def update_completions(self, show: bool = True) -> int:
        start, unit = current_unit(self.text(), self.cursorPosition())
        self.model.removeRows(0, self.model.rowCount())
        self._unit_start = start
        found = complete(unit, self._entries) if start >= 0 else []
        if len(found) == 1 and found[0].text.strip().upper() == unit.strip().upper():
            found = []  # already typed in full
        for item in found:
            name = QStandardItem(item.entry.display)
            name.setData(item.text, COMPLETION_ROLE)
            name.setToolTip(f"{item.entry.description}\n({item.entry.catalog})")
            description = QStandardItem(item.entry.description)
            description.setToolTip(item.entry.description)
            self.model.appendRow([name, description])
        if not found:
            self.hide_completions()
            return 0
        if show:
            popup = self.completer.popup()
            popup.setCurrentIndex(QModelIndex())
            rect = self.cursorRect()
            rect.setWidth(min(self.width() * 2, max(self.width(), popup.sizeHintForColumn(0) + popup.sizeHintForColumn(1) + 40)))
            self.completer.complete(rect)
        return len(found)

    @Slot(str)
    def _on_edited(self, _text: str) -> None:
        self._pos = len(self._history)
        self.update_completions(show=True)

    @Slot(QModelIndex)
    def _insert_completion(self, index: QModelIndex) -> None:
        text = index.sibling(index.row(), 0).data(COMPLETION_ROLE)
        if text is not None:
            self.accept_completion(text)

    def accept_completion(self, text: str) -> None:
        """Replace the unit under the cursor with ``text``."""
        start, _unit = current_unit(self.text(), self.cursorPosition())
        if start < 0:
            return
        line, cursor = self.text(), self.cursorPosition()
        end = cursor
        while end < len(line) and line[end] not in " ;":
            end += 1
        new = line[:start] + text + line[end:]
        self.setText(new)
        self.setCursorPosition(start + len(text))
        self.hide_completions()

    # --- keys ---

    def event(self, event: QEvent) -> bool:
        # Esc closes the completion list before it means "abort" to the console.
        if (event.type() == QEvent.Type.ShortcutOverride and event.key() == Qt.Key.Key_Escape
                and self.completion_popup_visible()):
            event.accept()
            return True
        # Tab completes instead of moving the focus.
        if event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Tab and not event.modifiers():
            if self.completion_popup_visible() and self.completer.popup().currentIndex().isValid():
                event.ignore()  # QCompleter inserts the picked entry
                return False
            count = self.update_completions(show=False)
            if count == 1:
                self.accept_completion(self.completions()[0])
            elif count > 1:
                self.update_completions(show=True)
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        popup = self.completer.popup()
        if (self.completion_popup_visible() and popup.currentIndex().isValid()
                and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Tab)):
            # An entry is picked in the completion list: leave the key to QCompleter, which
            # inserts it (QCompleter only acts on keys its widget ignores). Nothing is sent.
            event.ignore()
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            mods = event.modifiers()
            mode = "query" if mods & Qt.KeyboardModifier.ControlModifier else (
                "send" if mods & Qt.KeyboardModifier.ShiftModifier else "auto"
            )
            self.hide_completions()
            self.submitted.emit(self.text(), mode)
            return
        if not self.completion_popup_visible():
            if key == Qt.Key.Key_Up:
                self.history_up()
                return
            if key == Qt.Key.Key_Down:
                self.history_down()
                return
        if key == Qt.Key.Key_Escape and self.completion_popup_visible():
            self.hide_completions()
            return
        super().keyPressEvent(event)
