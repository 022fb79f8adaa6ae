"""app.waveforms without Qt: shapes, file readers (and their errors), encodings and command templates."""

from __future__ import annotations

import struct
import wave
import zlib

import numpy as np
import pytest

from app.waveforms import (
    TEMPLATES,
    ArraySource,
    Scaling,
    ShapeSource,
    UploadPlan,
    WaveformError,
    check_upload,
    default_template,
    load_file,
    read_csv,
    read_npy,
    read_raw,
    read_wav,
    run_upload,
)

# --- shapes ----------------------------------------------------------------------------------


def test_shapes_have_their_textbook_values():
    n = 1000
    assert ShapeSource("sine", n).chunk(0, 1)[0] == 0.0
    assert ShapeSource("sine", n).chunk(250, 251)[0] == pytest.approx(1.0)
    square = ShapeSource("square", n, duty=0.25).chunk(0, n)
    assert (square[:250] == 1).all() and (square[250:] == -1).all()
    assert ShapeSource("pulse", n).chunk(0, n).tolist().count(1.0) == 100  # 10 % by default
    triangle = ShapeSource("triangle", n).chunk(0, n)
    assert triangle[0] == pytest.approx(0) and triangle[250] == pytest.approx(1) and triangle[750] == pytest.approx(-1)
    ramp = ShapeSource("ramp", n, amplitude=0.5, offset=0.25).chunk(0, n)
    assert ramp[0] == pytest.approx(-0.25) and ramp[-1] == pytest.approx(0.749, abs=1e-3)
    two = ShapeSource("sine", n, cycles=2).chunk(0, n)
    assert two[125] == pytest.approx(1.0) and two[625] == pytest.approx(1.0)


def test_noise_is_reproducible_whatever_the_chunking():
    noise = ShapeSource("noise", 200_000, seed=3)
    whole = noise.chunk(0, 200_000)
    parts = np.concatenate([noise.chunk(a, min(a + 7777, 200_000)) for a in range(0, 200_000, 7777)])
    assert np.array_equal(whole, parts) and -1 <= whole.min() and whole.max() <= 1
    assert not np.array_equal(whole, ShapeSource("noise", 200_000, seed=4).chunk(0, 200_000))


def test_bad_shapes_are_refused():
    with pytest.raises(WaveformError, match="unknown shape"):
        ShapeSource("sawtooth", 10)
    with pytest.raises(WaveformError, match="duty cycle"):
        ShapeSource("square", 10, duty=1.5)


def test_the_preview_envelope_keeps_a_single_spike():
    values = np.zeros(3_000_000)
    values[1_234_567] = 0.9
    x, y = ArraySource(values, "spike").preview(2000)
    assert len(x) == len(y) <= 2000 and y.max() == 0.9 and y.min() == 0.0
    big = ShapeSource("square", 50_000_000)
    x, y = big.preview(1000)
    assert len(x) <= 1000 and set(np.unique(y)) == {-1.0, 1.0}


# --- files -----------------------------------------------------------------------------------


def test_csv_columns_headers_comments_and_delimiters(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("# exported\n0.5\n-0.5\n\n0.25\n")
    assert read_csv(one).chunk(0, 3).tolist() == [0.5, -0.5, 0.25]
    two = tmp_path / "two.csv"
    two.write_text("time;volts;amps\n0;0.1;9\n1;0.2;8\n")
    assert read_csv(two).chunk(0, 2).tolist() == [9, 8]  # the last column by default
    assert read_csv(two, column="volts").chunk(0, 2).tolist() == [0.1, 0.2]
    assert read_csv(two, column=0).chunk(0, 2).tolist() == [0, 1]


@pytest.mark.parametrize(("text", "options", "words"), [
    ("t,v\n0,1\n1,x\n", {}, "bad.csv line 3, column 1 (v): 'x' is not a number"),
    ("t,v\n0,1\n1\n", {}, "bad.csv line 3: 1 columns, column 1 (v) is missing"),
    ("t,v\n0,1\n", {"column": "w"}, "no column named 'w' (columns: t, v)"),
    ("0.1\n0.2\n", {"column": 3}, "column 3 does not exist (the file has 1)"),
    ("# nothing\n\n", {}, "no numbers in the file"),
    ("v\n", {}, "a header line and no numbers"),
    ("1\ninf\n", {}, "line 2: inf is not a finite number"),
])
def test_csv_errors_say_where_and_what(tmp_path, text, options, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(WaveformError) as info:
        read_csv(path, **options)
    assert words in str(info.value)


def test_binary_data_is_not_taken_for_csv(tmp_path):
    path = tmp_path / "oops.csv"
    path.write_bytes(b"\x00\x01\x02\x03")
    with pytest.raises(WaveformError, match="binary file, not CSV text"):
        read_csv(path)


def test_npy_arrays_are_mapped_and_never_unpickled(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(10, dtype=np.int16))
    source = read_npy(path)
    assert source.chunk(2, 4).tolist() == [2, 3] and isinstance(source.data, np.memmap)
    np.save(path, np.arange(12.0).reshape(6, 2))
    assert read_npy(path, column=1).chunk(0, 2).tolist() == [1.0, 3.0]
    with pytest.raises(WaveformError, match="a 6 x 2 array; choose a column"):
        read_npy(path)
    for array, words in ((np.array([{"x": 1}], dtype=object), "Python objects, which are never loaded"),
                         (np.ones(4, dtype=complex), "complex numbers"),
                         (np.ones((2, 2, 2)), "3-dimensional")):
        np.save(path, array, allow_pickle=True)
        with pytest.raises(WaveformError, match=words):
            read_npy(path)
    path.write_bytes(b"hello")
    with pytest.raises(WaveformError, match=r"not a NumPy \.npy file"):
        read_npy(path)


def test_raw_binary_in_either_byte_order(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(struct.pack(">4h", 0, 16384, -32768, 32767))
    big = read_raw(path, "int16", "big")
    assert big.chunk(0, 4).tolist() == [0, 0.5, -1.0, 32767 / 32768]
    assert read_raw(path, "int16", "little").chunk(1, 2)[0] == struct.unpack("<h", b"\x40\x00")[0] / 32768
    assert read_raw(path, "int16", "big", offset_bytes=2).points == 3
    path.write_bytes(bytes([0, 128, 255]))
    assert read_raw(path, "uint8").chunk(0, 3).tolist() == [-1.0, 0.0, pytest.approx(127 / 128)]
    path.write_bytes(bytes(7))
    with pytest.raises(WaveformError, match="7 bytes is not a whole number of float32 samples"):
        read_raw(path, "float32")
    with pytest.raises(WaveformError, match="unknown sample type"):
        read_raw(path, "int12")


def _wav_header(tag: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 4) + b"INFO"
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_wav_pcm_and_float_channels(tmp_path):
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(struct.pack("<6h", 100, -16384, 200, 16384, 300, 0))
    left, right = read_wav(path, 0), read_wav(path, 1)
    assert left.chunk(0, 3).tolist() == [100 / 32768, 200 / 32768, 300 / 32768]
    assert right.chunk(0, 3).tolist() == [-0.5, 0.5, 0.0] and right.sample_rate_hz == 48000
    with pytest.raises(WaveformError, match="channel 2 does not exist"):
        read_wav(path, 2)
    path.write_bytes(_wav_header(3, 1, 1000, 32, struct.pack("<3f", 0.25, -1.0, 0.5)))
    assert read_wav(path).chunk(0, 3).tolist() == [0.25, -1.0, 0.5]
    path.write_bytes(_wav_header(1, 1, 1000, 24, bytes([0, 0, 0x40, 0xFF, 0xFF, 0xFF, 0, 0, 0x80])))
    assert read_wav(path).chunk(0, 3).tolist() == [0.5, -1 / 8388608, -1.0]
    path.write_bytes(_wav_header(1, 1, 8000, 8, bytes([128, 0, 255])))
    assert read_wav(path).chunk(0, 3).tolist() == [0.0, -1.0, pytest.approx(127 / 128)]
    path.write_bytes(_wav_header(2, 1, 8000, 4, bytes(8)))
    with pytest.raises(WaveformError, match="format 0x0002 with 4-bit samples is not supported"):
        read_wav(path)
    path.write_bytes(b"ID3\x03" + bytes(20))
    with pytest.raises(WaveformError, match=r"not a RIFF/WAVE file \(it starts with b'ID3\\x03'\)"):
        read_wav(path)


def test_load_file_picks_the_reader_and_names_the_problem(tmp_path):
    path = tmp_path / "x.dat"
    path.write_bytes(struct.pack("<2h", 1, 2))
    assert load_file(path).points == 2  # .dat: raw int16 little-endian by default
    with pytest.raises(WaveformError, match=r"unknown file type \.xyz"):
        load_file(tmp_path / "x.xyz")
    with pytest.raises(WaveformError, match="missing.csv: cannot be read"):
        load_file(tmp_path / "missing.csv")


# --- encodings and templates -----------------------------------------------------------------


def plan_bytes(plan: UploadPlan) -> list[bytes]:
    stream = plan.open()
    messages = [b"".join(bytes(memoryview(p).cast("B")) for p in m.pieces) for m in stream.messages()]
    return messages


def test_the_awg_dac_message_byte_for_byte():
    source = ArraySource(np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 0.25, -0.25, 1e-6]), "eight")
    plan = UploadPlan(source, TEMPLATES["awg-dac"], name="w1", byte_order="big")
    codes = [-32767, -16384, 0, 16384, 32767, 8192, -8192, 0]
    expected = b"FORM:BORD NORM;:DATA:ARB:DAC w1,#216" + struct.pack(">8h", *codes) + b"\n"
    assert plan_bytes(plan) == [expected] and plan.total_bytes == len(expected)
    stream = plan.open()
    list(b"".join(bytes(p) for p in m.pieces) for m in stream.messages())
    assert stream.crc32 == zlib.crc32(struct.pack("<8h", *codes))  # the checksum is over little-endian samples


def test_float_and_uint14_encodings_and_clipping():
    source = ArraySource(np.array([-2.0, -1.0, 0.0, 1.0, np.nan, 3.0]), "wild")
    plan = UploadPlan(source, TEMPLATES["awg-float"], name="f")
    (message,) = plan_bytes(plan)
    values = struct.unpack("<6f", message[-25:-1])
    assert values == (-1.0, -1.0, 0.0, 1.0, 0.0, 1.0)
    stream = plan.open()
    for m in stream.messages():
        list(m.pieces)
    assert stream.clipped == 3
    rigol = UploadPlan(ArraySource(np.array([-1.0, 0.0, 1.0]), "three"), TEMPLATES["rigol"])
    assert struct.unpack("<3H", plan_bytes(rigol)[0][-7:-1]) == (0, 8192, 16383)


def test_rigol_chains_messages_with_con_and_end():
    plan = UploadPlan(ShapeSource("ramp", 40000), TEMPLATES["rigol"])
    messages = plan_bytes(plan)
    heads = [b":SOUR1:TRAC:DATA:DAC16 VOLATILE,CON,#532768", b":SOUR1:TRAC:DATA:DAC16 VOLATILE,CON,#532768",
             b":SOUR1:TRAC:DATA:DAC16 VOLATILE,END,#514464"]
    assert [m[:len(h)] for m, h in zip(messages, heads)] == heads
    assert [len(m) - len(h) - 1 for m, h in zip(messages, heads)] == [32768, 32768, 14464]
    assert all(m.endswith(b"\n") for m in messages)
    assert sum(map(len, messages)) == plan.total_bytes and plan.message_count == 3


def test_siglent_raw_data_has_no_block_header_or_terminator():
    plan = UploadPlan(ShapeSource("sine", 8), TEMPLATES["siglent"], name="my_wave")
    (message,) = plan_bytes(plan)
    assert message.startswith(b"C1:WVDT WVNM,my_wave,WAVEDATA,") and len(message) == 30 + 16
    assert plan.head_preview(4)[0] == b"C1:WVDT WVNM,my_wave,WAVEDATA,"


def test_generic_prefix_and_scalings():
    source = ArraySource(np.array([0.0, 2.0, -4.0]), "big")
    plan = UploadPlan(source, TEMPLATES["generic"], prefix="MEM:DATA ", scaling=Scaling("normalize"))
    (message,) = plan_bytes(plan)
    assert message == b"MEM:DATA #16" + struct.pack("<3h", 0, 16384, -32767) + b"\n"
    gained = UploadPlan(source, TEMPLATES["generic"], scaling=Scaling("gain", 0.25, 0.5), sample_type="float32")
    assert struct.unpack("<3f", plan_bytes(gained)[0][-13:-1]) == (0.5, 1.0, -0.5)


@pytest.mark.parametrize(("changes", "words"), [
    ({"name": "1abc"}, "not a waveform name"),
    ({"name": "a" * 13}, "not a waveform name"),
    ({"sample_type": "float32"}, "takes int16 samples, not float32"),
    ({"prefix": "DATA:ARB:DAC é,"}, "must be ASCII"),
])
def test_bad_plans_are_refused_with_the_reason(changes, words):
    with pytest.raises(WaveformError, match=words):
        UploadPlan(ShapeSource("sine", 16), TEMPLATES["awg-dac"], **changes)


def test_templates_are_picked_by_idn():
    assert default_template("TMC Console,Virtual AWG,AWG-0001,1.0") == "awg-dac"
    assert default_template("Keysight Technologies,33622A,MY1234,A.02") == "awg-dac"
    assert default_template("Rigol Technologies,DG1062Z,DG1ZA1234,00.01.14") == "rigol"
    assert default_template("Siglent Technologies,SDG2042X,SDG2X1234,2.01") == "siglent"
    assert default_template("XYZ Company Ltd, SAM7-EK, 0, v1.0.001") == "generic"


class Recorder:
    """Stands in for an app.usbtmc.Instrument: records messages, answers queries from a script."""

    def __init__(self, answers):
        self.messages: list[bytes] = []
        self.answers = list(answers)

    def write_stream(self, pieces, total_bytes, *, abort=None, progress=None, abort_latency_ms=None):
        data = b"".join(bytes(memoryview(p).cast("B")) for p in pieces)
        assert len(data) == total_bytes
        self.messages.append(data)
        if progress is not None:
            progress(total_bytes, total_bytes)

    def query(self, text):
        self.messages.append(text.encode())
        return self.answers.pop(0)

    def write(self, text):
        self.messages.append(text.encode())


def test_run_upload_sends_every_message_and_checks_as_the_template_says():
    plan = UploadPlan(ShapeSource("square", 1000), TEMPLATES["awg-dac"], name="sq", select=True)
    stream = plan.open()
    for m in stream.messages():
        list(m.pieces)
    recorder = Recorder(['-113,"Undefined header"', "0,ok", "1", '-222,"Data out of range"', "0,\"No error\"",
                         f"1000,{stream.crc32}"])
    seen = []
    result = run_upload(recorder, plan, progress=lambda done, total, t: seen.append((done, total)))
    assert seen == [(plan.total_bytes, plan.total_bytes)]
    assert result.earlier_errors == ('-113,"Undefined header"',)  # queued before: not this upload's
    assert result.opc and result.errors == ('-222,"Data out of range"',) and result.verified
    assert recorder.messages[:2] == [b"SYST:ERR?", b"SYST:ERR?"]
    assert recorder.messages[3:] == [b"*OPC?", b"SYST:ERR?", b"SYST:ERR?", b"DATA:ATTR:CHEC? sq"]  # no FUNC:ARB after an error
    rigol = UploadPlan(ShapeSource("sine", 20000), TEMPLATES["rigol"])
    recorder = Recorder(["1"])
    result = run_upload(recorder, rigol)
    assert len(recorder.messages) == 3 and result.errors == () and result.verified is None
    assert check_upload(Recorder(["1", "0,ok", "nonsense"]), plan, result).problems == (
        "DATA:ATTR:CHEC? answered 'nonsense', not <points>,<crc32>",)
