"""Waveform sources: samples as float64, +-1.0 being full scale, computed or read a chunk at a time.

Built-in shapes are computed per chunk (noise per fixed block, so any chunk can be computed
alone); file data is memory-mapped where its format allows, so a long waveform never sits in
memory as float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


CHUNK_POINTS = 256 * 1024  # samples encoded at a time: large enough for NumPy, small next to a waveform


_NOISE_BLOCK = 4096  # noise is drawn per block of this many points, so any chunk can be computed alone


class WaveformError(ValueError):
    """A waveform source or file cannot be used; the message says which and why."""


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
