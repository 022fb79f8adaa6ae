"""Waveform file readers: CSV, NumPy ``.npy``, WAV and raw binary, each giving an
:class:`~app.waveforms.sources.ArraySource`.

Nothing from a file is executed (``.npy`` files load with ``allow_pickle=False``); every problem
raises :class:`~app.waveforms.sources.WaveformError` naming the file and what is wrong with it.
Memory stays bounded: CSV numbers go to a temporary file as they are parsed, the other
formats are memory-mapped.
"""

from __future__ import annotations

import csv
import math
import re
import struct
import tempfile
import threading
import tokenize
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .sources import CHUNK_POINTS, ArraySource, WaveformError, _Pcm24Source

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
