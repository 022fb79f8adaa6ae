"""``tmc bench``: TMC Console's core against python-usbtmc and pyvisa-py, side by side, on the virtual AWG.

Every implementation uploads the same waveform message (``DATA:ARB:DAC bench,<int16 block>``,
sizes from 64 KiB to 64 MiB) and runs ``*IDN?`` queries against the same virtual arbitrary
waveform generator on the same bus, one after the other, round by round (each round in a
different order, so none always follows the same neighbour); a figure is the median over
rounds. After each size the instrument's length and CRC-32 of what it stored are checked.
The untraced and the traced core, a few per cent apart, take turns in blocks of about 10 ms
within each measure, so the machine's drift within a second does not enter their ratio.

- In-process (default): the virtual bus of :mod:`app.sim` as a pyusb backend. The peers
  call ``usb.core.find()`` without a backend, so for the run ``usb.core.find`` gets the
  virtual backend as its default; nothing else of theirs changes.
- ``--libusb``: the AWG served through umockdev, every implementation on the real libusb
  in a host process of its own (Linux, needs umockdev; see docs/testing-your-scripts.md).

Optional pacing of the device (:mod:`app.sim.wire`): ``--wire full|high`` (USB 2.0 bulk
limits, 1.216 and 53.248 MB/s) and ``--ingest 33622a|<bytes/s>`` (an instrument that takes
data at that rate). Figures: MB/s (10^6 bytes/s), the query round trip in ms, host CPU time
per MB (the benchmarking thread's CPU time minus the device model's own), the ratios of
TMC Console's core to each peer (the median of each round's own ratio), and with a wire model the share of the wire's limit.

This is a measurement, never a timed test: tests only check that it runs and reports sane records.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

RESOURCE = "USB0::0x1209::0x000C::AWG-0001::INSTR"
VID, PID, SERIAL = 0x1209, 0x000C, "AWG-0001"
#: The traced core's own AWG: it takes turns with the untraced core block by block, and a device
#: takes one session at a time, so each keeps its session open on a device of its own.
TRACED_SERIAL = "AWG-0002"
TRACED_RESOURCE = f"USB0::0x{VID:04X}::0x{PID:04X}::{TRACED_SERIAL}::INSTR"
CORE, CONSOLE, PYTHON_USBTMC, PYVISA_PY = "app.usbtmc", "console", "python-usbtmc", "pyvisa-py"
#: The core with its I/O trace recording every transfer (docs/trace.md): what tracing costs.
CORE_TRACED = "app.usbtmc+trace"
IMPLEMENTATIONS = (CORE, CORE_TRACED, CONSOLE, PYTHON_USBTMC, PYVISA_PY)
#: Most that tracing may cost, as a share of the untraced core's figure.
TRACE_COST_LIMIT = 0.05
KIB, MIB = 1024, 1024 * 1024
DEFAULT_SIZES = (64 * KIB, 1 * MIB, 8 * MIB, 64 * MIB)
# pyvisa-py sends one USBTMC transfer per 512-byte packet; beyond this it only makes the run long.
DEFAULT_PYVISA_MAX = 8 * MIB
WAVE_NAME = "bench"
TIMEOUT_MS = 20_000  # every implementation gets the same transfer timeout
SETTLE_UPLOAD_S = 0.2  # small uploads are repeated until a measurement lasts about this long
PEERS_HINT = 'pip install ".[bench]" in your TMC Console checkout (python-usbtmc, pyvisa, pyvisa-py)'


class BenchError(RuntimeError):
    """The benchmark cannot run as asked; the message says why."""


@dataclass(frozen=True)
class BenchOptions:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    queries: int = 1000
    rounds: int = 5
    wire: str | None = None  # "full", "high" or None
    ingest_bytes_per_s: float | None = None
    implementations: tuple[str, ...] = IMPLEMENTATIONS
    pyvisa_max_bytes: int = DEFAULT_PYVISA_MAX
    libusb: bool = False


@dataclass
class Record:
    """One implementation and measure: an upload of one size, or the query round trip."""

    implementation: str
    measure: str  # "upload" or "query"
    size_bytes: int | None = None
    MBps: float | None = None
    round_trip_ms: float | None = None
    host_cpu_ms_per_MB: float | None = None
    device_cpu_ms_per_MB: float | None = None
    verified: bool | None = None
    of_wire_limit: float | None = None
    rounds: list[float] = field(default_factory=list)
    vs: dict[str, float] = field(default_factory=dict)  # core / peer (MB/s) or peer / core (ms): > 1 is better
    transport: str = "in-process virtual bus"
    wire: str | None = None
    ingest_bytes_per_s: float | None = None


# --- the waveform -------------------------------------------------------------------------


def waveform_message(size_bytes: int) -> tuple[bytes, int, int]:
    """(the upload message, its points, the CRC-32 the instrument should report) for ``size_bytes`` of int16."""
    import numpy as np

    points = size_bytes // 2
    samples = np.rint(32767 * np.sin(np.linspace(0, 2 * np.pi * 7, points, endpoint=False))).astype("<i2")
    data = samples.tobytes()
    digits = str(len(data)).encode()
    message = b"DATA:ARB:DAC " + WAVE_NAME.encode() + b",#" + str(len(digits)).encode() + digits + data + b"\n"
    return message, points, zlib.crc32(data)


# --- the implementations ------------------------------------------------------------------


class Peer:
    """One implementation's session with the AWG, behind the four calls the benchmark needs."""

    name = ""

    def upload(self, message: bytes) -> None:
        raise NotImplementedError

    def query(self, text: str) -> str:
        raise NotImplementedError

    def uploads(self, message: bytes, count: int) -> None:
        """Upload ``message`` ``count`` times, one after the other."""
        for _ in range(count):
            self.upload(message)

    def queries(self, text: str, count: int) -> list[str]:
        """Ask ``text`` ``count`` times, one after the other; the replies."""
        return [self.query(text) for _ in range(count)]

    def close(self) -> None:
        raise NotImplementedError


class CorePeer(Peer):
    """The core's own calls on an open session (``inst``: any session with the Instrument interface)."""

    name = CORE

    def __init__(self, backend, resource: str = RESOURCE) -> None:
        from app.usbtmc import Instrument

        self.inst = Instrument(resource, backend=backend, timeout_ms=TIMEOUT_MS)

    def upload(self, message: bytes) -> None:
        self.inst.write_raw(message)

    def query(self, text: str) -> str:
        return self.inst.query(text)

    def close(self) -> None:
        self.inst.close()


class ConsolePeer(Peer):
    """The console's own session path: a :class:`~app.ui.worker.Session` with its worker
    thread, driven as the GUI drives it. A query is the console's typed ``Query`` command
    (the core's batched query, the line shown as sent when the command has left); an upload
    is the cancellable ``WriteStream`` command, with an abort flag and paced for a 50 ms
    Cancel as the waveform panel's uploads are.

    The event loop runs throughout, as the window's does: commands go to the worker's inbox,
    its events come back to this thread's loop, and each next command is submitted from the
    handler of the previous one's ``Finished`` event, as the console's script runner sends
    its next line. (A nested event loop per command, which the GUI never runs, would measure
    Qt entering and leaving a loop rather than the session.)"""

    name = CONSOLE

    def __init__(self, backend) -> None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtCore import QCoreApplication, QEventLoop

        from app.session.events import Failed, Finished, Reply

        self._app = QCoreApplication.instance() or QCoreApplication([])
        self._finished, self._failed, self._reply = Finished, Failed, Reply
        from app.ui.worker import Session

        self.session = Session(RESOURCE, backend, timeout_ms=TIMEOUT_MS)
        self._loop = QEventLoop()
        self._next = None  # submits the next command, or None after the last
        self._left = 0
        self._waiting = 0
        self._replies: list[bytes] = []
        self._problem = ""
        self.session.listen(self._on_event)  # as the console panel does
        self._chain(lambda: self.session.open(), 1)

    def _on_event(self, event) -> None:
        if event.command_id != self._waiting:
            return
        if isinstance(event, self._reply):
            self._replies.append(event.data)
        elif isinstance(event, self._failed):
            self._problem = event.message
        elif isinstance(event, self._finished):
            self._left -= 1
            if self._left and not self._problem:
                self._waiting = self._next()
                if self._waiting:
                    return
                self._problem = "the console's session refused the command (it is closed)"
            self._loop.quit()

    def _chain(self, submit, count: int) -> list[bytes]:
        """Run ``count`` commands, each ``submit()``-ed when the one before has finished."""
        self._replies, self._problem, self._left, self._next = [], "", count, submit
        self._waiting = submit()
        if not self._waiting:
            raise BenchError("the console's session refused the command (it is closed)")
        self._loop.exec()
        if self._problem:
            raise BenchError(f"console: {self._problem}")
        return self._replies

    def uploads(self, message: bytes, count: int) -> None:
        from app.session.events import WriteStream

        command = WriteStream((message,), len(message))
        self._chain(lambda: self.session.submit(command, origin="console"), count)

    def upload(self, message: bytes) -> None:
        self.uploads(message, 1)

    def queries(self, text: str, count: int) -> list[str]:
        from app.session.events import Query

        data = text.encode() + b"\n"
        # A typed line becomes a new Query each time, as in the console.
        replies = self._chain(lambda: self.session.submit(Query(data), origin="console"), count)
        return [reply.decode(errors="replace").rstrip("\n") for reply in replies]

    def query(self, text: str) -> str:
        return self.queries(text, 1)[0]

    def close(self) -> None:
        self.session.close()
        while not self.session.wait(50):
            self._app.processEvents()
        self._app.processEvents()


class TracedCorePeer(CorePeer):
    """The core with tracing on. Every session of a run records into one trace, as every
    session of the console records into the window's: the ring outlives the sessions."""

    name = CORE_TRACED
    recorder = None  # the run's trace (measure() sets it)

    def __init__(self, backend) -> None:
        from app.usbtmc import Instrument
        from app.usbtmc.trace import Recorder

        if TracedCorePeer.recorder is None:
            TracedCorePeer.recorder = Recorder()
        self.inst = Instrument(TRACED_RESOURCE, backend=backend, timeout_ms=TIMEOUT_MS, trace=self.recorder)


class PythonUsbtmcPeer(Peer):
    name = PYTHON_USBTMC

    def __init__(self, backend) -> None:
        import usbtmc

        self.dev = usbtmc.Instrument(VID, PID, SERIAL)
        self.dev.timeout = TIMEOUT_MS / 1000

    def upload(self, message: bytes) -> None:
        self.dev.write_raw(message)

    def query(self, text: str) -> str:
        return self.dev.ask(text)

    def close(self) -> None:
        self.dev.close()


class PyvisaPyPeer(Peer):
    name = PYVISA_PY

    def __init__(self, backend) -> None:
        import pyvisa

        self.rm = pyvisa.ResourceManager("@py")
        self.inst = self.rm.open_resource(RESOURCE)
        self.inst.timeout = TIMEOUT_MS

    def upload(self, message: bytes) -> None:
        self.inst.write_raw(message)

    def query(self, text: str) -> str:
        return self.inst.query(text).rstrip("\n")

    def close(self) -> None:
        self.inst.close()
        self.rm.close()


PEERS: dict[str, Callable[[object], Peer]] = {CORE: CorePeer, CORE_TRACED: TracedCorePeer, CONSOLE: ConsolePeer,
                                              PYTHON_USBTMC: PythonUsbtmcPeer, PYVISA_PY: PyvisaPyPeer}


def missing_peers(names) -> list[str]:
    """The implementations among ``names`` whose package is not installed."""
    import importlib.util

    modules = {PYTHON_USBTMC: ["usbtmc"], PYVISA_PY: ["pyvisa", "pyvisa_py"]}
    return [name for name in names if any(importlib.util.find_spec(m) is None for m in modules.get(name, []))]


@contextlib.contextmanager
def default_backend_for_peers(backend) -> Iterator[None]:
    """Make ``usb.core.find()`` use ``backend`` when its caller names none (python-usbtmc and
    pyvisa-py never do), for the duration of the block."""
    import usb.core

    real_find = usb.core.find

    def find(*args, **kwargs):
        if kwargs.get("backend") is None:
            kwargs["backend"] = backend
        return real_find(*args, **kwargs)

    usb.core.find = find
    try:
        yield
    finally:
        usb.core.find = real_find


# --- measuring ----------------------------------------------------------------------------


def _device_cpu(awg) -> float:
    return awg.stats.cpu_s if awg is not None else 0.0


def _timed(peer: Peer, kind: str, count: int, message: bytes, awg) -> tuple[float, float, float, list[str]]:
    """``count`` uploads or queries on ``peer``: seconds, this thread's CPU seconds, the device
    model's CPU seconds, the replies."""
    cpu0, dev0, t0 = time.thread_time(), _device_cpu(awg), time.perf_counter()
    replies = peer.uploads(message, count) if kind == "upload" else peer.queries("*IDN?", count)
    seconds = time.perf_counter() - t0
    return seconds, time.thread_time() - cpu0, _device_cpu(awg) - dev0, replies or []


def _check_replies(name: str, replies: list[str], count: int, identity: str) -> None:
    wrong = [reply for reply in replies if reply != identity]
    if len(replies) != count or wrong:
        raise BenchError(f"{name}: {len(replies)} replies to {count} *IDN? queries, "
                         f"{len(wrong)} unlike the first ({identity!r})")


def _add_upload(samples: dict, peer: Peer, size: int, message: bytes, count: int, seconds: float, cpu: float,
                dev: float, awg, points: int, crc: int) -> None:
    """One round's upload figure for ``peer`` (``count`` uploads of ``message``), after checking
    what the instrument stored."""
    megabytes = len(message) * count / 1e6
    answer = peer.query(f"DATA:ATTR:CHEC? {WAVE_NAME}").strip()
    errors = peer.query("SYST:ERR?").strip()
    entry = samples.setdefault((peer.name, "upload", size), {"MBps": [], "cpu": [], "dev": [], "verified": True})
    entry["MBps"].append(megabytes / seconds)
    # The console works on its session's thread: this thread's CPU time does not show it.
    entry["cpu"].append((cpu - dev) * 1e3 / megabytes if peer.name != CONSOLE else None)
    entry["dev"].append(dev * 1e3 / megabytes if awg is not None else None)
    entry["verified"] &= answer == f"{points},{crc}" and errors.startswith("0,")


def _add_queries(samples: dict, name: str, count: int, seconds: float, cpu: float, dev: float) -> None:
    entry = samples.setdefault((name, "query", None), {"ms": [], "cpu": []})
    entry["ms"].append(seconds * 1e3 / count)
    entry["cpu"].append((cpu - dev) * 1e3 / count if name != CONSOLE else None)


def _measure_upload(peer: Peer, size: int, message: bytes, points: int, crc: int, awg, samples: dict) -> None:
    """Upload ``message`` until the measurement lasts :data:`SETTLE_UPLOAD_S`, then verify what was stored."""
    repeats = 1
    while True:
        seconds, cpu, dev, _ = _timed(peer, "upload", repeats, message, awg)
        if seconds >= SETTLE_UPLOAD_S or repeats >= 256:
            break
        repeats = min(256, max(repeats * 2, math.ceil(repeats * SETTLE_UPLOAD_S / max(seconds, 1e-6))))
    _add_upload(samples, peer, size, message, repeats, seconds, cpu, dev, awg, points, crc)


def _measure_queries(peer: Peer, count: int, awg, samples: dict) -> None:
    identity = peer.query("*IDN?")
    seconds, cpu, dev, replies = _timed(peer, "query", count, b"", awg)
    _check_replies(peer.name, replies, count, identity)
    _add_queries(samples, peer.name, count, seconds, cpu, dev)


#: The untraced and the traced core take turns in blocks of about this long (see _measure_pair).
PAIR_BLOCK_S = 0.01
PAIR_QUERY_BLOCK = 20  # *IDN? queries per block


def _measure_pair(names: tuple[str, str], kind: str, size, message_info, options: BenchOptions, backend,
                  awgs: dict, samples: dict) -> None:
    """The untraced and the traced core, each with a session on an AWG of its own (``awgs``:
    the device model by peer name, None out of process), block by block in turn. What tracing
    costs is a few per cent, and this machine's speed drifts by that much within a second: a
    whole round of one and then of the other would carry the drift into their ratio, blocks of
    10 ms in turn do not. Each peer's figure for the round is its blocks' total work over their
    total time; the sessions stay open throughout, as a user's does."""
    message, points, crc = message_info if kind == "upload" else (b"", 0, 0)
    peers = {}
    try:
        for name in names:
            peers[name] = PEERS[name](backend)
            peers[name].query("FORM:BORD SWAP;*OPC?")
        first = peers[names[0]]
        identity = {name: peer.query("*IDN?") for name, peer in peers.items()}  # each AWG has its serial
        if kind == "upload":
            one = _timed(first, kind, 1, message, awgs.get(names[0]))[0]
            per_block = max(1, round(PAIR_BLOCK_S / max(one, 1e-6)))
            blocks = max(2, math.ceil(SETTLE_UPLOAD_S / max(one * per_block, 1e-6)))
        else:
            per_block = min(PAIR_QUERY_BLOCK, options.queries)
            blocks = max(1, options.queries // per_block)
        totals = {name: [0.0, 0.0, 0.0] for name in names}
        for _ in range(blocks):
            for name in names:
                seconds, cpu, dev, replies = _timed(peers[name], kind, per_block, message, awgs.get(name))
                if kind == "query":
                    _check_replies(name, replies, per_block, identity[name])
                for i, value in enumerate((seconds, cpu, dev)):
                    totals[name][i] += value
        for name in names:
            if kind == "upload":
                _add_upload(samples, peers[name], size, message, per_block * blocks, *totals[name], awgs.get(name),
                            points, crc)
            else:
                _add_queries(samples, name, per_block * blocks, *totals[name])
    finally:
        for peer in peers.values():
            peer.close()


def measure(options: BenchOptions, backend, awg=None, traced_awg=None) -> dict:
    """Run every round; returns raw samples keyed by (implementation, measure, size).

    Implementations take turns measure by measure (each size, then the queries), each
    round in a different order, so a change in the machine's load falls on all of them
    alike. The untraced and the traced core, whose difference is a few per cent, take
    turns in short blocks within each measure (:func:`_measure_pair`). The garbage
    collector is off while measuring, as in :mod:`timeit`: a collection would land on
    whichever implementation happens to run then.
    """
    messages = {size: waveform_message(size) for size in options.sizes}
    samples: dict = {}
    names = list(options.implementations)
    steps = [("upload", size) for size in options.sizes] + [("query", None)]
    collecting = gc.isenabled()
    from app.usbtmc.trace import Recorder

    TracedCorePeer.recorder = Recorder()
    gc.collect()
    gc.disable()
    try:
        with default_backend_for_peers(backend):
            for round_index in range(options.rounds):
                shift = round_index % len(names)
                for kind, size in steps:
                    order = names[shift:] + names[:shift]
                    pair = tuple(name for name in order if name in (CORE, CORE_TRACED))
                    for name in order:
                        if kind == "upload" and name == PYVISA_PY and size > options.pyvisa_max_bytes:
                            continue
                        if len(pair) == 2 and name in pair:
                            if name == pair[0]:
                                _measure_pair(pair, kind, size, messages.get(size), options, backend,
                                              {CORE: awg, CORE_TRACED: traced_awg}, samples)
                            continue
                        peer = PEERS[name](backend)
                        try:
                            peer.query("FORM:BORD SWAP;*OPC?")
                            device = traced_awg if name == CORE_TRACED else awg
                            if kind == "upload":
                                _measure_upload(peer, size, *messages[size], device, samples)
                            else:
                                _measure_queries(peer, options.queries, device, samples)
                        finally:
                            peer.close()
                    gc.collect()
    finally:
        TracedCorePeer.recorder = None
        if collecting:
            gc.enable()
    return samples


def summarize(samples: dict, options: BenchOptions, transport: str) -> list[Record]:
    """Medians over rounds, the ratios of the core to each peer, the share of the wire limit."""
    from app.sim.wire import WIRE_MODELS

    records: list[Record] = []
    wire_limit = WIRE_MODELS[options.wire].bytes_per_s / 1e6 if options.wire else None
    common = {"transport": transport, "wire": options.wire, "ingest_bytes_per_s": options.ingest_bytes_per_s}
    for (name, measure_name, size), entry in samples.items():
        if measure_name == "upload":
            rate = statistics.median(entry["MBps"])
            dev = [d for d in entry["dev"] if d is not None]
            cpu = [c for c in entry["cpu"] if c is not None]
            records.append(Record(name, "upload", size, MBps=rate, host_cpu_ms_per_MB=statistics.median(cpu) if cpu else None,
                                  device_cpu_ms_per_MB=statistics.median(dev) if dev else None,
                                  verified=entry["verified"], rounds=entry["MBps"],
                                  of_wire_limit=rate / wire_limit if wire_limit else None, **common))
        else:
            records.append(Record(name, "query", round_trip_ms=statistics.median(entry["ms"]),
                                  host_cpu_ms_per_MB=None, rounds=entry["ms"], **common))
    by_key = {(r.implementation, r.measure, r.size_bytes): r for r in records}
    for record in records:
        core = by_key.get((CORE, record.measure, record.size_bytes))
        if record.implementation != CORE or core is None:
            continue
        for peer in options.implementations:
            other = by_key.get((peer, record.measure, record.size_bytes))
            if peer == CORE or other is None:
                continue
            record.vs[peer] = _paired_ratio(record, other)
    order = {name: i for i, name in enumerate(IMPLEMENTATIONS)}
    records.sort(key=lambda r: (r.measure != "upload", r.size_bytes or 0, order.get(r.implementation, 9)))
    return records


def _paired_ratio(core: Record, other: Record) -> float:
    """How many times faster the core is than ``other``: the median over rounds of the ratio
    within each round, where both ran minutes apart at most under the same load. On a shared
    machine the load drifts between rounds by more than the differences measured; a ratio of
    the two medians would mix rounds run under different loads. (Without one sample per round
    on both sides, the ratio of the medians.)"""
    if core.measure == "upload":
        pairs = [a / b for a, b in zip(core.rounds, other.rounds)]
        whole = core.MBps / other.MBps
    else:
        pairs = [b / a for a, b in zip(core.rounds, other.rounds)]
        whole = other.round_trip_ms / core.round_trip_ms
    return statistics.median(pairs) if len(core.rounds) == len(other.rounds) and pairs else whole


def run(options: BenchOptions) -> list[Record]:
    """Measure as ``options`` say and return the records."""
    missing = missing_peers(options.implementations)
    if missing:
        raise BenchError(f"{', '.join(missing)} not installed; {PEERS_HINT} (or leave them out with --only)")
    if options.libusb:
        return _run_libusb(options)
    import app.sim
    from app.sim.awg import VirtualAwg

    bus = app.sim.VirtualBus()
    awgs = [VirtualAwg(serial=serial, wire=options.wire, ingest_bytes_per_s=options.ingest_bytes_per_s,
                       memory_points=max(options.sizes) // 2 + 1024) for serial in (SERIAL, TRACED_SERIAL)]
    for awg in awgs:
        bus.plug(awg)
    samples = measure(options, app.sim.backend(bus), *awgs)
    return summarize(samples, options, "in-process virtual bus")


# --- over the real libusb (umockdev) ------------------------------------------------------


def _run_libusb(options: BenchOptions) -> list[Record]:
    from app.sim.umockdev.launcher import SimUnavailable, UmockdevBus

    try:
        bus = UmockdevBus([])
    except SimUnavailable as exc:
        raise BenchError(f"--libusb needs umockdev: {exc}") from None
    with bus:
        pacing = {"wire": options.wire, "ingest_bytes_per_s": options.ingest_bytes_per_s}
        for serial in (SERIAL, TRACED_SERIAL):
            bus.plug("app.sim.awg:VirtualAwg", serial=serial, memory_points=max(options.sizes) // 2 + 1024, **pacing)
        env = bus.environment()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        host = {**asdict(options), "libusb": False}
        proc = subprocess.run([sys.executable, "-m", "app.bench", "--host", json.dumps(host)], env=env, cwd=root,
                              capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise BenchError(f"the benchmark's host process failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    samples = {tuple(json.loads(key)): value for key, value in json.loads(proc.stdout.splitlines()[-1]).items()}
    return summarize(samples, options, "umockdev + real libusb")


def _host_main(options_json: str) -> int:
    """The host side of ``--libusb``: every implementation on the default (real) libusb."""
    raw = json.loads(options_json)
    raw["sizes"] = tuple(raw["sizes"])
    raw["implementations"] = tuple(raw["implementations"])
    options = BenchOptions(**raw)
    from app.usbtmc import default_backend

    samples = measure(options, default_backend())
    print(json.dumps({json.dumps(list(key)): value for key, value in samples.items()}))
    return 0


# --- the report ---------------------------------------------------------------------------


def format_size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB and n % MIB == 0 else f"{n // KIB} KiB" if n % KIB == 0 else f"{n} B"


def describe(options: BenchOptions, transport: str) -> str:
    from app.sim.awg import LIKE_33622A_BYTES_PER_S
    from app.sim.wire import WIRE_MODELS

    wire = "off" if not options.wire else f"{WIRE_MODELS[options.wire].name} ({WIRE_MODELS[options.wire].bytes_per_s / 1e6:g} MB/s)"
    if options.ingest_bytes_per_s is None:
        ingest = "unlimited"
    else:
        ingest = f"{options.ingest_bytes_per_s / 1e6:g} MB/s"
        if options.ingest_bytes_per_s == LIKE_33622A_BYTES_PER_S:
            ingest += " (like the 33622A)"
    traced = f" (app.usbtmc+trace: {TRACED_SERIAL}, alike)" if CORE_TRACED in options.implementations else ""
    return (f"virtual AWG {RESOURCE}{traced} over the {transport}; wire model {wire}; instrument ingest {ingest}; "
            f"median of {options.rounds} rounds, {options.queries} queries per round")


def report(records: list[Record], options: BenchOptions, *, targets: bool = True) -> str:
    """The figures as tables; with ``targets`` also the verdict on each target (a benchmark's
    own output; a short smoke run in the tests prints only the figures)."""
    transport = records[0].transport if records else "?"
    names = [n for n in IMPLEMENTATIONS if n in options.implementations]
    peers = [n for n in names if n not in (CORE, CORE_TRACED)]
    lines = [f"tmc bench: {describe(options, transport)}", "",
             "Upload of DATA:ARB:DAC with an int16 block: MB/s (10^6 bytes/s), host CPU ms per MB in brackets"]
    width = 22
    header = f"{'size':>8}  " + "".join(f"{n:>{width}}" for n in names)
    header += "".join(f"{'core / ' + p:>{width}}" for p in peers if CORE in names)
    if options.wire:
        header += f"{'core of wire limit':>{width}}"
    lines.append(header)
    uploads = [r for r in records if r.measure == "upload"]
    for size in sorted({r.size_bytes for r in uploads}):
        row = {r.implementation: r for r in uploads if r.size_bytes == size}
        text = f"{format_size(size):>8}  "
        for n in names:
            r = row.get(n)
            cpu = "" if r is None or r.host_cpu_ms_per_MB is None else f" ({r.host_cpu_ms_per_MB:.2f})"
            cell = "-" if r is None else f"{r.MBps:.1f}{cpu}" + ("" if r.verified else " !")
            text += f"{cell:>{width}}"
        core = row.get(CORE)
        if core is not None:
            for p in peers:
                text += f"{(f'{core.vs[p]:.2f}x' if p in core.vs else '-'):>{width}}"
            if options.wire:
                text += f"{core.of_wire_limit * 100:>{width - 2}.1f} %"
        lines.append(text)
    if any(r.verified is False for r in uploads):
        lines.append("  ! the instrument did not report the length and CRC-32 that were sent")
    queries = {r.implementation: r for r in records if r.measure == "query"}
    if queries:
        lines += ["", "*IDN? round trip (ms; core / peer ratio above 1 means the core is faster)"]
        text = "          " + "".join(f"{queries[n].round_trip_ms:>{width}.4f}" for n in names if n in queries)
        core = queries.get(CORE)
        if core is not None:
            text += "".join(f"{(f'{core.vs[p]:.2f}x' if p in core.vs else '-'):>{width}}" for p in peers)
        lines.append(text)
    costs = trace_costs(records)
    if costs:
        lines += ["", f"Tracing on ({CORE_TRACED} beside {CORE}, same run): "
                  + ", ".join(f"{name} {cost * 100:+.1f} %" for name, cost in costs.items())]
    if targets:
        lines += ["", "Targets: " + "; ".join(_targets(records, options))]
    return "\n".join(lines)


def trace_costs(records: list[Record]) -> dict[str, float]:
    """What tracing costs per measure, as a share of the untraced core (0.03: 3 % slower; negative: noise)."""
    core = {(r.measure, r.size_bytes): r for r in records if r.implementation == CORE}
    costs = {}
    for r in records:
        base = core.get((r.measure, r.size_bytes))
        if r.implementation != CORE_TRACED or base is None:
            continue
        # Each round measures both, one right after the other (see _paired_ratio).
        label = f"upload {format_size(r.size_bytes)}" if r.measure == "upload" else "query"
        costs[label] = _paired_ratio(base, r) - 1
    return costs


def _targets(records: list[Record], options: BenchOptions) -> list[str]:
    """The issue's targets, judged on these records. With a wire model, a core at (90 % or more
    of) the bus limit cannot go faster, so ratios against slower peers say more about the bus."""
    from app.sim.wire import WIRE_MODELS

    out = []
    uploads = [r for r in records if r.measure == "upload" and r.implementation == CORE]
    limits = [WIRE_MODELS[options.wire].bytes_per_s / 1e6] if options.wire else []
    limits += [options.ingest_bytes_per_s / 1e6] if options.ingest_bytes_per_s else []
    limit = min(limits) if limits else None
    paced = "the bus" if options.wire and (not options.ingest_bytes_per_s or limit == limits[0]) else "the instrument"
    at_limit = limit is not None and all(r.MBps >= 0.9 * limit for r in uploads if (r.size_bytes or 0) >= MIB)
    for peer, factor in ((PYTHON_USBTMC, 1.0), (PYVISA_PY, 10.0)):
        ratios = [r.vs[peer] for r in uploads if peer in r.vs]
        if ratios:
            worst = min(ratios)
            verdict = "met" if worst >= factor else f"the core is at {paced}'s limit" if at_limit else "MISSED"
            out.append(f"upload >= {factor:g}x {peer}: {verdict} (worst {worst:.2f}x)")
    costs = trace_costs(records)
    if costs:
        worst_name, worst = max(costs.items(), key=lambda item: item[1])
        verdict = "met" if worst <= TRACE_COST_LIMIT else "MISSED"
        out.append(f"tracing costs <= {TRACE_COST_LIMIT * 100:g} %: {verdict} (worst {worst * 100:+.1f} %, {worst_name})")
    query = next((r for r in records if r.measure == "query" and r.implementation == CORE), None)
    peer_ratios = {k: v for k, v in (query.vs.items() if query is not None else ()) if k not in (CONSOLE, CORE_TRACED)}
    if peer_ratios:
        worst = min(peer_ratios.values())
        verdict = "met" if worst >= 1.0 else "frame-bound, within 10 %" if options.wire and worst >= 0.9 else "MISSED"
        out.append(f"query no slower than the peers: {verdict} (worst {worst:.2f}x)")
    console_uploads = [r.vs[CONSOLE] for r in uploads if CONSOLE in r.vs]
    if console_uploads:
        worst = 1 / max(console_uploads)
        out.append(f"console upload >= 0.95x the core: {'met' if worst >= 0.95 else 'MISSED'} (worst {worst:.2f}x)")
    if query is not None and CONSOLE in query.vs:
        ratio = query.vs[CONSOLE]
        out.append(f"console *IDN? <= 1.10x the core: {'met' if ratio <= 1.10 else 'MISSED'} ({ratio:.2f}x)")
    if options.wire == "high":
        big = [r for r in uploads if (r.size_bytes or 0) >= MIB]
        if big:
            share = min(r.of_wire_limit for r in big)
            out.append(f"uploads >= 95 % of 53.248 MB/s: {'met' if share >= 0.95 else 'MISSED'} "
                       f"(worst {share * 100:.1f} % for 1 MiB and up)")
    return out


# --- command line -------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """'64K', '1M', '64MiB', '1048576' -> bytes (K/M are binary)."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    factor = {"K": KIB, "M": MIB, "G": 1024 * MIB}.get(cleaned[-1:], 1)
    number = cleaned[:-1] if factor != 1 else cleaned
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 64K, 1M, 64M)") from None
    if value < 64 or value % 2:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes are an even number of bytes, at least 64")
    return value


def parse_ingest(text: str) -> float | None:
    from app.sim.awg import LIKE_33622A_BYTES_PER_S

    word = text.strip().lower()
    if word in ("off", "none", ""):
        return None
    if word == "33622a":
        return LIKE_33622A_BYTES_PER_S
    try:
        value = float(word)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use off, 33622a or a rate in bytes/s") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the ingest rate must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="64K,1M,8M,64M",
                        help="upload sizes, comma-separated (K and M are KiB and MiB; default 64K,1M,8M,64M)")
    parser.add_argument("--queries", type=int, default=1000, help="*IDN? queries per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; figures are medians (default 5)")
    parser.add_argument("--wire", choices=["off", "full", "high"], default="off",
                        help="pace the device like a full-speed (1.216 MB/s) or high-speed (53.248 MB/s) bus")
    parser.add_argument("--ingest", type=parse_ingest, default=None, metavar="RATE",
                        help="the instrument's ingest rate: off, 33622a (1.8 MB/s) or bytes/s")
    parser.add_argument("--only", default=",".join(IMPLEMENTATIONS),
                        help=f"implementations to run, comma-separated (default {','.join(IMPLEMENTATIONS)})")
    parser.add_argument("--pyvisa-max", type=parse_size, default=DEFAULT_PYVISA_MAX, metavar="SIZE",
                        help="largest upload for pyvisa-py, which sends one transfer per packet (default 8M)")
    parser.add_argument("--libusb", action="store_true",
                        help="serve the AWG through umockdev and run everything on the real libusb (Linux)")
    parser.add_argument("--json", action="store_true", help="one JSON record per implementation and measure")
    parser.add_argument("--lan", action="store_true",
                        help="the AWG over a raw socket, VXI-11 and HiSLIP on 127.0.0.1 beside the virtual USB bus: "
                             "TMC Console's LAN sessions and pyvisa-py's (app/bench_lan.py)")
    parser.add_argument("--no-peers", action="store_true", help="with --lan, leave pyvisa-py out")


def options_from(args: argparse.Namespace) -> BenchOptions:
    try:
        sizes = tuple(parse_size(s) for s in args.sizes.split(",") if s.strip())
    except argparse.ArgumentTypeError as exc:
        raise BenchError(str(exc)) from None
    only = tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = [n for n in only if n not in IMPLEMENTATIONS]
    if unknown:
        raise BenchError(f"unknown implementation {', '.join(unknown)}; known: {', '.join(IMPLEMENTATIONS)}")
    if args.rounds < 1 or args.queries < 1 or not sizes:
        raise BenchError("rounds, queries and sizes must each be at least 1")
    return BenchOptions(sizes=sizes, queries=args.queries, rounds=args.rounds,
                        wire=None if args.wire == "off" else args.wire, ingest_bytes_per_s=args.ingest,
                        implementations=only, pyvisa_max_bytes=args.pyvisa_max, libusb=args.libusb)


def cmd_bench(args: argparse.Namespace) -> int:
    """``tmc bench``: one line on stderr and exit 1 when it cannot run (``--lan`` is
    :func:`app.bench_lan.cmd_bench_lan`, which the command line picks)."""
    try:
        options = options_from(args)
        records = run(options)
    except BenchError as exc:
        print(f"tmc bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for record in records:
            print(json.dumps(asdict(record)))
    else:
        print(report(records, options))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host:
        return _host_main(args.host)
    if getattr(args, "lan", False):
        print("python -m app.bench: the LAN benchmark runs as `tmc bench --lan`", file=sys.stderr)
        return 2
    return cmd_bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
