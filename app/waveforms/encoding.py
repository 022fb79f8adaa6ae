"""How values become an instrument's samples: scaling to full scale, sample types (codes and
byte order) and the command templates instruments take waveforms with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.instruments import shipped_table

from .sources import Source, WaveformError

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


# The templates, and which instrument starts with which, are data in the instrument table
# (app/instruments/instruments.toml, [[template]] and an instrument's upload.template).
TEMPLATES = {spec.key: Template(**spec.fields) for spec in shipped_table().templates}


def default_template(idn: str | None) -> str:
    """The template that suits an instrument, from its ``*IDN?`` answer ("generic" when no
    instrument of the table names one)."""
    for choice in shipped_table().template_choices:
        if idn and choice.idn.search(idn) and choice.template in TEMPLATES:
            return choice.template
    return "generic"
