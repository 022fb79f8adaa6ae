"""A 100 MiB CSV read by the waveform panel: peak memory and the longest event-loop stall.

A measurement, not a test (nothing is asserted); run it by hand:

    QT_QPA_PLATFORM=offscreen python tests/ui/bench_large_file.py [MiB]

It writes a ``time,value`` CSV of the given size (100 MiB by default) to a temporary
directory, loads it through the panel's Load path, and prints how long the read took, the
process's peak resident memory above what it was before the read (Linux ``VmHWM``), and the
longest gap between ticks of a 1 ms timer on the GUI thread during the read.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's app, not an installed one


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux 4.0+)
    except OSError:
        pass


def write_csv(path: Path, mib: int) -> None:
    rows = 1 << 20
    with open(path, "w") as handle:
        handle.write("time,value\n")
        start = 0
        while handle.tell() < mib << 20:
            index = np.arange(start, start + rows)
            block = np.column_stack([index * 1e-6, np.sin(index / 100.0)])
            np.savetxt(handle, block, delimiter=",", fmt="%.6f")
            start += rows


def _session():
    """The panel only reads a file here: no instrument behind it."""
    from PySide6.QtCore import QObject, Signal

    class Session(QObject):
        event = Signal(object)
        state_changed = Signal(str)
        is_open = False

    return Session()


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from app.ui.waveform.panel import WaveformPanel

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        write_csv(path, mib)
        size = path.stat().st_size
        session = _session()
        panel = WaveformPanel(session)
        panel.resize(1024, 700)
        panel.show()
        # A small file first, so one-off costs (fonts, the progress bar's first paint) are not counted.
        small = Path(tmp) / "small.csv"
        small.write_text("v\n0.5\n-0.5\n")
        warm = []
        panel.file_loaded.connect(warm.append)
        panel.path.setText(str(small))
        panel.load_path()
        while not warm:
            app.processEvents()
            time.sleep(0.001)
        panel.file_loaded.disconnect()
        clock = QElapsedTimer()
        gaps = []
        last = [0]

        def tick() -> None:
            now = clock.elapsed()
            gaps.append((now - last[0], now))
            last[0] = now

        timer = QTimer()
        timer.setInterval(1)
        timer.timeout.connect(tick)
        done = []
        panel.file_loaded.connect(lambda ok: done.append((ok, clock.elapsed())))
        rss_before = _vm("VmRSS")
        _reset_peak()
        panel.path.setText(str(path))
        clock.start()
        timer.start()
        started = time.perf_counter()
        panel.load_path()
        call_ms = (time.perf_counter() - started) * 1000
        while not done:
            app.processEvents()
            time.sleep(0.0005)
        elapsed = time.perf_counter() - started
        timer.stop()
        peak = _vm("VmHWM")
        print(f"{size / 2**20:.0f} MiB CSV, {panel.source.points:,} points, loaded={done[0][0]}: read in {elapsed:.1f} s; "
              f"peak RSS {peak / 2**20:.0f} MiB ({(peak - rss_before) / 2**20:.0f} MiB above the {rss_before / 2**20:.0f} MiB "
              f"before the read); longest event-loop stall {max(gaps)[0]} ms over {len(gaps):,} ticks of a 1 ms timer")
        if os.environ.get("BENCH_DETAIL"):
            print("longest gaps (ms, ending at ms):", sorted(gaps)[-5:], "loaded at", done[0][1],
                  f"load_path() returned after {call_ms:.1f} ms")
        panel.close()
        panel.deleteLater()
        app.processEvents()


if __name__ == "__main__":
    main()
