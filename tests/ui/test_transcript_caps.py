"""The transcript at its caps: one block per entry, the oldest dropped with their entries a batch
at a time (amortised O(1) per line), a cap in bytes as well as entries, large replies kept on disk
and read back."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

import app.ui.transcript as transcript_module
from app.ui.transcript import Transcript

MIB = 1 << 20


@pytest.fixture
def transcript(qtbot):
    widget = Transcript()
    qtbot.addWidget(widget)
    widget.resize(700, 400)
    widget.show()
    return widget


def test_at_the_entry_cap_the_oldest_block_goes_with_its_entry(transcript, monkeypatch):
    monkeypatch.setattr(transcript_module, "MAX_ENTRIES", 50)
    monkeypatch.setattr(transcript_module, "TRIM_ENTRIES", 10)
    for i in range(1, 131):
        transcript.add("sent", f"line {i}\nwith a break", detail="a detail" if i % 3 else "")
    entries = transcript.entries()
    assert len(entries) == 50 and entries[0].text.startswith("line 81")
    document = transcript.document()
    assert document.blockCount() == 50  # line breaks and details stay inside their entry's block
    assert document.firstBlock().text().split("  ", 1)[1].startswith("→ line 81")
    assert document.lastBlock().text().split("  ", 1)[1].startswith("→ line 130")
    assert transcript.entry(entries[0].id - 1) is None and transcript.entry(entries[0].id) is entries[0]


def test_large_replies_go_to_disk_and_read_back(transcript):
    big = bytes(range(256)) * (4 * MIB // 256)
    entry = transcript.add("received", "#9004194304…", data=big)
    small = transcript.add("received", "1.0", data=b"1.0\n")
    assert entry.spooled and not small.spooled
    assert entry.data == big and small.data == b"1.0\n"
    assert transcript.memory_bytes < 64 * 1024 and transcript.total_bytes >= len(big)


def test_forty_replies_of_4_mib_keep_memory_bounded(transcript):
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(40):
            reply = bytes([i]) * (4 * MIB)
            transcript.add("received", f"reply {i}", data=reply)
            del reply
        current = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert current < 8 * MIB  # 160 MiB of replies, on disk
    assert transcript.entries()[3].data == bytes([3]) * (4 * MIB)


def test_the_byte_cap_drops_the_oldest_entries_and_frees_their_disk(transcript, monkeypatch):
    monkeypatch.setattr(transcript_module, "MAX_TOTAL_BYTES", 20 * MIB)
    transcript._spool.segment_bytes = 4 * MIB
    for i in range(30):
        transcript.add("received", f"reply {i}", data=bytes([i]) * MIB)
    entries = transcript.entries()
    assert transcript.total_bytes <= 20 * MIB and len(entries) < 21
    assert entries[-1].text == "reply 29" and entries[0].data == bytes([int(entries[0].text.split()[1])]) * MIB
    assert transcript.document().blockCount() == len(entries)
    assert transcript._spool.bytes_on_disk <= 20 * MIB + 4 * MIB  # old segments were closed


def test_a_long_reply_text_is_cut_but_saved_whole(transcript):
    data = b"A" * (200 * 1024) + b"\n"
    transcript.add("received", "A" * (200 * 1024), data=data, full_text_from=b"\n")
    (entry,) = transcript.entries()
    assert len(entry.text) < 70 * 1024
    assert transcript.plain_text().count("A") == 200 * 1024


def test_clicking_raw_asks_for_the_raw_view(transcript, qtbot):
    entry = transcript.add("received", "1.0", data=b"1.0\n")
    block = transcript.document().firstBlock()
    cursor = QTextCursor(block)
    cursor.setPosition(block.position() + block.text().index("raw") + 1)
    point = transcript.cursorRect(cursor).center()
    with qtbot.waitSignal(transcript.raw_requested) as blocker:
        qtbot.mouseClick(transcript.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert blocker.args == [entry.id]


def test_a_long_session_does_not_grow_the_documents_formats(transcript, monkeypatch):
    """Every line with links used to get character formats of its own (links naming their entry),
    which the document keeps after the line is gone: each new line then cost more than the last,
    even at the entry cap (a 20,000-query run went from 1.5 to 32 ms per query pair, and RSS grew).
    The formats now stay as few as the kinds of line."""
    monkeypatch.setattr(transcript_module, "MAX_ENTRIES", 100)
    monkeypatch.setattr(transcript_module, "TRIM_ENTRIES", 20)
    transcript.trace_links = True

    def pair(n: int) -> None:
        transcript.add("sent", "*IDN?", command_id=n)
        transcript.add("received", "XYZ Company Ltd,SAM7", data=b"XYZ Company Ltd,SAM7\n", duration_ms=1.0,
                       command_id=n)

    for n in range(1, 51):
        pair(n)
    early = len(transcript.document().allFormats())
    for n in range(51, 1001):
        pair(n)
    assert len(transcript.entries()) <= 120
    assert len(transcript.document().allFormats()) <= early + 5


def test_a_links_line_names_its_entry_after_the_oldest_lines_went(transcript, qtbot, monkeypatch):
    monkeypatch.setattr(transcript_module, "MAX_ENTRIES", 10)
    monkeypatch.setattr(transcript_module, "TRIM_ENTRIES", 3)
    for n in range(25):
        last = transcript.add("received", f"{n}", data=f"{n}\n".encode())
    block = transcript.document().lastBlock()
    cursor = QTextCursor(block)
    cursor.setPosition(block.position() + block.text().index("raw") + 1)
    point = transcript.cursorRect(cursor).center()
    with qtbot.waitSignal(transcript.raw_requested) as blocker:
        qtbot.mouseClick(transcript.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert blocker.args == [last.id]
