"""A session with one USBTMC/USB488 instrument.

One thread owns an :class:`Instrument` (it is not thread-safe); the only things
another thread may touch are the ``abort`` events passed to long transfers.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

from . import framing, ieee488
from .constants import (
    CAPABILITIES_BYTES,
    NOTIFY_READ_STATUS_BYTE_FLAG,
    NOTIFY_SRQ,
    REQ_IN_CLASS_INTERFACE,
    MsgId,
    Request,
    Status,
)
from .discovery import DeviceInfo, OpenedInterface, open_interface
from .errors import (
    AbortedError,
    DeviceGoneError,
    NotSupportedError,
    ProtocolError,
    TmcError,
    TmcTimeoutError,
    UsageError,
)
from .framing import Capabilities
from .link import CONTROL_TIMEOUT_MS, Link
from .quirks import DEFAULTS, QuirkDatabase, Quirks, default_database
from .reader import MessageReader
from .recovery import Recovery, RecoveryReport
from .resource import Resource, parse_resource
from .trace import MESSAGE_CAP_BYTES, Recorder, SessionTrace
from .transport import Outcome, StallError
from .text import TextMessages
from .writer import MessageWriter, short_write_as_timeout

Progress = Callable[[int, int], None]

# Vendor request used by Advantest/ADCMT instruments to lock/unlock remote control.
_VENDOR_LOCK_REQUEST = 0xA0
#: Transfers of large messages get this much more time per byte when the quirks give no
#: rate of their own (``min_bytes_per_s``): a slow full-speed instrument still takes a
#: megabyte within the timeout plus 4 s, and a hung one is found no later than that.
DEFAULT_MIN_BYTES_PER_S = 250_000
_UNTRACED = contextlib.nullcontext()


def open_instrument(resource: str | Resource, backend=None, timeout_ms: int = 5000, **options) -> Instrument:
    """A session with the instrument ``resource`` names, on ``backend`` (any pyusb backend;
    None: libusb through libusb-package). ``options`` are :class:`Instrument`'s."""
    return Instrument(resource, backend, timeout_ms, **options)


class Instrument(TextMessages):
    """A USBTMC session on a claimed interface.

    ``interface`` is an :class:`~app.usbtmc.discovery.OpenedInterface` (from
    :func:`~app.usbtmc.discovery.open_interface`; the session takes over its transport and
    closes it, also when the session fails to start), or a VISA resource string, which is found and opened on ``backend`` (any pyusb
    backend; None: libusb through libusb-package) exactly as :func:`open_instrument` does.
    ``timeout_ms`` bounds each transfer. ``quirks`` overrides the database lookup;
    ``use_quirks=False`` opens the device as if it were compliant. ``trace`` is an I/O
    trace :class:`~app.usbtmc.trace.Recorder` that records every transfer of the session.
    ``clear_on_open=False`` skips the device clear that opening runs (quirk ``clear_on_open``),
    so a reply or status an earlier session left behind can still be read.
    """

    # Why a resource string is still accepted here rather than only through open_instrument or
    # a classmethod: the console's worker, the CLI, the bench, the scripts in the docs and most
    # tests open by name, and nothing is gained by making each of them spell it differently.
    # Finding and claiming are open_interface's; this constructor only composes a session on
    # the transport it is given, so a caller that must shape the transport (a test wrapping
    # its transfers) builds the OpenedInterface itself and never reaches into the session.

    def __init__(
        self,
        interface: OpenedInterface | str | Resource,
        backend=None,
        timeout_ms: int = 5000,
        *,
        use_quirks: bool = True,
        quirks: Quirks | None = None,
        quirk_db: QuirkDatabase | None = None,
        write_termination: str = "\n",
        read_termination: str = "\n",
        encoding: str = "utf-8",
        trace: Recorder | None = None,
        clear_on_open: bool = True,
    ) -> None:
        db = quirk_db if quirk_db is not None else default_database()
        if not use_quirks:
            db = QuirkDatabase()  # as if compliant: no forced class, no firmware-mode switch, no flags
        if isinstance(interface, OpenedInterface):
            if backend is not None:
                interface.transport.close()  # taken over: closed whenever the session does not start
                raise UsageError("an opened interface already has its backend; pass backend only with a resource string")
        else:
            resource = interface if isinstance(interface, Resource) else parse_resource(interface)
            if not 0 < int(timeout_ms):  # refused before the device is claimed
                raise UsageError(f"a timeout must be at least 1 ms, got {timeout_ms}")
            interface = open_interface(resource, backend, db)
        self.resource: Resource = interface.resource
        try:
            self.timeout_ms = timeout_ms
        except UsageError:
            interface.transport.close()
            raise
        self.write_termination = write_termination
        self.read_termination = read_termination
        self.encoding = encoding
        self._term_char: int | None = None
        self._srq: deque[int] = deque()
        self._notes: list[str] = []
        self._closed = False
        self._remote_on_open = False
        self.capabilities: Capabilities | None = None

        self.info: DeviceInfo = interface.info
        self._transport = interface.transport
        self._ep = endpoints = interface.transport.endpoints
        self._usb488 = interface.usb488
        self._link = Link(self._transport, endpoints, usb488=self._usb488)
        self._trace: SessionTrace | None = None
        try:
            if trace is not None:
                self._trace = trace.open_session(
                    str(self.resource), bus=self.info.bus or 1, address=self.info.address or 1,
                    interface_number=self.info.interface_number,
                    bulk_in_packet_bytes=endpoints.bulk_in_packet_bytes, timeout_ms=timeout_ms)
                self._transport.start_trace(self._trace)
                self._trace.opening = True
            if quirks is not None:
                initial = quirks
            elif use_quirks:
                initial = db.lookup(self.info.vid, self.info.pid, self.info.product or None)
            else:
                initial = DEFAULTS
            self._quirks = initial
            self._recovery = Recovery.for_quirks(self._link, initial, timeout_ms)
            self._reader = MessageReader(self._link, self._recovery, self)
            self._writer = MessageWriter(self._link, self._recovery, self)
            self.capabilities = self._get_capabilities()
            self.info = replace(self.info, capabilities=self.capabilities, quirks=self.quirks.applied)
            if clear_on_open and self.quirks.clear_on_open and not self.quirks.no_initiate_clear:
                self.clear()
            # Before any query: some devices ignore every message until they are remote.
            if self.quirks.remote_on_open and self.capabilities.ren_control:
                self.remote()
                self._remote_on_open = True
            if use_quirks and quirks is None and db.needs_idn(self.info.vid, self.info.pid):
                idn = self.query("*IDN?")
                self.quirks = db.lookup(self.info.vid, self.info.pid, self.info.product or None, idn)
                self.info = replace(self.info, quirks=self.quirks.applied)
            if self._trace is not None:
                self._trace.opening = False
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

    def cancel_transfers(self) -> None:
        """Cancel the transfer in flight and fail every later one at once with
        :class:`AbortedError` (see :meth:`UsbTransport.cancel`); :meth:`close` still releases
        the interface. Thread-safe: for another thread ending a session that is stuck in a
        transfer, which the abort flags (read between transfers) cannot reach."""
        self._transport.cancel()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceGoneError(f"the session with {self.resource} is closed")

    # --- settings the reader, writer and recovery follow ---

    @property
    def quirks(self) -> Quirks:
        """The quirks applied to this session (replacing them reconfigures its recovery)."""
        return self._quirks

    @quirks.setter
    def quirks(self, value: Quirks) -> None:
        self._quirks = value
        self._recovery = Recovery.for_quirks(self._link, value, self._timeout_ms)
        self._reader.recovery = self._writer.recovery = self._recovery
        if value.no_zlp:
            self._reader.zlp.sends = False

    @property
    def timeout_ms(self) -> int:
        """The timeout of each transfer, in milliseconds."""
        return self._timeout_ms

    @timeout_ms.setter
    def timeout_ms(self, value: int) -> None:
        if not 0 < int(value):
            raise UsageError(f"a timeout must be at least 1 ms, got {value}")
        self._timeout_ms = int(value)
        recovery = getattr(self, "_recovery", None)
        if recovery is not None:
            recovery.timeout_ms = self._timeout_ms
            recovery.status_wait_ms = max(self._timeout_ms, recovery.status_wait_ms)

    @property
    def term_char(self) -> int | None:
        """TermChar asked for in reads (None: replies end at EOM). Setting one on a device
        whose capabilities lack TermChar raises :class:`UsageError` (USBTMC 1.0 Table 37)."""
        return self._term_char

    @term_char.setter
    def term_char(self, value: int | None) -> None:
        if value is not None:
            if not 0 <= int(value) <= 255:
                raise UsageError(f"a TermChar is one byte (0..255), got {value}")
            if self.capabilities is not None and not self.capabilities.term_char:
                raise UsageError("the device does not support TermChar (per its capabilities); replies end at EOM")
        self._term_char = None if value is None else int(value)

    def active_term_char(self) -> int | None:
        return self._term_char if (self._term_char is not None and self.capabilities is not None
                                   and self.capabilities.term_char) else None

    def timeout_for(self, size: int) -> int:
        """The timeout for a transfer of ``size`` bytes: the session's, plus time for the bytes
        at ``quirks.min_bytes_per_s`` (or :data:`DEFAULT_MIN_BYTES_PER_S`)."""
        rate = self._quirks.min_bytes_per_s or DEFAULT_MIN_BYTES_PER_S
        return self._timeout_ms + size * 1000 // rate

    @property
    def trace(self) -> SessionTrace | None:
        """This session's side of the I/O trace, or None when it is not traced."""
        return self._trace

    def _message(self, op: str, sent=b""):
        """The I/O trace's record of one operation (a nullcontext when not traced)."""
        return _UNTRACED if self._trace is None else self._trace.message(op, sent)

    def note(self, text: str) -> None:
        """Remember something the session learned about the device, for :meth:`take_notes`."""
        self._notes.append(text)

    def take_notes(self) -> list[str]:
        """What the session learned about the device since the last call (for a transcript)."""
        notes, self._notes = self._notes, []
        return notes

    # --- control requests ---

    def _control(self, request: Request, value: int, length: int, *, endpoint: int | None = None) -> bytes:
        self._check_open()
        return self._link.control(request, value, length, endpoint=endpoint)

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
        with self._message("stb") as entry:
            stb = self._read_stb()
            if entry is not None:
                entry.reply, entry.actual = bytes([stb]), 1
            return stb

    def _read_stb(self) -> int:
        if not self._usb488:
            raise NotSupportedError("READ_STATUS_BYTE needs a USB488 interface")
        for _ in range(3):
            tag = self._link.next_stb_tag()
            reply = self._control(Request.READ_STATUS_BYTE, tag, 3)
            status = reply[0]
            if status == Status.INTERRUPT_IN_BUSY:
                self._drain_interrupts(timeout_ms=CONTROL_TIMEOUT_MS)
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
                raise TmcTimeoutError("READ_STATUS_BYTE: the status byte never arrived on interrupt-IN",
                                      RecoveryReport(("nothing to abort: interrupt-IN carries no message",), True))
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
        with self._message("wait_srq") as entry:
            stb = self._wait_srq(timeout_ms)
            if entry is not None:
                entry.reply, entry.actual = bytes([stb]), 1
                entry.requested = self.timeout_ms if timeout_ms is None else timeout_ms
            return stb

    def _wait_srq(self, timeout_ms: int | None) -> int:
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

    # --- clear ---

    def clear(self) -> None:
        """Device clear: INITIATE_CLEAR, CHECK_CLEAR_STATUS, then clear the Bulk-OUT halt (USBTMC 1.0 4.2.1.6-7)."""
        self._check_open()
        with self._message("clear"):
            self._recovery.clear()

    # --- writing ---

    def write_raw(self, data, *, abort: threading.Event | None = None, progress: Progress | None = None) -> None:
        """Send ``data`` (bytes-like) as one message: transfers of at most
        ``quirks.max_out_transfer_bytes`` payload bytes each, EOM on the last only.

        ``abort`` is checked between transfers; ``progress(done_bytes, total_bytes)``
        is called after each one. An empty message raises :class:`UsageError`.
        """
        self._check_open()
        trace = self._trace
        if trace is None:
            return self._writer.write_raw(data, abort=abort, progress=progress)
        # SessionTrace.message() spelled out, as for a query: an upload's own hot path.
        item = trace.open_message("write", data)
        if item is None:
            with trace.message("write", data):
                return self._writer.write_raw(data, abort=abort, progress=progress)
        try:
            self._writer.write_raw(data, abort=abort, progress=progress)
        except BaseException as exc:
            trace.close_message(item, None, exc)
            raise
        trace.close_message(item, None)

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
        with self._message("write") as entry:
            if entry is not None:
                entry.requested, entry.text = total_bytes or 0, f"write {total_bytes or '?'} bytes (streamed)"
            self._writer.write_stream(pieces, total_bytes, abort=abort, progress=progress,
                                      abort_latency_ms=abort_latency_ms)

    def trigger(self) -> None:
        """The USB488 TRIGGER message (USB488 1.0 section 3.2.1.1)."""
        self._check_open()
        if not self.capabilities.trigger:
            raise NotSupportedError("the device does not accept the USB488 TRIGGER message (per its capabilities)")
        btag = self._link.next_btag()
        with self._message("trigger"):
            self._writer.send_small(framing.pack_trigger(btag), btag, "TRIGGER")

    def write_vendor(self, data: bytes) -> None:
        """A VENDOR_SPECIFIC_OUT transfer (USBTMC 1.0 section 3.2.1.2)."""
        self._check_open()
        if not data:
            raise UsageError("a VENDOR_SPECIFIC_OUT transfer carries at least one byte (USBTMC 1.0 Table 5)")
        btag = self._link.next_btag()
        self._link.last_out_btag = btag
        self._writer.send_small(framing.pack_vendor_specific_out(btag, bytes(data)), btag, "VENDOR_SPECIFIC_OUT")

    def read_vendor(self, max_bytes: int = 4096) -> bytes:
        """REQUEST_VENDOR_SPECIFIC_IN then one VENDOR_SPECIFIC_IN transfer (USBTMC 1.0 3.3.1.2)."""
        self._check_open()
        btag = self._link.next_btag()
        self._writer.send_small(framing.pack_request_vendor_specific_in(btag, max_bytes), btag,
                                "REQUEST_VENDOR_SPECIFIC_IN")
        _header, payload = self._reader.read_transfer(btag, max_bytes, MsgId.VENDOR_SPECIFIC_IN, None)
        return payload

    # --- reading ---

    def read_raw(self, max_bytes: int | None = None, *, abort=None, progress: Progress | None = None) -> bytes:
        """Read one response message (until EOM, or the TermChar when enabled).

        ``max_bytes`` stops early after that many bytes. Works transfer by
        transfer: each REQUEST_DEV_DEP_MSG_IN asks for at most
        ``quirks.max_in_transfer_bytes``.
        """
        self._check_open()
        if max_bytes is not None and max_bytes <= 0:
            raise UsageError(f"a read asks for at least one byte, got max_bytes={max_bytes}")
        with self._message("read") as entry:
            reply = self._reader.read_message(max_bytes, abort, progress, None)
            if entry is not None:
                entry.reply, entry.actual = reply[:MESSAGE_CAP_BYTES], len(reply)
            return reply

    def query_raw(self, data, *, abort=None, progress: Progress | None = None,
                  on_sent: Callable[[], None] | None = None, read_progress: Progress | None = None) -> bytes:
        """Write ``data`` as one message and read the response message, as bytes.

        A message that fits one transfer goes out together with the read request
        and the first Bulk-IN read (:meth:`UsbTransport.bulk_batch`): on libusb the
        three transfers then follow each other on the bus with no host round trip in
        between. Devices that answer only while locked (quirk ``vendor_lock_around_query``)
        are locked around the pair. ``on_sent()`` is called once the message has gone out,
        while the reply is still awaited; ``read_progress(done_bytes, 0)`` after each reply transfer.
        """
        if self._trace is None:
            return self._query_raw(data, abort, progress, on_sent, read_progress)
        # SessionTrace.message() spelled out: a query is the hot path the trace must not slow.
        trace = self._trace
        item = trace.open_message("query", data)
        if item is None:  # nested, or while the session opens
            return self._query_traced(trace, data, abort, progress, on_sent, read_progress)
        try:
            reply = self._query_raw(data, abort, progress, on_sent, read_progress)
        except BaseException as exc:
            trace.close_message(item, None, exc)
            raise
        trace.close_message(item, reply)
        return reply

    def _query_traced(self, trace: SessionTrace, data, abort, progress, on_sent, read_progress) -> bytes:
        entry = trace.begin("query", data)
        try:
            reply = self._query_raw(data, abort, progress, on_sent, read_progress)
        except BaseException as exc:
            if entry is not None:
                trace.end(entry, None, exc)
            raise
        if entry is not None:
            trace.end(entry, reply)
        return reply

    def _query_raw(self, data, abort, progress, on_sent, read_progress) -> bytes:
        locked = self.quirks.vendor_lock_around_query
        if locked:
            self._vendor_lock(True)
        try:
            view = memoryview(data).cast("B")
            if 0 < len(view) <= self.quirks.max_out_transfer_bytes and not self.quirks.no_pipelining:
                self._check_open()
                if abort is not None and abort.is_set():
                    raise AbortedError("the query was aborted by the user before it was sent")
                first = self._send_query(view, on_sent)
                if progress is not None:
                    progress(len(view), len(view))
                return self._reader.read_message(None, abort, read_progress, first)
            self.write_raw(view, abort=abort, progress=progress)
            if on_sent is not None:
                on_sent()
            return self.read_raw(abort=abort, progress=read_progress)
        finally:
            if locked:
                self._vendor_lock(False)

    def _send_query(self, view: memoryview, on_sent: Callable[[], None] | None = None) -> tuple[int, int, Outcome]:
        """Send a one-transfer message, the read request and the first read as one batch.

        Returns the request's bTag, the bytes it asked for and the first read's outcome,
        for the reader to carry on from; failures of the two OUT transfers are
        recovered here as :meth:`write_raw` and :meth:`read_raw` recover them.
        """
        size = len(view)
        message_btag = self._link.next_btag()
        self._link.last_out_btag = message_btag
        frame = self._writer.frame((view,), size, True, message_btag)
        ask, term_char = self._reader.request_size(None), self.active_term_char()
        request_btag = self._link.next_btag()
        request = framing.pack_request_dev_dep_msg_in(request_btag, ask, term_char)
        message, sent_request, reply = self._transport.bulk_batch(
            [(frame, self.timeout_for(size)), (request, self.timeout_ms)],
            self._reader.first_read_bytes(ask), self.timeout_ms, on_sent=on_sent)
        message = short_write_as_timeout(message, len(frame))
        if not message.ok:
            # The request queued behind the message may have gone out before it could be cancelled.
            then = None
            if sent_request.started:
                then = lambda: self._recovery.abort_bulk_in(request_btag).describe()  # noqa: E731
            self._writer.raise_out_failure(message.error or TmcTimeoutError("cancelled"), message_btag, size,
                                           first_of_message=True, frame_bytes=len(frame), then=then)
        if sent_request.error is not None:
            if isinstance(sent_request.error, TmcTimeoutError):
                self._reader.raise_request_timeout(request_btag)
            if isinstance(sent_request.error, StallError):
                report = self._recovery.after_out_failure(request_btag, stalled=True, partial_message=False)
                raise ProtocolError("the device halted its Bulk-OUT endpoint on the read request", report)
            raise sent_request.error
        return request_btag, ask, reply

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
            REQ_IN_CLASS_INTERFACE, _VENDOR_LOCK_REQUEST, 1 if lock else 0, 0, 1, CONTROL_TIMEOUT_MS
        )

    @property
    def pipelined(self) -> bool:
        """True when a query's command, read request and first read are submitted together
        (pyusb's libusb 1.0 backend, and no ``no_pipelining`` quirk); else they run one by one."""
        return not self._closed and not self.quirks.no_pipelining and self._transport.pipelines

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Instrument {self.resource} {state}>"
