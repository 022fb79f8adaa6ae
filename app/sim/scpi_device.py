"""A generic SCPI instrument on USBTMC/USB488, and the virtual loopback built on it.

:class:`ScpiInstrument` parses IEEE 488.2 program messages (compound ``;`` units,
relative header paths, short and long mnemonic forms, optional ``[nodes]``, quoted
strings, definite ``#<n><len>`` and indefinite ``#0`` blocks), keeps a SCPI error queue
(``SYSTem:ERRor?``) feeding the status byte's EAV bit, and implements the 488.2 common
commands. Subclasses add commands with the :func:`command` decorator.

:class:`VirtualLoopback` stores a block (``MEMory:DATA``) and returns it, for multi-MiB
round trips, and can hold an answer back (``SYSTem:DELay``) so host timeouts and aborts
can be exercised.

Standard library only.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .clock import Clock
from .device import Speed
from .usbtmc_device import EsrBit, StbBit, TmcCapabilities, UsbtmcDevice

# pid.codes VID with its test PID 0x0002. Test PIDs are not unique: a prototype board may
# use the same pair, so never identify real hardware by it (docs/virtual-instruments.md).
VID = 0x1209
LOOPBACK_PID = 0x0002

ERROR_QUEUE_DEPTH = 20
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# SCPI-1999 Vol. 2 chapter 21: standard error numbers and messages.
ERRORS = {
    0: "No error",
    -100: "Command error",
    -101: "Invalid character",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -120: "Numeric data error",
    -151: "Invalid string data",
    -161: "Invalid block data",
    -200: "Execution error",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -350: "Queue overflow",
    -363: "Input buffer overrun",
    -410: "Query INTERRUPTED",
    -420: "Query UNTERMINATED",
}


class ScpiError(Exception):
    """A SCPI error: ``code`` from :data:`ERRORS`, ``detail`` appended to the message."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(f"{code}: {ERRORS.get(code, 'Error')}{'; ' + detail if detail else ''}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Param:
    """One program data element: ``text`` as sent (strings unquoted), ``block`` for arbitrary blocks."""

    text: str
    block: bytes | None = None
    quoted: bool = False

    def as_int(self, low: int | None = None, high: int | None = None) -> int:
        """An integer (488.2 7.7.2 NRf with no fraction, or the #H/#Q/#B forms of 7.7.4)."""
        if self.block is not None or self.quoted:
            raise ScpiError(-104, f"{self.text!r} is not a number")
        text = self.text.strip()
        radix = {"#H": 16, "#Q": 8, "#B": 2}.get(text[:2].upper())
        if radix is not None:
            try:
                value = int(text[2:], radix)
            except ValueError:
                raise ScpiError(-104, f"{self.text!r} is not a number") from None
        else:
            number = self.as_float()
            if not math.isfinite(number) or number != int(number):
                raise ScpiError(-104, f"{self.text!r} is not an integer")
            value = int(number)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ScpiError(-222, f"{value} is outside {low}..{high}")
        return value

    def as_float(self) -> float:
        if self.block is not None or self.quoted or not _NUMBER.fullmatch(self.text.strip()):
            raise ScpiError(-104, f"{self.text!r} is not a number")
        return float(self.text)

    def as_block(self) -> bytes:
        if self.block is None:
            raise ScpiError(-104, "an arbitrary block is expected")
        return self.block


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_WHITESPACE = b" \t\r"


def parse_program_message(message: bytes) -> list[tuple[str, list[Param]]]:
    """Split a program message into (header, parameters) units (488.2 section 7).

    Raises :class:`ScpiError` (-102 syntax, -161 block) at the first malformed unit,
    after returning nothing: the caller executes nothing of a malformed message.
    """
    units: list[tuple[str, list[Param]]] = []
    n = len(message)
    pos = 0
    while pos < n:
        while pos < n and message[pos] in _WHITESPACE:
            pos += 1
        start = pos
        while pos < n and message[pos] not in b" \t\r\n;":
            pos += 1
        # Undefined headers end up in an error message: keep a non-ASCII byte visible as \xNN.
        header = message[start:pos].decode("ascii", errors="backslashreplace")
        while pos < n and message[pos] in _WHITESPACE:
            pos += 1
        params: list[Param] = []
        if pos < n and message[pos] not in b";\n":
            while True:
                param, pos = _parse_param(message, pos)
                params.append(param)
                while pos < n and message[pos] in _WHITESPACE:
                    pos += 1
                if pos < n and message[pos] == ord(","):
                    pos += 1
                    continue
                break
        if header:
            units.append((header, params))
        elif params:
            raise ScpiError(-102, "parameters without a header")
        if pos < n and message[pos] == ord(";"):
            pos += 1
        elif pos < n and message[pos] == ord("\n"):
            if message[pos + 1:].strip():
                raise ScpiError(-102, "data after the message terminator")
            break
        elif pos < n:
            raise ScpiError(-102, f"unexpected {chr(message[pos])!r}")
    return units


def _parse_param(message: bytes, pos: int) -> tuple[Param, int]:
    n = len(message)
    while pos < n and message[pos] in _WHITESPACE:
        pos += 1
    if pos >= n:
        raise ScpiError(-109, "a parameter is missing after ','")
    first = message[pos]
    if first == ord("#") and pos + 1 < n and message[pos + 1:pos + 2].isdigit():
        digits = message[pos + 1] - ord("0")
        if digits == 0:
            # 488.2 7.7.6.2: an indefinite block runs to the end of the message (NL^END).
            data = message[pos + 2:]
            if data.endswith(b"\n"):
                data = data[:-1]
            return Param("#0", bytes(data)), n
        length_text = message[pos + 2:pos + 2 + digits]
        if len(length_text) != digits or not length_text.isdigit():
            raise ScpiError(-161, "bad block length header")
        length = int(length_text)
        start = pos + 2 + digits
        if start + length > n:
            raise ScpiError(-161, f"block announces {length} bytes, {n - start} arrived")
        return Param(f"#{digits}{length}", bytes(message[start:start + length])), start + length
    if first in b"'\"":
        quote = first
        out = bytearray()
        pos += 1
        while True:
            if pos >= n:
                raise ScpiError(-151, "unterminated string")
            if message[pos] == quote:
                if pos + 1 < n and message[pos + 1] == quote:  # a doubled quote stands for one
                    out.append(quote)
                    pos += 2
                    continue
                return Param(out.decode("latin-1"), quoted=True), pos + 1
            out.append(message[pos])
            pos += 1
    start = pos
    while pos < n and message[pos] not in b",;\n":
        pos += 1
    text = message[start:pos].decode("ascii", errors="replace").strip()
    if not text:
        raise ScpiError(-109, "empty parameter")
    return Param(text), pos


# --- header patterns ----------------------------------------------------------


def _node_matches(pattern_node: str, typed: str) -> bool:
    short = "".join(c for c in pattern_node if c.isupper() or c.isdigit() or c == "*")
    typed = typed.upper()
    return typed in (short, pattern_node.upper())


def _compile(pattern: str) -> list[tuple[str, bool]]:
    """ "[SOURce]:FREQuency" -> [("SOURce", True), ("FREQuency", False)] (optional flags)."""
    nodes = []
    for raw in re.findall(r"\[:?[^\]]+\]|[^:\[\]]+", pattern):
        optional = raw.startswith("[")
        nodes.append((raw.strip("[]:"), optional))
    return nodes


def _match(nodes: list[tuple[str, bool]], typed: list[str]) -> bool:
    if not nodes:
        return not typed
    (name, optional) = nodes[0]
    if typed and _node_matches(name, typed[0]) and _match(nodes[1:], typed[1:]):
        return True
    return optional and _match(nodes[1:], typed)


def command(pattern: str) -> Callable:
    """Declare a method as the handler of a SCPI header, e.g. ``@command("MEMory:DATA?")``.

    The handler gets the parameter list and returns None (a command), or str/bytes
    (a query's response). ``[nodes]`` are optional; common commands are written as is.
    """

    def mark(function):
        function.scpi_patterns = (*getattr(function, "scpi_patterns", ()), pattern)
        return function

    return mark


@dataclass(frozen=True)
class _Command:
    query: bool
    common: str | None
    nodes: list
    handler: Callable


class ScpiInstrument(UsbtmcDevice):
    """A high-speed USB488 SCPI instrument; subclass it and add :func:`command` handlers."""

    def __init__(self, *, vid: int, pid: int, manufacturer: str, model: str, serial: str, version: str,
                 product: str | None = None, clock: Clock | None = None,
                 capabilities: TmcCapabilities | None = None, speed: Speed = Speed.HIGH) -> None:
        super().__init__(vid=vid, pid=pid, manufacturer=manufacturer, product=product or model, serial=serial,
                         speed=speed, capabilities=capabilities or TmcCapabilities(), interrupt_in=True,
                         clock=clock)
        self.idn = f"{manufacturer},{model},{serial},{version}"
        self.errors: deque[tuple[int, str]] = deque()
        self._commands = self._collect_commands()
        self._power_on()

    # --- the error queue (SCPI-1999 Vol. 2 21.8) ---

    def push_error(self, code: int, detail: str = "") -> None:
        """Queue an error and set its ESR bit (CME -1xx, EXE -2xx, DDE -3xx, QYE -4xx).

        ``detail`` may quote what the host sent: it is kept in printable ASCII (the error
        description of SCPI-1999 Vol. 2 21.8 is ASCII), other characters as escapes.
        """
        text = _printable(ERRORS.get(code, "Error") + (f";{detail}" if detail else ""))
        if len(self.errors) >= ERROR_QUEUE_DEPTH:
            self.errors[-1] = (-350, ERRORS[-350])
        else:
            self.errors.append((code, text))
        bit = {1: EsrBit.CME, 2: EsrBit.EXE, 3: EsrBit.DDE, 4: EsrBit.QYE}.get(-code // 100, EsrBit.DDE)
        self.status.set_event(bit)

    def status_summary_bits(self) -> int:
        bits = super().status_summary_bits()
        if self.errors:
            bits |= StbBit.EAV
        if self._replies:
            bits |= StbBit.MAV
        return bits

    # --- USBTMC hooks ---

    def on_power_on(self) -> None:
        self._power_on()

    def on_message_data(self, chunk: bytes, eom: bool) -> None:
        if len(self._msg) + len(chunk) > MAX_MESSAGE_BYTES:
            self._msg.clear()
            self._overrun = True
        if not self._overrun:
            self._msg += chunk
        if eom:
            if self._overrun:
                self._overrun = False
                self.push_error(-363, f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
                return
            message = bytes(self._msg)
            self._msg.clear()
            self.on_message(message)

    def on_message_aborted(self) -> None:
        self._msg.clear()
        self._overrun = False

    def on_message(self, data: bytes) -> None:
        if self.has_output():
            self.discard_output()  # 488.2 6.3.2.3: the unread answer of the previous query goes
            self.push_error(-410)
        try:
            units = parse_program_message(data)
        except ScpiError as exc:
            self.push_error(exc.code, exc.detail)
            return
        self._replies = []
        path: list[str] = []
        for header, params in units:
            try:
                path = self._execute(header, params, path)
            except ScpiError as exc:
                self.push_error(exc.code, exc.detail)
                if -200 < exc.code <= -100:
                    break  # 488.2 6.1.6: a command error abandons the rest of the message
        replies, self._replies = self._replies, []
        if replies:
            delay_s, self.response_delay_s = self.response_delay_s, 0.0
            self.respond(b";".join(replies) + b"\n", delay_s=delay_s)

    def on_query_error(self) -> None:
        self.push_error(-420)

    def on_trigger(self) -> None:
        self.trigger()

    def on_device_clear(self) -> None:
        self._msg.clear()

    # --- hooks for subclasses ---

    def reset_state(self) -> None:
        """``*RST``: the instrument's own settings to their defaults (488.2 10.32)."""
        self.response_delay_s = 0.0

    def trigger(self) -> None:
        """``*TRG`` and the USB488 TRIGGER message."""

    # --- execution ---

    def _collect_commands(self) -> list[_Command]:
        found = []
        for name in dir(type(self)):
            function = getattr(type(self), name, None)
            for pattern in getattr(function, "scpi_patterns", ()):
                query = pattern.endswith("?")
                body = pattern.rstrip("?")
                common = body.upper() if body.startswith("*") else None
                found.append(_Command(query, common, [] if common else _compile(body.lstrip(":")),
                                      getattr(self, name)))
        return found

    def _execute(self, header: str, params: list[Param], path: list[str]) -> list[str]:
        query = header.endswith("?")
        body = header[:-1] if query else header
        if body.startswith("*"):
            command = next((c for c in self._commands if c.common == body.upper() and c.query == query), None)
            if command is None:
                raise ScpiError(-113, header)
            self._run(command, params)
            return path  # common commands leave the current path alone (488.2 A.1.1)
        absolute = body.startswith(":")
        typed = [node for node in body.lstrip(":").split(":")]
        if not all(typed):
            raise ScpiError(-102, f"empty node in {header!r}")
        candidates = [typed] if absolute or not path else [path + typed, typed]
        for nodes in candidates:
            command = next((c for c in self._commands if c.common is None and c.query == query
                            and _match(c.nodes, nodes)), None)
            if command is not None:
                self._run(command, params)
                return nodes[:-1]
        raise ScpiError(-113, header)

    def _run(self, command: _Command, params: list[Param]) -> None:
        reply = command.handler(params)
        if command.query:
            if reply is None:
                return
            self._replies.append(reply if isinstance(reply, bytes)
                                 else str(reply).encode("ascii", errors="backslashreplace"))

    def _power_on(self) -> None:
        self._msg = bytearray()
        self._overrun = False
        self._replies: list[bytes] = []
        self.errors.clear()
        self.discard_output()
        self.reset_state()
        self.status.esr = EsrBit.PON
        self.status.ese = 0
        self.status.sre = 0
        self.status.rqs = False
        self.status.update()

    # --- 488.2 common commands (section 10) ---

    @staticmethod
    def _no_params(params: list[Param]) -> None:
        if params:
            raise ScpiError(-108)

    @staticmethod
    def _one_param(params: list[Param]) -> Param:
        if not params:
            raise ScpiError(-109)
        if len(params) > 1:
            raise ScpiError(-108)
        return params[0]

    @command("*IDN?")
    def _idn(self, params):
        self._no_params(params)
        return self.idn

    @command("*RST")
    def _rst(self, params):
        self._no_params(params)
        self.reset_state()

    @command("*CLS")
    def _cls(self, params):
        self._no_params(params)
        self.errors.clear()
        self.status.clear()

    @command("*ESE")
    def _ese(self, params):
        self.status.ese = self._one_param(params).as_int(0, 255)
        self.status.update()

    @command("*ESE?")
    def _ese_query(self, params):
        self._no_params(params)
        return str(self.status.ese)

    @command("*ESR?")
    def _esr_query(self, params):
        self._no_params(params)
        return str(self.status.read_esr())

    @command("*SRE")
    def _sre(self, params):
        self.status.sre = self._one_param(params).as_int(0, 255) & ~StbBit.MSS
        self.status.update()

    @command("*SRE?")
    def _sre_query(self, params):
        self._no_params(params)
        return str(self.status.sre)

    @command("*STB?")
    def _stb_query(self, params):
        self._no_params(params)
        return str(self.status.stb())

    @command("*OPC")
    def _opc(self, params):
        self._no_params(params)
        self.status.set_event(EsrBit.OPC)  # no overlapped commands: everything is complete

    @command("*OPC?")
    def _opc_query(self, params):
        self._no_params(params)
        return "1"

    @command("*WAI")
    def _wai(self, params):
        self._no_params(params)

    @command("*TRG")
    def _trg(self, params):
        self._no_params(params)
        self.trigger()

    @command("*TST?")
    def _tst(self, params):
        self._no_params(params)
        return "0"

    @command("SYSTem:ERRor[:NEXT]?")
    def _system_error(self, params):
        self._no_params(params)
        code, text = self.errors.popleft() if self.errors else (0, ERRORS[0])
        self.status.update()
        # 488.2 <STRING RESPONSE DATA>: a double quote inside the string is doubled.
        return '{},"{}"'.format(code, text.replace('"', '""'))

    @command("SYSTem:VERSion?")
    def _system_version(self, params):
        self._no_params(params)
        return "1999.0"


def _printable(text: str) -> str:
    """``text`` in printable ASCII: anything else becomes a backslash escape."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") if c.isascii()
                   else c.encode("ascii", "backslashreplace").decode("ascii") for c in text)


def definite_block(data: bytes) -> bytes:
    """An IEEE 488.2 definite-length arbitrary block, ``#<n><length><data>`` (488.2 8.7.9)."""
    length = str(len(data)).encode("ascii")
    if len(length) > 9:
        raise ValueError("a definite block holds at most 999,999,999 bytes")
    return b"#" + str(len(length)).encode("ascii") + length + data


class VirtualLoopback(ScpiInstrument):
    """A virtual instrument that gives back what it was sent.

    ``MEMory:DATA <block>`` stores a block, ``MEMory:DATA?`` returns it as a definite
    block, ``MEMory:DATA:LENgth?`` its size in bytes. ``SYSTem:DELay <ms>`` holds the
    next response back that long, so a host read can be made to time out.
    """

    def __init__(self, *, serial: str = "LOOP-0001", clock: Clock | None = None, pid: int = LOOPBACK_PID) -> None:
        self.memory = b""
        super().__init__(vid=VID, pid=pid, manufacturer="TMC Console", model="Virtual Loopback", serial=serial,
                         version="1.0", clock=clock)

    def reset_state(self) -> None:
        super().reset_state()
        self.memory = b""

    @command("MEMory:DATA")
    def _memory_data(self, params):
        self.memory = self._one_param(params).as_block()

    @command("MEMory:DATA?")
    def _memory_data_query(self, params):
        self._no_params(params)
        return definite_block(self.memory)

    @command("MEMory:DATA:LENgth?")
    def _memory_length(self, params):
        self._no_params(params)
        return str(len(self.memory))

    @command("SYSTem:DELay")
    def _system_delay(self, params):
        self.response_delay_s = self._one_param(params).as_int(0, 600_000) / 1000.0
