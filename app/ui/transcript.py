"""The console transcript: timestamped, coloured entries with raw views of replies."""

from __future__ import annotations

import itertools
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from html import escape

from PySide6.QtCore import QEvent, QUrl, Signal, Slot
from PySide6.QtGui import QFontDatabase, QFontMetrics, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

from app.session import scpi

from .theme import colors

MAX_ENTRIES = 5000
TRIM_ENTRIES = 250  # past MAX_ENTRIES, the oldest entries go this many at a time (see Transcript)
MAX_SHOWN_CHARS = 2000  # longer replies are cut in the view; the raw view shows all
MIB = 1 << 20
# Reply bytes larger than this go to the transcript's spool file on disk; the entry keeps a reference.
INLINE_DATA_BYTES = 64 * 1024
# Reply bytes and text kept in memory by all entries together; past it, replies go to the spool too.
MAX_MEMORY_BYTES = 32 * MIB
# Everything the transcript holds, in memory and on disk: past it the oldest entries go, as at MAX_ENTRIES.
MAX_TOTAL_BYTES = 512 * MIB
# Of a long reply's text only this much is kept; saving the transcript decodes the rest from its bytes.
MAX_TEXT_CHARS = 64 * 1024
SPOOL_SEGMENT_BYTES = 64 * MIB  # one temporary file per segment; a segment goes when no entry refers to it

GLYPHS = {"sent": "→", "received": "←", "error": "✗", "warning": "⚠", "info": "•", "srq": "⚑", "note": "·"}
LABELS = {"sent": ">>", "received": "<<", "error": "!!", "warning": "!", "info": "--", "srq": "SRQ", "note": "--"}


class _Segment:
    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="tmc-transcript-")
        self.size = 0
        self.refs = 0


@dataclass(frozen=True)
class SpoolRef:
    segment: _Segment
    offset: int
    length: int


class Spool:
    """Reply bytes on disk, appended to segment files (unlinked temporary files); a segment is
    closed, and its space freed, once no entry refers to it any more."""

    def __init__(self, segment_bytes: int = SPOOL_SEGMENT_BYTES) -> None:
        self.segment_bytes = segment_bytes
        self._current: _Segment | None = None
        self.bytes_on_disk = 0

    def put(self, data: bytes) -> SpoolRef:
        segment = self._current
        if segment is None or segment.size >= self.segment_bytes:
            if segment is not None and segment.refs == 0:
                self._close(segment)
            segment = self._current = _Segment()
        segment.file.seek(segment.size)
        segment.file.write(data)
        ref = SpoolRef(segment, segment.size, len(data))
        segment.size += len(data)
        segment.refs += 1
        self.bytes_on_disk += len(data)
        return ref

    def get(self, ref: SpoolRef) -> bytes:
        ref.segment.file.seek(ref.offset)
        return ref.segment.file.read(ref.length)

    def release(self, ref: SpoolRef) -> None:
        segment = ref.segment
        segment.refs -= 1
        if segment.refs == 0 and segment is not self._current:
            self._close(segment)

    def _close(self, segment: _Segment) -> None:
        self.bytes_on_disk -= segment.size
        segment.file.close()

    def clear(self) -> None:
        if self._current is not None:
            self._close(self._current)
        self._current = None
        self.bytes_on_disk = 0


class Entry:
    """One line of the transcript. ``data`` (the raw reply, for the raw view and "save") may
    live on disk in the transcript's spool; reading it fetches it."""

    __slots__ = ("id", "at", "kind", "text", "detail", "duration_ms", "block", "tag", "command_id", "extra",
                 "_data", "_ref", "_spool", "full_text_from", "memory_bytes")

    def __init__(self, id: int, at: float, kind: str, text: str, detail: str = "", duration_ms: float | None = None,
                 data: bytes | None = None, block: scpi.BlockSummary | None = None, tag: str = "",
                 command_id: int = 0, extra: dict | None = None, full_text_from: bytes | None = None) -> None:
        self.id = id
        self.at = at  # wall-clock seconds
        self.kind = kind  # sent, received, error, warning, info, srq, note
        self.text = text
        self.detail = detail
        self.duration_ms = duration_ms
        self.block = block
        self.tag = tag  # e.g. "on open", "script line 3"
        self.command_id = command_id
        self.extra = extra if extra is not None else {}
        self._data = data
        self._ref: SpoolRef | None = None
        self._spool: Spool | None = None
        # The termination to strip when the full text is decoded again from ``data`` (a reply whose
        # text was cut at MAX_TEXT_CHARS), or None when ``text`` is whole.
        self.full_text_from = full_text_from
        self.memory_bytes = len(text) + len(detail) + (len(data) if data is not None else 0)

    @property
    def data(self) -> bytes | None:
        if self._ref is not None:
            return self._spool.get(self._ref)
        return self._data

    @property
    def spooled(self) -> bool:
        return self._ref is not None

    @property
    def total_bytes(self) -> int:
        return self.memory_bytes + (self._ref.length if self._ref is not None else 0)

    def spool_to(self, spool: Spool) -> None:
        """Move the reply bytes to disk (the entry keeps a reference)."""
        if self._data is None or self._ref is not None:
            return
        self._ref, self._spool = spool.put(self._data), spool
        self.memory_bytes -= len(self._data)
        self._data = None

    def release(self) -> None:
        if self._ref is not None:
            self._spool.release(self._ref)
            self._ref = None

    def full_text(self) -> str:
        if self.full_text_from is not None and self.data is not None:
            return scpi.display_text(self.data, self.full_text_from)
        return self.text


def format_time(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def format_ms(ms: float) -> str:
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


class Transcript(QTextBrowser):
    """Entries as HTML paragraphs, one block per entry; links open the raw view or save a block.

    Capped by entries (MAX_ENTRIES) and by bytes (MAX_TOTAL_BYTES); large replies are kept on
    disk (see :class:`Spool`). Removing blocks at the top makes the document lay out again
    everything below them, so at the cap the oldest entries go TRIM_ENTRIES at a time: one
    layout per TRIM_ENTRIES lines instead of one per line (which made each line cost
    milliseconds at 5,000 entries), and a line costs the same at the cap as at the start.
    """

    raw_requested = Signal(int)  # entry id
    save_requested = Signal(int)  # entry id
    trace_requested = Signal(int)  # entry id: show its transfers in the I/O trace

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("transcript")
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        # Programmatic appends and removals would otherwise be kept on the undo stack, growing forever.
        self.document().setUndoRedoEnabled(False)
        fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.document().setDefaultFont(fixed)
        # Wrapped lines and details hang under the text, not under the timestamp.
        self._indent_px = QFontMetrics(fixed).horizontalAdvance("00:00:00.000  ")
        self.setPlaceholderText("Commands and replies appear here.")
        self._entries: deque[Entry] = deque()
        self._by_id: dict[int, Entry] = {}
        self._ids = itertools.count(1)
        self._spool = Spool()
        self.memory_bytes = 0  # reply bytes and text held in memory by the entries
        self.total_bytes = 0  # the same plus what the spool holds for them
        #: Entries of commands get a "trace" link (set when the session is traced).
        self.trace_links = False
        self._clicked_block: int | None = None  # the line under a click, while it is handled

    # --- entries ---

    def add(self, kind: str, text: str, **kwargs) -> Entry:
        at = kwargs.pop("at", None) or time.time()
        data = kwargs.get("data")
        if len(text) > MAX_TEXT_CHARS:
            if data is not None and kind == "received":
                kwargs.setdefault("full_text_from", b"")
            text = text[:MAX_TEXT_CHARS] + f" … ({len(text) - MAX_TEXT_CHARS:,} more characters)"
        entry = Entry(next(self._ids), at, kind, text, **kwargs)
        if data is not None and (len(data) > INLINE_DATA_BYTES or self.memory_bytes + len(data) > MAX_MEMORY_BYTES):
            entry.spool_to(self._spool)
        self._by_id[entry.id] = entry
        self.memory_bytes += entry.memory_bytes
        self.total_bytes += entry.total_bytes
        if self._entries and at < self._entries[-1].at:
            # An event stamped when it happened (an SRQ) can arrive after lines stamped later:
            # it goes where its time puts it, so the transcript reads in time order.
            index = len(self._entries)
            while index and self._entries[index - 1].at > at:
                index -= 1
            self._entries.insert(index, entry)
            if len(self._entries) >= MAX_ENTRIES + TRIM_ENTRIES or self.total_bytes > MAX_TOTAL_BYTES:
                self._trim()
            self.rerender()
            return entry
        self._entries.append(entry)
        bar = self.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if not self.document().isEmpty():
            cursor.insertBlock()
        cursor.insertHtml(self._html(entry))
        if len(self._entries) >= MAX_ENTRIES + TRIM_ENTRIES or self.total_bytes > MAX_TOTAL_BYTES:
            self._trim()
        if at_bottom:
            bar.setValue(bar.maximum())
        return entry

    def _trim(self) -> None:
        """Drop the oldest entries down to MAX_ENTRIES and 90 % of MAX_TOTAL_BYTES (the newest stays)."""
        dropped = 0
        while len(self._entries) > 1 and (len(self._entries) > MAX_ENTRIES
                                          or self.total_bytes > MAX_TOTAL_BYTES * 0.9):
            old = self._entries.popleft()
            self._by_id.pop(old.id, None)
            self.memory_bytes -= old.memory_bytes
            self.total_bytes -= old.total_bytes
            old.release()
            dropped += 1
        # Each entry is one block (its line breaks are line separators): remove the first ``dropped``.
        first_kept = self.document().findBlockByNumber(dropped)
        cursor = QTextCursor(self.document())
        if first_kept.isValid():
            cursor.setPosition(first_kept.position(), QTextCursor.MoveMode.KeepAnchor)
        else:
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()

    def entries(self) -> list[Entry]:
        return list(self._entries)

    def entry(self, entry_id: int) -> Entry | None:
        return self._by_id.get(entry_id)

    def clear_entries(self) -> None:
        for entry in self._entries:
            entry.release()
        self._entries.clear()
        self._by_id.clear()
        self._spool.clear()
        self.memory_bytes = self.total_bytes = 0
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
            lines += [" " * 17 + line for line in e.extra.get("details", "").splitlines()]  # a saved file has all
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
        if full:
            return e.full_text()
        if len(e.text) <= MAX_SHOWN_CHARS:
            return e.text
        return e.text[:MAX_SHOWN_CHARS] + f" … ({len(e.text) - MAX_SHOWN_CHARS:,} more characters)"

    def _html(self, e: Entry) -> str:
        c = colors(self.palette())
        color = {
            "sent": c.sent, "received": c.received, "error": c.error, "warning": c.warning,
            "info": c.info, "srq": c.warning, "note": c.muted,
        }.get(e.kind, c.muted)
        parts = [
            f"<span style='color:{c.muted}'>{format_time(e.at)}</span>  ",
            f"<span style='color:{color}'>{GLYPHS.get(e.kind, '·')} {_line(self._text_of(e))}</span>",
        ]
        if e.duration_ms is not None:
            parts.append(f"  <span style='color:{c.muted}'>{format_ms(e.duration_ms)}</span>")
        if e.tag:
            parts.append(f"  <span style='color:{c.muted}'>[{_line(e.tag)}]</span>")
        if e.spooled or e.data is not None:
            parts.append(f"  <a style='color:{c.link}' href='raw'>raw</a>")
            if e.block is not None:
                parts.append(f" <a style='color:{c.link}' href='save'>save…</a>")
        if e.extra.get("details") and not e.extra.get("expanded"):  # details on demand: one click away
            parts.append(f"  <a style='color:{c.link}' href='details'>details</a>")
        if self.trace_links and e.command_id and e.kind in ("sent", "received", "error", "warning"):
            parts.append(f"  <a style='color:{c.link}' href='trace'>trace</a>")
        if e.detail:
            parts.append(f"<br><span style='color:{c.muted}'>{_line(e.detail)}</span>")
        if e.extra.get("expanded"):
            parts += [f"<br><span style='color:{c.muted}'>{escape(line)}</span>"
                      for line in e.extra["details"].splitlines()]
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

    def mouseReleaseEvent(self, event) -> None:
        # The links carry no entry id (see _html): remember which line was clicked, for _on_anchor,
        # which the base class calls from here.
        self._clicked_block = self.cursorForPosition(event.position().toPoint()).blockNumber()
        try:
            super().mouseReleaseEvent(event)
        finally:
            self._clicked_block = None

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        # Each entry is one block, so the line a link is on names its entry. (A link naming its
        # entry by id would give every line a character format of its own, which the document
        # keeps for good: each new line then cost more than the last, even at the entry cap.)
        scheme, _, ident = url.toString().partition(":")
        if ident.isdigit():
            entry_id = int(ident)
        else:
            block = self._clicked_block if self._clicked_block is not None else self.textCursor().blockNumber()
            if not 0 <= block < len(self._entries):
                return
            entry_id = self._entries[block].id
        if scheme == "raw":
            self.raw_requested.emit(entry_id)
        elif scheme == "save":
            self.save_requested.emit(entry_id)
        elif scheme == "trace":
            self.trace_requested.emit(entry_id)
        elif scheme == "details":
            self.show_details(entry_id)

    def show_details(self, entry_id: int) -> None:
        """Unfold the details an entry keeps for on demand (e.g. why each quirk applies)."""
        entry = self._by_id.get(entry_id)
        if entry is not None and entry.extra.get("details"):
            entry.extra["expanded"] = True
            self.rerender()

    def scroll_to_command(self, command_id: int) -> Entry | None:
        """Bring the first entry of the command ``command_id`` into view; returns it."""
        for index, e in enumerate(self._entries):
            if e.command_id == command_id:
                block = self.document().findBlockByNumber(index)  # each entry is one block
                top = self.document().documentLayout().blockBoundingRect(block).top()
                self.verticalScrollBar().setValue(int(top))
                return e
        return None


def _line(text: str) -> str:
    """Text for one entry's block: escaped, line breaks as <br> (line separators, same block)."""
    return escape(text).replace("\r\n", "\n").replace("\n", "<br>")
