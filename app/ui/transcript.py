"""The console transcript: timestamped, coloured entries with raw views of replies."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from html import escape

from PySide6.QtCore import QEvent, QUrl, Signal, Slot
from PySide6.QtGui import QFontDatabase, QFontMetrics, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

from . import scpi
from .theme import colors

MAX_ENTRIES = 5000
MAX_SHOWN_CHARS = 2000  # longer replies are cut in the view; the raw view shows all

GLYPHS = {"sent": "→", "received": "←", "error": "✗", "warning": "⚠", "info": "•", "srq": "⚑", "note": "·"}
LABELS = {"sent": ">>", "received": "<<", "error": "!!", "warning": "!", "info": "--", "srq": "SRQ", "note": "--"}


@dataclass
class Entry:
    """One line of the transcript."""

    id: int
    at: float  # wall-clock seconds
    kind: str  # sent, received, error, warning, info, srq, note
    text: str
    detail: str = ""
    duration_ms: float | None = None
    data: bytes | None = None  # the raw reply, for the raw view and "save"
    block: scpi.BlockSummary | None = None
    tag: str = ""  # e.g. "on open", "script line 3"
    command_id: int = 0
    extra: dict = field(default_factory=dict)


def format_time(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def format_ms(ms: float) -> str:
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


class Transcript(QTextBrowser):
    """Entries as HTML paragraphs, one per entry; links open the raw view or save a block."""

    raw_requested = Signal(int)  # entry id
    save_requested = Signal(int)  # entry id
    trace_requested = Signal(int)  # entry id: show its transfers in the I/O trace

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("transcript")
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.document().setDefaultFont(fixed)
        # Wrapped lines and details hang under the text, not under the timestamp.
        self._indent_px = QFontMetrics(fixed).horizontalAdvance("00:00:00.000  ")
        self.document().setMaximumBlockCount(MAX_ENTRIES)
        self.setPlaceholderText("Commands and replies appear here.")
        self._entries: deque[Entry] = deque(maxlen=MAX_ENTRIES)
        self._by_id: dict[int, Entry] = {}
        self._ids = itertools.count(1)
        #: Entries of commands get a "trace" link (set when the session is traced).
        self.trace_links = False

    # --- entries ---

    def add(self, kind: str, text: str, **kwargs) -> Entry:
        at = kwargs.pop("at", None) or time.time()
        entry = Entry(next(self._ids), at, kind, text, **kwargs)
        if len(self._entries) == self._entries.maxlen:
            old = self._entries.popleft()
            self._by_id.pop(old.id, None)
        self._entries.append(entry)
        self._by_id[entry.id] = entry
        bar = self.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if not self.document().isEmpty():
            cursor.insertBlock()
        cursor.insertHtml(self._html(entry))
        if at_bottom:
            bar.setValue(bar.maximum())
        return entry

    def entries(self) -> list[Entry]:
        return list(self._entries)

    def entry(self, entry_id: int) -> Entry | None:
        return self._by_id.get(entry_id)

    def clear_entries(self) -> None:
        self._entries.clear()
        self._by_id.clear()
        self.document().clear()

    def plain_text(self) -> str:
        """The transcript as text, for saving (full replies, not the shortened view)."""
        lines = []
        for e in self._entries:
            line = f"{format_time(e.at)} {LABELS.get(e.kind, '--'):>3} {self._text_of(e, full=True)}"
            if e.duration_ms is not None:
                line += f"  ({format_ms(e.duration_ms)})"
            if e.tag:
                line += f"  [{e.tag}]"
            lines.append(line)
            if e.detail:
                lines.append(" " * 17 + e.detail)
        return "\n".join(lines) + ("\n" if lines else "")

    # --- rendering ---

    @staticmethod
    def _text_of(e: Entry, full: bool = False) -> str:
        if e.block is not None:
            b = e.block
            head = b.prefix.decode("ascii", "backslashreplace") + b.header.decode("ascii", "backslashreplace")
            first = " ".join(f"{x:02X}" for x in b.first_bytes)
            more = " …" if b.payload_bytes > len(b.first_bytes) else ""
            return f"{head}: block of {b.payload_bytes:,} bytes: {first}{more}"
        if full or len(e.text) <= MAX_SHOWN_CHARS:
            return e.text
        return e.text[:MAX_SHOWN_CHARS] + f" … ({len(e.text) - MAX_SHOWN_CHARS:,} more characters)"

    def _html(self, e: Entry) -> str:
        c = colors(self.palette())
        color = {
            "sent": c.sent, "received": c.received, "error": c.error, "warning": c.warning,
            "info": c.info, "srq": c.warning, "note": c.muted,
        }.get(e.kind, c.muted)
        parts = [
            f"<a name='e{e.id}'></a><span style='color:{c.muted}'>{format_time(e.at)}</span>  ",
            f"<span style='color:{color}'>{GLYPHS.get(e.kind, '·')} {escape(self._text_of(e))}</span>",
        ]
        if e.duration_ms is not None:
            parts.append(f"  <span style='color:{c.muted}'>{format_ms(e.duration_ms)}</span>")
        if e.tag:
            parts.append(f"  <span style='color:{c.muted}'>[{escape(e.tag)}]</span>")
        if e.data is not None:
            parts.append(f"  <a style='color:{c.link}' href='raw:{e.id}'>raw</a>")
            if e.block is not None:
                parts.append(f" <a style='color:{c.link}' href='save:{e.id}'>save…</a>")
        if self.trace_links and e.command_id and e.kind in ("sent", "received", "error", "warning"):
            parts.append(f"  <a style='color:{c.link}' href='trace:{e.id}'>trace</a>")
        if e.detail:
            parts.append(f"<br><span style='color:{c.muted}'>{escape(e.detail)}</span>")
        indent = self._indent_px
        return (f"<p style='margin-top:0; margin-bottom:0; margin-left:{indent}px; text-indent:-{indent}px; "
                f"white-space:pre-wrap'>{''.join(parts)}</p>")

    def rerender(self) -> None:
        bar = self.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        self.document().clear()
        cursor = QTextCursor(self.document())
        for i, e in enumerate(self._entries):
            if i:
                cursor.insertBlock()
            cursor.insertHtml(self._html(e))
        if at_bottom:
            bar.setValue(bar.maximum())

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self.rerender()

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        scheme, _, ident = url.toString().partition(":")
        if not ident.isdigit():
            return
        if scheme == "raw":
            self.raw_requested.emit(int(ident))
        elif scheme == "save":
            self.save_requested.emit(int(ident))
        elif scheme == "trace":
            self.trace_requested.emit(int(ident))

    def scroll_to_command(self, command_id: int) -> Entry | None:
        """Bring the first entry of the command ``command_id`` into view; returns it."""
        for e in self._entries:
            if e.command_id == command_id:
                self.scrollToAnchor(f"e{e.id}")
                return e
        return None
