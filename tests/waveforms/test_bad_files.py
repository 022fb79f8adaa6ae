"""Malformed waveform files: every one gets a WaveformError naming the file and what is wrong
(never csv.Error, TokenError, SyntaxError, TypeError or OverflowError); NaN/inf are refused or
replaced by 0 and counted; WAV chunk sizes are checked against the file; a large CSV is read
with bounded memory."""

from __future__ import annotations

import struct
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.waveforms import LoadCancelled, Scaling, WaveformError, load_file, read_csv, read_npy, read_wav


def _npy(header: str, body: bytes = b"") -> bytes:
    head = header.encode("latin-1")
    pad = 16 - (10 + len(head) + 1) % 16
    head += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + body


@pytest.mark.parametrize("text, words", ids=["open-quote", "nul", "huge-field", "overflow", "5000-digits"], argvalues=[
    ("t,v\n0,1\n1,\"2\n3,4\n", "bad.csv line 3: not readable as CSV"),
    ("t,v\n" + "0,1\n" * 2000 + "1,2\0\n", "bad.csv line 2002, column 1 (v): '2\\x00' is not a number"),
    ("t,v\n0," + "1" * 200_000 + "\n", "bad.csv line 2: not readable as CSV (field larger than field limit"),
    ("v\n1e999999\n", "bad.csv line 2: inf is not a finite number"),
    ("v\n" + "9" * 5000 + "\n", "bad.csv line 2"),
])
def test_malformed_csv_names_the_file_and_line(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(WaveformError) as info:
        load_file(path)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_csv_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"v\n1\n\xff\xfe2\n")
    with pytest.raises(WaveformError, match=r"bad.csv line 3: not UTF-8 text \(byte 1 of the line\)"):
        load_file(path)


@pytest.mark.parametrize("header, words", [
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (3,", "the .npy header is damaged"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }}", "the .npy header is damaged"),
    ("{'descr': 5, 'fortran_order': False, 'shape': (3,), }", "bad.npy:"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (10000000000000000000000000,), }", "bad.npy:"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (1000,), }", "bad.npy: not a readable .npy file"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (-3,), }", "bad.npy:"),
])
def test_damaged_npy_headers_name_the_file(tmp_path, header, words):
    path = tmp_path / "bad.npy"
    path.write_bytes(_npy(header, bytes(24)))
    with pytest.raises(WaveformError) as info:
        load_file(path)
    assert words in str(info.value)


def _wav(data: bytes, *, data_size: int | None = None, extra: bytes = b"", bits: int = 16, tag: int = 1) -> bytes:
    align = bits // 8
    fmt = struct.pack("<HHIIHH", tag, 1, 8000, 8000 * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_wav_chunk_sizes_are_checked_against_the_file(tmp_path):
    path = tmp_path / "w.wav"
    path.write_bytes(_wav(struct.pack("<4h", 1, 2, 3, 4), data_size=1_000_000))
    with pytest.raises(WaveformError, match=r"w.wav: the 'data' chunk says 1,000,000 bytes, but only 8 follow"):
        read_wav(path)
    path.write_bytes(_wav(struct.pack("<4h", 1, 2, 3, 4), extra=b"LIST" + struct.pack("<I", 99_999) + b"INFO"))
    with pytest.raises(WaveformError, match=r"w.wav: the 'LIST' chunk at byte 36 says 99,999 bytes, but the file ends"):
        read_wav(path)
    path.write_bytes(_wav(struct.pack("<4h", 1, 2, 3, 4), data_size=0xFFFFFFFF))  # a recording never finished
    source = read_wav(path)
    assert source.points == 4 and "gives no size" in source.description


@pytest.mark.parametrize("kind", ["npy", "wav", "raw", "csv"])
def test_nan_and_inf_are_refused_or_replaced_and_counted(tmp_path, kind):
    values = np.array([0.5, np.nan, -0.25, np.inf, 0.125, -np.inf], dtype=np.float32)
    path = tmp_path / f"f.{ {'raw': 'bin'}.get(kind, kind) }"
    if kind == "npy":
        np.save(path, values)
    elif kind == "wav":
        path.write_bytes(_wav(values.tobytes(), bits=32, tag=3))
    elif kind == "raw":
        path.write_bytes(values.tobytes())
    else:
        path.write_text("v\n" + "\n".join(str(v) for v in values) + "\n")
    with pytest.raises(WaveformError) as info:
        load_file(path, dtype="float32") if kind == "raw" else load_file(path)
    message = str(info.value)
    assert message.startswith(path.name) and "replace them with 0" in message or "replace NaN/inf with 0" in message
    if kind != "csv":
        assert "3 of 6 values are NaN or infinite (the first is point 1)" in message
    options = {"dtype": "float32"} if kind == "raw" else {}
    source = load_file(path, non_finite="zero", **options)
    assert source.replaced == 3 and "3 NaN/inf values replaced by 0" in source.description
    assert source.chunk(0, 6).tolist() == [0.5, 0.0, -0.25, 0.0, 0.125, 0.0]
    gain, offset = Scaling("normalize").factors(source)
    assert (gain, offset) == (2.0, 0.0)  # the peak of the finite values, not NaN


def test_a_read_can_be_cancelled_and_reports_progress(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("v\n" + "0.5\n" * 600_000)
    seen = []
    cancel = threading.Event()

    def progress(done, total):
        seen.append((done, total))
        cancel.set()

    with pytest.raises(LoadCancelled):
        load_file(path, progress=progress, cancel=cancel)
    assert seen and 0 < seen[0][0] < seen[0][1]


def test_a_large_csv_is_read_with_bounded_memory(tmp_path):
    path = tmp_path / "big.csv"
    rows = np.column_stack([np.arange(200_000) * 1e-6, np.sin(np.arange(200_000) / 100.0)])
    np.savetxt(path, rows, delimiter=",", fmt="%.9f", header="time,value", comments="")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        source = load_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert source.points == 200_000 and isinstance(source.data, np.memmap)
    assert source.chunk(0, 2).tolist() == pytest.approx([0.0, np.sin(0.01)])
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB file"


# --- property-based: whatever the bytes, a reader answers with a source or a WaveformError ---

VALID_WAV = _wav(struct.pack("<4h", 1, -2, 3, -4))
VALID_NPY = _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", np.arange(3.0).tobytes())


def _mutated(base: bytes):
    return st.tuples(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), max_size=6),
                     st.integers(0, len(base))).map(lambda t: _apply(base, *t))


def _apply(base: bytes, changes, cut: int) -> bytes:
    data = bytearray(base)
    for index, value in changes:
        data[index] = value
    return bytes(data[:cut])


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["wav", "npy", "bin", "csv"]), data=st.data())
def test_any_file_is_read_or_refused_with_its_name(tmp_path, kind, data):
    if kind == "wav":
        content = data.draw(st.one_of(_mutated(VALID_WAV), st.binary(max_size=64)))
    elif kind == "npy":
        content = data.draw(st.one_of(_mutated(VALID_NPY), st.binary(max_size=64)))
    elif kind == "bin":
        content = data.draw(st.binary(max_size=64))
    else:
        lines = st.lists(st.one_of(
            st.text(alphabet="0123456789.,;-+eE naifINF\"'\t#", max_size=20),
            st.floats(allow_nan=True).map(repr), st.text(max_size=10)), max_size=12)
        content = data.draw(st.one_of(lines.map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")),
                                      st.binary(max_size=64)))
    path = tmp_path / f"fuzz.{kind}"
    path.write_bytes(content)
    non_finite = data.draw(st.sampled_from(["refuse", "zero"]))
    try:
        source = load_file(path, non_finite=non_finite)
    except WaveformError as exc:
        assert "fuzz" in str(exc) or "sample type" in str(exc)
        return
    values = source.chunk(0, source.points)
    assert source.points >= 1 and np.isfinite(values).all()
    low, high = source.stats()
    assert low <= high
