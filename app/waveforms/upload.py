"""The upload: a plan tying source, scaling, encoding and template together, its streamed
messages (encoded ahead of the sender on a thread of their own), :func:`run_upload` through an
``app.usbtmc.Instrument`` and the checks that follow it.
"""

from __future__ import annotations

import queue
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from .encoding import SAMPLE_TYPES, SampleType, Scaling, Template
from .sources import CHUNK_POINTS, Source, WaveformError

PREFETCH_CHUNKS = 2  # chunks encoded ahead of the sender by run_upload, on a thread of their own


def block_header(length: int) -> bytes:
    """The IEEE 488.2 definite block header for ``length`` bytes (488.2 8.7.9)."""
    digits = str(length).encode("ascii")
    if len(digits) > 9:
        raise WaveformError("a definite block holds at most 999,999,999 bytes")
    return b"#" + str(len(digits)).encode("ascii") + digits


@dataclass(frozen=True)
class Message:
    """One USBTMC message of an upload: ``pieces`` are joined by nobody; ``total_bytes`` is their sum."""

    pieces: Iterator
    total_bytes: int
    points: int


@dataclass(frozen=True)
class UploadPlan:
    """What to send: a source, its scaling and encoding, and the template to wrap it in."""

    source: Source
    template: Template
    name: str = "tmc_wave"
    sample_type: str | None = None
    byte_order: str | None = None
    scaling: Scaling = field(default_factory=Scaling)
    prefix: str | None = None  # the generic template's prefix as typed
    select: bool = False  # send the template's select command after a good upload
    chunk_points: int = CHUNK_POINTS

    def __post_init__(self) -> None:
        t = self.template
        if self.kind not in t.sample_types:
            raise WaveformError(f"{t.label} takes {', '.join(t.sample_types)} samples, not {self.kind}")
        if self.order not in t.byte_orders:
            raise WaveformError(f"{t.label} takes {' or '.join(t.byte_orders)}-endian samples")
        if ("{name}" in t.prefix or t.verify) and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,11}", self.name):
            raise WaveformError(f"{self.name!r} is not a waveform name: a letter, then letters, digits or _ "
                                f"(at most 12)")
        if self.source.points < 1:
            raise WaveformError("the waveform has no points")
        try:
            self.template.prefix_for(self.name, self.order, "", self.prefix)
        except UnicodeEncodeError:
            raise WaveformError("the command prefix must be ASCII") from None

    @property
    def kind(self) -> str:
        return self.sample_type or self.template.sample_type

    @property
    def order(self) -> str:
        return self.byte_order or self.template.byte_order

    @property
    def sample(self) -> SampleType:
        return SAMPLE_TYPES[self.kind]

    @property
    def sample_bytes(self) -> int:
        return np.dtype(self.sample.dtype).itemsize

    def _spans(self) -> list[tuple[int, int, bytes, bytes]]:
        """(first point, end point, head, tail) of each message."""
        t, n = self.template, self.source.points
        if t.kind == "chained":
            step = t.chunk_points
            spans = []
            for start in range(0, n, step):
                stop = min(n, start + step)
                flag = t.end_flag if stop == n else t.continue_flag
                prefix = t.prefix_for(self.name, self.order, flag, self.prefix)
                spans.append((start, stop, prefix + block_header((stop - start) * self.sample_bytes),
                              t.terminator.encode()))
            return spans
        prefix = t.prefix_for(self.name, self.order, "", self.prefix)
        if t.kind == "block":
            prefix += block_header(n * self.sample_bytes)
        return [(0, n, prefix, t.terminator.encode())]

    @property
    def total_bytes(self) -> int:
        return sum(len(head) + (stop - start) * self.sample_bytes + len(tail)
                   for start, stop, head, tail in self._spans())

    @property
    def message_count(self) -> int:
        return len(self._spans())

    def head_preview(self, data_bytes: int = 32) -> tuple[bytes, bytes]:
        """(the first message's text before the data, the first ``data_bytes`` bytes of data)."""
        start, stop, head, _tail = self._spans()[0]
        points = min(stop - start, -(-data_bytes // self.sample_bytes))
        encoded = Encoder(self).encode(self.source.chunk(start, start + points))
        return head, encoded.tobytes()[:data_bytes]

    def open(self, prefetch_chunks: int = 0) -> UploadStream:
        """A fresh stream of this plan's messages (one per upload: it computes the checksum on the way).

        ``prefetch_chunks`` > 0 encodes that many chunks ahead on a thread of its own, so the
        bus does not idle while the next chunk is computed.
        """
        return UploadStream(self, prefetch_chunks)


class Encoder:
    """Scales, clips and encodes chunks of a plan's source; counts what was clipped."""

    def __init__(self, plan: UploadPlan) -> None:
        self.plan = plan
        self.gain, self.offset = plan.scaling.factors(plan.source)
        self.clipped = 0

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Encode ``values`` (a fresh array: it is scaled and clipped in place)."""
        if self.gain != 1.0:
            values *= self.gain
        if self.offset:
            values += self.offset
        if len(values):
            low, high = values.min(), values.max()  # NaN in either means NaN somewhere
            if not (-1.0 <= low and high <= 1.0):
                over = np.count_nonzero((values > 1.0) | (values < -1.0) | np.isnan(values))
                self.clipped += int(over)
                np.clip(np.nan_to_num(values, nan=0.0, copy=False), -1.0, 1.0, out=values)
        return self.plan.sample.encode(values, self.plan.order)


class _Prefetcher:
    """Runs an iterator on a thread of its own, at most ``depth`` items ahead of the consumer.

    NumPy and zlib release the GIL, so encoding overlaps with the transfers. :meth:`close`
    stops the thread (an aborted upload abandons the iterator half-way).
    """

    _END = object()

    def __init__(self, items: Iterator, depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name="waveform-encoder", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(exc)

    def __iter__(self) -> Iterator:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)


class UploadStream:
    """The messages of one upload, produced lazily; ``crc32`` and ``clipped`` are complete once
    every message has been consumed. CRC-32 is over the samples little-endian."""

    def __init__(self, plan: UploadPlan, prefetch_chunks: int = 0) -> None:
        self.plan = plan
        self.encoder = Encoder(plan)
        self.prefetch_chunks = prefetch_chunks
        self.crc32 = 0
        self.points_sent = 0

    @property
    def clipped(self) -> int:
        return self.encoder.clipped

    def messages(self) -> Iterator[Message]:
        plan = self.plan
        for start, stop, head, tail in plan._spans():
            total = len(head) + (stop - start) * plan.sample_bytes + len(tail)
            yield Message(self._pieces(start, stop, head, tail), total, stop - start)

    def _encoded(self, start: int, stop: int) -> Iterator[np.ndarray]:
        step = self.plan.chunk_points
        for first in range(start, stop, step):
            yield self.encoder.encode(self.plan.source.chunk(first, min(stop, first + step)))

    def _pieces(self, start: int, stop: int, head: bytes, tail: bytes) -> Iterator:
        yield head
        swap = self.plan.order == "big"
        chunks = self._encoded(start, stop)
        ahead = _Prefetcher(chunks, self.prefetch_chunks) if self.prefetch_chunks > 0 else None
        try:
            for samples in ahead if ahead is not None else chunks:
                little = samples.byteswap() if swap else samples
                self.crc32 = zlib.crc32(memoryview(little).cast("B"), self.crc32)
                self.points_sent += len(samples)
                yield samples
        finally:
            if ahead is not None:
                ahead.close()
        if tail:
            yield tail


@dataclass(frozen=True)
class UploadResult:
    """What an upload did and what the instrument said about it."""

    bytes_sent: int
    seconds: float
    points: int
    crc32: int
    clipped: int
    opc: bool | None = None  # *OPC? answered 1 (None: not asked)
    errors: tuple[str, ...] = ()  # SYST:ERR? entries other than 0, read after the upload
    earlier_errors: tuple[str, ...] = ()  # entries already queued before the upload began
    device_points: int | None = None
    device_crc32: int | None = None
    problems: tuple[str, ...] = ()  # checks that could not run

    @property
    def verified(self) -> bool | None:
        """True when the instrument reports the points and CRC-32 that were sent (None: not asked)."""
        if self.device_points is None:
            return None
        return self.device_points == self.points and self.device_crc32 == self.crc32

    @property
    def bytes_per_s(self) -> float:
        return self.bytes_sent / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[int, int, float], None]


ABORT_LATENCY_MS = 50  # with an abort flag, transfers are sized to last about this long


def run_upload(instrument, plan: UploadPlan, *, abort: threading.Event | None = None,
               progress: ProgressCallback | None = None, check: bool = True,
               drain_before: bool | None = None) -> UploadResult:
    """Send ``plan`` through ``instrument`` (an ``app.usbtmc.Instrument``), then check it.

    ``progress(done_bytes, total_bytes, elapsed_s)`` is called after every transfer.
    ``abort`` is checked between transfers (the core then aborts the transfer and clears
    the device); with it, transfers are sized to last about :data:`ABORT_LATENCY_MS`, so
    Cancel works at once even on a slow instrument. With ``check``, afterwards: ``*OPC?``,
    ``SYST:ERR?`` until it answers 0 and the template's verify query, as the template
    allows; errors already queued are read first (``drain_before``, by default as ``check``)
    so they are not blamed on this upload. Core errors propagate.
    """
    drain = check if drain_before is None else drain_before
    earlier = drain_errors(instrument) if drain and plan.template.errors else ()
    stream = plan.open(PREFETCH_CHUNKS)
    total = plan.total_bytes
    started = time.perf_counter()
    before = 0
    for message in stream.messages():
        def report(done: int, _total: int, base: int = before) -> None:
            if progress is not None:
                progress(base + done, total, time.perf_counter() - started)

        pacing = {"abort_latency_ms": ABORT_LATENCY_MS} if abort is not None else {}
        try:
            instrument.write_stream(message.pieces, message.total_bytes, abort=abort, progress=report, **pacing)
        finally:
            message.pieces.close()  # an aborted message stops its encoder at once
        before += message.total_bytes
    seconds = time.perf_counter() - started
    result = UploadResult(total, seconds, stream.points_sent, stream.crc32, stream.clipped, earlier_errors=earlier)
    return check_upload(instrument, plan, result) if check else result


def drain_errors(instrument, limit: int = 32) -> tuple[str, ...]:
    """Read ``SYST:ERR?`` until it answers 0 (at most ``limit`` entries); the entries other than 0."""
    found = []
    for _ in range(limit):
        entry = instrument.query("SYST:ERR?").strip()
        if not entry or entry.split(",", 1)[0].strip().lstrip("+") in ("0", "-0"):
            break
        found.append(entry)
    return tuple(found)


def check_upload(instrument, plan: UploadPlan, result: UploadResult) -> UploadResult:
    """Ask the instrument about an upload: ``*OPC?``, the error queue, the stored length and CRC."""
    t = plan.template
    changes: dict = {}
    problems: list[str] = []
    if t.opc:
        changes["opc"] = instrument.query("*OPC?").strip() == "1"
    if t.errors:
        changes["errors"] = drain_errors(instrument)
    if t.verify:
        answer = instrument.query(t.verify.replace("{name}", plan.name)).strip()
        try:
            points, crc = (int(part) for part in answer.split(","))
            changes["device_points"], changes["device_crc32"] = points, crc
        except ValueError:
            problems.append(f"{t.verify.split()[0]} answered {answer!r}, not <points>,<crc32>")
    result = replace(result, problems=tuple(problems), **changes)
    if plan.select and t.select and not result.errors and result.verified is not False:
        instrument.write(t.select.replace("{name}", plan.name))
    return result


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
