"""Waveforms for arbitrary waveform generators, without Qt: sources, file readers, encodings,
command templates and the streaming upload.

The pieces, in the order an upload uses them:

- A **source** gives samples as float64 values where +-1.0 is full scale, a chunk at a time
  (:meth:`Source.chunk`): built-in shapes are computed per chunk and files are memory-mapped
  where their format allows, so a source of 128 Mi points never sits in memory as float64.
- **Scaling** maps a source's values to full scale (as they are, normalised to the peak, or
  with a gain and offset); values beyond full scale are clipped and counted.
- An **encoding** turns values into samples of the target type (int16, float32, or Rigol's
  14-bit unsigned) in a byte order.
- A **template** says how an instrument takes them: one IEEE 488.2 block after a command
  (the virtual AWG's ``DATA:ARB:DAC``/``DATA:ARB``, or any "prefix + block"), a chain of
  block messages (Rigol ``:TRAC:DATA:DAC16 VOLATILE,CON|END,``), or raw bytes after a
  header with no block header at all (Siglent ``WVDT``).
- An :class:`UploadPlan` ties them together; :func:`run_upload` sends it through an
  ``app.usbtmc.Instrument`` (each message one USBTMC message made of large transfers) and
  then asks the instrument whether it is done (``*OPC?``), what went wrong (``SYST:ERR?``)
  and what it stored (length and CRC-32), which it compares with what was sent.

File readers never execute anything from a file: ``.npy`` files are loaded with
``allow_pickle=False``; every problem raises :class:`WaveformError` naming the file and
what is wrong with it.
"""

from __future__ import annotations

import csv
import io
import math
import queue
import re
import struct
import tempfile
import threading
import time
import tokenize
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

CHUNK_POINTS = 256 * 1024  # samples encoded at a time: large enough for NumPy, small next to a waveform
PREFETCH_CHUNKS = 2  # chunks encoded ahead of the sender by run_upload, on a thread of their own
_NOISE_BLOCK = 4096  # noise is drawn per block of this many points, so any chunk can be computed alone


class WaveformError(ValueError):
    """A waveform source or file cannot be used; the message says which and why."""


# --- sources -------------------------------------------------------------------------------


class Source:
    """Samples as float64, +-1.0 being full scale. Subclasses implement :meth:`chunk`."""

    points: int = 0
    description: str = ""
    sample_rate_hz: float | None = None  # what the file says, if anything

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Values of points ``start`` to ``stop`` (exclusive) as a new float64 array."""
        raise NotImplementedError

    def chunks(self, chunk_points: int = CHUNK_POINTS) -> Iterator[np.ndarray]:
        for start in range(0, self.points, chunk_points):
            yield self.chunk(start, min(self.points, start + chunk_points))

    def stats(self) -> tuple[float, float]:
        """(minimum, maximum) of all values (computed once, chunk by chunk)."""
        cached = getattr(self, "_stats", None)
        if cached is None:
            low, high = math.inf, -math.inf
            for values in self.chunks():
                if len(values):
                    low, high = min(low, float(values.min())), max(high, float(values.max()))
            cached = (low, high) if self.points else (0.0, 0.0)
            object.__setattr__(self, "_stats", cached)
        return cached

    def preview(self, max_points: int = 4000) -> tuple[np.ndarray, np.ndarray]:
        """(point index, value) for a plot: every point when there are few, else a min/max
        envelope over ``max_points // 2`` bins, which keeps spikes and edges visible.

        Kept once computed (per ``max_points``): a file's preview is computed where it is read,
        off the GUI thread, and drawn from here."""
        cached = getattr(self, "_preview", None)
        if cached is not None and cached[0] == max_points:
            return cached[1], cached[2]
        x, y = self._envelope(max_points)
        object.__setattr__(self, "_preview", (max_points, x, y))
        return x, y

    def _envelope(self, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.points
        if n <= max_points:
            return np.arange(n, dtype=np.float64), self.chunk(0, n)
        bins = max(1, max_points // 2)
        edges = np.linspace(0, n, bins + 1).astype(np.int64)
        lows = np.empty(bins)
        highs = np.empty(bins)
        bin_index = 0
        for start in range(0, n, CHUNK_POINTS * 4):
            stop = min(n, start + CHUNK_POINTS * 4)
            values = self.chunk(start, stop)
            while bin_index < bins and edges[bin_index] < stop:
                lo, hi = max(edges[bin_index], start), min(edges[bin_index + 1], stop)
                part = values[lo - start:hi - start]
                if edges[bin_index] >= start:
                    lows[bin_index], highs[bin_index] = part.min(), part.max()
                else:  # the bin began in the previous chunk
                    lows[bin_index] = min(lows[bin_index], part.min())
                    highs[bin_index] = max(highs[bin_index], part.max())
                if edges[bin_index + 1] > stop:
                    break
                bin_index += 1
        x = np.repeat((edges[:-1] + edges[1:]) / 2.0, 2)
        y = np.empty(2 * bins)
        y[0::2], y[1::2] = lows, highs
        return x, y


SHAPES = ("sine", "square", "triangle", "ramp", "noise", "pulse")


@dataclass(frozen=True)
class ShapeSource(Source):
    """A built-in shape of ``points`` points: ``offset + amplitude * shape``, the shape between -1 and 1.

    ``cycles`` periods fit in the waveform; ``duty`` is the high fraction of square and pulse
    (pulse defaults to 10 %); noise is uniform and reproducible from ``seed``.
    """

    shape: str = "sine"
    points: int = 1000
    amplitude: float = 1.0
    offset: float = 0.0
    cycles: float = 1.0
    duty: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise WaveformError(f"unknown shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if self.points < 1:
            raise WaveformError("a waveform needs at least one point")
        duty = self.duty_fraction
        if not 0.0 < duty < 1.0:
            raise WaveformError(f"duty cycle {duty:g} must be between 0 and 1")

    @property
    def duty_fraction(self) -> float:
        return self.duty if self.duty is not None else (0.1 if self.shape == "pulse" else 0.5)

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"{self.shape}, {self.points:,} points, amplitude {self.amplitude:g}, offset {self.offset:g}"

    def chunk(self, start: int, stop: int) -> np.ndarray:
        values = self._noise(start, stop) if self.shape == "noise" else \
            self._base(np.arange(start, stop, dtype=np.float64))
        if self.amplitude != 1.0:
            values *= self.amplitude
        if self.offset:
            values += self.offset
        return values

    def _noise(self, start: int, stop: int) -> np.ndarray:
        out = np.empty(stop - start)
        first, last = start // _NOISE_BLOCK, (stop - 1) // _NOISE_BLOCK
        for block in range(first, last + 1):
            values = np.random.default_rng([self.seed, block]).uniform(-1.0, 1.0, _NOISE_BLOCK)
            lo, hi = max(start, block * _NOISE_BLOCK), min(stop, (block + 1) * _NOISE_BLOCK)
            out[lo - start:hi - start] = values[lo - block * _NOISE_BLOCK:hi - block * _NOISE_BLOCK]
        return out

    def preview(self, max_points: int = 4000) -> tuple[np.ndarray, np.ndarray]:
        if self.points <= max_points:
            return Source.preview(self, max_points)
        # A computed shape can be evaluated where the plot needs it: no pass over every point.
        index = np.unique(np.linspace(0, self.points - 1, max_points).astype(np.int64))
        return index.astype(np.float64), self._at(index)

    def _at(self, index: np.ndarray) -> np.ndarray:
        if self.shape == "noise":
            blocks = index // _NOISE_BLOCK
            base = np.empty(len(index))
            for block in np.unique(blocks):
                values = np.random.default_rng([self.seed, int(block)]).uniform(-1.0, 1.0, _NOISE_BLOCK)
                chosen = blocks == block
                base[chosen] = values[index[chosen] - block * _NOISE_BLOCK]
            return self.offset + self.amplitude * base
        return self.offset + self.amplitude * self._base(index.astype(np.float64))

    def _base(self, index: np.ndarray) -> np.ndarray:
        """The shape at ``index`` (float64 point numbers; the array is reused for the result)."""
        if self.shape == "sine":
            # In place and without reducing the phase: float64 keeps sin() exact to far below
            # a 16-bit step for any realistic number of cycles.
            index *= 2 * np.pi * self.cycles / self.points
            return np.sin(index, out=index)
        phase = np.mod(index * (self.cycles / self.points), 1.0)
        if self.shape in ("square", "pulse"):
            return np.where(phase < self.duty_fraction, 1.0, -1.0)
        if self.shape == "triangle":
            return 1.0 - 4.0 * np.abs(np.mod(phase + 0.25, 1.0) - 0.5)
        return 2.0 * phase - 1.0  # ramp

    def stats(self) -> tuple[float, float]:
        if self.shape == "noise" or self.points < 64:
            return Source.stats(self)
        low, high = self.offset - abs(self.amplitude), self.offset + abs(self.amplitude)
        return low, high


class ArraySource(Source):
    """Samples from an array (a file's data, often memory-mapped). ``scale`` turns the stored
    numbers into values (1/32768 for 16-bit PCM, 1 for numbers as they are)."""

    def __init__(self, data: np.ndarray, description: str, *, scale: float = 1.0,
                 sample_rate_hz: float | None = None, path: Path | None = None) -> None:
        self.data = data
        self.points = int(data.shape[0])
        self.description = description
        self.scale = scale
        self.sample_rate_hz = sample_rate_hz
        self.path = path

    def chunk(self, start: int, stop: int) -> np.ndarray:
        values = np.asarray(self.data[start:stop], dtype=np.float64)
        if self.scale != 1.0:
            values = values * self.scale
        elif values.base is not None or not values.flags.writeable:
            values = values.copy()
        return values


class _Pcm24Source(ArraySource):
    """24-bit PCM: three little-endian bytes per sample, widened per chunk."""

    def __init__(self, raw: np.ndarray, channels: int, channel: int, description: str, rate: float, path: Path):
        super().__init__(raw, description, scale=1.0 / 8388608, sample_rate_hz=rate, path=path)
        self._frames = raw.reshape(-1, channels, 3)[:, channel, :]
        self.points = int(self._frames.shape[0])

    def chunk(self, start: int, stop: int) -> np.ndarray:
        b = np.asarray(self._frames[start:stop], dtype=np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value & 0x800000, value - 0x1000000, value)
        return value.astype(np.float64) * self.scale


# --- file readers ----------------------------------------------------------------------------

RAW_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64")
FILE_KINDS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".npy": "npy", ".wav": "wav", ".bin": "raw",
              ".raw": "raw", ".dat": "raw"}
_COMMENT = re.compile(r"^\s*(#|//|;|%)")


def _name(path: Path) -> str:
    return path.name or str(path)


NON_FINITE_CHOICES = ("refuse", "zero")  # NaN/inf in a file: refuse the file, or replace each by 0 and count them

Progress = Callable[[int, int], None]  # (done, total) in bytes or points; called from the reading thread


class LoadCancelled(WaveformError):
    """Reading a file was cancelled (another file was chosen, or the panel closed)."""


def load_file(path: str | Path, kind: str | None = None, *, non_finite: str = "refuse",
              progress: Progress | None = None, cancel: threading.Event | None = None, **options) -> ArraySource:
    """Read a waveform file. ``kind`` ("csv", "npy", "wav", "raw") defaults from the file name;
    ``options`` go to the reader (``column``, ``channel``, ``dtype``, ``byte_order``, ``offset_bytes``).

    Every value is checked once here (and the minimum and maximum kept): NaN or infinite values
    refuse the file when ``non_finite`` is "refuse", or are replaced by 0 and counted
    (``source.replaced``) when it is "zero". ``progress`` is called with (done, total) as the
    file is read and checked; ``cancel`` stops at the next chunk with :class:`LoadCancelled`.
    Memory stays bounded whatever the file's size: CSV numbers are written to a temporary file
    as they are parsed, the other formats are memory-mapped.
    """
    path = Path(path)
    if non_finite not in NON_FINITE_CHOICES:
        raise WaveformError(f"NaN/inf handling must be one of {', '.join(NON_FINITE_CHOICES)}, not {non_finite!r}")
    kind = kind or FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise WaveformError(f"{_name(path)}: unknown file type {path.suffix or '(none)'}; "
                            f"use CSV, .npy, .wav or raw binary")
    reader = {"csv": read_csv, "npy": read_npy, "wav": read_wav, "raw": read_raw}.get(kind)
    if reader is None:
        raise WaveformError(f"unknown file kind {kind!r}")
    if kind == "csv":
        options.update(non_finite=non_finite, progress=_first_half(progress), cancel=cancel)
    try:
        source = reader(path, **options)
        return _checked(source, path, non_finite, _second_half(progress) if kind == "csv" else progress, cancel)
    except OSError as exc:
        raise WaveformError(f"{_name(path)}: cannot be read ({exc.strerror or exc})") from None
    except MemoryError:
        raise WaveformError(f"{_name(path)}: not enough memory to read it") from None


def _first_half(progress: Progress | None) -> Progress | None:
    """Reading a CSV file is the first half of its progress, checking the numbers the second."""
    if progress is None:
        return None
    return lambda done, total: progress(done, 2 * total)


def _second_half(progress: Progress | None) -> Progress | None:
    if progress is None:
        return None
    return lambda done, total: progress(total + done, 2 * total)


def _checked(source: ArraySource, path: Path, non_finite: str, progress: Progress | None,
             cancel: threading.Event | None) -> ArraySource:
    """One pass over every value: minimum, maximum and the NaN/inf count (see :func:`load_file`)."""
    low, high = math.inf, -math.inf
    bad, first_bad = 0, -1
    step = CHUNK_POINTS  # small steps: the GUI thread gets the GIL between them when this runs beside it
    for start in range(0, source.points, step):
        if cancel is not None and cancel.is_set():
            raise LoadCancelled(f"{_name(path)}: reading was cancelled")
        values = source.chunk(start, min(source.points, start + step))
        finite = np.isfinite(values)
        if not finite.all():
            if first_bad < 0:
                first_bad = start + int(np.flatnonzero(~finite)[0])
            bad += int(values.size - np.count_nonzero(finite))
            values = values[finite]
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
        if progress is not None:
            progress(min(source.points, start + step), source.points)
    if bad and non_finite == "refuse":
        raise WaveformError(
            f"{_name(path)}: {bad:,} of {source.points:,} values are NaN or infinite (the first is point "
            f"{first_bad:,}); choose to replace them with 0 to use the file anyway")
    if bad:
        source = _FiniteSource(source, bad)
        low, high = min(low, 0.0), max(high, 0.0)
    if low > high:  # no finite value at all
        low = high = 0.0
    object.__setattr__(source, "_stats", (low, high))
    return source


class _FiniteSource(ArraySource):
    """A file's values with every NaN or infinity replaced by 0 (``replaced`` of them)."""

    def __init__(self, inner: ArraySource, replaced: int) -> None:
        super().__init__(inner.data, f"{inner.description}; {replaced:,} NaN/inf values replaced by 0",
                         scale=inner.scale, sample_rate_hz=inner.sample_rate_hz, path=inner.path)
        self.points = inner.points
        self.inner = inner
        self.replaced = replaced

    def chunk(self, start: int, stop: int) -> np.ndarray:
        values = self.inner.chunk(start, stop)
        values[~np.isfinite(values)] = 0.0  # chunk() always returns a new array: safe to change
        return values


_CSV_BLOCK_BYTES = 256 * 1024  # lines parsed at a time; the numbers go to a temporary file after each block


def read_csv(path: str | Path, column: int | str | None = None, *, non_finite: str = "refuse",
             progress: Progress | None = None, cancel: threading.Event | None = None) -> ArraySource:
    """Numbers from a CSV or text file: one per line, or a column of several.

    The delimiter (comma, semicolon, tab or spaces) is guessed; a first line of names is a
    header; lines starting with ``#``, ``//``, ``;`` or ``%`` are comments. ``column`` is an
    index (negative from the end), a header name, or None: the only column, or the last of
    several (``time,value`` files). The file is read a block of lines at a time and the numbers
    kept in a temporary file, memory-mapped, so a file of any size needs little memory.
    NaN or infinite numbers raise with their line unless ``non_finite`` is "zero".
    """
    path = Path(path)
    total = path.stat().st_size
    with open(path, "rb") as handle:
        if b"\x00" in handle.read(4096):
            raise WaveformError(f"{_name(path)}: this is a binary file, not CSV text (open it as raw binary)")
        handle.seek(0)
        parser = _CsvParser(path, column, non_finite)
        spill = tempfile.TemporaryFile(prefix="tmc-waveform-", suffix=".f64")
        try:
            done = 0
            while True:
                if cancel is not None and cancel.is_set():
                    raise LoadCancelled(f"{_name(path)}: reading was cancelled")
                lines = handle.readlines(_CSV_BLOCK_BYTES)
                if not lines:
                    break
                values = parser.block(lines)
                if values.size:
                    spill.write(values.tobytes())
                done += sum(len(line) for line in lines)
                if progress is not None:
                    progress(done, total)
            points = parser.points
            if points == 0:
                raise WaveformError(f"{_name(path)}: a header line and no numbers" if parser.names is not None
                                    else f"{_name(path)}: no numbers in the file")
            spill.flush()
            data = np.memmap(spill, dtype=np.float64, mode="r", shape=(points,))
        except BaseException:
            spill.close()
            raise
    description = f"{_name(path)}: {points:,} points from column {_column_label(parser.index, parser.names)}"
    source = ArraySource(data, description, path=path)
    source.spill = spill  # the temporary file lives as long as the source
    return source


class _CsvParser:
    """The state of :func:`read_csv` across blocks of lines: delimiter, header, column, line number."""

    def __init__(self, path: Path, column, non_finite: str) -> None:
        self.path = path
        self.column = column
        self.non_finite = non_finite
        self.line = 0  # physical line number of the last line seen
        self.delimiter: str | None = None
        self.names: list[str] | None = None
        self.index: int | None = None
        self.points = 0
        self.first = True

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8-sig" if self.line == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise WaveformError(f"{_name(self.path)} line {self.line}: not UTF-8 text (byte {exc.start + 1} of the line)") from None

    def _split(self, texts: list[str], numbers: list[int]) -> list[list[str]]:
        if self.delimiter is None:
            return [text.split() for text in texts]
        rows = []
        try:
            for row in csv.reader(texts, delimiter=self.delimiter):
                rows.append([field.strip() for field in row])
        except csv.Error as exc:
            number = numbers[min(len(rows), len(numbers) - 1)]
            raise WaveformError(f"{_name(self.path)} line {number}: not readable as CSV ({exc})") from None
        if len(rows) != len(texts):  # a quoted field ran on into the next line: find where
            for text, number in zip(texts, numbers):
                try:
                    list(csv.reader([text], delimiter=self.delimiter, strict=True))
                except csv.Error as exc:
                    raise WaveformError(f"{_name(self.path)} line {number}: not readable as CSV ({exc})") from None
            raise WaveformError(f"{_name(self.path)} line {numbers[0]}: a quoted field is not closed")
        return rows

    def block(self, raw_lines: list[bytes]) -> np.ndarray:
        texts, numbers = [], []
        for raw in raw_lines:
            self.line += 1
            text = self._decode(raw).rstrip("\r\n")
            if text.strip() and not _COMMENT.match(text):
                texts.append(text)
                numbers.append(self.line)
        if not texts:
            return np.empty(0)
        if self.first:
            self.first = False
            self.delimiter = next((d for d in (",", ";", "\t") if d in texts[0]), None)
            (header,) = self._split(texts[:1], numbers[:1])
            if not all(_is_number(f) for f in header if f):
                self.names = header
                texts, numbers = texts[1:], numbers[1:]
        rows = self._split(texts, numbers)
        if self.index is None and (rows or self.names is not None):
            width = len(self.names) if self.names else len(rows[0])
            self.index = _column_index(self.path, self.column, width, self.names)
        if not rows:
            return np.empty(0)
        index = self.index
        label = _column_label(index, self.names)
        try:
            fields = [row[index] for row in rows]
        except IndexError:
            bad = next(i for i, row in enumerate(rows) if len(row) <= index)
            raise WaveformError(f"{_name(self.path)} line {numbers[bad]}: {len(rows[bad])} columns, column {label} "
                                f"is missing") from None
        try:
            values = np.fromiter(map(float, fields), dtype=np.float64, count=len(fields))
        except (ValueError, OverflowError):
            bad = next(i for i, f in enumerate(fields) if not _is_number(f))
            raise WaveformError(f"{_name(self.path)} line {numbers[bad]}, column {label}: "
                                f"{_short(fields[bad])} is not a number") from None
        if self.non_finite == "refuse" and not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise WaveformError(f"{_name(self.path)} line {numbers[bad]}: {values[bad]} is not a finite number "
                                "(choose to replace NaN/inf with 0 to use the file anyway)")
        self.points += len(values)
        return values


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else "") or type(exc).__name__


def _short(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else repr(text[:30]) + f"… ({len(text):,} characters)"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except (ValueError, OverflowError):
        return False
    return True


def _column_index(path: Path, column, width: int, names: list[str] | None) -> int:
    if column is None:
        return 0 if width == 1 else width - 1
    if isinstance(column, str) and not column.lstrip("-").isdigit():
        if not names or column not in names:
            raise WaveformError(f"{_name(path)}: no column named {column!r}"
                                + (f" (columns: {', '.join(names)})" if names else " (the file has no header line)"))
        return names.index(column)
    index = int(column)
    if not -width <= index < width:
        raise WaveformError(f"{_name(path)}: column {index} does not exist (the file has {width})")
    return index if index >= 0 else width + index


def _column_label(index: int, names: list[str] | None) -> str:
    if names and 0 <= index < len(names):
        return f"{index} ({names[index]})"
    return str(index)


def read_npy(path: str | Path, column: int | None = None) -> ArraySource:
    """A NumPy ``.npy`` array of numbers (memory-mapped; never unpickled).

    1-D arrays are used as they are; 2-D arrays need a single row or column, or ``column``.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY":
        raise WaveformError(f"{_name(path)}: not a NumPy .npy file (it starts with {magic!r})")
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "object" in str(exc):
            raise WaveformError(f"{_name(path)}: the array holds Python objects, which are never loaded "
                                f"(only arrays of numbers)") from None
        raise WaveformError(f"{_name(path)}: not a readable .npy file ({_first_line(exc)})") from None
    except (SyntaxError, TypeError, OverflowError, tokenize.TokenError, EOFError, KeyError, UnicodeError,
            IndexError, AttributeError) as exc:
        # NumPy reads the header with tokenize and ast.literal_eval (never eval): a damaged header
        # fails in either, or later when its shape or dtype makes no sense.
        raise WaveformError(f"{_name(path)}: the .npy header is damaged ({type(exc).__name__}: "
                            f"{_first_line(exc)})") from None
    if data.dtype.kind not in "iuf":
        what = {"c": "complex numbers", "b": "booleans", "U": "text", "S": "bytes", "O": "Python objects",
                "V": "records"}.get(data.dtype.kind, f"dtype {data.dtype}")
        raise WaveformError(f"{_name(path)}: the array holds {what}; samples must be real numbers")
    if data.ndim == 2:
        if column is not None:
            if not -data.shape[1] <= column < data.shape[1]:
                raise WaveformError(f"{_name(path)}: column {column} does not exist (shape {data.shape})")
            data = data[:, column]
        elif 1 in data.shape:
            data = data.reshape(-1)
        else:
            raise WaveformError(f"{_name(path)}: a {data.shape[0]} x {data.shape[1]} array; choose a column")
    elif data.ndim != 1:
        raise WaveformError(f"{_name(path)}: a {data.ndim}-dimensional array {data.shape}; samples need 1-D")
    if data.shape[0] == 0:
        raise WaveformError(f"{_name(path)}: the array is empty")
    return ArraySource(data, f"{_name(path)}: {data.shape[0]:,} points of {data.dtype}", path=path)


def read_raw(path: str | Path, dtype: str = "int16", byte_order: str = "little", offset_bytes: int = 0,
             scale: float | None = None) -> ArraySource:
    """Header-less binary samples of ``dtype`` in ``byte_order`` ("little" or "big"), memory-mapped.

    Integer samples are scaled to +-1.0 by their type's range unless ``scale`` says otherwise.
    """
    path = Path(path)
    if dtype not in RAW_DTYPES:
        raise WaveformError(f"unknown sample type {dtype!r}; known: {', '.join(RAW_DTYPES)}")
    if byte_order not in ("little", "big"):
        raise WaveformError(f"byte order must be 'little' or 'big', not {byte_order!r}")
    kind = np.dtype(dtype).newbyteorder("<" if byte_order == "little" else ">")
    size = path.stat().st_size
    body = size - offset_bytes
    if offset_bytes < 0 or body <= 0:
        raise WaveformError(f"{_name(path)}: {size} bytes leave nothing after an offset of {offset_bytes}")
    if body % kind.itemsize:
        raise WaveformError(f"{_name(path)}: {body} bytes is not a whole number of {dtype} samples "
                            f"({kind.itemsize} bytes each); check the sample type and offset")
    data = np.memmap(path, dtype=kind, mode="r", offset=offset_bytes)
    if scale is None:
        scale = 1.0 / (np.iinfo(kind).max + 1) if kind.kind in "iu" else 1.0
        if kind.kind == "u":
            scale = 2.0 / (np.iinfo(kind).max + 1)  # unsigned: 0..max becomes -1..1 after the offset below
    source = ArraySource(data, f"{_name(path)}: {len(data):,} {dtype} samples, {byte_order}-endian", scale=scale,
                         path=path)
    if kind.kind == "u":
        return _OffsetSource(source)
    return source


class _OffsetSource(ArraySource):
    """Unsigned samples centred on zero: value * scale - 1."""

    def __init__(self, inner: ArraySource) -> None:
        super().__init__(inner.data, inner.description, scale=inner.scale, sample_rate_hz=inner.sample_rate_hz,
                         path=inner.path)

    def chunk(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.data[start:stop], dtype=np.float64) * self.scale - 1.0


_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE


def _chunk_name(chunk_id: bytes) -> str:
    return repr(chunk_id.decode("latin-1"))


def read_wav(path: str | Path, channel: int = 0) -> ArraySource:
    """A RIFF/WAVE file: PCM 8/16/24/32-bit or IEEE float 32/64-bit, one ``channel`` (from 0),
    memory-mapped. PCM is scaled to +-1.0; the file's sample rate is kept."""
    path = Path(path)
    file_bytes = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise WaveformError(f"{_name(path)}: not a RIFF/WAVE file (it starts with {head[:4]!r})")
        fmt = None
        while True:
            chunk_head = handle.read(8)
            if len(chunk_head) < 8:
                raise WaveformError(f"{_name(path)}: no 'data' chunk" if fmt else f"{_name(path)}: no 'fmt ' chunk")
            chunk_id, chunk_size = chunk_head[:4], struct.unpack("<I", chunk_head[4:])[0]
            at = handle.tell()
            if chunk_id != b"data" and at + chunk_size > file_bytes:
                raise WaveformError(f"{_name(path)}: the {_chunk_name(chunk_id)} chunk at byte {at - 8:,} says "
                                    f"{chunk_size:,} bytes, but the file ends {file_bytes - at:,} bytes later")
            if chunk_id == b"fmt ":
                body = handle.read(chunk_size)
                if len(body) < 16:
                    raise WaveformError(f"{_name(path)}: the 'fmt ' chunk is {len(body)} bytes, too short")
                tag, channels, rate, _byte_rate, align, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == _WAVE_EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]  # the SubFormat GUID starts with the format tag
                fmt = (tag, channels, rate, align, bits)
                handle.seek(chunk_size % 2, 1)
            elif chunk_id == b"data":
                if fmt is None:
                    raise WaveformError(f"{_name(path)}: the 'data' chunk comes before 'fmt '")
                offset = handle.tell()
                break
            else:
                handle.seek(chunk_size + chunk_size % 2, 1)
    tag, channels, rate, align, bits = fmt
    remaining = file_bytes - offset
    size = chunk_size
    streamed = chunk_size in (0, 0xFFFFFFFF)  # written while recording, never filled in: the rest of the file
    if streamed:
        size = remaining
    elif chunk_size > remaining:
        raise WaveformError(f"{_name(path)}: the 'data' chunk says {chunk_size:,} bytes, but only {remaining:,} "
                            "follow (the file is cut short)")
    if channels < 1 or not 0 <= channel < channels:
        raise WaveformError(f"{_name(path)}: channel {channel} does not exist (the file has {channels})")
    kinds = {(_WAVE_PCM, 8): "u1", (_WAVE_PCM, 16): "<i2", (_WAVE_PCM, 24): "u1", (_WAVE_PCM, 32): "<i4",
             (_WAVE_FLOAT, 32): "<f4", (_WAVE_FLOAT, 64): "<f8"}
    if (tag, bits) not in kinds:
        name = {_WAVE_PCM: "PCM", _WAVE_FLOAT: "float"}.get(tag, f"format 0x{tag:04X}")
        raise WaveformError(f"{_name(path)}: {name} with {bits}-bit samples is not supported "
                            f"(PCM 8/16/24/32-bit and float 32/64-bit are)")
    frame_bytes = channels * bits // 8
    if align and align != frame_bytes:
        raise WaveformError(f"{_name(path)}: block align {align} does not match {channels} x {bits}-bit samples")
    frames = size // frame_bytes
    if frames == 0:
        raise WaveformError(f"{_name(path)}: the 'data' chunk holds no samples")
    description = f"{_name(path)}: {frames:,} points, channel {channel} of {channels}, {bits}-bit, {rate} Hz"
    if streamed:
        description += " (the 'data' chunk gives no size: the rest of the file is used)"
    if bits == 24:
        raw = np.memmap(path, dtype="u1", mode="r", offset=offset, shape=(frames * frame_bytes,))
        return _Pcm24Source(raw, channels, channel, description, float(rate), path)
    data = np.memmap(path, dtype=kinds[tag, bits], mode="r", offset=offset, shape=(frames, channels))[:, channel]
    if bits == 8:
        return _OffsetSource(ArraySource(data, description, scale=1.0 / 128, sample_rate_hz=float(rate), path=path))
    scale = {16: 1.0 / 32768, 32: 1.0 / 2147483648}.get(bits, 1.0) if tag == _WAVE_PCM else 1.0
    return ArraySource(data, description, scale=scale, sample_rate_hz=float(rate), path=path)


# --- scaling and encodings -----------------------------------------------------------------


SCALING_MODES = ("as-is", "normalize", "gain")


@dataclass(frozen=True)
class Scaling:
    """How source values become full-scale values: ``as-is``, ``normalize`` (the peak becomes
    full scale) or ``gain`` (value * gain + offset)."""

    mode: str = "as-is"
    gain: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in SCALING_MODES:
            raise WaveformError(f"unknown scaling {self.mode!r}; known: {', '.join(SCALING_MODES)}")

    def factors(self, source: Source) -> tuple[float, float]:
        """(gain, offset) for ``source``."""
        if self.mode == "normalize":
            low, high = source.stats()
            peak = max(abs(low), abs(high))
            return (1.0 / peak if peak else 1.0), 0.0
        if self.mode == "gain":
            return self.gain, self.offset
        return 1.0, 0.0


@dataclass(frozen=True)
class SampleType:
    """A sample type an instrument takes: how full scale maps onto its codes."""

    key: str
    label: str
    dtype: str  # NumPy type without byte order
    low: float  # the code for -1.0
    high: float  # the code for +1.0
    integer: bool

    def encode(self, values: np.ndarray, byte_order: str) -> np.ndarray:
        """Values in [-1, 1] (already clipped) as samples in ``byte_order``; ``values`` is reused."""
        kind = np.dtype(self.dtype).newbyteorder("<" if byte_order == "little" else ">")
        if self.integer:
            if self.low == -self.high:
                values *= self.high
            else:
                values += 1.0
                values *= (self.high - self.low) / 2.0
                values += self.low
            return np.rint(values, out=values).astype(kind)
        return values.astype(kind)


SAMPLE_TYPES = {
    "int16": SampleType("int16", "int16 (DAC codes -32767 .. 32767)", "int16", -32767, 32767, True),
    "float32": SampleType("float32", "float32 (-1.0 .. 1.0)", "float32", -1.0, 1.0, False),
    "uint14": SampleType("uint14", "uint14 in 16 bits (0 .. 16383, Rigol DG)", "uint16", 0, 16383, True),
}


@dataclass(frozen=True)
class Template:
    """How an instrument takes a waveform.

    ``kind`` is "block" (``prefix`` + one definite block + ``terminator``), "chained" (the
    samples in messages of at most ``chunk_points``, each ``prefix`` with ``{flag}`` =
    ``continue_flag`` or ``end_flag`` on the last, + block + terminator) or "raw" (``prefix`` +
    the bare bytes; the message's end marks the end of the data). ``{name}`` is the waveform
    name and ``{bord}`` ``SWAP`` or ``NORM`` for little- or big-endian samples (FORM:BORD).
    ``verify`` is a query answering ``<points>,<crc32>``; ``select`` is sent after a good upload.
    """

    key: str
    label: str
    kind: str
    prefix: str
    sample_type: str
    byte_order: str = "little"
    byte_orders: tuple[str, ...] = ("little", "big")
    sample_types: tuple[str, ...] = ("int16", "float32")
    terminator: str = "\n"
    chunk_points: int = 0
    continue_flag: str = "CON"
    end_flag: str = "END"
    opc: bool = True
    errors: bool = True
    verify: str = ""
    select: str = ""
    editable_prefix: bool = False
    note: str = ""

    def prefix_for(self, name: str, byte_order: str, flag: str = "", prefix: str | None = None) -> bytes:
        text = (self.prefix if prefix is None else prefix)
        text = text.replace("{name}", name).replace("{bord}", "SWAP" if byte_order == "little" else "NORM")
        return text.replace("{flag}", flag).encode("ascii", errors="strict")


TEMPLATES = {
    "awg-dac": Template(
        "awg-dac", "DATA:ARB:DAC name,<int16 block>", "block",
        "FORM:BORD {bord};:DATA:ARB:DAC {name},", "int16", sample_types=("int16",),
        verify="DATA:ATTR:CHEC? {name}", select="FUNC:ARB {name}",
        note="virtual AWG, Keysight 33500/33600: int16 DAC codes -32767 .. 32767; FORM:BORD says the byte order"),
    "awg-float": Template(
        "awg-float", "DATA:ARB name,<float32 block>", "block",
        "FORM:BORD {bord};:DATA:ARB {name},", "float32", sample_types=("float32",),
        verify="DATA:ATTR:CHEC? {name}", select="FUNC:ARB {name}",
        note="virtual AWG, Keysight 33500/33600: float32 -1.0 .. 1.0; FORM:BORD says the byte order"),
    "generic": Template(
        "generic", "prefix + <block>", "block", "MEM:DATA ", "int16",
        editable_prefix=True, opc=True, errors=True,
        note="any instrument: the prefix as typed, then the definite block and a newline"),
    "rigol": Template(
        "rigol", ":TRAC:DATA:DAC16 VOLATILE,CON|END,<block>", "chained",
        ":SOUR1:TRAC:DATA:DAC16 VOLATILE,{flag},", "uint14", byte_orders=("little",), sample_types=("uint14",),
        chunk_points=16384, errors=False,
        note="Rigol DG1000Z/DG800: 16384 points per message, CON on all but the last (END); 14-bit codes, LSB first"),
    "siglent": Template(
        "siglent", "C1:WVDT WVNM,name,WAVEDATA,<raw bytes>", "raw",
        "C1:WVDT WVNM,{name},WAVEDATA,", "int16", byte_orders=("little",), sample_types=("int16",),
        terminator="", errors=False,
        note="Siglent SDG: no block header; the data runs to the end of the message (EOM)"),
}


def default_template(idn: str | None) -> str:
    """The template that suits an instrument, from its ``*IDN?`` answer."""
    text = (idn or "").upper()
    if "VIRTUAL AWG" in text or text.startswith(("KEYSIGHT", "AGILENT")):
        return "awg-dac"
    if text.startswith("RIGOL") and ",DG" in text:
        return "rigol"
    if text.startswith("SIGLENT") and ",SDG" in text:
        return "siglent"
    return "generic"


# --- the upload plan -------------------------------------------------------------------------


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
