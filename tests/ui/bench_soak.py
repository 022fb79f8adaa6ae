"""A 10,000-query soak of the console: per-query GUI time and memory, early and late.

A measurement, not a test (nothing is asserted); run it by hand:

    QT_QPA_PLATFORM=offscreen python tests/ui/bench_soak.py [QUERIES] [--tracemalloc]

It opens the virtual SAM7 in the real main window, sends ``*IDN?`` from the console
QUERIES times (10,000 by default), one after another as a user or a script would, and prints
for the 100 queries ending at queries 1,000, 3,000, 5,000 and the last: the mean wall time per query,
the GUI thread's CPU time per query, the transcript's entries and bytes, the I/O trace's
entries and bytes, and the process's RSS. With ``--tracemalloc`` it also prints where the
Python heap grew between the first and the last of those marks (slower; for finding growth).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's app, not an installed one


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    queries = int(args[0]) if args else 10_000
    tracing_heap = "--tracemalloc" in sys.argv
    if tracing_heap:
        import tracemalloc

        tracemalloc.start(8)
    snapshots = []
    from PySide6.QtCore import QEventLoop, QSettings
    from PySide6.QtWidgets import QApplication

    import app.sim
    from app.ui.main_window import MainWindow
    from app.ui.settings import Settings
    from app.usbtmc.errors import BackendUnavailableError

    app_ = QApplication.instance() or QApplication([])
    tmp = tempfile.mkdtemp(prefix="tmc-soak-")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, tmp)

    def no_usb():
        raise BackendUnavailableError("no USB in the soak")

    backend = app.sim.backend()
    settings = Settings()
    settings.virtual_mode = "on"
    win = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: backend}, discovery_interval_ms=1000)
    win.resize(1200, 760)
    win.show()
    win.start()

    def wait(condition, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit("the soak stalled")
            app_.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)

    wait(lambda: any("SAM7" in (win.browser.device(r).product or "") for r in win.browser.devices("virtual")))
    ref = next(r for r in win.browser.devices("virtual") if "SAM7" in (win.browser.device(r).product or ""))
    win.open_device(ref)
    tab = win.tab_for(ref)
    wait(lambda: tab.session.state == "idle" and tab.console.idn is not None)
    console = tab.console
    console.check_combo.setCurrentIndex(console.check_combo.findData("off"))  # one transfer pair per query
    marks = {m for m in (1000, 3000, 5000, queries) if m <= queries}  # the entry cap is reached at query 2,500
    window = 100
    figures = {}
    started_wall = started_cpu = 0.0
    for n in range(1, queries + 1):
        if n in {m - window + 1 for m in marks}:
            started_wall, started_cpu = time.perf_counter(), time.thread_time()
        console.submit_line("*IDN?", "query", remember=False)
        wait(lambda: tab.session.outstanding == 0)
        if n in marks:
            wall = (time.perf_counter() - started_wall) / window * 1000
            cpu = (time.thread_time() - started_cpu) / window * 1000
            t = console.transcript
            figures[n] = (wall, cpu, len(t.entries()), t.total_bytes, _rss_mib(), len(win.trace),
                          win.trace.size_bytes)
            if tracing_heap:
                snapshots.append(tracemalloc.take_snapshot())
    for n, (wall, cpu, entries, total, rss, trace_entries, trace_bytes) in sorted(figures.items()):
        print(f"query {n:>6,}: {wall:6.2f} ms per query wall, {cpu:6.2f} ms GUI-thread CPU; transcript "
              f"{entries:,} entries, {total / 1024:,.0f} KiB; I/O trace {trace_entries:,} entries, "
              f"{trace_bytes / 1024:,.0f} KiB; RSS {rss:,.0f} MiB")
    if len(snapshots) >= 2:
        print("Python heap growth between the first and the last mark, by where it was allocated:")
        for stat in snapshots[-1].compare_to(snapshots[0], "lineno")[:12]:
            print(f"  {stat.size_diff / 1024:+9,.0f} KiB {stat.count_diff:+8,} blocks  {stat.traceback[0]}")
    if len(figures) >= 2:
        a, b = figures[min(figures)], figures[max(figures)]
        print(f"late/early: wall x{b[0] / a[0]:.2f}, GUI CPU x{b[1] / a[1]:.2f}, RSS +{b[4] - a[4]:.0f} MiB")
    win.shutdown(timeout_ms=5000)


if __name__ == "__main__":
    main()
