"""A generic USBTMC 1.0 / USB488 1.0 device function, and the IEEE 488.2 status model.

:class:`UsbtmcDevice` is one USBTMC interface (class 0xFE, subclass 0x03) with Bulk-OUT,
Bulk-IN and an optional Interrupt-IN endpoint. It speaks the transport: it parses the
Bulk-OUT byte stream into USBTMC transfers, answers REQUEST_DEV_DEP_MSG_IN from an
output queue, runs the class control requests (aborts, clear, capabilities, indicator
pulse, USB488 status byte and remote/local), and signals service requests. What the
messages *mean* is the instrument layer's business: subclasses override
:meth:`UsbtmcDevice.on_message` (or :meth:`~UsbtmcDevice.on_message_data` to stream)
and answer with :meth:`~UsbtmcDevice.respond`.

Spec references: "USBTMC" is USB Test and Measurement Class 1.0 (2003), "USB488" its
USB488 subclass 1.0, "488.2" IEEE Std 488.2-1992, "488.1" IEEE Std 488.1-1987.

Standard library only.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from app.protocol.ieee488 import EsrBit, StbBit
from app.protocol.usbtmc import (
    CAP_BCD_USB488,
    CAP_BCD_USBTMC,
    CAP_DEVICE,
    CAP_INTERFACE,
    CAP_USB488_DEVICE,
    CAP_USB488_INTERFACE,
    CAPABILITIES_BYTES,
    HEADER_BYTES,
    NOTIFY_SRQ,
    REQ_IN_CLASS_ENDPOINT,
    REQ_IN_CLASS_INTERFACE,
    MsgId,
    Request,
    Status,
    pack_header,
    unpack_header,
)
from app.protocol.usbtmc import NOTIFY_READ_STATUS_BYTE_FLAG as NOTIFY_STB_FLAG

from .clock import Clock
from .device import (
    TRANSFER_TYPE_BULK,
    TRANSFER_TYPE_INTERRUPT,
    ConfigDesc,
    DeviceDesc,
    EndpointDesc,
    InterfaceDesc,
    Speed,
    Stall,
    VirtualDevice,
)

# --- protocol constants: the protocol leaf's, shared with the host core --------

__all__ = ["EsrBit", "MsgId", "RemoteState", "Request", "Status", "StatusModel", "StbBit", "TmcCapabilities",
           "UsbtmcDevice"]

class RemoteState(IntEnum):
    """The 488.1 RL1 remote/local function states, as USB488 section 4.3.2-4.3.4 drives them."""

    LOCS = 0  # local
    REMS = 1  # remote
    LWLS = 2  # local with lockout
    RWLS = 3  # remote with lockout

    @property
    def is_remote(self) -> bool:
        return self in (RemoteState.REMS, RemoteState.RWLS)


@dataclass(frozen=True)
class TmcCapabilities:
    """What a USBTMC interface advertises in GET_CAPABILITIES (USBTMC Table 37, USB488 Table 8)."""

    indicator_pulse: bool = True
    talk_only: bool = False
    listen_only: bool = False
    term_char: bool = True
    usb488: bool = True
    usb4882: bool = True  # the interface is a 488.2 interface (accepts the mandatory common commands)
    remote_local: bool = True  # REN_CONTROL, GO_TO_LOCAL, LOCAL_LOCKOUT (and the RL1 function)
    trigger: bool = True  # the USB488 TRIGGER message (and DT1)
    scpi: bool = True
    service_request: bool = True  # SR1: needs an Interrupt-IN endpoint

    def to_bytes(self) -> bytes:
        """The 0x18-byte GET_CAPABILITIES reply, status SUCCESS."""
        reply = bytearray(CAPABILITIES_BYTES)
        reply[0] = Status.SUCCESS
        reply[CAP_BCD_USBTMC:CAP_BCD_USBTMC + 2] = struct.pack("<H", 0x0100)  # bcdUSBTMC 1.00
        reply[CAP_INTERFACE] = self.indicator_pulse << 2 | self.talk_only << 1 | self.listen_only
        reply[CAP_DEVICE] = int(self.term_char)
        if self.usb488:
            reply[CAP_BCD_USB488:CAP_BCD_USB488 + 2] = struct.pack("<H", 0x0100)  # bcdUSB488 1.00
            reply[CAP_USB488_INTERFACE] = self.usb4882 << 2 | self.remote_local << 1 | self.trigger
            reply[CAP_USB488_DEVICE] = (self.scpi << 3 | self.service_request << 2 | self.remote_local << 1
                                        | self.trigger)
        return bytes(reply)


# --- the IEEE 488.2 status reporting model ------------------------------------


class StatusModel:
    """STB, ESR, ESE and SRE with service requests (488.2 section 11).

    ``summary_bits()`` gives the status byte bits owned by the device (MAV, EAV, ...).
    Whenever :meth:`update` sees the service request summary ``STB & SRE`` (bit 6
    excluded) go from 0 to non-zero, it sets RQS and calls ``on_srq(stb)`` (488.2
    11.3.2: a new reason for service). ``mss_masked`` False is the SAM7's variant, where
    bit 6 of ``*STB?`` is the OR of all other bits regardless of SRE.

    Not locked: the owning device's lock guards it.
    """

    def __init__(self, on_srq: Callable[[int], None], summary_bits: Callable[[], int] = lambda: 0,
                 *, mss_masked: bool = True) -> None:
        self.on_srq = on_srq
        self.summary_bits = summary_bits
        self.mss_masked = mss_masked
        self.esr = 0
        self.ese = 0
        self.sre = 0
        self.rqs = False
        self._requesting = False

    def _bits(self) -> int:
        bits = self.summary_bits() & ~StbBit.MSS & 0xFF
        if self.esr & self.ese:
            bits |= StbBit.ESB
        return bits

    def stb(self) -> int:
        """The status byte as ``*STB?`` reads it: bit 6 is MSS (488.2 11.2.2.2)."""
        bits = self._bits()
        summary = bits & self.sre if self.mss_masked else bits
        return bits | (StbBit.MSS if summary else 0)

    def serial_poll(self) -> int:
        """The status byte as a serial poll (USB488 READ_STATUS_BYTE) reads it.

        488.2 11.2.2.1: bit 6 is RQS, cleared by the poll. In the unmasked (SAM7) variant
        the byte is the same as ``*STB?``.
        """
        if not self.mss_masked:
            return self.stb()
        value = self._bits() | (StbBit.MSS if self.rqs else 0)
        self.rqs = False
        return value

    def set_event(self, bits: int) -> None:
        """Set ESR bits (an event happened)."""
        self.esr |= bits & 0xFF
        self.update()

    def read_esr(self) -> int:
        """``*ESR?``: the register's value; reading clears it (488.2 11.5.1.2)."""
        value = self.esr
        self.esr = 0
        self.update()
        return value

    def clear(self) -> None:
        """``*CLS``: clear the event register and a pending RQS (488.2 10.3)."""
        self.esr = 0
        self.rqs = False
        self.update()

    def update(self) -> None:
        """Re-evaluate the service request summary; raise SRQ on its rising edge."""
        bits = self._bits()
        requesting = bool(bits & self.sre & ~StbBit.MSS)
        if requesting and not self._requesting:
            self.rqs = True
            self._requesting = True
            self.on_srq(bits | StbBit.MSS)
        self._requesting = requesting


# --- the USBTMC device function ------------------------------------------------


@dataclass
class _OutTransfer:
    msg_id: int
    btag: int
    size: int
    eom: bool
    received: int = 0


@dataclass
class _Response:
    data: bytearray
    closed: bool
    ready_at_s: float
    pos: int = 0

    @property
    def unsent(self) -> int:
        return len(self.data) - self.pos


@dataclass
class _InRequest:
    btag: int
    max_bytes: int
    term_char: int | None
    vendor: bool = False


BULK_OUT_EP = 0x01
BULK_IN_EP = 0x82
INTERRUPT_IN_EP = 0x83
INTERRUPT_MAX_PACKET = 8  # room for the 2-byte USB488 notification plus vendor-specific bytes


class UsbtmcDevice(VirtualDevice):
    """One USBTMC/USB488 interface on a virtual device.

    Instrument hooks (all called with the device lock held, all optional):
    :meth:`on_message_data` / :meth:`on_message`, :meth:`on_message_aborted`,
    :meth:`on_trigger`, :meth:`on_device_clear`, :meth:`on_indicator_pulse`,
    :meth:`on_query_error`, :meth:`on_remote_change`, :meth:`on_protocol_error`,
    :meth:`on_vendor_data`. The instrument answers with :meth:`respond`.

    ``status`` is a :class:`StatusModel` whose MAV follows the output queue and whose
    SRQs go out on Interrupt-IN (:meth:`request_service`).

    What a test asserts on after a host misbehaved or recovered (see :mod:`app.sim.faults`):
    :attr:`violations` lists the framing violations the device saw (a header it had to
    refuse, a message appended to one a halt cut short, a request for a reply while a message
    is incomplete), :attr:`executed` the complete device-dependent messages it received, in
    order (a message over 8 KiB is kept as its first and last 4 KiB joined by ``b"..."``).
    """

    #: How many entries :attr:`executed` and :attr:`violations` keep (the oldest go first).
    RECORD_LIMIT = 1000
    _EXEC_KEEP_BYTES = 4096

    interface_number = 0
    bulk_out_ep = BULK_OUT_EP
    bulk_in_ep = BULK_IN_EP
    interrupt_in_ep = INTERRUPT_IN_EP
    vendor_specific = False  # VENDOR_SPECIFIC_OUT / REQUEST_VENDOR_SPECIFIC_IN accepted

    def __init__(
        self,
        *,
        vid: int,
        pid: int,
        manufacturer: str,
        product: str,
        serial: str,
        speed: Speed = Speed.HIGH,
        capabilities: TmcCapabilities | None = None,
        interrupt_in: bool = True,
        bcd_device: int = 0x0100,
        max_power_ma: int = 100,
        self_powered: bool = False,
        clock: Clock | None = None,
        mss_masked: bool = True,
    ) -> None:
        caps = capabilities if capabilities is not None else TmcCapabilities()
        if caps.service_request and not (caps.usb488 and interrupt_in):
            raise ValueError("SR1 needs a USB488 interface with an Interrupt-IN endpoint (USB488 4.2.2)")
        packet = speed.bulk_max_packet
        if packet == 0:
            raise ValueError("bulk endpoints need full or high speed")
        endpoints = [
            EndpointDesc(self.bulk_out_ep, TRANSFER_TYPE_BULK, packet, 0),
            EndpointDesc(self.bulk_in_ep, TRANSFER_TYPE_BULK, packet, 0),
        ]
        if interrupt_in:
            # bInterval: 10 frames at full speed; 2^(8-1) microframes = 16 ms at high speed.
            endpoints.append(EndpointDesc(self.interrupt_in_ep, TRANSFER_TYPE_INTERRUPT, INTERRUPT_MAX_PACKET,
                                          8 if speed == Speed.HIGH else 10))
        interface = InterfaceDesc(self.interface_number, 0, 0xFE, 0x03, 1 if caps.usb488 else 0, tuple(endpoints))
        config = ConfigDesc(1, (interface,), 0xC0 if self_powered else 0x80, max_power_ma)
        device_desc = DeviceDesc(0x0200, 0, 0, 0, speed.control_max_packet, vid, pid, bcd_device, 1, 2, 3, 1)
        super().__init__(device_desc=device_desc, configs=[config], speed=speed, serial=serial, clock=clock,
                         strings={1: manufacturer, 2: product, 3: serial}, self_powered=self_powered)
        self.capabilities = caps
        self.has_interrupt_in = interrupt_in
        self.status = StatusModel(self.request_service, self.status_summary_bits, mss_masked=mss_masked)
        self.ren = False
        self.remote_state = RemoteState.LOCS
        self._output: deque[_Response] = deque()
        self._msg = bytearray()
        self.violations: list[str] = []
        self.executed: list[bytes] = []
        #: Called with the status byte on every service request, besides Interrupt-IN: how the
        #: LAN servers (app.sim.lan) hear SRQs to pass on over VXI-11 or HiSLIP.
        self.srq_listeners: list[Callable[[int], None]] = []
        #: Chunks of message data received so far, on any transport (a LAN server tells by it
        #: whether another host has spoken since its connection's last message).
        self.input_chunks = 0
        self._quiet_refusals = False  # a fault injector's own damage is being parsed
        self._exec_head = bytearray()
        self._exec_tail = bytearray()
        self._exec_bytes = 0
        self._reset_transport()

    # --- what the instrument layer uses ---

    def respond(self, data: bytes | bytearray | memoryview, *, eom: bool = True, delay_s: float = 0.0) -> None:
        """Queue response bytes in the output queue.

        ``eom`` False leaves the message open (more :meth:`respond` calls extend it; a
        host read of what is there gets EOM=0). ``delay_s`` seconds hold a new message back
        (the host sees NAKs until then). Call with the lock held (hooks are).
        """
        with self.changed:
            now = self.clock.now()
            if self._output and not self._output[-1].closed:
                last = self._output[-1]
                last.data += data
                last.closed = eom
            else:
                self._output.append(_Response(bytearray(data), eom, now + max(0.0, delay_s)))
            self._serve()
            self.status.update()
            self.changed.notify_all()

    def has_output(self) -> bool:
        """Whether response bytes wait in the output queue (sent or not yet ready)."""
        with self.changed:
            return any(r.unsent or not r.closed for r in self._output)

    def discard_output(self) -> None:
        """Drop the output queue (488.2 6.3.2.3: an interrupted query's answer is discarded)."""
        with self.changed:
            self._output.clear()
            self.status.update()

    def message_available(self) -> bool:
        """MAV: a response is ready to be read (488.2 11.2.1.2)."""
        with self.changed:
            now = self.clock.now()
            return any(r.ready_at_s <= now and (r.unsent or not r.closed) for r in self._output)

    def status_summary_bits(self) -> int:
        """The device-owned status byte bits; override to add EAV, QSB, OSB. Default: MAV."""
        return StbBit.MAV if self.message_available() else 0

    def request_service(self, stb: int) -> None:
        """Send a service request: the SRQ notification [0x81, STB] on Interrupt-IN (USB488 3.4.2).

        Without an Interrupt-IN endpoint there is no way to signal; nothing is sent.
        """
        with self.changed:
            if self.has_interrupt_in and self.attached:
                self.in_pipes[self.interrupt_in_ep].send(bytes([NOTIFY_SRQ, stb & 0xFF]), end=True)
                self.changed.notify_all()
            for listener in list(self.srq_listeners):
                listener(stb & 0xFF)

    def response_expected(self) -> bool:
        """Whether an answer is still being produced although the output queue is empty; override
        when answers are computed late. A host read while this is False calls :meth:`on_query_error`."""
        return False

    def read_status_byte(self) -> int:
        """The byte READ_STATUS_BYTE returns (a serial poll, USB488 4.3.1)."""
        return self.status.serial_poll()

    # --- the message level, without USB framing (the LAN servers of app.sim.lan) ---

    def message_in(self, chunk: bytes | bytearray | memoryview, eom: bool) -> None:
        """Bytes of a device-dependent message from a transport other than USB (a LAN
        server): handed to the instrument as a Bulk-OUT transfer's data would be."""
        with self.changed:
            chunk = bytes(chunk)
            self._record_input(chunk, eom)
            self.on_message_data(chunk, eom)
            self.service()
            self.changed.notify_all()

    def take_reply(self, max_bytes: int, term_char: int | None = None) -> tuple[bytes, bool] | None:
        """Up to ``max_bytes`` of the output queue's first ready message, ending at ``term_char``
        if given, and whether the message ended with them (EOM); None while nothing is ready.
        Call with :attr:`changed` held and wait on it for more."""
        with self.changed:
            if not self._output:
                return None
            response = self._output[0]
            if response.ready_at_s > self.clock.now() or (not response.unsent and not response.closed):
                return None
            count = min(response.unsent, max_bytes)
            if term_char is not None:
                found = response.data.find(bytes([term_char]), response.pos, response.pos + count)
                if found >= 0:
                    count = found + 1 - response.pos
            chunk = bytes(response.data[response.pos:response.pos + count])
            response.pos += count
            eom = response.closed and not response.unsent
            if eom:
                self._output.popleft()
            self.status.update()
            return chunk, eom

    def reply_expected(self) -> bool:
        """Whether a reply is queued or still being produced (a read now would not be a query error)."""
        with self.changed:
            return self.has_output() or self.response_expected()

    def message_abort(self) -> None:
        """Drop a message whose sender went away before its end (a LAN connection closed mid-message)."""
        with self.changed:
            if self._msg or self._msg_open:
                self._msg.clear()
                self._forget_input()
                self.on_message_aborted()

    def message_clear(self) -> None:
        """The 488.2 device clear from a transport other than USB (VXI-11 device_clear, HiSLIP
        device clear, 488.2 6.1.3): input and output queues emptied, the instrument told."""
        with self.changed:
            self._msg.clear()
            self._forget_input()
            self._output.clear()
            self.on_message_aborted()
            self.on_device_clear()
            self.status.update()
            self.changed.notify_all()

    # --- instrument hooks ---

    def on_message_data(self, chunk: bytes, eom: bool) -> None:
        """Bytes of a device-dependent message as they arrive; ``eom`` marks its last chunk.

        The default accumulates them and hands the whole message to :meth:`on_message`.
        """
        self._msg += chunk
        if eom:
            message = bytes(self._msg)
            self._msg.clear()
            self.on_message(message)

    def on_message(self, data: bytes) -> None:
        """A complete device-dependent message (USBTMC 3.2.1.1); override."""

    def on_message_aborted(self) -> None:
        """The message being received was cut short by an abort or a clear."""

    def on_trigger(self) -> None:
        """The USB488 TRIGGER message (USB488 3.2.1.1), the equivalent of GET."""

    def on_device_clear(self) -> None:
        """INITIATE_CLEAR (USBTMC 4.2.1.6): the 488.2 device clear of the function (input and
        output queues are already cleared)."""

    def on_indicator_pulse(self) -> None:
        """INDICATOR_PULSE (USBTMC 4.2.1.9): blink the activity indicator."""

    def on_query_error(self) -> None:
        """The host asked for a response and none is or will be available."""

    def on_remote_change(self, old: RemoteState, new: RemoteState) -> None:
        """The 488.1 remote/local state changed."""

    def on_protocol_error(self, reason: str) -> None:
        """A Bulk-OUT header was refused (the endpoint is halted right after)."""

    def on_vendor_data(self, chunk: bytes, last: bool) -> None:
        """VENDOR_SPECIFIC_OUT data (only when :attr:`vendor_specific`)."""

    def vendor_response(self, max_bytes: int) -> bytes | None:
        """Data for a REQUEST_VENDOR_SPECIFIC_IN, or None to keep it pending."""
        return None

    # --- VirtualDevice hooks ---

    def on_bus_reset(self) -> None:
        self._reset_transport()

    def on_configured(self, value: int) -> None:
        # Configuring resets the endpoints: whatever was in flight is gone.
        self._reset_transport()

    def on_clear_halt(self, ep: int) -> None:
        self._fault_reset("clear_halt_out" if ep == self.bulk_out_ep else "clear_halt_in")
        if ep == self.bulk_out_ep:
            # USBTMC 4.2.1.3/4.2.1.7: after an abort or clear the next transfer starts with a header.
            if self._msg_open:
                # The halt cut a message short and no INITIATE_CLEAR threw its start away: a host
                # that now sends a new message makes the device append it (USBTMC 3.2.2.2).
                self._msg_broken = True
            self._reset_parser()
        elif ep == self.bulk_in_ep:
            self.in_pipes[ep].clear()
            self._in_active = None

    def on_in_taken(self, ep: int) -> None:
        if ep == self.bulk_in_ep and not self.in_pipes[ep].has_data:
            self._in_active = None

    def service(self) -> None:
        self._serve()
        self.status.update()

    def next_deadline(self) -> float | None:
        pending = [r.ready_at_s for r in self._output if r.ready_at_s > self.clock.now()]
        return min(pending) if pending else None

    # --- Bulk-OUT: the transfer parser (USBTMC 3.2.1) ---

    def handle_bulk_out(self, ep: int, data: bytes | bytearray | memoryview) -> int:
        if ep != self.bulk_out_ep:
            raise Stall(f"endpoint 0x{ep:02X} is not the Bulk-OUT endpoint")
        with memoryview(data) as view:
            view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
            self._parse(view)
        return len(data)

    def _parse(self, view: memoryview) -> None:
        n = len(view)
        i = 0
        # Alignment bytes left over from the previous host transfer: only zeros can be padding,
        # because a header never starts with MsgID 0; a host that omits padding is tolerated.
        while self._pad_left and i < n and view[i] == 0:
            self._pad_left -= 1
            i += 1
        if i < n:
            self._pad_left = 0
        while i < n:
            xfer = self._xfer
            if xfer is None:
                need = HEADER_BYTES - len(self._hdr)
                self._hdr += view[i:i + need]
                i += min(need, n - i)
                if len(self._hdr) == HEADER_BYTES:
                    self._header(bytes(self._hdr))
                    self._hdr.clear()
                continue
            take = min(xfer.size - xfer.received, n - i)
            chunk = bytes(view[i:i + take])
            i += take
            xfer.received += take
            last = xfer.received == xfer.size
            if last:
                self._xfer = None
                self._last_out_btag = xfer.btag
            self._deliver(xfer, chunk, last)
            if last:
                # USBTMC 3.2.1.1: 0-3 alignment bytes bring the transfer to a multiple of 4.
                pad = -xfer.size % 4
                skip = min(pad, n - i)
                i += skip
                self._pad_left = pad - skip

    def _deliver(self, xfer: _OutTransfer, chunk: bytes, last: bool) -> None:
        if xfer.msg_id == MsgId.VENDOR_SPECIFIC_OUT:
            self.on_vendor_data(chunk, last)
            return
        eom = xfer.eom and last
        self._record_input(chunk, eom)
        self.on_message_data(chunk, eom)

    def _record_input(self, chunk: bytes, eom: bool) -> None:
        self.input_chunks += 1
        keep = self._EXEC_KEEP_BYTES
        self._exec_bytes += len(chunk)
        room = 2 * keep - len(self._exec_head)
        if room > 0:
            self._exec_head += chunk[:room]  # the whole message while it is short
        self._exec_tail += chunk[-keep:]  # a multi-MiB chunk is not copied whole
        del self._exec_tail[:-keep]
        self._msg_open = not eom
        if eom:
            if self._exec_bytes <= 2 * keep:
                message = bytes(self._exec_head)
            else:
                message = bytes(self._exec_head[:keep]) + b"..." + bytes(self._exec_tail)
            self._append_record(self.executed, message)
            self._forget_input()

    def _forget_input(self) -> None:
        """The input buffer is empty again: a message ended, or an abort or clear threw it away."""
        self._exec_head.clear()
        self._exec_tail.clear()
        self._exec_bytes = 0
        self._msg_open = False
        self._msg_broken = False

    def _violation(self, text: str) -> None:
        self._append_record(self.violations, text)

    def _append_record(self, records: list, entry) -> None:
        records.append(entry)
        if len(records) > self.RECORD_LIMIT:
            del records[: len(records) - self.RECORD_LIMIT]

    def _header(self, header: bytes) -> None:
        raw = unpack_header(header)
        msg_id, btag, size, term_char = raw.msg_id, raw.btag, raw.transfer_size, raw.byte9
        # USBTMC 3.2 Table 1: bTagInverse is the one's complement of bTag, and bTag is never 0.
        if not raw.btag_ok:
            self._refuse(f"bad bTag/bTagInverse {btag}/{raw.btag_inverse}")
        self._abort_out_nbytes = None
        caps = self.capabilities
        injector = self.fault_injector
        if injector is not None:
            refusal = injector.header(self, msg_id, btag)
            if refusal:
                self._refuse(refusal, violation=False)
        if msg_id == MsgId.DEV_DEP_MSG_OUT:
            if self._msg_broken:
                self._violation(f"DEV_DEP_MSG_OUT bTag {btag} appended to a message a halt cut short, with no "
                                "abort or clear in between (USBTMC 3.2.2.2)")
                self._msg_broken = False
            self._listen_addressed()
            self._begin_out(msg_id, btag, size, raw.eom)
        elif msg_id == MsgId.REQUEST_DEV_DEP_MSG_IN:
            if self._msg_open:
                self._violation(f"REQUEST_DEV_DEP_MSG_IN bTag {btag} while a DEV_DEP_MSG_OUT message has not "
                                "ended (no EOM yet)")
            if size == 0:
                self._refuse("REQUEST_DEV_DEP_MSG_IN for 0 bytes")
            # USBTMC 3.2.1.2 Table 4: TermChar applies only if the interface supports it.
            term = term_char if raw.term_char_flag and caps.term_char else None
            self._request_in(_InRequest(btag, size, term))
        elif msg_id == MsgId.VENDOR_SPECIFIC_OUT and self.vendor_specific:
            self._begin_out(msg_id, btag, size, False)
        elif msg_id == MsgId.REQUEST_VENDOR_SPECIFIC_IN and self.vendor_specific and size:
            self._request_in(_InRequest(btag, size, None, vendor=True))
        elif msg_id == MsgId.TRIGGER and caps.usb488 and caps.trigger:
            # USB488 3.2.1.1: TRIGGER has no data; the rest of the header is reserved.
            self._last_out_btag = btag
            self._listen_addressed()
            self.on_trigger()
        else:
            self._refuse(f"unsupported MsgID {msg_id}")

    def _begin_out(self, msg_id: int, btag: int, size: int, eom: bool) -> None:
        xfer = _OutTransfer(msg_id, btag, size, eom)
        if size == 0:
            # Tolerated although USBTMC Table 3 wants TransferSize > 0: an empty transfer.
            self._last_out_btag = btag
            self._deliver(xfer, b"", True)
        else:
            self._xfer = xfer

    def _refuse(self, reason: str, *, violation: bool = True) -> None:
        # USBTMC 3.2.2.3/3.3: the device halts Bulk-OUT on a header it cannot accept.
        if violation and not self._quiet_refusals:
            self._violation(f"Bulk-OUT header refused: {reason}")
        self._reset_parser()
        self.on_protocol_error(reason)
        self.halt(self.bulk_out_ep)
        raise Stall(f"Bulk-OUT halted: {reason}")

    # --- Bulk-IN: answering requests (USBTMC 3.3) ---

    def _request_in(self, request: _InRequest) -> None:
        self._in_request = request
        self._in_btag = request.btag
        self._serve()
        if self._in_request is request and not request.vendor and not self.has_output() and not self.response_expected():
            self.on_query_error()

    def _serve(self) -> None:
        request = self._in_request
        if request is None or self._in_hold:
            return
        if request.vendor:
            data = self.vendor_response(request.max_bytes)
            if data is None:
                return
            data = bytes(data[: request.max_bytes])
            self._send_in(MsgId.VENDOR_SPECIFIC_IN, request.btag, data, 0)
            return
        now = self.clock.now()
        if not self._output:
            return
        response = self._output[0]
        if response.ready_at_s > now or (not response.unsent and not response.closed):
            return
        count = min(response.unsent, request.max_bytes)
        injector = self.fault_injector
        if injector is not None:
            count = injector.reply_count(self, count)
        attributes = 0
        if request.term_char is not None:
            found = response.data.find(bytes([request.term_char]), response.pos, response.pos + count)
            if found >= 0:
                count = found + 1 - response.pos
                attributes |= 0x02  # USBTMC Table 9: ended on the TermChar
        with memoryview(response.data) as view:
            chunk = bytes(view[response.pos:response.pos + count])
        response.pos += count
        if response.closed and not response.unsent:
            attributes |= 0x01  # EOM: the last byte of the message is in this transfer
            self._output.popleft()
        if injector is not None and injector.send_reply(self, request.btag, request.max_bytes, chunk, attributes):
            self._in_request = None
            self.changed.notify_all()
            return
        self._send_in(MsgId.DEV_DEP_MSG_IN, request.btag, chunk, attributes)

    def _queue_in_frame(self, btag: int, frame: bytes, *, zlp: bool | None = None) -> None:
        """Queue one whole Bulk-IN transfer as given (a fault injector's malformed replies)."""
        pipe = self.in_pipes[self.bulk_in_ep]
        self._in_active = (btag, pipe.delivered_bytes + pipe.queued_bytes)
        pipe.send(frame, end=True, zlp=zlp)

    def _send_in(self, msg_id: int, btag: int, data: bytes, attributes: int) -> None:
        # USBTMC 3.3.1 Table 8/9: the Bulk-IN header, the data, then alignment to 4 bytes.
        header = pack_header(msg_id, btag, len(data), attributes)
        pipe = self.in_pipes[self.bulk_in_ep]
        self._in_active = (btag, pipe.delivered_bytes + pipe.queued_bytes)
        pipe.send(header, end=False)
        pipe.send(data, end=False)
        pipe.send(b"\x00" * (-len(data) % 4), end=True)
        self._in_request = None
        self.changed.notify_all()

    # --- class requests (USBTMC 4.2.1, USB488 4.3) ---

    def class_request(self, bm_request_type: int, b_request: int, w_value: int, w_index: int,
                      data_or_length: bytes | int) -> bytes:
        if (bm_request_type >> 5) & 0x03 != 1:
            return self.vendor_request(bm_request_type, b_request, w_value, w_index, data_or_length)
        if not self._interface_exists(self.interface_number):
            raise Stall("not configured")
        length = data_or_length if isinstance(data_or_length, int) else -1
        caps = self.capabilities
        injector = self.fault_injector
        if injector is not None:
            reply = injector.class_request(self, b_request, length)
            if reply is not None:
                return reply
        if bm_request_type == REQ_IN_CLASS_ENDPOINT:
            handler = {
                Request.INITIATE_ABORT_BULK_OUT: (self.bulk_out_ep, 2, self._initiate_abort_bulk_out),
                Request.CHECK_ABORT_BULK_OUT_STATUS: (self.bulk_out_ep, 8, self._check_abort_bulk_out),
                Request.INITIATE_ABORT_BULK_IN: (self.bulk_in_ep, 2, self._initiate_abort_bulk_in),
                Request.CHECK_ABORT_BULK_IN_STATUS: (self.bulk_in_ep, 8, self._check_abort_bulk_in),
            }.get(b_request)
            if handler is None or (w_index & 0xFF) != handler[0] or length != handler[1]:
                raise Stall(f"endpoint request {b_request} not accepted")
            return handler[2](w_value & 0xFF)
        if bm_request_type != REQ_IN_CLASS_INTERFACE or (w_index & 0xFF) != self.interface_number:
            raise Stall(f"class request {b_request} with bmRequestType 0x{bm_request_type:02X} not accepted")
        if b_request == Request.INITIATE_CLEAR and length == 1:
            return self._initiate_clear()
        if b_request == Request.CHECK_CLEAR_STATUS and length == 2:
            pending = self.in_pipes[self.bulk_in_ep].has_data
            # USBTMC 4.2.1.7 Table 33: bmClear.D0 asks the host to read Bulk-IN until a short packet.
            return bytes([Status.PENDING, 1]) if pending else bytes([Status.SUCCESS, 0])
        if b_request == Request.GET_CAPABILITIES and length == CAPABILITIES_BYTES:
            return caps.to_bytes()
        if b_request == Request.INDICATOR_PULSE and length == 1 and caps.indicator_pulse:
            self.on_indicator_pulse()
            return bytes([Status.SUCCESS])
        if caps.usb488:
            if b_request == Request.READ_STATUS_BYTE and length == 3:
                return self._read_status_byte_request(w_value)
            if caps.remote_local and length == 1:
                if b_request == Request.REN_CONTROL:
                    self._ren_control(bool(w_value & 0xFF))
                    return bytes([Status.SUCCESS])
                if b_request == Request.GO_TO_LOCAL:
                    self._go_to_local()
                    return bytes([Status.SUCCESS])
                if b_request == Request.LOCAL_LOCKOUT:
                    self._local_lockout()
                    return bytes([Status.SUCCESS])
        # USBTMC 4.2.1: a request the interface does not support is answered with STALL.
        raise Stall(f"class request {b_request} not supported")

    def vendor_request(self, bm_request_type: int, b_request: int, w_value: int, w_index: int,
                       data_or_length: bytes | int) -> bytes:
        """Vendor control requests; override. Default: STALL."""
        raise Stall(f"vendor request {b_request} not supported")

    def _initiate_abort_bulk_out(self, btag: int) -> bytes:
        xfer = self._xfer
        if xfer is None:
            # USBTMC 4.2.1.2 Table 19: no transfer in progress (and the FIFO is empty).
            return bytes([Status.FAILED, self._last_out_btag])
        if xfer.btag != btag:
            return bytes([Status.TRANSFER_NOT_IN_PROGRESS, xfer.btag])
        # The device halts Bulk-OUT and drops the transfer; the host clears the halt afterwards.
        self._abort_out_nbytes = xfer.received
        self._reset_parser()
        if self._fault_reset("abort_out"):
            # USBTMC 4.2.1.3 Table 22: NBYTES_RXD counts the bytes "received, and not discarded";
            # this device keeps them in its input buffer until an INITIATE_CLEAR.
            self._msg_open = True
        else:
            self._msg.clear()
            self._forget_input()
            self.on_message_aborted()
        self.halt(self.bulk_out_ep)
        return bytes([Status.SUCCESS, btag])

    def _check_abort_bulk_out(self, _value: int) -> bytes:
        if self._abort_out_nbytes is None:
            return bytes([Status.FAILED, 0, 0, 0]) + struct.pack("<I", 0)
        # USBTMC 4.2.1.3 Table 21: status, 3 reserved bytes, NBYTES_RXD.
        return bytes([Status.SUCCESS, 0, 0, 0]) + struct.pack("<I", self._abort_out_nbytes)

    def _initiate_abort_bulk_in(self, btag: int) -> bytes:
        pipe = self.in_pipes[self.bulk_in_ep]
        active = self._in_request is not None or self._in_active is not None
        if not active:
            status = Status.TRANSFER_NOT_IN_PROGRESS if pipe.has_data else Status.FAILED
            return bytes([status, self._in_btag])
        if btag != self._in_btag:
            return bytes([Status.TRANSFER_NOT_IN_PROGRESS, self._in_btag])
        sent = 0
        if self._in_active is not None:
            sent = max(0, pipe.delivered_bytes - self._in_active[1])
            # The rest of the message being sent is abandoned with its transfer.
            if self._output and self._output[0].pos:
                self._output.popleft()
        elif self._output:
            self._output.popleft()  # the (delayed) answer the pending request was waiting for
        # USBTMC 4.2.1.4: drop what is unsent and end the transfer with a short packet,
        # which the host's drain read receives.
        pipe.clear()
        pipe.send_short_packet()
        self._in_request = None
        self._in_active = None
        self._abort_in_nbytes = sent
        self._fault_reset("abort_in")
        self.status.update()
        return bytes([Status.SUCCESS, btag])

    def _check_abort_bulk_in(self, _value: int) -> bytes:
        if self._abort_in_nbytes is None:
            return bytes([Status.FAILED, 0, 0, 0]) + struct.pack("<I", 0)
        nbytes = struct.pack("<I", self._abort_in_nbytes)
        if self.in_pipes[self.bulk_in_ep].has_data:
            # USBTMC 4.2.1.5 Table 26: PENDING with bmAbortBulkIn.D0 = 1: read Bulk-IN until a short packet.
            return bytes([Status.PENDING, 1, 0, 0]) + nbytes
        self._abort_in_nbytes = None
        return bytes([Status.SUCCESS, 0, 0, 0]) + nbytes

    def _initiate_clear(self) -> bytes:
        # USBTMC 4.2.1.6: halt Bulk-OUT, clear the input and output buffers.
        pipe = self.in_pipes[self.bulk_in_ep]
        unfinished = self._in_active is not None and pipe.delivered_bytes > self._in_active[1]
        self._reset_parser()
        self._msg.clear()
        self._forget_input()
        self._output.clear()
        self._in_request = None
        self._in_active = None
        pipe.clear()
        if unfinished:
            pipe.send_short_packet()  # terminate the transfer the host had started reading
        self.halt(self.bulk_out_ep)
        self._fault_reset("clear")
        self.on_message_aborted()
        self.on_device_clear()
        self.status.update()
        return bytes([Status.SUCCESS])

    def _read_status_byte_request(self, w_value: int) -> bytes:
        btag = w_value & 0xFFFF
        if not 2 <= btag <= 127:
            raise Stall("READ_STATUS_BYTE bTag must be 2..127 (USB488 Table 11)")
        if not self.has_interrupt_in:
            return bytes([Status.SUCCESS, btag, self.read_status_byte()])
        pipe = self.in_pipes[self.interrupt_in_ep]
        if pipe.has_data:
            # USB488 4.3.1.1: the previous notification has not been read yet.
            return bytes([Status.INTERRUPT_IN_BUSY, btag, 0])
        if self.fault_injector is not None:
            self.fault_injector.status_byte_request(self, btag)
        # USB488 4.3.1.2: the status byte goes on Interrupt-IN, queued before the control reply.
        pipe.send(bytes([NOTIFY_STB_FLAG | btag, self.read_status_byte()]), end=True)
        return bytes([Status.SUCCESS, btag, 0])

    # --- 488.1 remote/local through USB488 4.3.2-4.3.4 ---

    def _set_remote(self, new: RemoteState) -> None:
        old = self.remote_state
        if new != old:
            self.remote_state = new
            self.on_remote_change(old, new)

    def _ren_control(self, assert_ren: bool) -> None:
        self.ren = assert_ren
        if not assert_ren:
            self._set_remote(RemoteState.LOCS)  # 488.1: REN false returns every state to LOCS

    def _go_to_local(self) -> None:
        self._set_remote({RemoteState.REMS: RemoteState.LOCS, RemoteState.RWLS: RemoteState.LWLS}
                         .get(self.remote_state, self.remote_state))

    def _local_lockout(self) -> None:
        if self.ren:
            self._set_remote({RemoteState.LOCS: RemoteState.LWLS, RemoteState.REMS: RemoteState.RWLS}
                             .get(self.remote_state, self.remote_state))

    def _listen_addressed(self) -> None:
        # USB488 4.3.2: with REN asserted, a message to the device puts it in remote.
        if self.ren:
            self._set_remote({RemoteState.LOCS: RemoteState.REMS, RemoteState.LWLS: RemoteState.RWLS}
                             .get(self.remote_state, self.remote_state))

    # --- transport state ---

    def _reset_parser(self) -> None:
        self._hdr = bytearray()
        self._xfer: _OutTransfer | None = None
        self._pad_left = 0

    def _fault_reset(self, what: str) -> bool:
        """Tell the fault injector the host ran a recovery step (``what``: "abort_out", "abort_in",
        "clear", "clear_halt_out", "clear_halt_in", "reset"); True: keep the received input."""
        if what in ("abort_in", "clear", "clear_halt_in", "reset"):
            self._in_hold = False
        injector = self.fault_injector
        return bool(injector is not None and injector.transport_reset(self, what))

    def _reset_transport(self) -> None:
        self._in_hold = False  # a request the device holds unanswered (the NO_ANSWER fault)
        if getattr(self, "fault_injector", None) is not None:
            self._fault_reset("reset")
        self._forget_input()
        self._reset_parser()
        self._in_request: _InRequest | None = None
        self._in_active: tuple[int, int] | None = None  # (bTag, pipe position where its transfer starts)
        self._in_btag = 0
        self._last_out_btag = 0
        self._abort_out_nbytes: int | None = None
        self._abort_in_nbytes: int | None = None
