"""Every save from the GUI (transcript, reply bytes, block data, throughput CSV/PNG, probe
report) goes through a temporary file and a rename: a save that fails part-way leaves the old
file intact and says why in one line."""

from __future__ import annotations

import errno
import os

import pytest

from app.ui.rawview import RawViewDialog
from app.ui.waveform.throughput import ThroughputGraph
from app.usbtmc import files
from app.usbtmc.errors import SaveError


@pytest.fixture
def full_disk(monkeypatch):
    """Every save fails as on a full disk, after its data was written to the temporary file."""

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", fsync)


def test_a_failed_transcript_save_keeps_the_old_file_and_says_why(sam7_tab, tmp_path, full_disk):
    console = sam7_tab.console
    (tmp_path / "saves").mkdir()
    target = tmp_path / "saves" / "t.txt"
    target.write_text("yesterday's transcript\n")
    assert console.save_transcript(str(target)) is None
    last = console.transcript.entries()[-1]
    assert last.kind == "error" and last.text == f"cannot save {target}: the disk is full; the file there is unchanged"
    assert target.read_text() == "yesterday's transcript\n" and os.listdir(target.parent) == ["t.txt"]


def test_a_failed_reply_save_keeps_the_old_file(qtbot, tmp_path, full_disk):
    dialog = RawViewDialog(b"#15hello\n", "reply")
    qtbot.addWidget(dialog)
    target = tmp_path / "reply.bin"
    target.write_bytes(b"old reply")
    assert dialog.save(str(target), payload_only=True) is None
    assert "the disk is full" in dialog.save_problem.text() and not dialog.save_problem.isHidden()
    assert target.read_bytes() == b"old reply" and os.listdir(tmp_path) == ["reply.bin"]


def test_failed_exports_keep_the_old_files(qtbot, tmp_path, full_disk):
    graph = ThroughputGraph()
    qtbot.addWidget(graph)
    graph.begin_run("run")
    for name in ("runs.csv", "runs.png"):
        (tmp_path / name).write_text("old")
    with pytest.raises(SaveError, match="the disk is full"):
        graph.export_csv(str(tmp_path / "runs.csv"))
    with pytest.raises(SaveError, match="the disk is full"):
        graph.export_png(str(tmp_path / "runs.png"))
    assert sorted(os.listdir(tmp_path)) == ["runs.csv", "runs.png"]
    assert all((tmp_path / name).read_text() == "old" for name in ("runs.csv", "runs.png"))
