"""A virtual arbitrary waveform generator: a high-speed USB488 SCPI instrument that
takes waveforms the way real generators do (modelled on the Keysight 33500/33600 command set).

Waveform blocks are ingested *as they stream in* (:meth:`VirtualAwg.on_message_data`):
the device allocates the waveform once, when the block header announces its length,
and moves each USBTMC transfer into it, so a 256 MiB upload needs one copy of the
waveform on the device side, not several. Everything else about a message (the units
before and after the block) goes through the SCPI parser of
:class:`~app.sim.scpi_device.ScpiInstrument`.

Commands (``[...]`` optional, short forms in capitals)::

    FORMat:BORDer NORMal|SWAPped       byte order of binary blocks: NORMal = MSB first (the default)
    FORMat:BORDer?
    DATA:ARBitrary <name>,<block>      float32 samples, -1.0 .. +1.0
    DATA:ARBitrary <name>,<v1>,<v2>..  the same as numbers
    DATA:ARBitrary:DAC <name>,<block>  int16 DAC codes, -32767 .. +32767
    DATA:ARBitrary:DAC <name>,<d1>,..  the same as integers
    DATA:VOLatile:CLEar                delete every waveform in volatile memory
    DATA:VOLatile:FREE?                free volatile memory, in points
    DATA:VOLatile:CATalog?             "NAME1","NAME2",...
    DATA:ATTRibute:POINts? [<name>]    points of a waveform (default: the selected one)
    DATA:ATTRibute:CHECksum? [<name>]  <points>,<crc32>: an extension of this instrument
    [SOURce:]FUNCtion:ARBitrary <name> select a stored waveform; FUNC:ARB? returns "NAME"
    [SOURce:]FUNCtion:ARBitrary:SRATe <Sa/s>|MINimum|MAXimum|DEFault, and ...:SRATe?
    [SOURce:]FUNCtion <shape>, FUNCtion?    SINusoid, SQUare, TRIangle, RAMP, PULSe, NOISe, DC, ARBitrary
    OUTPut[:STATe] ON|OFF|1|0, OUTPut?

plus the 488.2 common commands and ``SYSTem:ERRor?`` of the base class.
The checksum is CRC-32 (ISO-HDLC, as :func:`zlib.crc32`) of the stored samples in
little-endian order (int16 for DAC waveforms, float32 for the others), so a host can
verify an upload end to end whatever byte order it sent.

Errors go to the SCPI error queue: ``-161`` for a malformed or incomplete block or a
byte count that is not a whole number of samples, ``-222`` for samples out of range,
``-224`` for a bad or unknown waveform name, ``-225`` when volatile memory is full.
Each names the waveform and what was wrong.

An optional :class:`~app.sim.wire.OutPacer` makes the device take data no faster than
a USB bus (``wire="full"`` or ``"high"``) or the instrument (``ingest_bytes_per_s``;
:data:`LIKE_33622A_BYTES_PER_S` is the real instrument's rate) would.

Standard library only.
"""

from __future__ import annotations

import array
import re
import sys
import time
import zlib
from dataclasses import dataclass, field

from .clock import Clock
from .device import NoData
from .scpi_device import (
    ERRORS,
    MAX_MESSAGE_BYTES,
    Param,
    ScpiError,
    ScpiInstrument,
    _compile,
    _match,
    command,
    parse_program_message,
)
from .wire import WIRE_MODELS, OutPacer, WireModel

# pid.codes VID with its test PID 0x000C. Test PIDs are not unique: a prototype board may
# use the same pair, so never identify real hardware by it (docs/virtual-instruments.md).
VID = 0x1209
AWG_PID = 0x000C

# The python-usbtmc README: a Keysight 33622A takes arbitrary waveforms at about 1.8 MB/s over USBTMC.
LIKE_33622A_BYTES_PER_S = 1.8e6

DEFAULT_MEMORY_POINTS = 128 * 1024 * 1024  # room for a 256 MiB int16 upload
MIN_POINTS = 8  # the 33500 series refuses shorter arbitrary waveforms
MAX_NAME_CHARS = 12
DAC_MAX = 32767  # DATA:ARB:DAC codes are -32767 .. +32767
SAMPLE_RATE_MIN, SAMPLE_RATE_MAX, SAMPLE_RATE_DEFAULT = 1e-6, 1e9, 40e3
FUNCTIONS = ("SINusoid", "SQUare", "TRIangle", "RAMP", "PULSe", "NOISe", "DC", "ARBitrary")
HEAD_SCAN_BYTES = 4096  # how much of a message is examined at a time for the start of a block
_NEVER = 1 << 62

ERRORS.setdefault(-225, "Out of memory")

# Which sample type each command carries: (name in messages, bytes per sample, array typecode)
_KINDS = {"dac": ("int16", 2, "h"), "float": ("float32", 4, "f")}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_LITTLE = sys.byteorder == "little"


def _table(predicate) -> bytes:
    """A bytes.translate table mapping each byte value to 1 where ``predicate`` holds, else 0."""
    return bytes(1 if predicate(b) else 0 for b in range(256))


_IS_00 = _table(lambda b: b == 0x00)
_IS_80 = _table(lambda b: b == 0x80)
_ABOVE_80 = _table(lambda b: b > 0x80)
_NONZERO = _table(lambda b: b != 0)
# float32, most significant byte: 2 = |x| >= 2 (or inf/NaN), 1 = 0.5 <= |x| < 2, 0 = |x| < 0.5
_F32_TOP = bytes(2 if b & 0x7F > 0x3F else 1 if b & 0x7F == 0x3F else 0 for b in range(256))
_ONE_IF_1 = _table(lambda b: b == 1)


def _first_set(flags: int) -> int:
    """The index of the first 1-byte in a little-endian int built from 0/1 flag bytes (-1: none)."""
    return ((flags & -flags).bit_length() - 1) // 8 if flags else -1


def first_out_of_range(data: bytes, kind: str, little: bool = True, start: int = 0, stop: int | None = None) -> int:
    """Index (from ``start``) of the first sample of ``kind`` in ``data[start:stop]`` that is out of
    range, in the given byte order; -1 if none.

    Works on whole byte columns with ``bytes.find``, ``bytes.translate`` and big-integer
    masks, so a MiB is checked in well under a millisecond without NumPy, and without copying
    ``data``.
    """
    stop = len(data) if stop is None else stop
    if kind == "dac":
        # -32768 is the only int16 outside -32767..32767. A search finds it, or none at all, in
        # one pass; only a run of matches across sample boundaries falls back to the column masks.
        pattern = b"\x00\x80" if little else b"\x80\x00"
        at = data.find(pattern, start, stop)
        for _ in range(64):
            if at < 0 or (at - start) % 2 == 0:
                return (at - start) // 2 if at >= 0 else -1
            at = data.find(pattern, at + 1, stop)
        high, low = (data[start + 1:stop:2], data[start:stop:2]) if little else (data[start:stop:2], data[start + 1:stop:2])
        return _first_set(int.from_bytes(high.translate(_IS_80), "little") & int.from_bytes(low.translate(_IS_00), "little"))
    # float32 bytes from the most significant: sign and exponent, exponent and mantissa, mantissa, mantissa
    offsets = (3, 2, 1, 0) if little else (0, 1, 2, 3)
    top = data[start + offsets[0]:stop:4].translate(_F32_TOP)
    if b"\x01" not in top and b"\x02" not in top:
        return -1
    hopeless = top.find(b"\x02")
    edge = int.from_bytes(top.translate(_ONE_IF_1), "little")
    bad = -1
    if edge:
        # 0.5 <= |x| < 2: out of range when the mantissa is above that of 1.0 (0x3F800000).
        b2 = data[start + offsets[1]:stop:4]
        above = int.from_bytes(b2.translate(_ABOVE_80), "little")
        at_one = int.from_bytes(b2.translate(_IS_80), "little")
        tail = int.from_bytes(data[start + offsets[2]:stop:4].translate(_NONZERO), "little") | int.from_bytes(
            data[start + offsets[3]:stop:4].translate(_NONZERO), "little")
        bad = _first_set(edge & (above | (at_one & tail)))
    candidates = [i for i in (hopeless, bad) if i >= 0]
    return min(candidates) if candidates else -1


def _sample_text(data: bytes, start: int, index: int, kind: str, little: bool) -> str:
    _label, size, code = _KINDS[kind]
    value = array.array(code, data[start + index * size:start + (index + 1) * size])
    if little != _LITTLE:
        value.byteswap()
    return f"{value[0]:.9g}" if kind == "float" else str(value[0])


@dataclass
class Waveform:
    """A waveform in volatile memory: ``data`` holds its samples little-endian."""

    name: str
    kind: str  # "dac" (int16) or "float" (float32)
    data: bytearray
    _crc: int | None = field(default=None, repr=False)

    @property
    def points(self) -> int:
        return len(self.data) // _KINDS[self.kind][1]

    @property
    def crc32(self) -> int:
        if self._crc is None:
            self._crc = zlib.crc32(self.data)
        return self._crc


class _BlockSink:
    """Receives the data of one arbitrary block for a waveform, chunk by chunk.

    The waveform's memory is allocated once; chunks are byte-swapped when needed,
    checked for range and copied in. A sample split across two chunks waits in
    ``_carry`` (at most three bytes). Any problem is recorded as ``error`` and the rest
    of the block is consumed without being kept.
    """

    def __init__(self, awg: VirtualAwg, name: str, kind: str, length: int, what: str) -> None:
        self.awg = awg
        self.name = name
        self.kind = kind
        self.length = length
        self.what = what
        self.received = 0
        self.error: tuple[int, str] | None = None
        self._carry = b""
        self._buf: bytearray | None = None
        label, size, _code = _KINDS[kind]
        self.size = size
        points = length // size
        if length % size:
            self.error = (-161, f"{what}: {length} bytes is not a whole number of {label} samples "
                                f"({size} bytes each)")
        elif points < MIN_POINTS:
            self.error = (-222, f"{what}: {points} points; an arbitrary waveform needs at least {MIN_POINTS}")
        else:
            free = awg.free_points(replacing=name)
            if points > free:
                self.error = (-225, f"{what}: {points} points do not fit in volatile memory "
                                    f"({free} points free; DATA:VOL:CLE frees it)")
            else:
                # Grown as chunks arrive rather than allocated zero-filled: large bytearrays grow in
                # place (the allocator remaps them), so memory is touched once, by the data.
                self._buf = bytearray()

    @property
    def remaining(self) -> int:
        return self.length - self.received

    def feed(self, chunk: bytes, start: int, end: int) -> int:
        """Take up to :attr:`remaining` bytes from ``chunk[start:end]``; returns how many were taken."""
        take = min(end - start, self.remaining)
        if take <= 0:
            return 0
        self.received += take
        if self._buf is None or self.error is not None:
            return take
        stop, pos = start + take, start
        if self._carry:
            piece = self._carry + chunk[pos:pos + self.size - len(self._carry)]
            pos += len(piece) - len(self._carry)
            self._carry = b""
            if len(piece) < self.size:
                self._carry = piece
                return take
            self._store(piece, 0, len(piece))
            if self._buf is None:
                return take
        whole = stop - (stop - pos) % self.size
        if whole > pos:
            self._store(chunk, pos, whole)
        self._carry = chunk[whole:stop]
        return take

    def _store(self, data: bytes, start: int, stop: int) -> None:
        _label, size, code = _KINDS[self.kind]
        little = self.awg.byte_order_swapped  # SWAPped: least significant byte first
        bad = first_out_of_range(data, self.kind, little, start, stop)
        if bad >= 0:
            index = len(self._buf) // size + bad
            limit = "-1.0 .. +1.0" if self.kind == "float" else f"-{DAC_MAX} .. +{DAC_MAX}"
            self.error = (-222, f"{self.what}: sample {index} is {_sample_text(data, start, bad, self.kind, little)}, "
                                f"outside {limit}")
            self._buf = None
            return
        with memoryview(data) as view:
            if little:
                self._buf += view[start:stop]  # memory holds little-endian samples
            else:
                values = array.array(code)
                values.frombytes(view[start:stop])
                values.byteswap()  # reverses the bytes of each item, whatever the machine's order
                self._buf += values

    def finish(self) -> None:
        """The block is complete: store the waveform, or report what was wrong with it."""
        if self.error is not None:
            self.awg.push_error(*self.error)
            return
        self.awg.store(Waveform(self.name, self.kind, self._buf))
        self._buf = None

    def abandon(self, why: str) -> None:
        """The message ended or was aborted before the block did: nothing is stored."""
        self._buf = None
        if self.error is not None:
            self.awg.push_error(*self.error)
        else:
            self.awg.push_error(-161, f"{self.what}: {why} after {self.received} of {self.length} block bytes; "
                                      f"nothing stored")


@dataclass
class AwgStats:
    """What the device has taken on Bulk-OUT, and the thread CPU time its handling took."""

    bulk_out_bytes: int = 0
    bulk_out_transfers: int = 0
    cpu_s: float = 0.0


class VirtualAwg(ScpiInstrument):
    """The virtual arbitrary waveform generator (VID 0x1209, PID 0x000C), high speed.

    ``memory_points`` is the volatile memory in points. ``wire`` ("full", "high", a
    :class:`~app.sim.wire.WireModel` or None) and ``ingest_bytes_per_s`` pace Bulk-OUT
    (see :mod:`app.sim.wire`); :meth:`set_pacing` changes them while the device runs.
    """

    # The wire model needs its deadlines kept to the microframe, not the default slack.
    deadline_slack_s = 20e-6

    def __init__(self, *, serial: str = "AWG-0001", clock: Clock | None = None, pid: int = AWG_PID,
                 memory_points: int = DEFAULT_MEMORY_POINTS, wire: str | WireModel | None = None,
                 ingest_bytes_per_s: float | None = None) -> None:
        self.memory_points = memory_points
        self.waveforms: dict[str, Waveform] = {}
        self.stats = AwgStats()
        self._pacer = OutPacer()
        self._reset_stream()
        self._reset_settings()
        super().__init__(vid=VID, pid=pid, manufacturer="TMC Console", model="Virtual AWG", serial=serial,
                         version="1.0", clock=clock)
        self.set_pacing(wire=wire, ingest_bytes_per_s=ingest_bytes_per_s)

    # --- pacing and statistics (thread-safe: for the app's demo and the benchmark) ---

    def set_pacing(self, *, wire: str | WireModel | None = None, ingest_bytes_per_s: float | None = None) -> None:
        """Pace Bulk-OUT like a USB bus (``wire``: "full", "high" or None) and/or an instrument's ingest rate."""
        model = WIRE_MODELS[wire] if isinstance(wire, str) else wire
        if isinstance(wire, str) and wire not in WIRE_MODELS:
            raise ValueError(f"unknown wire model {wire!r}; known: {', '.join(WIRE_MODELS)}")
        with self.changed:
            self._pacer.configure(model, ingest_bytes_per_s)
            self.changed.notify_all()

    @property
    def pacing(self) -> tuple[WireModel | None, float | None]:
        with self.changed:
            return self._pacer.wire, self._pacer.ingest_bytes_per_s

    def waveform(self, name: str) -> Waveform | None:
        with self.changed:
            return self.waveforms.get(name.upper())

    # --- memory ---

    def free_points(self, replacing: str | None = None) -> int:
        used = sum(w.points for key, w in self.waveforms.items() if replacing is None or key != replacing.upper())
        return max(0, self.memory_points - used)

    def store(self, waveform: Waveform) -> None:
        self.waveforms[waveform.name.upper()] = waveform

    # --- USB: pacing on Bulk-OUT ---

    def handle_bulk_out(self, ep: int, data) -> int:
        started = time.thread_time()
        take = len(data)
        if ep == self.bulk_out_ep and self._pacer.active:
            take = self._pacer.offer(self.clock.now(), take)
            if take <= 0:
                raise NoData("the instrument's input is full")
            if take < len(data):
                data = memoryview(data)[:take]
        taken = super().handle_bulk_out(ep, data)
        self.stats.bulk_out_bytes += taken
        self.stats.bulk_out_transfers += 1
        self.stats.cpu_s += time.thread_time() - started
        return taken

    def next_deadline(self) -> float | None:
        due = [t for t in (super().next_deadline(), self._pacer.next_due()) if t is not None]
        return min(due) if due else None

    def on_clear_halt(self, ep: int) -> None:
        super().on_clear_halt(ep)
        if ep == self.bulk_out_ep:
            self._pacer.reset()

    def on_bus_reset(self) -> None:
        super().on_bus_reset()
        self._pacer.reset()

    # --- messages: streaming blocks ---

    def _reset_stream(self) -> None:
        self._sink: _BlockSink | None = None
        self._tail = False  # the block is done; _msg collects the rest of the message
        self._discarding = False  # a command error abandoned the rest of this message
        self._scan_pos = 0
        self._path: list[str] = []

    def on_power_on(self) -> None:
        self.waveforms.clear()
        self._reset_stream()
        super().on_power_on()

    def on_message_aborted(self) -> None:
        if self._sink is not None:
            self._sink.abandon("the message was aborted (USBTMC abort or device clear)")
        self._reset_stream()
        self._pacer.reset()
        super().on_message_aborted()

    def on_device_clear(self) -> None:
        self._reset_stream()
        super().on_device_clear()

    def on_message_data(self, chunk: bytes, eom: bool) -> None:
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)
        pos, end = 0, len(chunk)
        while pos < end:
            if self._discarding:
                pos = end
            elif self._sink is not None:
                pos += self._sink.feed(chunk, pos, end)
                if not self._sink.remaining:
                    self._sink.finish()
                    self._sink = None
                    self._tail = True
                    self._msg.clear()
            elif self._tail:
                self._msg += memoryview(chunk)[pos:]
                pos = end
            else:
                pos = self._scan_head(chunk, pos)
        if eom:
            self._end_message()

    def _scan_head(self, chunk: bytes, pos: int) -> int:
        """Take head bytes a piece at a time until a block we can stream starts; return where its data is."""
        piece = chunk[pos:pos + HEAD_SCAN_BYTES]
        if len(self._msg) + len(piece) > MAX_MESSAGE_BYTES or self._overrun:
            self._msg.clear()
            self._overrun = True
            return len(chunk)
        self._msg += piece
        data_start = self._find_stream_block()
        if data_start is None:
            return pos + len(piece)
        # Block bytes already appended to the head belong to the block.
        spill = len(self._msg) - data_start
        del self._msg[data_start:]
        return pos + len(piece) - spill

    def _find_stream_block(self) -> int | None:
        """Where the data of a definite block for DATA:ARB[:DAC] starts in ``_msg``, or None.

        The first block header of a message decides: when it belongs to one of our
        block commands, the units before it are executed and its sink is opened; any
        other block (or an indefinite ``#0`` one) makes the message go the ordinary
        way, accumulated and parsed whole, and scanning stops.
        """
        msg = self._msg
        while self._scan_pos < len(msg):
            hash_at = msg.find(b"#", self._scan_pos)
            if hash_at < 0 or hash_at + 1 >= len(msg):
                self._scan_pos = hash_at if hash_at >= 0 else len(msg)
                return None
            digits = msg[hash_at + 1] - 0x30
            if not 0 <= digits <= 9:
                self._scan_pos = hash_at + 1  # #H/#Q/#B numbers, or text
                continue
            if hash_at + 2 + digits > len(msg):
                self._scan_pos = hash_at
                return None
            length_text = bytes(msg[hash_at + 2:hash_at + 2 + digits])
            previous = hash_at - 1
            while previous >= 0 and msg[previous] in b" \t":
                previous -= 1
            if digits and length_text.isdigit() and previous >= 0 and msg[previous] == ord(","):
                if self._begin_stream(bytes(msg[:hash_at]), int(length_text)):
                    return hash_at + 2 + digits
            self._scan_pos = _NEVER  # not ours: the message is parsed whole when it ends
            return None
        return None

    def _begin_stream(self, head: bytes, length: int) -> bool:
        """Execute the units before the block and open its sink; False when it is not ours to stream."""
        cut = head.rfind(b";")
        prior, unit = (head[:cut], head[cut + 1:]) if cut >= 0 else (b"", head)
        try:
            prior_units = parse_program_message(prior) if prior.strip() else []
            ((header, params),) = parse_program_message(unit + b"#10")
        except (ScpiError, ValueError):
            return False
        kind = self._stream_kind(header, prior_units)
        if kind is None:
            return False
        self._start_message()
        path = self._run_units(prior_units, [])
        if path is None:
            self._discarding = True
            return True
        self._path = path
        what = f"{header.upper()} {params[0].text if params else ''}".strip()
        try:
            if len(params) != 2:
                raise ScpiError(-108 if len(params) > 2 else -109, f"{header} takes a name and one block")
            name = self._name(params[0])
        except ScpiError as exc:
            self.push_error(exc.code, exc.detail)
            self._discarding = True
            return True
        self._sink = _BlockSink(self, name, kind, length, what)
        self._path = self._path_after(header, path)
        return True

    def _stream_kind(self, header: str, prior_units) -> str | None:
        path: list[str] = []
        for prior_header, _params in prior_units:
            path = self._path_after(prior_header, path)
        query = header.endswith("?")
        if query or header.startswith("*"):
            return None
        typed = header.lstrip(":").split(":")
        candidates = [typed] if header.startswith(":") or not path else [path + typed, typed]
        for nodes in candidates:
            for pattern, kind in (("DATA:ARBitrary:DAC", "dac"), ("DATA:ARBitrary", "float")):
                if _match(_compile(pattern), nodes):
                    return kind
        return None

    @staticmethod
    def _path_after(header: str, path: list[str]) -> list[str]:
        if header.startswith("*"):
            return path
        typed = header.rstrip("?").lstrip(":").split(":")
        return typed[:-1] if header.startswith(":") or not path else (path + typed)[:-1]

    def _start_message(self) -> None:
        if self.has_output():
            self.discard_output()  # 488.2 6.3.2.3: the unread answer of the previous query goes
            self.push_error(-410)
        self._replies = []

    def _run_units(self, units, path: list[str]) -> list[str] | None:
        """Execute units; None when a command error abandons the rest of the message (488.2 6.1.6)."""
        for header, params in units:
            try:
                path = self._execute(header, params, path)
            except ScpiError as exc:
                self.push_error(exc.code, exc.detail)
                if -200 < exc.code <= -100:
                    return None
        return path

    def _end_message(self) -> None:
        sink, tail, discarding = self._sink, self._tail, self._discarding
        text = bytes(self._msg)
        self._msg.clear()
        path = self._path
        self._reset_stream()
        if self._overrun:
            self._overrun = False
            self.push_error(-363, f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
            return
        if sink is not None:
            sink.abandon("the message ended")
        elif tail:
            rest = text.lstrip(b" \t\r")
            if rest.startswith(b";"):
                rest = rest[1:]
            try:
                units = parse_program_message(rest)
            except ScpiError as exc:
                self.push_error(exc.code, exc.detail)
                units = []
            self._run_units(units, path)
        elif not discarding:
            self.on_message(text)
            return
        replies, self._replies = self._replies, []
        if replies:
            delay_s, self.response_delay_s = self.response_delay_s, 0.0
            self.respond(b";".join(replies) + b"\n", delay_s=delay_s)

    # --- settings ---

    def _reset_settings(self) -> None:
        self.byte_order_swapped = False  # FORM:BORD NORM: most significant byte first
        self.selected: str | None = None
        self.sample_rate = SAMPLE_RATE_DEFAULT
        self.function = "SIN"
        self.output = False

    def reset_state(self) -> None:
        super().reset_state()
        self._reset_settings()

    @staticmethod
    def _name(param: Param) -> str:
        name = param.text.strip()
        if param.block is not None or not _NAME.fullmatch(name) or len(name) > MAX_NAME_CHARS:
            raise ScpiError(-224, f"{name!r} is not a waveform name (a letter, then letters, digits or _; "
                                  f"at most {MAX_NAME_CHARS})")
        return name

    def _existing(self, params: list[Param]) -> Waveform:
        if not params:
            if self.selected is None:
                raise ScpiError(-224, "no waveform named and none selected (FUNC:ARB)")
            key = self.selected
        else:
            key = self._name(self._one_param(params))
        waveform = self.waveforms.get(key.upper())
        if waveform is None:
            raise ScpiError(-224, f"no waveform {key!r} in volatile memory")
        return waveform

    # --- commands ---

    @command("FORMat:BORDer")
    def _format_border(self, params):
        choice = self._one_param(params).text.upper()
        if choice in ("NORM", "NORMAL"):
            self.byte_order_swapped = False
        elif choice in ("SWAP", "SWAPPED"):
            self.byte_order_swapped = True
        else:
            raise ScpiError(-224, f"{choice!r}: FORM:BORD takes NORMal or SWAPped")

    @command("FORMat:BORDer?")
    def _format_border_query(self, params):
        self._no_params(params)
        return "SWAP" if self.byte_order_swapped else "NORM"

    @command("DATA:ARBitrary")
    def _data_arb(self, params):
        self._store_params(params, "float", "DATA:ARB")

    @command("DATA:ARBitrary:DAC")
    def _data_arb_dac(self, params):
        self._store_params(params, "dac", "DATA:ARB:DAC")

    def _store_params(self, params: list[Param], kind: str, header: str) -> None:
        """The whole-message path: a block that came with the message (e.g. ``#0``), or a list of numbers."""
        if len(params) < 2:
            raise ScpiError(-109, f"{header} takes a name and data")
        name = self._name(params[0])
        what = f"{header} {name}"
        if params[1].block is not None:
            if len(params) > 2:
                raise ScpiError(-108, f"{what}: one block only")
            block = params[1].block
            sink = _BlockSink(self, name, kind, len(block), what)
            sink.feed(block, 0, len(block))
            sink.finish()
            return
        values = params[1:]
        if kind == "dac":
            codes = array.array("h", (p.as_int(-DAC_MAX, DAC_MAX) for p in values))
        else:
            numbers = []
            for index, p in enumerate(values):
                number = p.as_float()
                if not -1.0 <= number <= 1.0:
                    raise ScpiError(-222, f"{what}: value {index} is {number:g}, outside -1.0 .. +1.0")
                numbers.append(number)
            codes = array.array("f", numbers)
        if len(codes) < MIN_POINTS:
            raise ScpiError(-222, f"{what}: {len(codes)} points; an arbitrary waveform needs at least {MIN_POINTS}")
        if len(codes) > self.free_points(replacing=name):
            raise ScpiError(-225, f"{what}: {len(codes)} points do not fit in volatile memory "
                                  f"({self.free_points(replacing=name)} points free)")
        if not _LITTLE:
            codes.byteswap()
        self.store(Waveform(name, kind, bytearray(codes.tobytes())))

    @command("DATA:VOLatile:CLEar")
    def _data_vol_clear(self, params):
        self._no_params(params)
        self.waveforms.clear()
        self.selected = None
        if self.function == "ARB":
            self.function = "SIN"

    @command("DATA:VOLatile:FREE?")
    def _data_vol_free(self, params):
        self._no_params(params)
        return str(self.free_points())

    @command("DATA:VOLatile:CATalog?")
    def _data_vol_catalog(self, params):
        self._no_params(params)
        return ",".join(f'"{w.name}"' for w in self.waveforms.values()) or '""'

    @command("DATA:ATTRibute:POINts?")
    def _data_attr_points(self, params):
        return str(self._existing(params).points)

    @command("DATA:ATTRibute:CHECksum?")
    def _data_attr_checksum(self, params):
        waveform = self._existing(params)
        return f"{waveform.points},{waveform.crc32}"

    @command("[SOURce]:FUNCtion:ARBitrary")
    def _func_arb(self, params):
        self.selected = self._existing([self._one_param(params)]).name

    @command("[SOURce]:FUNCtion:ARBitrary?")
    def _func_arb_query(self, params):
        self._no_params(params)
        return f'"{self.selected or ""}"'

    @command("[SOURce]:FUNCtion:ARBitrary:SRATe")
    def _func_arb_srate(self, params):
        param = self._one_param(params)
        word = param.text.upper()
        named = {"MIN": SAMPLE_RATE_MIN, "MINIMUM": SAMPLE_RATE_MIN, "MAX": SAMPLE_RATE_MAX,
                 "MAXIMUM": SAMPLE_RATE_MAX, "DEF": SAMPLE_RATE_DEFAULT, "DEFAULT": SAMPLE_RATE_DEFAULT}
        rate = named[word] if word in named else param.as_float()
        if not SAMPLE_RATE_MIN <= rate <= SAMPLE_RATE_MAX:
            raise ScpiError(-222, f"{rate:g} Sa/s is outside {SAMPLE_RATE_MIN:g} .. {SAMPLE_RATE_MAX:g}")
        self.sample_rate = rate

    @command("[SOURce]:FUNCtion:ARBitrary:SRATe?")
    def _func_arb_srate_query(self, params):
        self._no_params(params)
        return f"{self.sample_rate:.9E}"

    @command("[SOURce]:FUNCtion")
    def _function(self, params):
        word = self._one_param(params).text
        for name in FUNCTIONS:
            short = "".join(c for c in name if c.isupper())
            if word.upper() in (short, name.upper()):
                self.function = short
                return
        raise ScpiError(-224, f"{word!r} is not a function ({', '.join(FUNCTIONS)})")

    @command("[SOURce]:FUNCtion?")
    def _function_query(self, params):
        self._no_params(params)
        return self.function

    @command("OUTPut[:STATe]")
    def _output_state(self, params):
        word = self._one_param(params).text.upper()
        if word not in ("ON", "OFF", "1", "0"):
            raise ScpiError(-224, f"{word!r}: OUTPut takes ON, OFF, 1 or 0")
        self.output = word in ("ON", "1")

    @command("OUTPut[:STATe]?")
    def _output_state_query(self, params):
        self._no_params(params)
        return "1" if self.output else "0"

