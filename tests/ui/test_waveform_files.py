"""Waveform files in the panel: read off the GUI thread with progress, every malformed file
explained with its name (never a stale message), NaN/inf refused or replaced as chosen."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from support.ui import load_waveform_file as load


def test_a_file_is_read_off_the_gui_thread_with_progress(panel, qtbot, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("time,value\n" + "".join(f"{i * 1e-6:.6f},{np.sin(i / 50.0):.6f}\n" for i in range(400_000)))
    ticks = []
    timer = QTimer()
    timer.setInterval(1)
    timer.timeout.connect(lambda: ticks.append(panel.file_progress.value()))
    timer.start()
    seen_progress = []
    panel.path.setText(str(path))
    with qtbot.waitSignal(panel.file_loaded, timeout=60000) as blocker:
        assert panel.load_path()  # returns at once: the read runs on its own thread
        assert panel.reading_file and "Reading long.csv" in panel.source_info.text()
        qtbot.waitUntil(lambda: seen_progress.append(panel.file_progress.value()) or 0 < seen_progress[-1] < 1000,
                        timeout=60000)
    timer.stop()
    assert blocker.args == [True] and not panel.reading_file
    assert panel.plan.source.points == 400_000 and "long.csv: 400,000 points" in panel.source_info.text()
    assert any(0 < tick < 1000 for tick in ticks)  # the GUI's timers ran while the file was being read


@pytest.mark.parametrize("name, content, words", [
    ("a.csv", b"t,v\n0,1\n1,\"2\n3,4\n", "a.csv line 3: not readable as CSV"),
    ("b.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',\n", "b.npy: the .npy header is damaged"),
    ("c.wav", b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00"
              b"\x02\x00\x10\x00data\x00\x10\x00\x00\x01\x00", "c.wav: the 'data' chunk says 4,096 bytes, but only 2"),
    ("d.bin", b"\x00\x00\xc0\x7f" * 3, "d.bin: 3 of 3 values are NaN or infinite"),
])
def test_every_malformed_file_is_named_and_the_old_message_goes(panel, qtbot, tmp_path, name, content, words):
    good = tmp_path / "good.csv"
    good.write_text("v\n0.5\n-0.5\n")
    assert load(panel, qtbot, good)
    previous = panel.plan.source
    if name.endswith(".bin"):
        panel.raw_dtype.setCurrentText("float32")
    bad = tmp_path / name
    bad.write_bytes(content)
    assert not load(panel, qtbot, bad)
    text = panel.source_info.text()
    assert words in text and "Still using: good.csv" in text
    assert panel.plan.source is previous  # nothing lost


def test_nan_and_inf_are_handled_as_the_user_chooses(panel, qtbot, tmp_path):
    path = tmp_path / "gaps.npy"
    np.save(path, np.array([0.5, np.nan, -0.25, np.inf], dtype=np.float64))
    assert not load(panel, qtbot, path)
    assert "gaps.npy: 2 of 4 values are NaN or infinite (the first is point 1)" in panel.source_info.text()
    panel.non_finite.setCurrentIndex(panel.non_finite.findData("zero"))
    assert load(panel, qtbot, path)
    assert "2 NaN/inf values replaced by 0" in panel.source_info.text()
    panel.scaling.setCurrentIndex(panel.scaling.findData("normalize"))
    qtbot.waitUntil(lambda: panel.plan is not None and panel.plan.source.points == 4, timeout=2000)
    assert panel._scaling().factors(panel.plan.source) == (2.0, 0.0)
