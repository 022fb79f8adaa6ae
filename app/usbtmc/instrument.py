"""A session with one USBTMC/USB488 instrument.

One thread owns an :class:`Instrument` (it is not thread-safe); the only things
another thread may touch are the ``abort`` events passed to long transfers.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NoReturn

from . import framing, ieee488
from .constants import (
    HEADER_BYTES,
    NOTIFY_READ_STATUS_BYTE_FLAG,
    NOTIFY_SRQ,
    REQ_IN_CLASS_ENDPOINT,
    REQ_IN_CLASS_INTERFACE,
    CAPABILITIES_BYTES,
    InterfaceProtocol,
    MsgId,
    Request,
    Status,
)
from .discovery import DeviceInfo, describe_interface, find_device
from .errors import (
    AbortedError,
    DeviceGoneError,
    NotSupportedError,
    ProtocolError,
    TmcError,
    TmcTimeoutError,
)
from .framing import Capabilities
from .quirks import DEFAULTS, QuirkDatabase, Quirks, default_database
from .resource import parse_resource
from .transport import Outcome, StallError, UsbTransport, default_backend, find_endpoints

Progress = Callable[[int, int], None]

# Vendor request used by Advantest/ADCMT instruments to lock/unlock remote control.
_VENDOR_LOCK_REQUEST = 0xA0
_CONTROL_TIMEOUT_MS = 1000
_POLL_INTERVAL_S = 0.005
_MAX_STATUS_POLLS = 200  # PENDING answers tolerated per abort/clear (about 1 s)
_REUSED_FRAME_BYTES = 64 * 1024  # Bulk-OUT frames this large are kept for the next transfer
_FIRST_PACED_TRANSFER_BYTES = 64 * 1024  # with abort_latency_ms: the first transfer, before a rate is known
# Bulk-OUT transfers of one message kept in flight at once where the transport can (libusb):
# the next frame is built and queued while the last one is on the bus. It pays where the
# host's turnaround is a sizeable part of a transfer: over umockdev +21 % at 4 KiB transfers,
# +7 % at 64 KiB, and nothing but a second frame's memory traffic at 1 MiB, so only below this.
_OUT_TRANSFERS_IN_FLIGHT = 2
_OVERLAP_BELOW_BYTES = 256 * 1024


def _short_write_as_timeout(outcome: Outcome, length: int) -> Outcome:
    """A Bulk-OUT outcome that moved fewer than ``length`` bytes: some backends report a timeout that way."""
    if outcome.ok and outcome.count != length:
        return replace(outcome, error=TmcTimeoutError(f"the device took {outcome.count} of {length} bytes"))
    return outcome


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class Instrument:
    """A USBTMC session, opened by VISA resource string.

    ``backend`` is any pyusb backend (None: libusb through libusb-package);
    ``timeout_ms`` bounds each transfer. ``quirks`` overrides the database lookup;
    ``use_quirks=False`` opens the device as if it were compliant.
    """

    def __init__(
        self,
        resource: str,
        backend=None,
        timeout_ms: int = 5000,
        *,
        use_quirks: bool = True,
        quirks: Quirks | None = None,
        quirk_db: QuirkDatabase | None = None,
        write_termination: str = "\n",
        read_termination: str = "\n",
        encoding: str = "utf-8",
    ) -> None:
        self.resource = parse_resource(resource)
        self.timeout_ms = timeout_ms
        self.write_termination = write_termination
        self.read_termination = read_termination
        self.encoding = encoding
        #: TermChar asked for in reads when the device supports it (None: rely on EOM).
        self.term_char: int | None = None
        self._btag = 0
        self._stb_tag = 1
        self._last_out_btag = 0
        # Frames of full-size Bulk-OUT transfers, reused: one per transfer that can be in flight.
        self._out_frames: list[array | None] = [None] * _OUT_TRANSFERS_IN_FLIGHT
        self._srq: deque[int] = deque()
        self._closed = False
        self._remote_on_open = False

        backend = backend if backend is not None else default_backend()
        db = quirk_db if quirk_db is not None else default_database()
        if not use_quirks:
            db = QuirkDatabase()  # as if compliant: no forced class, no firmware-mode switch, no flags
        device, cfg, intf = find_device(self.resource, backend, db)
        self.info: DeviceInfo = describe_interface(device, cfg, intf, probe=False, db=db, strings=None)
        endpoints = find_endpoints(intf)
        if endpoints is None:
            raise ProtocolError(f"{resource}: the USBTMC interface lacks Bulk-IN/Bulk-OUT endpoints")
        self._transport = UsbTransport.open(device, cfg.bConfigurationValue, intf.bInterfaceNumber, endpoints)
        self._ep = endpoints
        self._usb488 = intf.bInterfaceProtocol == InterfaceProtocol.USB488
        try:
            if quirks is not None:
                self.quirks = quirks
            elif use_quirks:
                self.quirks = db.lookup(self.info.vid, self.info.pid, self.info.product or None)
            else:
                self.quirks = DEFAULTS
            self.capabilities = self._get_capabilities()
            self.info = replace(self.info, capabilities=self.capabilities, quirks=self.quirks.applied)
            if self.quirks.clear_on_open and not self.quirks.no_initiate_clear:
                self.clear()
            # Before any query: some devices ignore every message until they are remote.
            if self.quirks.remote_on_open and self.capabilities.ren_control:
                self.remote()
                self._remote_on_open = True
            if use_quirks and quirks is None and db.needs_idn(self.info.vid, self.info.pid):
                idn = self.query("*IDN?")
                self.quirks = db.lookup(self.info.vid, self.info.pid, self.info.product or None, idn)
                self.info = replace(self.info, quirks=self.quirks.applied)
        except BaseException:
            self._transport.close()
            raise

    # --- context manager and lifetime ---

    def __enter__(self) -> Instrument:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the interface. Safe to call twice and after the device is gone."""
        if not self._closed:
            if self._remote_on_open:
                try:
                    self.ren(False)  # give the front panel back (USB488 4.3.2: REN false -> LOCS)
                except TmcError:
                    pass  # gone or refusing: closing goes on regardless
            self._closed = True
            if self.quirks.clear_halt_on_close:
                for endpoint in (self._ep.bulk_out, self._ep.bulk_in):
                    try:
                        self._transport.clear_halt(endpoint)
                    except TmcError:
                        break  # gone or refusing: closing goes on regardless
            self._transport.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceGoneError(f"the session with {self.resource} is closed")

    # --- bTags ---

    def _next_btag(self) -> int:
        self._btag = framing.next_btag(self._btag)
        return self._btag

    def _next_stb_tag(self) -> int:
        # USB488 1.0 section 4.3.1: READ_STATUS_BYTE bTag runs 2..127.
        self._stb_tag = self._stb_tag + 1 if self._stb_tag < 127 else 2
        return self._stb_tag

    # --- control requests ---

    def _control(self, request: Request, value: int, length: int, *, endpoint: int | None = None) -> bytes:
        self._check_open()
        if endpoint is None:
            rtype, index = REQ_IN_CLASS_INTERFACE, self._transport.interface_number
        else:
            rtype, index = REQ_IN_CLASS_ENDPOINT, endpoint
        try:
            reply = self._transport.control_in(rtype, request, value, index, length, _CONTROL_TIMEOUT_MS)
        except StallError:
            raise NotSupportedError(f"the device refused {request.name} (STALL)") from None
        if not reply:
            raise ProtocolError(f"{request.name}: the device sent an empty control reply")
        return reply

    def _simple_request(self, request: Request, value: int = 0) -> None:
        status = self._control(request, value, 1)[0]
        if status != Status.SUCCESS:
            raise ProtocolError(f"{request.name} answered status 0x{status:02X} instead of SUCCESS")

    def _get_capabilities(self) -> Capabilities:
        try:
            reply = self._control(Request.GET_CAPABILITIES, 0, CAPABILITIES_BYTES)
            return framing.parse_capabilities(reply, usb488=self._usb488)
        except (NotSupportedError, ProtocolError):
            # A device with a broken GET_CAPABILITIES still talks; assume nothing optional.
            return Capabilities(bcd_usbtmc=0, indicator_pulse=False, talk_only=False, listen_only=False, term_char=False)

    def indicator_pulse(self) -> None:
        """Blink the device's activity indicator (USBTMC 1.0 section 4.2.1.11)."""
        if not self.capabilities.indicator_pulse:
            raise NotSupportedError("the device does not accept INDICATOR_PULSE (per its capabilities)")
        self._simple_request(Request.INDICATOR_PULSE)

    def _require_ren(self, what: str) -> None:
        if self.quirks.ren_control_broken:
            raise NotSupportedError(f"the device advertises {what} but does not implement it (quirk ren_control_broken)")
        if not self.capabilities.ren_control:
            raise NotSupportedError(f"the device does not accept {what} (per its USB488 capabilities)")

    def remote(self) -> None:
        """Assert REN (USB488 1.0 section 4.3.2): the device goes remote when next addressed."""
        self._require_ren("REN_CONTROL")
        self._simple_request(Request.REN_CONTROL, 1)

    def ren(self, enabled: bool) -> None:
        """Assert or release REN (USB488 1.0 section 4.3.2)."""
        self._require_ren("REN_CONTROL")
        self._simple_request(Request.REN_CONTROL, 1 if enabled else 0)

    def local(self) -> None:
        """GO_TO_LOCAL (USB488 1.0 section 4.3.3): return the front panel to the user."""
        self._require_ren("GO_TO_LOCAL")
        self._simple_request(Request.GO_TO_LOCAL)

    def lockout(self) -> None:
        """LOCAL_LOCKOUT (USB488 1.0 section 4.3.4): disable the front panel's local key."""
        self._require_ren("LOCAL_LOCKOUT")
        self._simple_request(Request.LOCAL_LOCKOUT)

    def read_stb(self) -> int:
        """The status byte through READ_STATUS_BYTE (USB488 1.0 section 4.3.1).

        Unlike ``*STB?`` this leaves the output queue alone. With an interrupt-IN
        endpoint the byte arrives there; SRQ notifications met on the way are kept
        for :meth:`poll_srq`.
        """
        if not self._usb488:
            raise NotSupportedError("READ_STATUS_BYTE needs a USB488 interface")
        for _ in range(3):
            tag = self._next_stb_tag()
            reply = self._control(Request.READ_STATUS_BYTE, tag, 3)
            status = reply[0]
            if status == Status.INTERRUPT_IN_BUSY:
                self._drain_interrupts(timeout_ms=_CONTROL_TIMEOUT_MS)
                continue
            if status != Status.SUCCESS:
                raise ProtocolError(f"READ_STATUS_BYTE answered status 0x{status:02X}")
            if len(reply) < 3 or reply[1] != tag:
                raise ProtocolError(f"READ_STATUS_BYTE reply echoes bTag {reply[1] if len(reply) > 1 else None}, sent {tag}")
            if self._ep.interrupt_in is None:
                return reply[2]
            return self._wait_stb_notification(tag)
        raise ProtocolError("READ_STATUS_BYTE: the interrupt-IN endpoint stayed busy")

    def _wait_stb_notification(self, tag: int) -> int:
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise TmcTimeoutError(
                    "READ_STATUS_BYTE: the status byte never arrived on interrupt-IN",
                    "nothing to abort; the session is usable",
                )
            packet = self._read_interrupt(remaining_ms)
            if packet is None:
                continue
            if packet[0] == NOTIFY_READ_STATUS_BYTE_FLAG | tag:
                return packet[1]
            if packet[0] & NOTIFY_READ_STATUS_BYTE_FLAG and packet[0] != NOTIFY_SRQ:
                continue  # the answer to an older READ_STATUS_BYTE: stale, skip it

    def _read_interrupt(self, timeout_ms: int) -> bytes | None:
        """One interrupt-IN notification, or None when none came in time. SRQs are queued."""
        try:
            packet = self._transport.interrupt_in(max(2, self._ep.interrupt_in_packet_bytes), timeout_ms)
        except TmcTimeoutError:
            return None
        if len(packet) < 2:
            raise ProtocolError(f"interrupt-IN notification of {len(packet)} bytes (USB488 needs 2)")
        if packet[0] == NOTIFY_SRQ:
            self._srq.append(packet[1])
        return packet

    def _drain_interrupts(self, timeout_ms: int = 1) -> None:
        while self._read_interrupt(timeout_ms) is not None:
            timeout_ms = 1

    def poll_srq(self) -> list[int]:
        """Status bytes of the SRQ notifications received so far (USB488 1.0 section 3.4.2).

        Reads the interrupt-IN endpoint without waiting; call it while idle or
        between chunks of a long transfer.
        """
        self._check_open()
        if self._ep.interrupt_in is not None:
            self._drain_interrupts()
        found = list(self._srq)
        self._srq.clear()
        return found

    def wait_srq(self, timeout_ms: int | None = None) -> int:
        """Wait for the next service request and return its status byte."""
        self._check_open()
        if self._ep.interrupt_in is None:
            raise NotSupportedError("the interface has no interrupt-IN endpoint, so it cannot signal SRQ")
        deadline = time.monotonic() + (self.timeout_ms if timeout_ms is None else timeout_ms) / 1000
        while not self._srq:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise TmcTimeoutError("no service request arrived in time")
            self._read_interrupt(remaining_ms)
        return self._srq.popleft()

    @property
    def has_interrupt_in(self) -> bool:
        return self._ep.interrupt_in is not None

    # --- clear and aborts ---

    def clear(self) -> None:
        """Device clear: INITIATE_CLEAR, CHECK_CLEAR_STATUS, then clear the Bulk-OUT halt (USBTMC 1.0 4.2.1.6-7)."""
        if self.quirks.no_initiate_clear:
            raise NotSupportedError(
                "this device hangs on INITIATE_CLEAR (quirk no_initiate_clear), so no device clear is sent"
            )
        status = self._control(Request.INITIATE_CLEAR, 0, 1)[0]
        if status != Status.SUCCESS:
            raise ProtocolError(f"INITIATE_CLEAR answered status 0x{status:02X}")
        for _ in range(_MAX_STATUS_POLLS):
            reply = self._control(Request.CHECK_CLEAR_STATUS, 0, 2)
            if reply[0] == Status.PENDING:
                if len(reply) > 1 and reply[1] & 0x01 and not self.quirks.no_drain_on_clear:
                    self._drain_bulk_in()  # bmClear.D0: the device wants its Bulk-IN FIFO read
                else:
                    time.sleep(_POLL_INTERVAL_S)
                continue
            if reply[0] != Status.SUCCESS:
                raise ProtocolError(f"CHECK_CLEAR_STATUS answered status 0x{reply[0]:02X}")
            break
        else:
            raise TmcTimeoutError("the device clear did not finish", "the device kept answering PENDING")
        self._transport.clear_halt(self._ep.bulk_out)
        if self.quirks.clear_halts_bulk_in:
            self._transport.clear_halt(self._ep.bulk_in)

    def _clear_for_recovery(self) -> str:
        """A device clear to resynchronise after an error; for devices that hang on
        INITIATE_CLEAR, drain Bulk-IN and clear both halts instead."""
        if not self.quirks.no_initiate_clear:
            self.clear()
            return "device clear sent"
        drained = self._drain_bulk_in()
        self._transport.clear_halt(self._ep.bulk_out)
        self._transport.clear_halt(self._ep.bulk_in)
        return f"device clear skipped (quirk no_initiate_clear); {drained} bytes drained and halts cleared"

    def _drain_bulk_in(self, timeout_ms: int = 300) -> int:
        """Read Bulk-IN until a short packet ends the transfer (USBTMC 1.0 section 4.2.1.4)."""
        packet = self._ep.bulk_in_packet_bytes
        drained = 0
        for _ in range(1 << 14):
            try:
                data = self._transport.bulk_in(packet * 64, timeout_ms)
            except TmcTimeoutError:
                return drained
            drained += len(data)
            if len(data) % packet or not data:
                return drained
        return drained

    def _abort_bulk_in(self, btag: int) -> str:
        """The ABORT_BULK_IN sequence with its drain; returns what happened, for messages."""
        reply = self._control(Request.INITIATE_ABORT_BULK_IN, btag, 2, endpoint=self._ep.bulk_in)
        status = reply[0]
        if status == Status.FAILED:
            return "no Bulk-IN transfer was in progress; the session is usable"
        if status == Status.TRANSFER_NOT_IN_PROGRESS:
            done = self._clear_for_recovery()
            return f"Bulk-IN transfer bTag {btag} was not in progress; {done}; the session is usable"
        if status != Status.SUCCESS:
            raise ProtocolError(f"INITIATE_ABORT_BULK_IN answered status 0x{status:02X}")
        # USBTMC 1.0 4.2.1.4: read Bulk-IN until a short packet, then check the status.
        drain = self.quirks.abort_in_drain
        drained = self._drain_bulk_in() if drain else 0
        for _ in range(_MAX_STATUS_POLLS):
            check = self._control(Request.CHECK_ABORT_BULK_IN_STATUS, 0, 8, endpoint=self._ep.bulk_in)
            if check[0] == Status.PENDING:
                if len(check) > 1 and check[1] & 0x01 and drain:
                    drained += self._drain_bulk_in()
                else:
                    time.sleep(_POLL_INTERVAL_S)
                continue
            if check[0] != Status.SUCCESS:
                raise ProtocolError(f"CHECK_ABORT_BULK_IN_STATUS answered status 0x{check[0]:02X}")
            return f"aborted Bulk-IN transfer bTag {btag} ({drained} bytes drained); the session is usable"
        raise ProtocolError("CHECK_ABORT_BULK_IN_STATUS stayed PENDING")

    def _abort_bulk_out(self, btag: int) -> str:
        """The ABORT_BULK_OUT sequence, then clear the Bulk-OUT halt (USBTMC 1.0 4.2.1.2-3)."""
        reply = self._control(Request.INITIATE_ABORT_BULK_OUT, btag, 2, endpoint=self._ep.bulk_out)
        status = reply[0]
        if status == Status.SUCCESS:
            for _ in range(_MAX_STATUS_POLLS):
                check = self._control(Request.CHECK_ABORT_BULK_OUT_STATUS, 0, 8, endpoint=self._ep.bulk_out)
                if check[0] == Status.PENDING:
                    time.sleep(_POLL_INTERVAL_S)
                    continue
                if check[0] != Status.SUCCESS:
                    raise ProtocolError(f"CHECK_ABORT_BULK_OUT_STATUS answered status 0x{check[0]:02X}")
                received = int.from_bytes(check[4:8], "little") if len(check) >= 8 else 0
                self._transport.clear_halt(self._ep.bulk_out)
                return f"aborted Bulk-OUT transfer bTag {btag} after the device took {received} bytes"
            raise ProtocolError("CHECK_ABORT_BULK_OUT_STATUS stayed PENDING")
        if status in (Status.FAILED, Status.TRANSFER_NOT_IN_PROGRESS):
            self._transport.clear_halt(self._ep.bulk_out)
            return f"no Bulk-OUT transfer bTag {btag} was in progress"
        raise ProtocolError(f"INITIATE_ABORT_BULK_OUT answered status 0x{status:02X}")

    def _recover(self, step: Callable[[], str]) -> str:
        """Run a recovery step; if it fails too, say so instead of hiding the first error."""
        try:
            return step()
        except DeviceGoneError:
            raise
        except TmcError as exc:
            return f"recovery failed ({exc}); try a device clear or reopen the session"

    # --- writing ---

    def write_raw(self, data, *, abort: threading.Event | None = None, progress: Progress | None = None) -> None:
        """Send ``data`` (bytes-like) as one message: transfers of at most
        ``quirks.max_out_transfer_bytes`` payload bytes each, EOM on the last only.

        ``abort`` is checked between transfers; ``progress(done_bytes, total_bytes)``
        is called after each one.
        """
        view = memoryview(data).cast("B")
        size = len(view)
        if 0 < size <= self.quirks.max_out_transfer_bytes:
            # One transfer (every command and query): no regrouping needed.
            self._check_open()
            self._send_transfer((view,), size, True, abort)
            if progress is not None:
                progress(size, size)
            return
        self.write_stream((view,), size, abort=abort, progress=progress)

    def write_stream(
        self,
        pieces: Iterable,
        total_bytes: int | None = None,
        *,
        abort: threading.Event | None = None,
        progress: Progress | None = None,
        abort_latency_ms: int | None = None,
    ) -> None:
        """Send the concatenation of ``pieces`` (bytes-like objects) as one message.

        Pieces are regrouped into large transfers without joining the whole
        message in memory, so a 256 MiB waveform can be streamed from a generator.
        ``abort_latency_ms`` bounds how long a set ``abort`` waits: transfers are then
        sized from the rate measured so far to last about that long (at most
        ``quirks.max_out_transfer_bytes``), so a slow instrument can be stopped at once.
        """
        self._check_open()
        chunk = self.quirks.max_out_transfer_bytes
        # A paced upload keeps one transfer in flight, so that a cancel waits for one at most.
        overlap = abort_latency_ms is None and chunk < _OVERLAP_BELOW_BYTES and self.pipelined
        depth = _OUT_TRANSFERS_IN_FLIGHT if overlap else 1
        if abort_latency_ms is not None:
            chunk = self._paced_transfer_bytes(None, abort_latency_ms)
        pending: list[memoryview] = []
        pending_bytes = 0
        done = 0
        sent = 0  # transfers begun
        in_flight: deque = deque()  # (token, btag, size, last, frame length, started at)

        def finish_oldest() -> None:
            nonlocal done, chunk
            token, btag, size, last, length, started = in_flight.popleft()
            outcome = _short_write_as_timeout(self._transport.finish_bulk_out(token), length)
            if not outcome.ok:
                # Later transfers were cancelled with it; abort the newest one that reached the device.
                later = [self._transport.finish_bulk_out(item[0]) for item in in_flight]
                started_btags = [item[1] for item, result in zip(in_flight, later) if result.started]
                in_flight.clear()
                self._raise_out_failure(outcome.error or TmcTimeoutError("cancelled"),
                                        started_btags[-1] if started_btags else btag, size, last and not started_btags)
            if abort_latency_ms is not None:
                rate = size / max(time.perf_counter() - started, 1e-6)
                chunk = min(2 * size, self._paced_transfer_bytes(rate, abort_latency_ms))
            done += size
            if progress is not None:
                progress(done, total_bytes if total_bytes is not None else done + pending_bytes)

        def send(n: int, last: bool) -> None:
            nonlocal pending_bytes, sent
            parts, take = [], n
            while take:
                head = pending[0]
                if len(head) <= take:
                    parts.append(head)
                    pending.pop(0)
                    take -= len(head)
                else:
                    parts.append(head[:take])
                    pending[0] = head[take:]
                    take = 0
            pending_bytes -= n
            if abort is not None and abort.is_set():
                while in_flight:
                    finish_oldest()
                recovery = self._recover(lambda: self._abort_message())
                raise AbortedError(f"the transfer was aborted by the user ({recovery})")
            if len(in_flight) == depth:
                finish_oldest()  # its frame is the one to reuse
            btag = self._next_btag()
            self._last_out_btag = btag
            frame = self._frame(parts, n, last, btag, slot=sent % depth)
            started = time.perf_counter()
            # A transfer queued behind others waits for them on the bus first. Its longer limit
            # delays nothing: the one ahead times out sooner and cancels it.
            token = self._transport.start_bulk_out(frame, self._timeout_for(n) * (1 + len(in_flight)))
            sent += 1
            in_flight.append((token, btag, n, last, len(frame), started))
            if depth == 1:
                finish_oldest()  # one by one: a failure is met before anything else is sent

        try:
            for piece in pieces:
                view = memoryview(piece).cast("B")
                if not len(view):
                    continue
                pending.append(view)
                pending_bytes += len(view)
                while pending_bytes > chunk:  # strictly more: what remains is not the last transfer
                    send(chunk, last=False)
            if pending_bytes == 0 and sent == 0:
                raise ValueError("nothing to send: a USBTMC message carries at least one byte")
            if pending_bytes:
                send(pending_bytes, last=True)
            while in_flight:
                finish_oldest()
        finally:
            # An error from the caller's generator (or ours) must not leave transfers behind.
            for item in list(in_flight):
                self._transport.finish_bulk_out(item[0])

    def _send_transfer(self, parts: list, size: int, last: bool, abort: threading.Event | None) -> None:
        if abort is not None and abort.is_set():
            recovery = self._recover(lambda: self._abort_message())
            raise AbortedError(f"the transfer was aborted by the user ({recovery})")
        btag = self._next_btag()
        self._last_out_btag = btag
        frame = self._frame(parts, size, last, btag)
        try:
            written = self._transport.bulk_out(frame, self._timeout_for(size))
            if written != len(frame):  # a backend may report a timed-out transfer by its short count
                raise TmcTimeoutError(f"the device took {written} of {len(frame)} bytes")
        except (TmcTimeoutError, StallError) as exc:
            self._raise_out_failure(exc, btag, size, last)

    def _frame(self, parts, size: int, last: bool, btag: int, slot: int = 0) -> array:
        """The DEV_DEP_MSG_OUT transfer carrying ``parts`` (``size`` bytes in all), padded to 4 bytes."""
        # Built as an array('B'): pyusb hands an array to the backend as it is, so the
        # payload is copied once (into the frame), not again inside pyusb. Full-size
        # transfers reuse one frame, so a long upload allocates (and page-faults) no
        # memory per transfer.
        length = HEADER_BYTES + size + framing.padding_bytes(size)
        header = framing.dev_dep_msg_out_header(btag, size, eom=last)
        if length < _REUSED_FRAME_BYTES:
            frame = array("B", header)
            for part in parts:
                frame.frombytes(part)
            frame.frombytes(bytes(length - len(frame)))
            return frame
        frame = self._out_frames[slot]
        if frame is None or len(frame) != length:
            frame = self._out_frames[slot] = array("B", bytes(length))
        with memoryview(frame) as view:
            view[:HEADER_BYTES] = header
            at = HEADER_BYTES
            for part in parts:
                view[at:at + len(part)] = part
                at += len(part)
            view[at:] = bytes(length - at)
        return frame

    def _raise_out_failure(self, exc: TmcError, btag: int, size: int, last: bool, then: Callable[[], str] | None = None):
        """Recover from a DEV_DEP_MSG_OUT transfer that timed out or stalled, and raise the error.

        ``then`` is a further recovery step (a read request that went out behind the failed message).
        """
        if isinstance(exc, StallError):
            recovery = self._recover(lambda: self._clear_out_halt())
            raise ProtocolError(f"the device halted its Bulk-OUT endpoint ({recovery})") from None
        if not isinstance(exc, TmcTimeoutError):
            raise exc
        recovery = self._recover(
            lambda: self._abort_bulk_out(btag) + (f"; {then()}" if then else self._discard_partial(last)))
        raise TmcTimeoutError(f"the device did not accept a {size}-byte Bulk-OUT transfer in time", recovery) from None

    def _paced_transfer_bytes(self, rate: float | None, latency_ms: int) -> int:
        """A transfer size that takes about ``latency_ms`` at ``rate`` bytes/s (None: not measured
        yet), in whole packets, between 64 KiB and ``quirks.max_out_transfer_bytes``. The caller
        lets sizes at most double per transfer: a device's input buffer swallows the first
        transfers at once, so early rates overstate what it sustains."""
        most = self.quirks.max_out_transfer_bytes
        packet = self._ep.bulk_out_packet_bytes
        if rate is None:
            wanted = min(most, _FIRST_PACED_TRANSFER_BYTES)
        else:
            wanted = min(most, max(_FIRST_PACED_TRANSFER_BYTES, int(rate * latency_ms / 1000)))
        return max(packet, wanted - wanted % packet) if wanted >= packet else wanted

    def _timeout_for(self, size: int) -> int:
        """The timeout for a transfer of ``size`` bytes, scaled when the quirks give a minimum rate."""
        rate = self.quirks.min_bytes_per_s
        return self.timeout_ms + (size * 1000 // rate if rate else 0)

    def _discard_partial(self, last: bool) -> str:
        if last:
            return "; the session is usable"
        done = self._clear_for_recovery()
        return f"; {done} to discard the partial message; the session is usable"

    def _abort_message(self) -> str:
        """Abort between transfers: stop the last transfer and discard the partial message."""
        text = self._abort_bulk_out(self._last_out_btag) if self._last_out_btag else "nothing sent yet"
        if self._last_out_btag:
            text += f"; {self._clear_for_recovery()} to discard the partial message"
        return text + "; the session is usable"

    def _clear_out_halt(self) -> str:
        self._transport.clear_halt(self._ep.bulk_out)
        return "Bulk-OUT halt cleared; the session is usable"

    def write(self, message: str) -> None:
        """Send a program message, adding the write termination if it is missing."""
        if self.write_termination and not message.endswith(self.write_termination):
            message += self.write_termination
        self.write_raw(message.encode(self.encoding))

    def write_block(self, prefix, payload, *, abort=None, progress: Progress | None = None) -> None:
        """Send ``prefix`` followed by ``payload`` as a definite-length block and the termination.

        The payload is not copied into one big message.
        """
        if isinstance(prefix, str):
            prefix = prefix.encode(self.encoding)
        view = memoryview(payload).cast("B")
        head = bytes(prefix) + ieee488.block_header(len(view))
        tail = self.write_termination.encode(self.encoding)
        total = len(head) + len(view) + len(tail)
        self.write_stream((head, view, tail), total, abort=abort, progress=progress)

    def trigger(self) -> None:
        """The USB488 TRIGGER message (USB488 1.0 section 3.2.1.1)."""
        self._check_open()
        if not self.capabilities.trigger:
            raise NotSupportedError("the device does not accept the USB488 TRIGGER message (per its capabilities)")
        btag = self._next_btag()
        self._last_out_btag = btag
        try:
            self._transport.bulk_out(framing.pack_trigger(btag), self.timeout_ms)
        except TmcTimeoutError:
            recovery = self._recover(lambda: self._abort_bulk_out(btag))
            raise TmcTimeoutError("the device did not accept TRIGGER in time", recovery) from None

    def write_vendor(self, data: bytes) -> None:
        """A VENDOR_SPECIFIC_OUT transfer (USBTMC 1.0 section 3.2.1.2)."""
        self._check_open()
        btag = self._next_btag()
        self._last_out_btag = btag
        try:
            self._transport.bulk_out(framing.pack_vendor_specific_out(btag, bytes(data)), self.timeout_ms)
        except TmcTimeoutError:
            recovery = self._recover(lambda: self._abort_bulk_out(btag))
            raise TmcTimeoutError("the device did not accept VENDOR_SPECIFIC_OUT in time", recovery) from None

    def read_vendor(self, max_bytes: int = 4096) -> bytes:
        """REQUEST_VENDOR_SPECIFIC_IN then one VENDOR_SPECIFIC_IN transfer (USBTMC 1.0 3.3.1.2)."""
        self._check_open()
        btag = self._next_btag()
        self._transport.bulk_out(framing.pack_request_vendor_specific_in(btag, max_bytes), self.timeout_ms)
        header, payload = self._read_transfer(btag, max_bytes, MsgId.VENDOR_SPECIFIC_IN, None)
        return payload

    # --- reading ---

    def read_raw(self, max_bytes: int | None = None, *, abort=None, progress: Progress | None = None) -> bytes:
        """Read one response message (until EOM, or the TermChar when enabled).

        ``max_bytes`` stops early after that many bytes. Works transfer by
        transfer: each REQUEST_DEV_DEP_MSG_IN asks for at most
        ``quirks.max_in_transfer_bytes``.
        """
        self._check_open()
        return self._read_message(max_bytes, abort, progress, None)

    def _active_term_char(self) -> int | None:
        return self.term_char if (self.term_char is not None and self.capabilities.term_char) else None

    def _read_request_size(self, max_bytes: int | None, already: int = 0) -> int:
        most = self.quirks.max_in_transfer_bytes
        return most if max_bytes is None else min(most, max_bytes - already)

    def _read_message(self, max_bytes: int | None, abort, progress: Progress | None,
                      first: tuple[int, int, Outcome] | None) -> bytes:
        """The loop of :meth:`read_raw`; ``first`` is a request already sent with its first read."""
        q = self.quirks
        out = bytearray()
        term_char = self._active_term_char()
        requested = False
        while True:
            if abort is not None and abort.is_set():
                recovery = self._recover(lambda: self._clear_for_recovery() + "; the session is usable")
                raise AbortedError(f"the read was aborted by the user ({recovery})", len(out))
            ask = self._read_request_size(max_bytes, len(out))
            read_done = None
            if first is not None:
                btag, ask, read_done = first
                first, requested = None, True
            elif not (requested and q.single_request_per_reply):
                btag = self._next_btag()
                try:
                    self._transport.bulk_out(framing.pack_request_dev_dep_msg_in(btag, ask, term_char), self.timeout_ms)
                except TmcTimeoutError:
                    self._raise_request_timeout(btag)
                requested = True
            header, payload = self._read_transfer(btag, ask, MsgId.DEV_DEP_MSG_IN, len(out), read_done)
            out += payload
            if progress is not None:
                progress(len(out), 0)
            if header.ended_on_term_char or q.no_eom or q.eom_unreliable:
                break
            if header.eom:
                break
            if max_bytes is not None and len(out) >= max_bytes:
                break
        if q.strip_trailing_nuls:
            return bytes(out).rstrip(b"\x00")
        return bytes(out)

    def _first_read_bytes(self, ask: int) -> int:
        """The buffer of a reply's first Bulk-IN read for a request of ``ask`` bytes."""
        q = self.quirks
        packet = self._ep.bulk_in_packet_bytes
        if q.no_zlp:
            # Without ZLPs a read only completes early on a short packet or a full buffer: one
            # packet always completes, and the rest is read with a buffer sized exactly.
            return packet
        return min(_round_up(HEADER_BYTES + ask + 3, packet), max(packet, _round_up(q.read_buffer_bytes, packet)))

    def _read_transfer(self, btag: int, ask: int, msg_id: int, already: int | None, read_done: Outcome | None = None):
        """One Bulk-IN transfer: header and payload (padding removed).

        The first read uses a small buffer; the rest of the transfer is read with a
        buffer sized from the header's TransferSize (plus room for the ZLP a
        compliant device sends when the transfer fills whole packets). Timeouts
        run the ABORT_BULK_IN sequence before the error is raised.
        """
        q = self.quirks
        packet = self._ep.bulk_in_packet_bytes
        first_buffer = self._first_read_bytes(ask)
        first_of_reply = not already
        try:
            # ``read_done``: this first read already ran in a batch with the request.
            data = read_done.result() if read_done is not None else self._transport.bulk_in(first_buffer, self.timeout_ms)
            if not data:
                # A zero-length packet left over from the previous transfer (a device that
                # ended it on a packet boundary after the host had sized its read exactly).
                data = self._transport.bulk_in(first_buffer, self.timeout_ms)
            try:
                header = framing.parse_in_header(
                    data,
                    expected_btag=None if q.tolerate_stale_btag else btag,
                    expected_msg_id=None if (q.tolerate_bad_first_msgid and first_of_reply) else msg_id,
                )
            except ProtocolError as exc:
                recovery = self._recover(lambda: self._abort_bulk_in(btag))
                raise ProtocolError(f"{exc} ({recovery})") from None
            body = bytearray(data[HEADER_BYTES:])
            if q.transfer_size_unreliable:
                body = self._read_until_short_packet(body, len(data), first_buffer)
                return header, self._strip_padding(bytes(body))
            size = header.transfer_size
            if q.block_length_from_block_header and body[:1] == b"#" and first_of_reply:
                try:
                    block = ieee488.parse_block_header(bytes(body[:12]))
                except ProtocolError:
                    block = None
                if block is not None and block.payload_bytes is not None:
                    size = block.header_bytes + block.payload_bytes
            if q.transfer_size_cap and size == header.transfer_size >= q.transfer_size_cap:
                # The announced size is the device's cap, not the reply's.
                return header, bytes(self._read_capped(body, len(data) == first_buffer))
            if size > ask and not q.header_in_first_transfer_only:
                raise ProtocolError(f"the device announced {size} bytes after {ask} were requested")
            # With a header only in the first transfer, later transfers carry bare data (no padding).
            total = size if q.header_in_first_transfer_only else size + framing.padding_bytes(size)
            last_read, last_buffer = len(data), first_buffer
            while len(body) < size:
                remaining = total - len(body)
                buffer = _round_up(remaining, packet)
                if remaining % packet == 0 and not q.no_zlp:
                    buffer += packet  # room for the zero-length packet that ends the transfer
                more = self._transport.bulk_in(buffer, self._timeout_for(buffer))
                body += more
                last_read, last_buffer = len(more), buffer
                if not more and len(body) < size:
                    raise ProtocolError(f"the transfer ended after {len(body)} of {size} announced bytes")
            if last_read == last_buffer and not q.no_zlp and not q.header_in_first_transfer_only:
                # The transfer filled our buffer exactly, so it ended on a packet boundary and
                # a compliant device follows it with a zero-length packet: consume it.
                self._transport.bulk_in(packet, self.timeout_ms)
        except TmcTimeoutError:
            recovery = self._recover(lambda: self._abort_bulk_in(btag))
            raise TmcTimeoutError("the device did not answer in time", recovery) from None
        except StallError:
            recovery = self._recover(lambda: self._transport.clear_halt(self._ep.bulk_in) or "Bulk-IN halt cleared")
            raise ProtocolError(f"the device halted its Bulk-IN endpoint ({recovery})") from None
        payload = bytes(body[:size])
        return header, self._strip_padding(payload) if q.transfer_size_includes_padding else payload

    def _read_capped(self, body: bytearray, first_read_full: bool) -> bytearray:
        """Read a reply whose TransferSize is capped (quirk ``transfer_size_cap``).

        Such a device sends the reply as transfers of ``cap`` data bytes (only the first
        with a header) and ends it with a shorter one; a transfer that carries more than
        ``cap`` bytes is the whole reply. Each read uses a buffer larger than one transfer,
        so it returns exactly one transfer (ended by its short packet or ZLP).
        """
        cap = self.quirks.transfer_size_cap
        packet = self._ep.bulk_in_packet_bytes
        buffer = _round_up(HEADER_BYTES + cap + 1, packet)
        current = len(body)  # data bytes of the device transfer being read
        if first_read_full:  # the first read stopped at its buffer, inside the first transfer
            more = self._transport.bulk_in(buffer, self.timeout_ms)
            body += more
            current += len(more)
        zlps = 0
        while current == cap:
            more = self._transport.bulk_in(buffer, self.timeout_ms)
            if not more and zlps == 0:
                zlps = 1  # the ZLP after a transfer that filled whole packets
                continue
            body += more
            current, zlps = len(more), 0
        return body

    def _read_until_short_packet(self, body: bytearray, last_read: int, last_buffer: int) -> bytearray:
        """Keep reading until a short packet ends the transfer (for devices whose TransferSize lies)."""
        packet = self._ep.bulk_in_packet_bytes
        while last_read == last_buffer:
            buffer = max(packet, _round_up(self.quirks.read_buffer_bytes, packet))
            more = self._transport.bulk_in(buffer, self.timeout_ms)
            body += more
            last_read, last_buffer = len(more), buffer
        return body

    @staticmethod
    def _strip_padding(payload: bytes) -> bytes:
        """Drop up to three NUL alignment bytes that a device counted as data."""
        trimmed = payload.rstrip(b"\x00")
        return trimmed if len(payload) - len(trimmed) <= 3 else payload[: len(payload) - 3]

    @staticmethod
    def _describe_bad_header(data: bytes) -> str:
        try:
            framing.parse_in_header(data)
        except ProtocolError as exc:
            return str(exc)
        return "unexpected Bulk-IN header"

    def read(self) -> str:
        """Read a response message as text, without its read termination."""
        return self._decode(self.read_raw())

    def _decode(self, data: bytes) -> str:
        text = data.decode(self.encoding, errors="backslashreplace")
        if self.read_termination and text.endswith(self.read_termination):
            text = text[: -len(self.read_termination)]
        return text.rstrip("\r") if self.read_termination == "\n" else text

    def query(self, message: str) -> str:
        """Write ``message`` and read the response as text."""
        if self.write_termination and not message.endswith(self.write_termination):
            message += self.write_termination
        return self._decode(self.query_raw(message.encode(self.encoding)))

    def query_raw(self, data, *, abort=None, progress: Progress | None = None) -> bytes:
        """Write ``data`` as one message and read the response message, as bytes.

        A message that fits one transfer goes out together with the read request
        and the first Bulk-IN read (:meth:`UsbTransport.bulk_batch`): on libusb the
        three transfers then follow each other on the bus with no host round trip in
        between. Devices that answer only while locked (quirk ``vendor_lock_around_query``)
        are locked around the pair.
        """
        locked = self.quirks.vendor_lock_around_query
        if locked:
            self._vendor_lock(True)
        try:
            view = memoryview(data).cast("B")
            if 0 < len(view) <= self.quirks.max_out_transfer_bytes and not self.quirks.no_pipelining:
                self._check_open()
                if abort is not None and abort.is_set():
                    raise AbortedError("the query was aborted by the user before it was sent")
                first = self._send_query(view)
                if progress is not None:
                    progress(len(view), len(view))
                return self._read_message(None, abort, None, first)
            self.write_raw(view, abort=abort, progress=progress)
            return self.read_raw(abort=abort)
        finally:
            if locked:
                self._vendor_lock(False)

    def _send_query(self, view: memoryview) -> tuple[int, int, Outcome]:
        """Send a one-transfer message, the read request and the first read as one batch.

        Returns the request's bTag, the bytes it asked for and the first read's outcome,
        for :meth:`_read_message` to carry on from; failures of the two OUT transfers are
        recovered here as :meth:`write_raw` and :meth:`read_raw` recover them.
        """
        size = len(view)
        message_btag = self._next_btag()
        self._last_out_btag = message_btag
        frame = self._frame((view,), size, True, message_btag)
        ask, term_char = self._read_request_size(None), self._active_term_char()
        request_btag = self._next_btag()
        request = framing.pack_request_dev_dep_msg_in(request_btag, ask, term_char)
        message, sent_request, reply = self._transport.bulk_batch(
            [(frame, self._timeout_for(size)), (request, self.timeout_ms)],
            self._first_read_bytes(ask), self.timeout_ms)
        message = _short_write_as_timeout(message, len(frame))
        if not message.ok:
            # The request queued behind the message may have gone out before it could be cancelled.
            then = (lambda: self._abort_bulk_in(request_btag)) if sent_request.started else None
            self._raise_out_failure(message.error or TmcTimeoutError("cancelled"), message_btag, size, True, then)
        if isinstance(sent_request.error, TmcTimeoutError):
            self._raise_request_timeout(request_btag)
        if sent_request.error is not None:
            raise sent_request.error
        return request_btag, ask, reply

    def _raise_request_timeout(self, btag: int) -> NoReturn:
        """Abort a REQUEST_DEV_DEP_MSG_IN the device did not take in time, and raise the timeout."""
        recovery = self._recover(lambda: self._abort_bulk_out(btag))
        raise TmcTimeoutError("the device did not take the read request in time", recovery) from None

    def read_block(self) -> bytes:
        """Read a response holding one IEEE 488.2 arbitrary block and return its payload."""
        return ieee488.decode_block(self.read_raw())

    def query_block(self, message: str) -> bytes:
        """Write ``message`` and read an arbitrary block response."""
        self.write(message)
        return self.read_block()

    def _vendor_lock(self, lock: bool) -> None:
        self._check_open()
        # Advantest/ADCMT: class-interface IN request 0xA0, wValue 1 locks, 0 unlocks.
        self._transport.control_in(
            REQ_IN_CLASS_INTERFACE, _VENDOR_LOCK_REQUEST, 1 if lock else 0, 0, 1, _CONTROL_TIMEOUT_MS
        )

    @property
    def pipelined(self) -> bool:
        """True when a query's command, read request and first read are submitted together
        (pyusb's libusb 1.0 backend, and no ``no_pipelining`` quirk); else they run one by one."""
        return not self._closed and not self.quirks.no_pipelining and self._transport.pipelines

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Instrument {self.resource} {state}>"
