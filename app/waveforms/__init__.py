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

The package's modules follow that order: :mod:`.sources`, :mod:`.files` (the readers),
:mod:`.encoding` (scaling, sample types, templates) and :mod:`.upload`; every public name is
importable from ``app.waveforms`` itself.
"""

from .encoding import (
    SAMPLE_TYPES,
    SCALING_MODES,
    TEMPLATES,
    SampleType,
    Scaling,
    Template,
    default_template,
)
from .files import (
    FILE_KINDS,
    NON_FINITE_CHOICES,
    RAW_DTYPES,
    LoadCancelled,
    Progress,
    load_file,
    read_csv,
    read_npy,
    read_raw,
    read_wav,
)
from .sources import (
    CHUNK_POINTS,
    SHAPES,
    ArraySource,
    ShapeSource,
    Source,
    WaveformError,
)
from .upload import (
    ABORT_LATENCY_MS,
    PREFETCH_CHUNKS,
    Encoder,
    Message,
    ProgressCallback,
    UploadPlan,
    UploadResult,
    UploadStream,
    block_header,
    check_upload,
    drain_errors,
    format_bytes,
    run_upload,
)

__all__ = [
    "ABORT_LATENCY_MS",
    "ArraySource",
    "CHUNK_POINTS",
    "Encoder",
    "FILE_KINDS",
    "LoadCancelled",
    "Message",
    "NON_FINITE_CHOICES",
    "PREFETCH_CHUNKS",
    "Progress",
    "ProgressCallback",
    "RAW_DTYPES",
    "SAMPLE_TYPES",
    "SCALING_MODES",
    "SHAPES",
    "SampleType",
    "Scaling",
    "ShapeSource",
    "Source",
    "TEMPLATES",
    "Template",
    "UploadPlan",
    "UploadResult",
    "UploadStream",
    "WaveformError",
    "block_header",
    "check_upload",
    "default_template",
    "drain_errors",
    "format_bytes",
    "load_file",
    "read_csv",
    "read_npy",
    "read_raw",
    "read_wav",
    "run_upload",
]
