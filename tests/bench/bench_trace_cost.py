"""What the I/O trace costs the core, measured in short alternating blocks.

A measurement, not a test (nothing is asserted); run it by hand:

    python tests/bench/bench_trace_cost.py [--rounds N] [--blocks N] [--wire high]

``tmc bench`` times each implementation for a whole round (1000 queries, about 0.2 s) before
the next one takes its turn; on a shared machine whose speed drifts by several per cent within
a second, the traced/untraced ratio of one round then carries that drift. Here each round opens
an untraced and a traced core, each on a virtual AWG of its own (a device takes one session at a
time), all fresh, so where their buffers land changes from round to round, and alternates them
block by block: 20 ``*IDN?``
queries, then five 64 KiB uploads (``write_raw``, as ``tmc bench`` uploads). A round's ratio
is the traced blocks' total time over the untraced ones'; the figure is the median over rounds.

A third core, untraced as well, runs in the same rounds as a control: its ratio to the first
untraced core is what the method itself reads where there is nothing to find (it should be
1.00 within a per cent or two).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's app, not an installed one

import app.sim  # noqa: E402
from app import bench  # noqa: E402
from app.sim.awg import VirtualAwg  # noqa: E402
from app.usbtmc import Instrument  # noqa: E402
from app.usbtmc.trace import DEFAULT_TOTAL_CAP_BYTES, Recorder  # noqa: E402

QUERIES_PER_BLOCK = 20
UPLOADS_PER_BLOCK = 5
UPLOAD_BYTES = 64 * 1024
CORES = ("untraced", "traced", "control (untraced)")


def _open(wire: str | None, recorder: Recorder | None) -> Instrument:
    """A core on a virtual AWG of its own (tmc bench's instrument: no ingest limit)."""
    bus = app.sim.VirtualBus()
    bus.plug(VirtualAwg(wire=wire, ingest_bytes_per_s=None, memory_points=1 << 20))
    backend = app.sim.backend(bus)
    with bench.default_backend_for_peers(backend):
        return Instrument(bench.RESOURCE, backend=backend, timeout_ms=bench.TIMEOUT_MS, trace=recorder)


def _round(wire: str | None, blocks: int, message: bytes, ring_bytes: int) -> dict[tuple[str, str], float]:
    """One round: the three cores opened afresh, then ``blocks`` blocks of each, in turn."""
    recorder = Recorder(total_cap_bytes=ring_bytes)
    opened = {"untraced": _open(wire, None), "traced": _open(wire, recorder), "control (untraced)": _open(wire, None)}
    if ring_bytes < DEFAULT_TOTAL_CAP_BYTES:
        # A ring that is full before the round starts, as after a long session: each record
        # now also drops the oldest.
        trace = opened["traced"].trace
        while not recorder.dropped:
            trace.marker("filling the ring")
    totals = {(name, measure): 0.0 for name in CORES for measure in ("query", "upload")}
    clock = time.perf_counter
    try:
        for block in range(blocks):
            order = CORES[block % 3:] + CORES[:block % 3]  # each core goes first as often as the others
            for name in order:
                inst = opened[name]
                start = clock()
                for _ in range(QUERIES_PER_BLOCK):
                    inst.query_raw(b"*IDN?\n")
                middle = clock()
                for _ in range(UPLOADS_PER_BLOCK):
                    inst.write_raw(message)
                totals[name, "query"] += middle - start
                totals[name, "upload"] += clock() - middle
    finally:
        for inst in opened.values():
            inst.close()
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--blocks", type=int, default=40, help="blocks of each core per round")
    parser.add_argument("--wire", choices=["high", "full"], default=None, help="the virtual bus's wire model")
    parser.add_argument("--ring-bytes", type=int, default=DEFAULT_TOTAL_CAP_BYTES,
                        help="the trace ring's size; below the default it is filled before each round")
    args = parser.parse_args(argv)

    message = bench.waveform_message(UPLOAD_BYTES)[0]
    ratios: dict[tuple[str, str], list[float]] = {}
    per_op: dict[tuple[str, str], list[float]] = {}
    gc.collect()
    gc.disable()  # as tmc bench: a collection would land on whichever core runs then
    try:
        for _ in range(args.rounds):
            totals = _round(args.wire, args.blocks, message, args.ring_bytes)
            gc.collect()
            for measure, count in (("query", QUERIES_PER_BLOCK), ("upload", UPLOADS_PER_BLOCK)):
                base = totals["untraced", measure]
                for name in CORES:
                    per_op.setdefault((name, measure), []).append(totals[name, measure] / (args.blocks * count))
                    if name != "untraced":
                        ratios.setdefault((name, measure), []).append(totals[name, measure] / base)
    finally:
        gc.enable()

    ring = "" if args.ring_bytes == DEFAULT_TOTAL_CAP_BYTES else f", a full {args.ring_bytes:,}-byte trace ring"
    print(f"virtual AWG, in-process bus, wire model {args.wire or 'off'}{ring}; {args.rounds} rounds of {args.blocks} "
          f"alternating blocks ({QUERIES_PER_BLOCK} *IDN? queries, then {UPLOADS_PER_BLOCK} uploads of 64 KiB)")
    for measure in ("query", "upload"):
        times = ", ".join(f"{name} {statistics.median(per_op[name, measure]) * 1e6:.1f} µs" for name in CORES)
        traced = ratios["traced", measure]
        control = ratios["control (untraced)", measure]
        print(f"{measure:7s} {times}")
        print(f"        tracing costs {(statistics.median(traced) - 1) * 100:+.1f} % (rounds from "
              f"{(min(traced) - 1) * 100:+.1f} to {(max(traced) - 1) * 100:+.1f} %); the control reads "
              f"{(statistics.median(control) - 1) * 100:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
