"""What any threaded console pays: the core, the least a thread bridge can cost, and the console.

A measurement, not a test (nothing is asserted); run it by hand:

    QT_QPA_PLATFORM=offscreen python tests/bench/bench_bridge_floor.py [--rounds N] [--queries N] [--uploads N]

On the virtual AWG over the in-process bus with the high-speed wire model, as ``tmc bench
--wire high``, three implementations take turns round by round:

* ``app.usbtmc``: the core's own calls in this thread (``query_raw``, the cancellable
  ``write_stream`` the GUI's uploads use);
* ``bridge``: the same calls made on a worker thread that takes each from a
  ``queue.SimpleQueue`` and wakes this thread's running Qt event loop with one queued signal
  when done; the next one is sent from that wake. No session, no events, no panels: the
  floor under any GUI whose I/O runs off the GUI thread;
* ``console``: ``tmc bench``'s console peer, the real ``Session`` path.

It prints each one's median per-command time and its ratio to the core (the median of each
round's own ratio), for ``*IDN?`` and a 64 KiB waveform upload. ``console / bridge`` is what
the session layer and the GUI's bookkeeping add over the crossing itself.
"""

from __future__ import annotations

import argparse
import gc
import os
import queue
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's app, not an installed one
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QThread, Signal  # noqa: E402

import app.sim  # noqa: E402
from app import bench  # noqa: E402
from app.session.runner import AbortFlag  # noqa: E402
from app.sim.awg import VirtualAwg  # noqa: E402

UPLOAD_BYTES = 64 * 1024


class _Wake(QObject):
    done = Signal()


class _BridgeThread(QThread):
    def __init__(self, body) -> None:
        super().__init__()
        self._body = body

    def run(self) -> None:
        self._body()


class BridgePeer:
    """The core behind the least a thread bridge can be (see the module's docstring)."""

    def __init__(self, backend) -> None:
        self.inst = bench.CorePeer(backend).inst
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = _Wake()
        self._wake.done.connect(self._on_done)
        self._loop = QEventLoop()
        self._replies: list = []
        self._left = 0
        self._work = None
        self._thread = _BridgeThread(self._serve)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            work = self._inbox.get()
            if work is None:
                return
            self._replies.append(work())
            self._wake.done.emit()

    def _on_done(self) -> None:
        self._left -= 1
        if self._left:
            self._inbox.put(self._work)
        else:
            self._loop.quit()

    def _chain(self, work, count: int) -> list:
        self._replies, self._left, self._work = [], count, work
        self._inbox.put(work)
        self._loop.exec()
        return self._replies

    def queries(self, text: str, count: int) -> list:
        data = text.encode() + b"\n"
        return self._chain(lambda: self.inst.query_raw(data), count)

    def uploads(self, message: bytes, count: int) -> None:
        flag = AbortFlag()
        self._chain(lambda: self.inst.write_stream((message,), len(message), abort=flag, abort_latency_ms=50), count)

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.wait()
        self.inst.close()


class CoreCalls:
    """The core's calls as the bridge makes them, in this thread."""

    def __init__(self, backend) -> None:
        self.inst = bench.CorePeer(backend).inst

    def queries(self, text: str, count: int) -> list:
        data = text.encode() + b"\n"
        return [self.inst.query_raw(data) for _ in range(count)]

    def uploads(self, message: bytes, count: int) -> None:
        flag = AbortFlag()
        for _ in range(count):
            self.inst.write_stream((message,), len(message), abort=flag, abort_latency_ms=50)

    def close(self) -> None:
        self.inst.close()


PEERS = {"app.usbtmc": CoreCalls, "bridge": BridgePeer, "console": bench.ConsolePeer}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--uploads", type=int, default=150)
    args = parser.parse_args(argv)
    QCoreApplication.instance() or QCoreApplication([])
    bus = app.sim.VirtualBus()
    bus.plug(VirtualAwg(wire="high", ingest_bytes_per_s=None, memory_points=1 << 20))
    backend = app.sim.backend(bus)
    message = bench.waveform_message(UPLOAD_BYTES)[0]
    times: dict[tuple[str, str], list[float]] = {}
    keep = []  # Qt objects outlive the measurement (a QThread's wrapper must not go first)
    gc.collect()
    gc.disable()
    with bench.default_backend_for_peers(backend):
        for round_index in range(args.rounds):
            names = list(PEERS)
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                peer = PEERS[name](backend)
                keep.append(peer)
                try:
                    peer.queries("*IDN?", 2)
                    peer.uploads(message, 1)
                    started = time.perf_counter()
                    peer.queries("*IDN?", args.queries)
                    times.setdefault(("*IDN?", name), []).append((time.perf_counter() - started) / args.queries)
                    started = time.perf_counter()
                    peer.uploads(message, args.uploads)
                    times.setdefault(("upload 64 KiB", name), []).append((time.perf_counter() - started) / args.uploads)
                finally:
                    peer.close()
                gc.collect()
    print(f"virtual AWG, in-process bus, high-speed wire model; {args.rounds} rounds of {args.queries} queries "
          f"and {args.uploads} uploads; ratio = median of each round's time / the core's")
    for measure in ("*IDN?", "upload 64 KiB"):
        core = times[(measure, "app.usbtmc")]
        cells = []
        for name in PEERS:
            mine = times[(measure, name)]
            ratio = statistics.median(m / c for m, c in zip(mine, core))
            cells.append(f"{name} {statistics.median(mine) * 1e3:.3f} ms ({ratio:.2f}x)")
        print(f"{measure:14s} " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
