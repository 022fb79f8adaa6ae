"""The checks: hand-built transfers over one raw session (:class:`_Prober`), each returning
:class:`~.spec.Finding` objects. Checks that learn a deviation note it in ``known`` so later
checks do not trip on it again.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import framing
from ..constants import (
    CAPABILITIES_BYTES,
    HEADER_BYTES,
    NOTIFY_READ_STATUS_BYTE_FLAG,
    USBTMC_CLASS,
    USBTMC_SUBCLASS,
    InterfaceProtocol,
    MsgId,
    Request,
    Status,
)
from ..discovery import DeviceInfo
from ..errors import ProtocolError, TmcError, TmcTimeoutError
from ..framing import Capabilities
from ..link import Link
from ..recovery import Recovery
from ..transport import Endpoints, StallError, TransferError, UsbTransport

from .spec import FAIL, INFO, PASS, SKIP, WARN, Finding

_LADDER = (512, 64, 63, 48)  # request sizes tried when a 1 MiB request gets no answer
_BIG_REQUEST = 1 << 20  # what a compliant host asks for (the core's default)



def _descriptor_findings(intf, endpoints: Endpoints | None, info: DeviceInfo) -> list[Finding]:
    found = []
    problems, flags = [], {}
    if (intf.bInterfaceClass, intf.bInterfaceSubClass) != (USBTMC_CLASS, USBTMC_SUBCLASS):
        problems.append(f"the interface is class 0x{intf.bInterfaceClass:02X}/0x{intf.bInterfaceSubClass:02X}, "
                        "not the USBTMC triple, so no standard host finds it")
        flags["force_usbtmc"] = True
    if endpoints is None:
        problems.append("the Bulk-IN/Bulk-OUT pair is missing")
    else:
        for name, size in (("Bulk-IN", endpoints.bulk_in_packet_bytes), ("Bulk-OUT", endpoints.bulk_out_packet_bytes)):
            legal = {"full (12 Mbit/s)": {8, 16, 32, 64}, "high (480 Mbit/s)": {512}}.get(info.speed)
            if legal is not None and size not in legal:
                problems.append(f"{name} wMaxPacketSize is {size} at {info.speed} speed")
        if intf.bInterfaceProtocol == InterfaceProtocol.USB488 and endpoints.interrupt_in is None:
            problems.append("a USB488 interface without Interrupt-IN cannot signal SRQ")
    observed = "; ".join(problems) or (
        f"class FE/03 protocol {intf.bInterfaceProtocol}; Bulk-OUT 0x{endpoints.bulk_out:02X} and Bulk-IN "
        f"0x{endpoints.bulk_in:02X} ({endpoints.bulk_in_packet_bytes}-byte packets)"
        + (f", Interrupt-IN 0x{endpoints.interrupt_in:02X}" if endpoints.interrupt_in else ""))
    found.append(Finding("descriptors", FAIL if problems else PASS, observed, flags))
    if info.firmware_mode_pid:
        found.append(Finding("descriptors", INFO, f"the instrument was in its firmware-update mode "
                                                  f"(PID 0x{info.firmware_mode_pid:04X}) and was switched"))
    notes = []
    if not info.serial:
        notes.append("the serial number is empty: the resource string has an empty serial field "
                     f"({info.resource}), and two such instruments cannot be told apart")
    found.append(Finding("strings", WARN if notes else PASS, "; ".join(notes) or
                         f"manufacturer {info.manufacturer!r}, product {info.product!r}, serial {info.serial!r}"))
    return found


class Seen(enum.Enum):
    """A deviation one check found that changes how the later checks read the device."""

    STALE_BTAG = "stale_btag"  # the header echoes an older bTag
    STREAM = "stream"  # the reply runs on in transfers without a header, whatever the request size
    TRANSFER_SIZE_INCLUDES_PADDING = "transfer_size_includes_padding"  # TransferSize counts alignment NULs
    TRANSFER_SIZE_UNRELIABLE = "transfer_size_unreliable"  # the transfer carries more than TransferSize says
    NO_EOM = "no_eom"  # EOM is never set: a reply ends when its bytes are in
    NO_ZLP = "no_zlp"  # no zero-length packet after a transfer that fills whole packets


@dataclass
class _Transfer:
    """What one REQUEST_DEV_DEP_MSG_IN brought back."""

    btag: int
    requested: int
    raw: bytes
    elapsed_s: float
    header: framing.InHeader | None = None

    @property
    def data(self) -> bytes:
        return self.raw[HEADER_BYTES:]


class _Prober:
    """The raw session the checks share. Not thread-safe: one probe runs in one thread."""

    def __init__(self, transport: UsbTransport, endpoints: Endpoints, timeout_ms: int, usb488: bool, reopen) -> None:
        self.ep = endpoints
        self.timeout_ms = timeout_ms
        self.usb488 = usb488
        self._reopen = reopen
        self.packet = endpoints.bulk_in_packet_bytes
        # The session's own bTag counters, control requests and recovery sequences.
        self.link = Link(transport, endpoints, usb488=usb488)
        self.recovery = Recovery(self.link, timeout_ms=timeout_ms)
        self.caps: Capabilities | None = None
        self.idn = ""
        self.reply = b""  # the *IDN? reply as it should read
        self.max_request = _BIG_REQUEST
        self.ren_asserted = False
        self.needs_remote = False
        self.dead = False
        self.query_error_made = False
        self.known: set[Seen] = set()  # deviations already reported, so later checks do not trip on them

    def check(self, step: str) -> Callable[[], list[Finding]]:
        """The check that runs the step named ``step`` in :data:`~.spec.STEPS` (after "descriptors",
        which needs no session)."""
        return {
            "capabilities": self._capabilities, "query": self._query, "zlp": self._zlp, "split": self._split,
            "termchar": self._termchar, "reopen_session": self._reopen_session,
            "read_status_byte": self._read_status_byte, "remote_local": self._remote_local,
            "indicator_pulse": self._indicator_pulse, "abort_bulk_out": self._abort_bulk_out,
            "abort_bulk_in": self._abort_bulk_in, "timeout_recovery": self._timeout_recovery,
            "initiate_clear": self._initiate_clear,
        }[step]

    # --- low-level transfers ---

    @property
    def t(self) -> UsbTransport:
        """The claimed interface (replaced when a check reopens the session)."""
        return self.link.transport

    @t.setter
    def t(self, transport: UsbTransport) -> None:
        self.link.transport = transport

    @property
    def btag(self) -> int:
        return self.link.btag

    def next_btag(self) -> int:
        return self.link.next_btag()

    def control(self, request: Request, value: int, length: int, *, endpoint: int | None = None) -> bytes:
        return self.link.control_raw(request, value, length, endpoint=endpoint)

    def write(self, payload: bytes) -> int:
        btag = self.next_btag()
        self.t.bulk_out(framing.pack_dev_dep_msg_out(btag, payload, eom=True), self.timeout_ms)
        return btag

    def request(self, size: int, term_char: int | None = None) -> int:
        btag = self.next_btag()
        self.t.bulk_out(framing.pack_request_dev_dep_msg_in(btag, size, term_char), self.timeout_ms)
        return btag

    def read_device_transfer(self, expected: int) -> tuple[bytes, float]:
        """Read until the device ends its transfer: a buffer with room for ``expected`` bytes
        plus a packet (for the ZLP), continued while the device keeps filling it."""
        buffer = -(-(HEADER_BYTES + expected + 3) // self.packet) * self.packet + self.packet
        started = time.monotonic()
        if Seen.NO_ZLP in self.known:
            # As the cured core reads: one packet, then exactly the rest (no ZLP to wait for).
            raw = bytearray(self.t.bulk_in(self.packet, self.timeout_ms))
            if len(raw) == self.packet:
                size = int.from_bytes(raw[4:8], "little")
                rest = HEADER_BYTES + size + framing.padding_bytes(size) - len(raw)
                if rest > 0:
                    raw += self.t.bulk_in(-(-rest // self.packet) * self.packet, self.timeout_ms)
            return bytes(raw), time.monotonic() - started
        raw = bytearray(self.t.bulk_in(buffer, self.timeout_ms))
        last = len(raw)
        while last == buffer:  # the device sent more than asked for: read on to its short packet
            more = self.t.bulk_in(buffer, self.timeout_ms)
            raw += more
            last = len(more)
        return bytes(raw), time.monotonic() - started

    def transfer(self, size: int, term_char: int | None = None) -> _Transfer:
        btag = self.request(size, term_char)
        raw, elapsed = self.read_device_transfer(size)
        header = None
        if len(raw) >= HEADER_BYTES:
            try:
                header = framing.parse_in_header(raw, expected_btag=None, expected_msg_id=None)
            except ProtocolError:
                header = None
        return _Transfer(btag, size, raw, elapsed, header)

    def stalled(self, elapsed_s: float) -> bool:
        return elapsed_s >= 0.8 * self.timeout_ms / 1000

    def drain(self) -> int:
        """Read Bulk-IN until a short packet (or nothing arrives)."""
        return self.recovery.drain_bulk_in(min(self.timeout_ms, 300))

    def abort_in(self, btag: int) -> str:
        """The ABORT_BULK_IN sequence in its exact order: INITIATE, drain, CHECK."""
        outcome = self.recovery.abort_bulk_in(btag)
        if outcome.initiate_status != Status.SUCCESS:
            return f"INITIATE_ABORT_BULK_IN answered 0x{outcome.initiate_status:02X}"
        if outcome.check_status == Status.PENDING:
            return "CHECK_ABORT_BULK_IN_STATUS stayed PENDING"
        return f"aborted ({outcome.drained_bytes} bytes drained), CHECK answered 0x{outcome.check_status:02X}"

    def resync(self) -> None:
        """After a failed check: abort whatever read may hang, drain, clear both halts."""
        self.recovery.run(lambda: self.abort_in(self.btag), lambda: self.recovery.clear_halt(self.ep.bulk_out),
                          lambda: self.recovery.clear_halt(self.ep.bulk_in), lambda: f"{self.drain()} drained")

    def read_message(self, size: int) -> tuple[bytes, list[_Transfer]]:
        """Read one reply transfer by transfer, ``size`` bytes per request, until EOM."""
        out, transfers = bytearray(), []
        for _ in range(4096):
            transfer = self.transfer(size)
            transfers.append(transfer)
            if transfer.header is None:
                raise ProtocolError(f"a Bulk-IN transfer of {len(transfer.raw)} bytes without a valid header")
            take = transfer.header.transfer_size
            data = transfer.data[:take] if Seen.TRANSFER_SIZE_INCLUDES_PADDING not in self.known else \
                _strip_nuls(transfer.data[:take])
            if Seen.TRANSFER_SIZE_UNRELIABLE in self.known:
                data = _strip_nuls(transfer.data)
            out += data
            if transfer.header.eom or Seen.NO_EOM in self.known:
                return bytes(out), transfers
        raise ProtocolError("no EOM after 4096 transfers")

    def query(self, message: bytes, size: int | None = None) -> bytes:
        self.write(message)
        data, _ = self.read_message(size or self.max_request)
        return data

    def idn_works(self) -> bool:
        try:
            return self.query(b"*IDN?\n").rstrip(b"\x00") == self.reply
        except TmcError:
            self.resync()
            return False

    def finish(self) -> None:
        try:
            if not self.dead and self.caps is not None and self.caps.usb488_2 and self.query_error_made:
                self.query(b"*ESR?\n")  # the deliberate timeout set QYE: leave the register clean
        except TmcError:
            pass
        if self.ren_asserted:
            try:
                self.control(Request.REN_CONTROL, 0, 1)
            except TmcError:
                pass
        self.t.close()

    # --- checks ---

    def _capabilities(self) -> list[Finding]:
        try:
            reply = self.control(Request.GET_CAPABILITIES, 0, CAPABILITIES_BYTES)
        except StallError:
            return [Finding("capabilities", FAIL, "GET_CAPABILITIES was STALLed")]
        try:
            self.caps = framing.parse_capabilities(reply, usb488=self.usb488)
        except ProtocolError as exc:
            return [Finding("capabilities", FAIL, str(exc))]
        claims = [label for label, value in self.caps.describe() if value]
        notes = []
        if self.caps.sr1 and self.ep.interrupt_in is None:
            notes.append("SR1 is claimed without an Interrupt-IN endpoint")
        observed = (f"USBTMC {Capabilities.version(self.caps.bcd_usbtmc)}"
                    + (f", USB488 {Capabilities.version(self.caps.bcd_usb488)}" if self.caps.is_usb488 else "")
                    + "; claims: " + (", ".join(claims) or "nothing optional"))
        return [Finding("capabilities", WARN if notes else PASS, "; ".join(notes + [observed]))]

    def _query(self) -> list[Finding]:
        findings: list[Finding] = []
        first = self._try_query(_BIG_REQUEST)
        if first is None and self.caps is not None and self.caps.ren_control:
            try:
                if self.control(Request.REN_CONTROL, 1, 1)[0] == Status.SUCCESS:
                    self.ren_asserted = True
                    first = self._try_query(_BIG_REQUEST)
                    if first is not None:
                        self.needs_remote = True
                        findings.append(Finding("remote", FAIL, "*IDN? got no answer until REN was asserted",
                                                {"remote_on_open": True}))
            except TmcError:
                pass
        if first is None:
            for size in _LADDER:
                first = self._try_query(size)
                if first is not None:
                    self.max_request = size
                    findings.append(Finding(
                        "request_size", FAIL,
                        f"requests for {_BIG_REQUEST} bytes got no answer; requests for {size} bytes did"
                        + (" (the larger ones tried did not)" if size != _LADDER[0] else ""),
                        {"max_in_transfer_bytes": size}))
                    break
        if first is None:
            self.dead = True
            return findings + [Finding("request_size", FAIL,
                                       "*IDN? got no answer to any request size; the remaining checks need one")]
        if self.max_request == _BIG_REQUEST:
            findings.append(Finding("request_size", PASS, f"answered a request for {_BIG_REQUEST} bytes"))
        findings += self._judge_reply(first)
        second = self._try_query(self.max_request)  # a second query shows a stale bTag
        if second is not None:
            stale = [f for f in self._judge_reply(second) if f.check == "btag" and f.verdict == FAIL]
            if stale and not any(f.check == "btag" and f.verdict == FAIL for f in findings):
                findings = [f for f in findings if f.check != "btag"] + stale
        return findings

    def _try_query(self, size: int) -> list[_Transfer] | None:
        """Write *IDN? and read its transfers with ``size``-byte requests; None when nothing came."""
        try:
            self.write(b"*IDN?\n")
        except TmcTimeoutError:
            self.resync()
            return None
        transfers: list[_Transfer] = []
        for _ in range(64):
            try:
                transfer = self.transfer(size)
            except TmcTimeoutError:
                self.abort_in(self.btag)
                return transfers or None
            transfers.append(transfer)
            header = transfer.header
            if header is None or header.eom or not transfer.data:
                break
            if header.transfer_size > size or header.transfer_size < len(transfer.data) - 3:
                break  # not framed per request: the reply analysis says what happened
        return transfers

    def _judge_reply(self, transfers: list[_Transfer]) -> list[Finding]:
        """MsgID, bTag, TransferSize, padding, EOM and the short packet of one *IDN? reply."""
        findings = []
        first = transfers[0]
        header = first.header
        if header is None:
            inverse = len(first.raw) >= 3 and first.raw[1] ^ 0xFF != first.raw[2]
            return [Finding("btag" if inverse else "msgid", FAIL,
                            "the reply's header is not a USBTMC header (bTagInverse does not match)"
                            if inverse else f"the reply is {len(first.raw)} bytes, shorter than a header")]
        # MsgID
        if header.msg_id != MsgId.DEV_DEP_MSG_IN:
            findings.append(Finding("msgid", FAIL, f"the first transfer's MsgID is {header.msg_id}",
                                    {"tolerate_bad_first_msgid": True}))
        else:
            findings.append(Finding("msgid", PASS, "MsgID 2 (DEV_DEP_MSG_IN)"))
        # bTag
        if header.btag != first.btag:
            self.known.add(Seen.STALE_BTAG)
            findings.append(Finding("btag", FAIL, f"the reply echoes bTag {header.btag} to a request with bTag "
                                                  f"{first.btag} (bTagInverse matches its own bTag)",
                                    {"tolerate_stale_btag": True}))
        else:
            findings.append(Finding("btag", PASS, f"bTag {first.btag} echoed with its inverse"))
        # Everything the transfers carried, and what their headers said.
        data = first.data
        size = header.transfer_size
        text = data[:size].rstrip(b"\x00")
        full = bytes(data)
        stream = b""
        if size > len(data):  # more announced than this transfer held: is the rest coming header-less?
            stream = self._read_stream(size - len(data))
        if size > first.requested:
            findings.append(Finding("transfer_size", FAIL,
                                    f"TransferSize {size} exceeds the {first.requested} bytes requested",
                                    {"header_in_first_transfer_only": True}))
        elif stream and len(data) + len(stream) >= size:
            self.known.add(Seen.STREAM)
            findings.append(Finding("transfer_size", FAIL,
                                    f"TransferSize {size}, but this transfer held {len(data)} bytes and the rest "
                                    "came in further transfers without a header",
                                    {"header_in_first_transfer_only": True, "single_request_per_reply": True,
                                     "eom_unreliable": True}))
        else:
            verdicts = [self._judge_size(t) for t in transfers if t.header is not None]
            worst = next((v for v in verdicts if v.verdict == FAIL), verdicts[0])
            findings.append(worst)
            if "transfer_size_unreliable" in worst.flags:
                text = full.rstrip(b"\x00")
        # Padding
        if Seen.STREAM in self.known or size > first.requested:
            findings.append(Finding("padding", SKIP, "not framed per transfer"))
        elif (HEADER_BYTES + len(data)) % 4:
            findings.append(Finding("padding", FAIL, f"the transfer is {HEADER_BYTES + len(data)} bytes long"))
        else:
            pad = len(data) - min(size, len(data))
            findings.append(Finding("padding", PASS, f"{pad} alignment byte{'s' if pad != 1 else ''} to a "
                                                     "multiple of 4" if pad else "no alignment bytes needed"))
        # EOM: the whole reply is in; is it marked?
        reply = text + stream
        last = transfers[-1].header
        if Seen.STREAM in self.known:
            findings.append(Finding("eom", WARN if header.eom else FAIL,
                                    "EOM is set on a transfer that does not hold the end of the message"
                                    if header.eom else "EOM is never set"))
        elif len(transfers) == 1 and not header.eom:
            # The next request shows whether more was to come.
            try:
                extra = self.transfer(self.max_request)
                more = extra.data[: extra.header.transfer_size] if extra.header else extra.raw
            except TmcTimeoutError:
                self.abort_in(self.btag)
                more = None
            if more:
                reply += more
                findings.append(Finding("eom", PASS, "the reply continued in a second transfer with EOM"))
            else:
                self.known.add(Seen.NO_EOM)
                findings.append(Finding("eom", FAIL, "EOM is not set, and a further request got no data",
                                        {"no_eom": True}))
        elif last is not None and last.eom:
            findings.append(Finding("eom", PASS, "EOM set on the last transfer"))
        else:
            findings.append(Finding("eom", FAIL, "the reply ended without EOM"))
        # Multi-transfer replies (small requests): join them.
        if len(transfers) > 1 and Seen.STREAM not in self.known:
            reply = b"".join(t.data[: t.header.transfer_size] for t in transfers if t.header).rstrip(b"\x00")
        # The short packet
        if self.stalled(first.elapsed_s) and len(first.raw) % self.packet == 0:
            self.known.add(Seen.NO_ZLP)
            findings.append(Finding("zlp", FAIL, f"a {len(first.raw)}-byte transfer ends on a packet boundary and "
                                                 "no zero-length packet followed: the read waited for the whole "
                                                 "timeout", {"no_zlp": True}))
        if not self.reply:
            self.reply = reply
            self.idn = reply.decode("utf-8", "backslashreplace").strip()
        return findings

    def _judge_size(self, transfer: _Transfer) -> Finding:
        data, size = transfer.data, transfer.header.transfer_size
        extra = len(data) - size
        message = data[:size]
        if 0 <= extra <= 3 and not any(data[size:]):
            trailing = len(message) - len(message.rstrip(b"\x00"))
            if extra == 0 and size % 4 == 0 and 0 < trailing <= 3 and (HEADER_BYTES + size) % 4 == 0 \
                    and (HEADER_BYTES + size - trailing) % 4:
                self.known.add(Seen.TRANSFER_SIZE_INCLUDES_PADDING)
                return Finding("transfer_size", FAIL, f"TransferSize {size} counts {trailing} NUL alignment "
                                                      "bytes as message bytes",
                               {"transfer_size_includes_padding": True})
            return Finding("transfer_size", PASS, f"TransferSize {size} = the message bytes sent")
        if extra > 0:
            self.known.add(Seen.TRANSFER_SIZE_UNRELIABLE)
            return Finding("transfer_size", FAIL, f"TransferSize {size}, but the transfer carried {len(data)} bytes "
                                                  f"({_printable(data[size:])} beyond it)",
                           {"transfer_size_unreliable": True})
        return Finding("transfer_size", FAIL, f"TransferSize {size}, but the transfer ended after {len(data)} bytes")

    def _read_stream(self, wanted: int) -> bytes:
        """Data that follows a header transfer without a new request (a Rigol-style stream)."""
        got = bytearray()
        while len(got) < wanted:
            try:
                more = self.t.bulk_in(-(-(wanted - len(got)) // self.packet) * self.packet + self.packet,
                                      min(self.timeout_ms, 300))
            except TmcTimeoutError:
                break
            if not more:
                continue
            got += more
        return bytes(got[:wanted])

    def _zlp(self) -> list[Finding]:
        if Seen.NO_ZLP in self.known:
            return []
        if Seen.STREAM in self.known:
            return [Finding("zlp", SKIP, "the device ignores the request size, so no transfer can be sized")]
        want = self.packet - HEADER_BYTES  # a transfer of exactly one packet
        if self.max_request < want:
            return [Finding("zlp", SKIP, f"requests are limited to {self.max_request} bytes, less than a packet")]
        message, reply = b"*IDN?\n", self.reply
        if len(reply) < want:
            copies = -(-want // max(1, len(reply) + 1))
            if not (self.caps and self.caps.usb488_2) or copies > 16:
                return [Finding("zlp", SKIP, f"the *IDN? reply ({len(reply)} bytes) is shorter than the {want} "
                                             "bytes needed to fill a packet")]
            message = b";".join([b"*IDN?"] * copies) + b"\n"
        self.write(message)
        transfer = self.transfer(want)
        self._finish_reply(transfer)
        if transfer.header is None or transfer.header.transfer_size != want:
            return [Finding("zlp", SKIP, "the device did not send a transfer of exactly one packet")]
        if self.stalled(transfer.elapsed_s):
            self.known.add(Seen.NO_ZLP)
            return [Finding("zlp", FAIL, f"after a transfer of exactly {self.packet} bytes no zero-length packet "
                                         "came: the read waited for the whole timeout", {"no_zlp": True})]
        return [Finding("zlp", PASS, f"a {self.packet}-byte transfer was ended by a zero-length packet")]

    def _finish_reply(self, last: _Transfer) -> None:
        """Read whatever is left of the current reply (requests until EOM), ignoring it."""
        if last.header is not None and last.header.eom:
            return
        for _ in range(256):
            try:
                transfer = self.transfer(self.max_request)
            except TmcTimeoutError:
                self.abort_in(self.btag)
                return
            if transfer.header is None or transfer.header.eom or Seen.NO_EOM in self.known:
                return

    def _split(self) -> list[Finding]:
        size = 7  # 12 + 7 bytes: every transfer needs an alignment byte
        self.write(b"*IDN?\n")
        pieces, findings = [], []
        for index in range(len(self.reply) // size + 4):
            try:
                transfer = self.transfer(size)
            except TmcTimeoutError:
                self.abort_in(self.btag)
                findings.append(Finding("split", FAIL, f"request {index + 1} for {size} bytes got no answer"))
                break
            header = transfer.header
            if header is None:
                findings.append(Finding("split", FAIL, f"transfer {index + 1} has no valid header",
                                        {"header_in_first_transfer_only": True}))
                break
            counted = transfer.data[size:header.transfer_size]
            if size < header.transfer_size <= size + 3 and not any(counted) \
                    and (HEADER_BYTES + header.transfer_size) % 4 == 0:
                if Seen.TRANSFER_SIZE_INCLUDES_PADDING not in self.known:
                    self.known.add(Seen.TRANSFER_SIZE_INCLUDES_PADDING)
                    findings.append(Finding("transfer_size", FAIL,
                                            f"asked for {size} bytes, TransferSize {header.transfer_size} counts "
                                            f"{len(counted)} NUL alignment bytes as message bytes",
                                            {"transfer_size_includes_padding": True}))
                pieces.append(transfer.data[:size])
                if header.eom:
                    break
                continue
            if header.transfer_size > size:
                self.drain()
                return [Finding("split", FAIL, f"asked for {size} bytes, the device announced "
                                               f"{header.transfer_size} and sent "
                                               f"{len(transfer.data)}: it ignores the request size",
                                {"header_in_first_transfer_only": True, "single_request_per_reply": True})]
            if index and transfer.data[:header.transfer_size] == self.reply[:header.transfer_size] \
                    and len(self.reply) > 2 * size:
                self.drain()
                return [Finding("split", FAIL, "the second request restarted the reply from its first byte",
                                {"single_request_per_reply": True})]
            pieces.append(transfer.data[:header.transfer_size])
            if header.eom or Seen.NO_EOM in self.known and len(b"".join(pieces)) >= len(self.reply):
                break
        joined = b"".join(pieces)
        if findings and findings[-1].check == "split":
            return findings
        if joined.rstrip(b"\x00") == self.reply:
            return findings + [Finding("split", PASS, f"{len(pieces)} transfers of at most {size} bytes, EOM on "
                                                      "the last, joined to the whole reply")]
        return findings + [Finding("split", FAIL, f"{len(pieces)} transfers of at most {size} bytes joined to "
                                                  f"{_printable(joined)} instead of the reply")]

    def _termchar(self) -> list[Finding]:
        if not (self.caps and self.caps.term_char):
            return [Finding("termchar", SKIP, "TermChar is not claimed")]
        cut = self.reply.find(b",")
        if cut < 0:
            return [Finding("termchar", SKIP, "the reply holds no ',' to end a transfer on")]
        self.write(b"*IDN?\n")
        transfer = self.transfer(self.max_request, term_char=ord(","))
        header = transfer.header
        self._finish_reply(transfer)
        expected = self.reply[: cut + 1]
        if header and header.ended_on_term_char and transfer.data[: header.transfer_size] == expected:
            return [Finding("termchar", PASS, f"the transfer ended after the first ',' ({len(expected)} bytes) "
                                              "with bmTransferAttributes.D1 set")]
        got = transfer.data[: header.transfer_size] if header else transfer.raw
        return [Finding("termchar", FAIL, f"with TermChar ',' the transfer held {_printable(got)}"
                                          + ("" if header and header.ended_on_term_char else ", D1 clear"))]

    def _reopen_session(self) -> list[Finding]:
        """Close without clearing halts, open again: does the first query work?"""
        self.t.close()
        self.t = self._reopen()
        self.control(Request.GET_CAPABILITIES, 0, CAPABILITIES_BYTES)
        if self.ren_asserted:
            self.control(Request.REN_CONTROL, 1, 1)
        try:
            ok = self.query(b"*IDN?\n").rstrip(b"\x00") == self.reply
            error = "" if ok else "the reply differed"
        except (StallError, TransferError) as exc:
            ok, error = False, str(exc)
        except TmcError as exc:
            ok, error = False, str(exc)
        if ok:
            return [Finding("reopen", PASS, "the first query of a new session works")]
        # Cure: clear both halts, close, open again.
        for endpoint in (self.ep.bulk_out, self.ep.bulk_in):
            self.recovery.clear_halt(endpoint)
        self.drain()
        self.t.close()
        self.t = self._reopen()
        self.control(Request.GET_CAPABILITIES, 0, CAPABILITIES_BYTES)
        if self.ren_asserted:
            self.control(Request.REN_CONTROL, 1, 1)
        cured = self.idn_works()
        return [Finding("reopen", FAIL, f"the first query of a new session failed ({error})"
                        + ("; after the previous session cleared both bulk halts it worked" if cured else ""),
                        {"clear_halt_on_close": True} if cured else {})]

    def _read_status_byte(self) -> list[Finding]:
        if not self.usb488:
            return [Finding("read_status_byte", SKIP, "not a USB488 interface")]
        tag = self.link.next_stb_tag()
        try:
            reply = self.control(Request.READ_STATUS_BYTE, tag, 3)
        except StallError:
            return [Finding("read_status_byte", FAIL, "READ_STATUS_BYTE was STALLed")]
        if reply[0] != Status.SUCCESS or len(reply) < 3 or reply[1] != tag:
            return [Finding("read_status_byte", FAIL, f"the control reply is {reply.hex(' ')} for bTag {tag}")]
        if self.ep.interrupt_in is None:
            return [Finding("read_status_byte", PASS, f"STB 0x{reply[2]:02X} in the control reply, bTag {tag} echoed")]
        try:
            packet = self.t.interrupt_in(max(2, self.ep.interrupt_in_packet_bytes), self.timeout_ms)
        except TmcTimeoutError:
            return [Finding("read_status_byte", FAIL, "no notification arrived on Interrupt-IN")]
        if len(packet) >= 2 and packet[0] == NOTIFY_READ_STATUS_BYTE_FLAG | tag:
            return [Finding("read_status_byte", PASS, f"STB 0x{packet[1]:02X} on Interrupt-IN as "
                                                      f"[0x{packet[0]:02X}, 0x{packet[1]:02X}], bTag {tag} matched")]
        return [Finding("read_status_byte", FAIL, f"Interrupt-IN brought {packet.hex(' ')} for bTag {tag}")]

    def _remote_local(self) -> list[Finding]:
        if not (self.caps and self.caps.ren_control):
            return [Finding("remote_local", SKIP, "REN_CONTROL/GO_TO_LOCAL/LOCAL_LOCKOUT are not claimed")]
        results = []
        for request, value in ((Request.REN_CONTROL, 1), (Request.GO_TO_LOCAL, 0), (Request.LOCAL_LOCKOUT, 0),
                               (Request.REN_CONTROL, 0 if not self.needs_remote else 1)):
            try:
                status = self.control(request, value, 1)[0]
                results.append((request.name, f"0x{status:02X}" if status != Status.SUCCESS else "SUCCESS"))
            except StallError:
                results.append((request.name, "STALL"))
        self.ren_asserted = self.needs_remote
        bad = [f"{name} {what}" for name, what in results if what != "SUCCESS"]
        if bad:
            return [Finding("remote_local", FAIL, "claimed in GET_CAPABILITIES, but " + ", ".join(bad),
                            {"ren_control_broken": True})]
        return [Finding("remote_local", PASS, "REN_CONTROL, GO_TO_LOCAL, LOCAL_LOCKOUT and the REN release "
                                              "answered SUCCESS")]

    def _indicator_pulse(self) -> list[Finding]:
        if not (self.caps and self.caps.indicator_pulse):
            return [Finding("indicator_pulse", SKIP, "INDICATOR_PULSE is not claimed")]
        try:
            status = self.control(Request.INDICATOR_PULSE, 0, 1)[0]
        except StallError:
            return [Finding("indicator_pulse", FAIL, "INDICATOR_PULSE was STALLed although claimed")]
        return [Finding("indicator_pulse", PASS if status == Status.SUCCESS else FAIL, f"answered 0x{status:02X}")]

    def _abort_bulk_out(self) -> list[Finding]:
        # A transfer announcing "*IDN?\n" of which only "*ID" arrives: in progress, never executed.
        btag = self.next_btag()
        frame = framing.dev_dep_msg_out_header(btag, 6, eom=True) + b"*ID"
        self.t.bulk_out(frame, self.timeout_ms)
        outcome = self.recovery.abort_bulk_out(btag)
        notes = [f"INITIATE_ABORT_BULK_OUT answered 0x{outcome.initiate_status:02X}"]
        ok = outcome.aborted
        if outcome.initiate_status == Status.SUCCESS and outcome.check_status is not None:
            notes.append(f"CHECK_ABORT_BULK_OUT_STATUS 0x{outcome.check_status:02X}, NBYTES_RXD {outcome.count_bytes}")
        works = self.idn_works()
        notes.append("the next query worked" if works else "the next query failed")
        return [Finding("abort_bulk_out", PASS if ok and works else FAIL, "; ".join(notes))]

    def _abort_bulk_in(self) -> list[Finding]:
        self.write(b"*IDN?\n")
        btag = self.request(self.max_request)
        time.sleep(0.01)  # let the reply reach the FIFO: the transfer is then in progress
        outcome = self.abort_in(btag)
        works = self.idn_works()
        ok = outcome.startswith("aborted") and outcome.endswith("0x01") and works
        return [Finding("abort_bulk_in", PASS if ok else FAIL,
                        f"INITIATE, drain, CHECK: {outcome}; the next query "
                        + ("worked" if works else "failed"))]

    def _timeout_recovery(self) -> list[Finding]:
        # A read request with nothing to answer: the read times out (488.2 devices note QYE).
        btag = self.request(self.max_request)
        self.query_error_made = True
        try:
            raw, _ = self.read_device_transfer(self.max_request)
            self.drain()
            return [Finding("timeout_recovery", WARN, f"a read request without a query was answered with "
                                                      f"{_printable(raw[HEADER_BYTES:])}")]
        except TmcTimeoutError:
            pass
        outcome = self.abort_in(btag)
        works = self.idn_works()
        return [Finding("timeout_recovery", PASS if works else FAIL,
                        f"the read timed out as it should; ABORT_BULK_IN: {outcome}; the next query "
                        + ("worked" if works else "failed"))]

    def _initiate_clear(self) -> list[Finding]:
        outcome = self._clear(drain=False)
        if outcome == "hung":
            self.dead = True
            return [Finding("initiate_clear", FAIL, "INITIATE_CLEAR was never answered; the instrument stopped "
                                                    "answering (replug it)",
                            {"no_initiate_clear": True, "clear_on_open": False})]
        if outcome == "pending":
            self.dead = True
            return [Finding("initiate_clear", FAIL, "CHECK_CLEAR_STATUS stayed PENDING; the clear never finished",
                            {"no_initiate_clear": True, "clear_on_open": False})]
        if outcome.startswith("status"):
            return [Finding("initiate_clear", FAIL, f"INITIATE_CLEAR answered {outcome}",
                            {"no_initiate_clear": True, "clear_on_open": False})]
        findings = []
        if self.idn_works():
            findings.append(Finding("initiate_clear", PASS, f"the clear finished ({outcome}); the next query worked"))
        else:
            self._clear(drain=False)
            self.recovery.clear_halt(self.ep.bulk_in)
            cured = self.idn_works()
            findings.append(Finding("initiate_clear", FAIL,
                                    "the first reply after the clear was lost"
                                    + ("; clearing the Bulk-IN halt after the clear cures it" if cured else ""),
                                    {"clear_halts_bulk_in": True} if cured else {}))
        if outcome == "done without the drain":
            # It asked for a Bulk-IN read it did not need. Does the read hurt?
            if self._clear(drain=True) == "pending":
                self.dead = True
                findings.append(Finding("initiate_clear", FAIL,
                                        "CHECK_CLEAR_STATUS asks for the Bulk-IN read (bmClear.D0), but after that "
                                        "read the clear never finishes; without it the clear completes",
                                        {"no_drain_on_clear": True}))
        return findings

    def _clear(self, drain: bool) -> str:
        """INITIATE_CLEAR and CHECK_CLEAR_STATUS; without ``drain`` the Bulk-IN read waits a few polls."""
        try:
            outcome = self.recovery.device_clear(drain_after_asks=0 if drain else 3)
        except TmcTimeoutError:
            return "hung"
        if outcome.initiate_status != Status.SUCCESS:
            return f"status 0x{outcome.initiate_status:02X}"
        if outcome.check_status == Status.PENDING:
            return "pending"
        if not outcome.finished:
            return f"status 0x{outcome.check_status:02X}"
        return "done without the drain" if outcome.drain_asks else "done"



def _strip_nuls(data: bytes) -> bytes:
    trimmed = data.rstrip(b"\x00")
    return trimmed if len(data) - len(trimmed) <= 3 else data[: len(data) - 3]


def _printable(data: bytes, limit: int = 40) -> str:
    text = repr(bytes(data[:limit]))
    return text + ("..." if len(data) > limit else "")
