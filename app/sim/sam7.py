"""The virtual SAM7 counter: the USBTMC example firmware on the Atmel AT91SAM7S-EK board.

Modelled on "USBTMC Device Firmware Design (Example)" (M. J. Bauer, 2007): a full-speed
USB488 device that counts debounced falling edges on the SW1 input, with four LEDs
(USB status, Remote, Ready, Heartbeat), the command set and error model of that
document, and the IEEE 488.2 status registers it describes. Where the document is
silent the choices are listed in docs/virtual-instruments.md.

Everything timed (the 30 ms glitch filter, the 500 ms indicator pulse, the 1 Hz
heartbeat, the USB LED blinking on bus activity) is computed from the device clock
when it is read, so no thread runs for it; tests drive a :class:`~app.sim.clock.ManualClock`.

Standard library only.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntFlag

from .clock import Clock
from .device import Speed
from .usbtmc_device import EsrBit, RemoteState, Request, Status, StbBit, TmcCapabilities, UsbtmcDevice

# pid.codes VID with its test PID 0x0001. Test PIDs are not unique: a prototype board may
# use the same pair, so never identify real hardware by it (docs/virtual-instruments.md).
VID = 0x1209
PID = 0x0001
DEFAULT_SERIAL = "SAM7-0001"
MANUFACTURER = "XYZ Company Ltd"
PRODUCT = "SAM7-EK"
FIRMWARE_VERSION = "v1.0.001"
IDN = f"{MANUFACTURER}, {PRODUCT}, 0, {FIRMWARE_VERSION}"

COMMAND_BUFFER_BYTES = 256  # the firmware's command message buffer, terminator included
COUNT_MAX = 30_000
GLITCH_FILTER_US = 30_000  # transitions shorter than 30 ms are ignored
INDICATOR_PULSE_S = 0.5
HEARTBEAT_PERIOD_S = 1.0
ACTIVITY_WINDOW_S = 0.1  # the USB LED pulses while packets arrived within the last 100 ms
ACTIVITY_HALF_PERIOD_S = 0.05  # ... toggling every 50 ms (10 Hz)
PARAM_MIN, PARAM_MAX = -10_000, 10_000
RTL = EsrBit.RQC  # the document redefines ESR bit 1 as "returned to local"


class DebugFlag(IntFlag):
    """The USBTMC communication flags reported by ``DEBUG:FLAGS?`` as ``#Hxxxxxxxx``.

    Bits 0-15 are events latched since the last ``DEBUG:FLAGS?`` (which clears them);
    bits 16-23 show the current state; ``COUNT_OVERFLOW`` stays set until ``COUNT:RESET``.
    """

    BAD_HEADER = 1 << 0  # a Bulk-OUT header was refused and Bulk-OUT halted
    ABORT_BULK_OUT = 1 << 1  # INITIATE_ABORT_BULK_OUT succeeded
    ABORT_BULK_IN = 1 << 2  # INITIATE_ABORT_BULK_IN succeeded
    DEVICE_CLEAR = 1 << 3  # INITIATE_CLEAR received
    READ_WITHOUT_QUERY = 1 << 4  # REQUEST_DEV_DEP_MSG_IN with no response to give (QYE)
    RESPONSE_DISCARDED = 1 << 5  # a new command arrived before the response was read (QYE)
    COMMAND_OVERFLOW = 1 << 6  # a command message overflowed the 256-byte buffer (DDE)
    READ_STATUS_BYTE = 1 << 7  # READ_STATUS_BYTE answered
    SRQ_SENT = 1 << 8  # a service request notification was queued on Interrupt-IN
    COUNT_OVERFLOW = 1 << 15  # a hit arrived with the count at 30,000 (kept until COUNT:RESET)
    USB_CONFIGURED = 1 << 16
    BULK_OUT_HALTED = 1 << 17
    BULK_IN_HALTED = 1 << 18
    REN = 1 << 19
    REMOTE = 1 << 20
    LOCKOUT = 1 << 21
    INDICATOR_PULSE = 1 << 22  # the 500 ms pulse timer is running
    RESPONSE_PENDING = 1 << 23  # the output buffer holds an unread response


_EVENT_MASK = 0x7FFF


@dataclass(frozen=True)
class Leds:
    """The four LEDs of the board at one moment (True: lit)."""

    usb: bool
    remote: bool
    ready: bool
    heartbeat: bool


class _ExecutionError(Exception):
    """A parameter out of range or of the wrong type (ESR.EXE): the command has no effect."""


class _CommandError(Exception):
    """An undefined mnemonic, bad syntax or a wrong number of parameters (ESR.CME)."""


def _parse_int(text: str) -> int:
    """A decimal integer, or IEEE 488.2 hexadecimal ``#Hxx`` (488.2 7.7.4)."""
    body = text.strip()
    if _HEX.fullmatch(body):
        return int(body[2:], 16)
    if _DECIMAL.fullmatch(body):
        return int(body, 10)
    raise _ExecutionError(f"{text!r} is not an integer")


_HEX = re.compile(r"#[Hh][0-9A-Fa-f]+")
_DECIMAL = re.compile(r"[+-]?[0-9]+")
_UNIT = re.compile(r"(\S+)\s*(.*)", re.DOTALL)


class Sam7Counter(UsbtmcDevice):
    """The SAM7-EK USBTMC example board as a virtual device.

    Front-panel side (usable from any thread, e.g. a GUI panel or a test):
    :meth:`press_sw1`, :meth:`feed_edges`, :meth:`pulse_train`, :meth:`leds`,
    :attr:`count`, :attr:`busy`.
    """

    def __init__(self, *, serial: str = DEFAULT_SERIAL, clock: Clock | None = None, pid: int = PID) -> None:
        caps = TmcCapabilities(indicator_pulse=True, term_char=False, usb488=True, usb4882=True,
                               remote_local=True, trigger=False, scpi=False, service_request=True)
        super().__init__(vid=VID, pid=pid, manufacturer=MANUFACTURER, product=PRODUCT, serial=serial,
                         speed=Speed.FULL, capabilities=caps, interrupt_in=True, bcd_device=0x0100,
                         clock=clock, mss_masked=False)
        self.busy = False
        self._power_on_reset()

    # --- front panel ---

    def press_sw1(self, hold_s: float = 0.1, at_s: float | None = None) -> None:
        """Press SW1 for ``hold_s`` seconds starting at device time ``at_s`` (default: now).

        The hit counts once the press has lasted 30 ms (the glitch filter), so with a
        :class:`ManualClock` advance the clock past ``at_s + 0.03`` to see it.
        """
        with self.changed:
            start = self.clock.now() if at_s is None else at_s
            self.feed_edges([(start, 0), (start + hold_s, 1)])

    def feed_edges(self, levels_with_times: Iterable[tuple[float, int]]) -> None:
        """Drive the raw SW1 input: ``(time_s, level)`` pairs in device-clock seconds, level 0
        (pressed, low) or 1 (released). Times must not go backwards; future times are applied
        as the clock reaches them."""
        with self.changed:
            last = self._edges[-1][0] if self._edges else self._settled_us
            for time_s, level in levels_with_times:
                t_us = round(time_s * 1_000_000)
                if t_us < last:
                    raise ValueError("SW1 edges must be in time order and not in the past")
                self._edges.append((t_us, 1 if level else 0))
                last = t_us
            self._settle()
            self.changed.notify_all()

    def pulse_train(self, rate_hz: float, count: int, *, start_s: float | None = None, duty: float = 0.5,
                    glitches: int = 0, glitch_s: float = 0.005) -> float:
        """Feed ``count`` low-going pulses at ``rate_hz`` (low for ``duty`` of each period).

        ``glitches`` of the pulses get a low blip of ``glitch_s`` seconds (< 30 ms) in the middle
        of their high phase, which the glitch filter must ignore. The filter needs the input
        steady for 30 ms on both sides of a blip, so the high phase must last at least
        60 ms plus the blip. Returns the device time in seconds when the train ends.
        """
        if rate_hz <= 0 or not 0 < duty < 1 or count < 0:
            raise ValueError("need rate_hz > 0, 0 < duty < 1 and count >= 0")
        period = 1.0 / rate_hz
        high_s = (1 - duty) * period
        filter_s = GLITCH_FILTER_US / 1e6
        if glitches and not (0 < glitch_s < filter_s and high_s >= 2 * filter_s + glitch_s):
            raise ValueError("a glitch must be shorter than 30 ms, in a high phase of at least 60 ms plus the glitch")
        with self.changed:
            start = self.clock.now() if start_s is None else start_s
            edges: list[tuple[float, int]] = []
            for k in range(count):
                fall = start + k * period
                rise = fall + duty * period
                edges += [(fall, 0), (rise, 1)]
                if k < glitches:
                    blip = rise + (high_s - glitch_s) / 2
                    edges += [(blip, 0), (blip + glitch_s, 1)]
            self.feed_edges(edges)
            return start + count * period

    @property
    def count(self) -> int:
        """The pulse count now (0..30,000)."""
        with self.changed:
            self._settle()
            return self._count

    @property
    def count_overflow(self) -> bool:
        """Whether a hit was lost at 30,000 since the last COUNT:RESET."""
        with self.changed:
            self._settle()
            return self._overflow

    @property
    def params(self) -> tuple[int, int]:
        with self.changed:
            return self._params

    def leds(self) -> Leds:
        """The LEDs at the current device time."""
        with self.changed:
            now = self.clock.now()
            self._settle_indicator(now)
            usb = self.configured
            if usb and self.last_activity_s is not None and now - self.last_activity_s < ACTIVITY_WINDOW_S:
                usb = int(now / ACTIVITY_HALF_PERIOD_S) % 2 == 0
            heartbeat = (now - self._started_s) % HEARTBEAT_PERIOD_S < HEARTBEAT_PERIOD_S / 2
            return Leds(usb=usb, remote=self.remote_state.is_remote, ready=self._ready, heartbeat=heartbeat)

    def debug_flags(self) -> int:
        """The DEBUG:FLAGS? word without clearing its events."""
        with self.changed:
            self._settle()
            flags = self._debug
            if self._overflow:
                flags |= DebugFlag.COUNT_OVERFLOW
            if self.configured:
                flags |= DebugFlag.USB_CONFIGURED
            if self.is_halted(self.bulk_out_ep):
                flags |= DebugFlag.BULK_OUT_HALTED
            if self.is_halted(self.bulk_in_ep):
                flags |= DebugFlag.BULK_IN_HALTED
            if self.ren:
                flags |= DebugFlag.REN
            if self.remote_state.is_remote:
                flags |= DebugFlag.REMOTE
            if self.remote_state in (RemoteState.LWLS, RemoteState.RWLS):
                flags |= DebugFlag.LOCKOUT
            if self._pulse_until is not None and self.clock.now() < self._pulse_until:
                flags |= DebugFlag.INDICATOR_PULSE
            if self.has_output():
                flags |= DebugFlag.RESPONSE_PENDING
            return int(flags)

    # --- USBTMC hooks ---

    def on_power_on(self) -> None:
        self._power_on_reset()

    def on_message_data(self, chunk: bytes, eom: bool) -> None:
        # The firmware copies the message into a fixed buffer; what does not fit is an overflow.
        if not self._cmd_overflow:
            if len(self._cmd) + len(chunk) > COMMAND_BUFFER_BYTES:
                self._cmd_overflow = True
                self._cmd.clear()
            else:
                self._cmd += chunk
        if eom:
            message, overflowed = bytes(self._cmd), self._cmd_overflow
            self._cmd.clear()
            self._cmd_overflow = False
            if overflowed:
                self._debug |= DebugFlag.COMMAND_OVERFLOW
                self.status.set_event(EsrBit.DDE)  # the command has no effect
            else:
                self.on_message(message)

    def on_message_aborted(self) -> None:
        self._cmd.clear()
        self._cmd_overflow = False

    def on_message(self, data: bytes) -> None:
        if self.has_output():
            # "A new command following a query without first requesting a response": QYE,
            # and the unread response is discarded (488.2 6.3.2.3).
            self.discard_output()
            self._debug |= DebugFlag.RESPONSE_DISCARDED
            self.status.set_event(EsrBit.QYE)
        # The design document: messages are printable ASCII, newline-terminated; anything else
        # is not a command the firmware knows, a command error, and nothing runs. White space
        # around the message (a CR before the newline, as VISA libraries send) is skipped.
        body = data.strip(b" \t\r\n")
        if any(byte < 0x20 or byte > 0x7E for byte in body):
            self.status.set_event(EsrBit.CME)
            return
        text = body.decode("ascii")
        self._reply_parts = []
        for unit in text.split(";"):
            unit = unit.strip()
            if unit:
                self._execute(unit)
        parts, self._reply_parts = self._reply_parts, []
        if parts:
            self.respond((";".join(parts) + "\n").encode("ascii"))

    def on_query_error(self) -> None:
        self._debug |= DebugFlag.READ_WITHOUT_QUERY
        self.status.set_event(EsrBit.QYE)

    def on_protocol_error(self, reason: str) -> None:
        self._debug |= DebugFlag.BAD_HEADER

    def on_indicator_pulse(self) -> None:
        now = self.clock.now()
        self._settle_indicator(now)
        if self._pulse_until is None:
            self._ready = not self._ready  # toggle now, toggle back when the timer expires
        self._pulse_until = now + INDICATOR_PULSE_S

    def on_remote_change(self, old: RemoteState, new: RemoteState) -> None:
        if old.is_remote and not new.is_remote:
            self.status.set_event(RTL)

    def on_device_clear(self) -> None:
        self._cmd.clear()
        self._cmd_overflow = False

    def request_service(self, stb: int) -> None:
        super().request_service(stb)
        self._debug |= DebugFlag.SRQ_SENT

    def status_summary_bits(self) -> int:
        bits = super().status_summary_bits()
        if self._reply_parts:
            bits |= StbBit.MAV  # a compound message's earlier queries have answers waiting
        return bits

    def class_request(self, bm_request_type: int, b_request: int, w_value: int, w_index: int,
                      data_or_length: bytes | int) -> bytes:
        reply = super().class_request(bm_request_type, b_request, w_value, w_index, data_or_length)
        succeeded = bool(reply) and reply[0] == Status.SUCCESS
        if b_request == Request.INITIATE_ABORT_BULK_OUT and succeeded:
            self._debug |= DebugFlag.ABORT_BULK_OUT
        elif b_request == Request.INITIATE_ABORT_BULK_IN and succeeded:
            self._debug |= DebugFlag.ABORT_BULK_IN
        elif b_request == Request.INITIATE_CLEAR:
            self._debug |= DebugFlag.DEVICE_CLEAR
        elif b_request == Request.READ_STATUS_BYTE and succeeded:
            self._debug |= DebugFlag.READ_STATUS_BYTE
        return reply

    # --- the command interpreter ---

    def _execute(self, unit: str) -> None:
        match = _UNIT.fullmatch(unit)
        header, rest = match.group(1).upper(), match.group(2).strip()
        params = [p.strip() for p in rest.split(",")] if rest else []
        command = _COMMANDS.get(header)
        try:
            if command is None:
                raise _CommandError(f"undefined header {header!r}")
            handler, param_count = command
            if len(params) != param_count or any(not p for p in params):
                raise _CommandError(f"{header} takes {param_count} parameter(s)")
            reply = handler(self, params)
        except _CommandError:
            self.status.set_event(EsrBit.CME)  # a query rejected this way gives no response
            return
        except _ExecutionError:
            self.status.set_event(EsrBit.EXE)
            return
        if reply is not None:
            self._reply_parts.append(reply)

    def _idn(self, params: list[str]) -> str:
        return IDN

    def _rst(self, params: list[str]) -> None:
        # The function layer: counter, parameters, Ready LED. Status registers and the
        # remote/local state are left alone (488.2 10.32).
        self._settle()
        self._count = 0
        self._overflow = False
        self._params = (0, 0)
        self._ready = False
        self._pulse_until = None

    def _cls(self, params: list[str]) -> None:
        self.status.clear()

    def _stb_query(self, params: list[str]) -> str:
        return f"#H{self.status.stb():02X}"

    def _esr_query(self, params: list[str]) -> str:
        return f"#H{self.status.read_esr():02X}"

    def _ese(self, params: list[str]) -> None:
        value = _parse_int(params[0])
        if not 0 <= value <= 255:
            raise _ExecutionError("ESE is 0..255")
        self.status.ese = value
        self.status.update()

    def _ese_query(self, params: list[str]) -> str:
        return f"#H{self.status.ese:02X}"

    def _sre(self, params: list[str]) -> None:
        value = _parse_int(params[0])
        if not 0 <= value <= 255:
            raise _ExecutionError("SRE is 0..255")
        self.status.sre = value & ~StbBit.MSS  # 488.2 11.3.2.3: bit 6 is ignored
        self.status.update()

    def _sre_query(self, params: list[str]) -> str:
        return f"#H{self.status.sre:02X}"

    def _count_read(self, params: list[str]) -> str:
        self._settle()
        return str(self._count)

    def _count_reset(self, params: list[str]) -> None:
        self._settle()
        self._count = 0
        self._overflow = False

    def _indicator(self, params: list[str]) -> None:
        value = _parse_int(params[0])
        if value not in (0, 1):
            raise _ExecutionError("INDICATOR takes 0 or 1")
        self._pulse_until = None  # an explicit setting ends a running pulse
        self._ready = bool(value)

    def _indicator_query(self, params: list[str]) -> str:
        self._settle_indicator(self.clock.now())
        return "ON" if self._ready else "OFF"

    def _param_set(self, params: list[str]) -> None:
        values = tuple(_parse_int(p) for p in params)
        if any(not PARAM_MIN <= v <= PARAM_MAX for v in values):
            raise _ExecutionError("PARAM:SET values are -10000..10000")
        self._params = (values[0], values[1])

    def _param_enq(self, params: list[str]) -> str:
        return f"{self._params[0]},{self._params[1]}"

    def _busy_query(self, params: list[str]) -> str:
        return "YES" if self.busy else "NO"

    def _debug_flags_query(self, params: list[str]) -> str:
        flags = self.debug_flags()
        self._debug &= ~_EVENT_MASK
        return f"#H{flags:08X}"

    # --- internals ---

    def _power_on_reset(self) -> None:
        now = self.clock.now()
        self._started_s = now
        self._count = 0
        self._overflow = False
        self._params = (0, 0)
        self._ready = False
        self._pulse_until: float | None = None
        self._debug = 0
        self._cmd = bytearray()
        self._cmd_overflow = False
        self._reply_parts: list[str] = []
        now_us = round(now * 1_000_000)
        self._edges: deque[tuple[int, int]] = deque()
        self._raw_level = 1
        self._raw_since_us = now_us
        self._filtered = 1
        self._settled_us = now_us
        self.ren = False
        self.remote_state = RemoteState.LOCS
        self.discard_output()
        self.status.esr = EsrBit.PON  # 488.2 11.5.1.1.2: power on
        self.status.ese = 0
        self.status.sre = 0
        self.status.rqs = False
        self.status.update()

    def _settle(self) -> None:
        """Run the glitch filter over the SW1 edges up to now."""
        now_us = round(self.clock.now() * 1_000_000)
        while self._edges and self._edges[0][0] <= now_us:
            t_us, level = self._edges.popleft()
            self._filter_until(t_us)
            if level != self._raw_level:
                self._raw_level = level
                self._raw_since_us = t_us
        self._filter_until(now_us)
        self._settled_us = max(self._settled_us, now_us)

    def _filter_until(self, t_us: int) -> None:
        # The filtered input follows the raw input once it has held its level for 30 ms.
        if self._raw_level != self._filtered and t_us - self._raw_since_us >= GLITCH_FILTER_US:
            self._filtered = self._raw_level
            if self._filtered == 0:  # a falling edge: one hit
                if self._count < COUNT_MAX:
                    self._count += 1
                else:
                    self._overflow = True

    def _settle_indicator(self, now: float) -> None:
        if self._pulse_until is not None and now >= self._pulse_until:
            self._ready = not self._ready
            self._pulse_until = None


_COMMANDS = {
    "*IDN?": (Sam7Counter._idn, 0),
    "*RST": (Sam7Counter._rst, 0),
    "*CLS": (Sam7Counter._cls, 0),
    "*STB?": (Sam7Counter._stb_query, 0),
    "*ESR?": (Sam7Counter._esr_query, 0),
    "*ESE": (Sam7Counter._ese, 1),
    "*ESE?": (Sam7Counter._ese_query, 0),
    "*SRE": (Sam7Counter._sre, 1),
    "*SRE?": (Sam7Counter._sre_query, 0),
    "COUNT:READ?": (Sam7Counter._count_read, 0),
    "COUNT:RESET": (Sam7Counter._count_reset, 0),
    "INDICATOR": (Sam7Counter._indicator, 1),
    "INDICATOR?": (Sam7Counter._indicator_query, 0),
    "PARAM:SET": (Sam7Counter._param_set, 2),
    "PARAM:ENQ?": (Sam7Counter._param_enq, 0),
    "BUSY?": (Sam7Counter._busy_query, 0),
    "DEBUG:FLAGS?": (Sam7Counter._debug_flags_query, 0),
}
