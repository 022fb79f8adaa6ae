"""The device side of USB, written once and served to hosts through adapters.

A :class:`VirtualDevice` is what a USB device looks like from the wire: descriptors,
the standard requests of USB 2.0 chapter 9 answered on endpoint 0, class/vendor
requests handed to a subclass, and bulk/interrupt endpoints. Adapters turn host
calls into calls of the host-facing methods here:

- the in-process pyusb backend (:mod:`app.sim.pyusb_backend`) blocks on
  :attr:`VirtualDevice.changed` until a transfer can complete or its timeout ends;
- the umockdev adapter (:mod:`app.sim.umockdev`) completes URBs without blocking and
  retries those that got :class:`NoData` (a NAK) when it polls again.

So every host-facing method is non-blocking: it either completes, or raises
:class:`NoData` and leaves the device as it was, or raises another :class:`SimError`.

Standard library only: this module also runs under the system Python.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from .clock import Clock, MonotonicClock

log = logging.getLogger("app.sim")

# --- errors a host can see ---------------------------------------------------


class SimError(Exception):
    """Base of the conditions a virtual device reports to an adapter."""


class Stall(SimError):
    """The endpoint is halted, or endpoint 0 does not support the request: the host sees a STALL (EPIPE)."""


class NoData(SimError):
    """The device NAKs for now: nothing to give (IN) or no room to take (OUT). Retry later."""


class Gone(SimError):
    """The device has been unplugged."""


class Overflow(SimError):
    """Babble: the device sent a packet larger than the room left in the host's buffer (EOVERFLOW).

    ``received`` holds what the host buffer got before and from the offending packet
    (the packet is cut to the room left; the rest of it is lost, as on a real bus).
    """

    def __init__(self, message: str, received: bytes = b"") -> None:
        super().__init__(message)
        self.received = received


# --- speeds and descriptors (USB 2.0 chapter 9) ------------------------------


class Speed(IntEnum):
    """Bus speed; the values are libusb's ``LIBUSB_SPEED_*`` codes (pyusb's ``usb.core.SPEED_*``)."""

    LOW = 1
    FULL = 2
    HIGH = 3

    @property
    def bulk_max_packet(self) -> int:
        """The largest bulk wMaxPacketSize at this speed in bytes (USB 2.0 section 5.8.3); 0: no bulk at low speed."""
        return {Speed.LOW: 0, Speed.FULL: 64, Speed.HIGH: 512}[self]

    @property
    def control_max_packet(self) -> int:
        """bMaxPacketSize0 in bytes used by the virtual devices (USB 2.0 section 5.5.3)."""
        return {Speed.LOW: 8, Speed.FULL: 64, Speed.HIGH: 64}[self]


class DescriptorType(IntEnum):
    """USB 2.0 Table 9-5."""

    DEVICE = 1
    CONFIGURATION = 2
    STRING = 3
    INTERFACE = 4
    ENDPOINT = 5
    DEVICE_QUALIFIER = 6
    OTHER_SPEED_CONFIGURATION = 7


class StdRequest(IntEnum):
    """USB 2.0 Table 9-4."""

    GET_STATUS = 0
    CLEAR_FEATURE = 1
    SET_FEATURE = 3
    SET_ADDRESS = 5
    GET_DESCRIPTOR = 6
    SET_DESCRIPTOR = 7
    GET_CONFIGURATION = 8
    SET_CONFIGURATION = 9
    GET_INTERFACE = 10
    SET_INTERFACE = 11
    SYNCH_FRAME = 12


class Feature(IntEnum):
    """USB 2.0 Table 9-6."""

    ENDPOINT_HALT = 0
    DEVICE_REMOTE_WAKEUP = 1
    TEST_MODE = 2


LANGID_EN_US = 0x0409
TRANSFER_TYPE_CONTROL, TRANSFER_TYPE_ISOCHRONOUS, TRANSFER_TYPE_BULK, TRANSFER_TYPE_INTERRUPT = range(4)


@dataclass(frozen=True)
class EndpointDesc:
    """An endpoint descriptor (USB 2.0 Table 9-13). ``max_packet`` in bytes; ``interval`` in frames
    (full speed) or as the 2^(n-1) microframe exponent (high speed). ``extra`` is appended verbatim
    (class-specific descriptors)."""

    address: int
    attributes: int
    max_packet: int
    interval: int = 0
    extra: bytes = b""

    @property
    def is_in(self) -> bool:
        return bool(self.address & 0x80)

    @property
    def transfer_type(self) -> int:
        return self.attributes & 0x03

    def to_bytes(self) -> bytes:
        return struct.pack("<BBBBHB", 7, DescriptorType.ENDPOINT, self.address, self.attributes,
                           self.max_packet, self.interval) + self.extra


@dataclass(frozen=True)
class InterfaceDesc:
    """An interface descriptor (USB 2.0 Table 9-12) followed by its endpoints."""

    number: int
    alt: int
    cls: int
    subclass: int
    protocol: int
    endpoints: tuple[EndpointDesc, ...] = ()
    string_index: int = 0
    extra: bytes = b""

    def to_bytes(self) -> bytes:
        head = struct.pack("<BBBBBBBBB", 9, DescriptorType.INTERFACE, self.number, self.alt, len(self.endpoints),
                           self.cls, self.subclass, self.protocol, self.string_index)
        return head + self.extra + b"".join(ep.to_bytes() for ep in self.endpoints)


@dataclass(frozen=True)
class ConfigDesc:
    """A configuration descriptor (USB 2.0 Table 9-10). ``max_power_ma`` in mA (sent in 2 mA units).

    ``interfaces`` lists every alternate setting; bNumInterfaces counts interface numbers.
    """

    value: int
    interfaces: tuple[InterfaceDesc, ...]
    attributes: int = 0x80
    max_power_ma: int = 100
    string_index: int = 0
    extra: bytes = b""

    @property
    def num_interfaces(self) -> int:
        return len({i.number for i in self.interfaces})

    def to_bytes(self, descriptor_type: int = DescriptorType.CONFIGURATION) -> bytes:
        """The whole configuration as GET_DESCRIPTOR(CONFIGURATION) returns it, wTotalLength included."""
        body = self.extra + b"".join(i.to_bytes() for i in self.interfaces)
        head = struct.pack("<BBHBBBBB", 9, descriptor_type, 9 + len(body), self.num_interfaces, self.value,
                           self.string_index, self.attributes, min(255, (self.max_power_ma + 1) // 2))
        return head + body


@dataclass(frozen=True)
class DeviceDesc:
    """A device descriptor (USB 2.0 Table 9-8)."""

    bcd_usb: int
    cls: int
    subclass: int
    protocol: int
    max_packet0: int
    vid: int
    pid: int
    bcd_device: int
    i_manufacturer: int
    i_product: int
    i_serial: int
    num_configurations: int

    def to_bytes(self) -> bytes:
        return struct.pack("<BBHBBBBHHHBBBB", 18, DescriptorType.DEVICE, self.bcd_usb, self.cls, self.subclass,
                           self.protocol, self.max_packet0, self.vid, self.pid, self.bcd_device,
                           self.i_manufacturer, self.i_product, self.i_serial, self.num_configurations)

    def qualifier_bytes(self) -> bytes:
        """The DEVICE_QUALIFIER descriptor of a high-speed capable device (USB 2.0 Table 9-9)."""
        return struct.pack("<BBHBBBBBB", 10, DescriptorType.DEVICE_QUALIFIER, self.bcd_usb, self.cls,
                           self.subclass, self.protocol, self.max_packet0, self.num_configurations, 0)


def string_descriptor(text: str) -> bytes:
    """A string descriptor (USB 2.0 section 9.6.7): UTF-16LE, at most 126 code units."""
    encoded = text.encode("utf-16-le")[:252]
    return bytes([2 + len(encoded), DescriptorType.STRING]) + encoded


# --- IN endpoints: packets and transfers -------------------------------------

_NORMAL, _FORCED, _NO_ZLP = 0, 1, 2  # how a device transfer ends on a packet boundary (BulkInPipe)

#: Whether the adapters model the host's data toggles unless told otherwise. A host that clears
#: a halt with a hand-built CLEAR_FEATURE then loses the next packet about half the time, as on
#: hardware; the core clears halts through libusb's clear_halt, which resets both sides.
DATA_TOGGLES_BY_DEFAULT = True


class HostToggles:
    """The host controller's side of the data toggles of one device: the DATA0/DATA1 value it
    sends next on each OUT endpoint and expects next on each IN endpoint (USB 2.0 8.6).

    Held by an adapter (the pyusb backend, the umockdev engine) per connected device and passed
    to :meth:`VirtualDevice.bulk_out` / :meth:`~VirtualDevice.bulk_in`, which model the packets
    of each transfer against the device's own toggles. libusb's clear_halt, SET_CONFIGURATION,
    SET_INTERFACE and a port reset reset the host's side; a CLEAR_FEATURE control request built
    by hand reaches only the device (Linux usb_clear_halt() resets both for that reason).
    """

    def __init__(self) -> None:
        self._bits: dict[int, int] = {}

    def get(self, ep: int) -> int:
        return self._bits.get(ep, 0)

    def set(self, ep: int, value: int) -> None:
        self._bits[ep] = value & 1

    def reset(self, endpoints: Iterable[int] | None = None) -> None:
        """Back to DATA0 on ``endpoints`` (None: every endpoint)."""
        if endpoints is None:
            self._bits.clear()
        else:
            for ep in endpoints:
                self._bits.pop(ep, None)



class BulkInPipe:
    """A packet-level model of one IN endpoint (bulk or interrupt).

    The device queues *device transfers* with :meth:`send`; the host consumes them in
    *host transfers* of a given buffer length with :meth:`take`. In between, data
    travels as packets of at most ``max_packet`` bytes, exactly as on the bus:

    - queued bytes form full packets; a transfer queued with ``end=True`` closes with a
      short packet, or, when its length is a multiple of ``max_packet``, a zero-length
      packet (ZLP), unless :attr:`zlp` is False (a device that never sends ZLPs);
    - a host transfer completes on a short packet or ZLP, or when its buffer is full.
      A ZLP left over after a buffer-full completion is delivered to the *next* host
      transfer as an empty read, as on a real bus;
    - a packet larger than the room left in the host buffer is babble: :class:`Overflow`.

    Partial host transfers: when full packets are queued but the device has not ended its
    transfer yet (``send(..., end=False)``), :meth:`take` moves the complete packets into
    the host transfer in progress and raises :class:`NoData`; the next :meth:`take`
    continues that same host transfer (whatever length it passes, the original length
    stays in force) until it completes. A host that gives up calls :meth:`cancel`, which
    returns the bytes the host had received (libusb reports them with its timeout).

    Data is kept as one byte stream plus the positions where device transfers end, so a
    multi-MiB transfer costs a few copies, not one object per packet. Not thread-safe by
    itself: the owning device's lock guards it.
    """

    def __init__(self, address: int, max_packet: int, *, zlp: bool = True) -> None:
        if max_packet <= 0:
            raise ValueError("max_packet must be positive")
        self.address = address
        self.max_packet = max_packet
        self.zlp = zlp
        self.halted = False
        # USB 2.0 8.6: the DATA0/DATA1 toggle of the next packet this endpoint sends. Every packet
        # the host acknowledges flips it; CLEAR_FEATURE(ENDPOINT_HALT), SET_CONFIGURATION and
        # SET_INTERFACE reset it to DATA0 (the owning device does that).
        self.toggle = 0
        self._buf = bytearray()
        self._head = 0  # stream position of _buf[0]
        # (stream position, mode): _NORMAL, _FORCED (a ZLP even when zlp is off) or _NO_ZLP
        self._ends: deque[tuple[int, int]] = deque()
        self._xfer: bytearray | None = None
        self._xfer_length = 0
        self.delivered_bytes = 0  # bytes handed to host transfers since creation

    # --- device side ---

    def send(self, data: bytes | bytearray | memoryview, end: bool = True, *, zlp: bool | None = None) -> None:
        """Queue ``data``; ``end`` closes the device transfer (short packet or ZLP follows).

        ``zlp`` False leaves out the zero-length packet of this one transfer even when
        :attr:`zlp` is on (a faulty device); None follows :attr:`zlp`.
        """
        self._buf += data
        if end:
            self._ends.append((self._head + len(self._buf), _NO_ZLP if zlp is False else _NORMAL))

    def send_short_packet(self) -> None:
        """End the transfer in progress now with a short packet: a ZLP if it sits on a packet
        boundary, sent even when :attr:`zlp` is off (used to terminate aborted transfers)."""
        self._ends.append((self._head + len(self._buf), _FORCED))

    def clear(self) -> None:
        """Drop everything queued and any host transfer in progress (aborts, clears, resets)."""
        self._head += len(self._buf)
        self._buf.clear()
        self._ends.clear()
        self._xfer = None

    @property
    def queued_bytes(self) -> int:
        """Bytes queued and not yet taken by the host."""
        return len(self._buf)

    @property
    def has_data(self) -> bool:
        """Whether any packet (including a pending ZLP) is still to be delivered."""
        return bool(self._buf) or bool(self._ends)

    @property
    def transfer_in_progress(self) -> int:
        """Bytes the unfinished host transfer has received so far (0 when none is in progress)."""
        return len(self._xfer) if self._xfer is not None else 0

    # --- host side ---

    def take(self, length: int) -> bytes:
        """Run one host transfer with a buffer of ``length`` bytes; returns its data.

        Raises :class:`NoData` when it cannot complete yet, :class:`Overflow` on babble,
        :class:`Stall` when halted. See the class docstring for partial transfers.
        """
        if self.halted:
            raise Stall(f"endpoint 0x{self.address:02X} is halted")
        if self._xfer is None:
            self._xfer = bytearray()
            self._xfer_length = max(0, int(length))
        got = self._xfer
        room = self._xfer_length - len(got)
        mp = self.max_packet
        while True:
            pending = self._pending_span()
            if pending is None:
                return self._finish()  # a zero-length packet ends the host transfer
            span, ended = pending
            if span >= mp:
                if room < mp:
                    self._babble(mp, room)
                count = min(span // mp, room // mp) * mp
                self._move(count)
                self.toggle ^= (count // mp) & 1
                room -= count
                if room == 0:
                    return self._finish()
                continue
            if not ended:
                if not got:
                    self._xfer = None
                raise NoData("no complete packet queued")
            # the short packet that ends the device transfer
            if span > room:
                self._babble(span, room)
            self._move(span)
            self.toggle ^= 1
            self._ends.popleft()
            return self._finish()

    def drop_packet(self) -> bool:
        """The next packet goes out but the host discards it (USB 2.0 8.6: its data toggle is not
        the one the host expects, so the host takes it for a retransmission). The device saw it
        acknowledged: its toggle flips and the bytes count as delivered. False: no packet is ready."""
        if self._xfer is not None:
            return False
        mp = self.max_packet
        pending = self._pending_span()
        if pending is None:
            return True  # the packet was a zero-length one
        span, ended = pending
        if span < mp and not ended:
            return False
        count = min(span, mp)
        del self._buf[:count]
        self._head += count
        self.delivered_bytes += count
        if count < mp:
            self._ends.popleft()
        self.toggle ^= 1
        return True

    def _pending_span(self) -> tuple[int, bool] | None:
        """The bytes queued up to the next message end (``ended`` True) or all queued bytes
        (False); None when the next packet is a zero-length one, which this sends (its toggle flips)."""
        while self._ends:
            position, mode = self._ends[0]
            span = position - self._head
            if span:
                return span, True
            self._ends.popleft()
            if self._sends_zlp(mode):
                self.toggle ^= 1
                return None
        return len(self._buf), False

    def _sends_zlp(self, mode: int) -> bool:
        return mode == _FORCED or (self.zlp and mode != _NO_ZLP)

    def cancel(self) -> bytes:
        """The host gives up its transfer: returns what it had received and forgets the transfer."""
        data = bytes(self._xfer) if self._xfer else b""
        self._xfer = None
        return data

    def take_blocking(self, length: int, timeout_s: float | None, cond: threading.Condition) -> bytes:
        """:meth:`take`, waiting on ``cond`` (the owner's condition, notified on new data) for up
        to ``timeout_s`` seconds (None: forever). On timeout returns the partial data if any,
        else raises :class:`NoData`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with cond:
            while True:
                try:
                    return self.take(length)
                except NoData:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        partial = self.cancel()
                        if partial:
                            return partial
                        raise
                    cond.wait(remaining)

    def _move(self, count: int) -> None:
        with memoryview(self._buf) as view:
            self._xfer += view[:count]
        del self._buf[:count]
        self._head += count
        self.delivered_bytes += count

    def _finish(self) -> bytes:
        data = bytes(self._xfer) if self._xfer else b""
        self._xfer = None
        return data

    def _babble(self, packet: int, room: int) -> None:
        # The packet is on the wire: it is consumed, what fits lands in the buffer.
        self._move(room)
        self.toggle ^= 1
        dropped = packet - room
        del self._buf[:dropped]
        self._head += dropped
        if self._ends and self._ends[0][0] == self._head:
            self._ends.popleft()
        received = self._finish()
        raise Overflow(f"a {packet}-byte packet did not fit the {room} bytes left in the host buffer", received)


# --- tracing ----------------------------------------------------------------


@dataclass(frozen=True)
class TraceEvent:
    """One completed (or refused) transaction, for I/O traces.

    ``direction``: "setup" (a control request; ``data`` is the 8-byte SETUP packet followed
    by an OUT data stage), "in" or "out" (a data stage or bulk/interrupt transfer).
    ``endpoint``: the endpoint address (0 for control). ``status``: "ok", "stall", "overflow".
    ``time_s``: the device clock in seconds.
    """

    time_s: float
    direction: str
    endpoint: int
    data: bytes
    status: str = "ok"


# --- the device ---------------------------------------------------------------


class VirtualDevice:
    """Base of every virtual USB device.

    Subclasses pass their descriptors and override :meth:`class_request`,
    :meth:`handle_bulk_out` and the ``on_*`` hooks. All state is guarded by the lock of
    :attr:`changed`, a :class:`threading.Condition` notified whenever IN data is queued
    or the device state changes; subclasses call :meth:`notify` after such changes made
    outside a host call (a button press, a timer).

    Fault injection seam: :attr:`faults` maps an endpoint address (0 for control) to a
    callable ``fault(direction, data)`` run before each transfer on that endpoint; it
    may raise a :class:`SimError` (or sleep, corrupt nothing else). Empty by default.
    :attr:`fault_injector` is the richer seam of :mod:`app.sim.faults` (None: a well-behaved device).

    An exception raised inside the model (a bug, or the MODEL_CRASH fault) never reaches the
    adapter: the transfer ends with a STALL (the endpoint halts, as firmware that hit an
    internal error does), the traceback is logged on the ``app.sim`` logger and kept in
    :attr:`crashes`.
    """

    #: How long past a device deadline :meth:`wait_for` sleeps, so it never wakes just before it.
    deadline_slack_s = 0.0005

    def __init__(
        self,
        *,
        device_desc: DeviceDesc,
        configs: Iterable[ConfigDesc],
        strings: Mapping[int, str],
        speed: Speed = Speed.FULL,
        serial: str | None = None,
        clock: Clock | None = None,
        self_powered: bool = False,
    ) -> None:
        self.speed = speed
        self.device_desc = device_desc
        self.configs: tuple[ConfigDesc, ...] = tuple(configs)
        self.strings: dict[int, str] = dict(strings)
        self.serial = serial
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.changed = threading.Condition(threading.RLock())
        self.attached = False
        self.address = 0
        self.configuration = 0
        self.self_powered = self_powered
        self.remote_wakeup = False
        self.last_activity_s: float | None = None
        self.trace: list[Callable[[TraceEvent], None]] = []
        self.faults: dict[int, Callable[[str, bytes], None]] = {}
        self.fault_injector = None  # an app.sim.faults.FaultInjector once attached
        self.crashes: list[str] = []  # tracebacks of exceptions inside the model
        self.toggle_drops = 0  # packets lost to a data toggle mismatch, both directions
        self._out_toggle: dict[int, int] = {}  # OUT endpoint -> toggle expected next (USB 2.0 8.6)
        self._alt: dict[int, int] = {}
        self._out_halted: set[int] = set()
        self.in_pipes: dict[int, BulkInPipe] = {}
        for config in self.configs:
            for interface in config.interfaces:
                for ep in interface.endpoints:
                    if ep.is_in and ep.address not in self.in_pipes:
                        # Interrupt endpoints carry one notification per transfer: no ZLPs.
                        self.in_pipes[ep.address] = BulkInPipe(
                            ep.address, ep.max_packet & 0x7FF, zlp=ep.transfer_type == TRANSFER_TYPE_BULK)
        add_listener = getattr(self.clock, "add_listener", None)
        if add_listener is not None:
            add_listener(self.notify)

    # --- life cycle ---

    def plug(self) -> None:
        """Connect to a bus (and power up): default state, address 0, unconfigured."""
        with self.changed:
            self.attached = True
            self._bus_reset()
            self.on_power_on()
            self.changed.notify_all()

    def unplug(self) -> None:
        """Disconnect: every later host call raises :class:`Gone`, waiters wake up."""
        with self.changed:
            self.attached = False
            self._bus_reset()
            self.changed.notify_all()

    def notify(self) -> None:
        """Wake everything waiting on :attr:`changed` (state changed, or the clock moved)."""
        with self.changed:
            self.changed.notify_all()

    # --- host-facing: endpoint 0 ---

    def control(self, bm_request_type: int, b_request: int, w_value: int, w_index: int,
                data_or_length: bytes | bytearray | int = b"") -> bytes:
        """One control transfer. IN: ``data_or_length`` is wLength, returns at most that many
        bytes. OUT: it is the data stage, returns b"". Unsupported: :class:`Stall`."""
        is_in = bool(bm_request_type & 0x80)
        if is_in:
            length = int(data_or_length)
            data = b""
        else:
            data = bytes(data_or_length) if not isinstance(data_or_length, int) else b""
            length = len(data)
        with self.changed:
            self._check_attached()
            self.last_activity_s = self.clock.now()
            setup = struct.pack("<BBHHH", bm_request_type, b_request, w_value & 0xFFFF, w_index & 0xFFFF, length)
            try:
                self._fault(0, "setup", setup + data)
                request_type = (bm_request_type >> 5) & 0x03
                if request_type == 0:
                    reply = self._standard_request(bm_request_type, b_request, w_value, w_index, data, length)
                elif request_type in (1, 2):
                    reply = self._guarded(0, lambda: self.class_request(
                        bm_request_type, b_request, w_value, w_index, length if is_in else data))
                else:
                    raise Stall("reserved request type")
            except Stall:
                self._trace("setup", 0, setup + data, "stall")
                raise
            reply = bytes(reply or b"")[:length] if is_in else b""
            self._trace("setup", 0, setup + data)
            if is_in:
                self._trace("in", 0, reply)
            self.changed.notify_all()
            return reply

    def class_request(self, bm_request_type: int, b_request: int, w_value: int, w_index: int,
                      data_or_length: bytes | int) -> bytes:
        """Class and vendor requests; override. Called with the lock held. Default: STALL."""
        raise Stall(f"request 0x{b_request:02X} (type 0x{bm_request_type:02X}) not supported")

    def set_configuration(self, value: int) -> None:
        """SET_CONFIGURATION (USB 2.0 9.4.7); 0 (or -1, libusb's spelling) unconfigures."""
        self.control(0x00, StdRequest.SET_CONFIGURATION, 0 if value < 0 else value, 0, b"")

    def set_interface(self, interface: int, alt: int) -> None:
        """SET_INTERFACE (USB 2.0 9.4.10)."""
        self.control(0x01, StdRequest.SET_INTERFACE, alt, interface, b"")

    def clear_halt(self, ep: int, toggles: HostToggles | None = None) -> None:
        """The host's clear halt as libusb and Linux usb_clear_halt() run it: CLEAR_FEATURE(ENDPOINT_HALT)
        (USB 2.0 9.4.1), which un-halts the endpoint and resets the device's data toggle, then the
        host resets its own toggle of ``ep`` in ``toggles``."""
        self.control(0x02, StdRequest.CLEAR_FEATURE, Feature.ENDPOINT_HALT, ep, b"")
        if toggles is not None:
            toggles.reset((ep,))

    def reset(self) -> None:
        """A port reset as a host stack performs it: bus reset (USB 2.0 7.1.7.5), then the host
        re-enumerates and restores the configuration and alternate settings it had set."""
        with self.changed:
            self._check_attached()
            configuration, alts = self.configuration, dict(self._alt)
            self._bus_reset()
            if configuration:
                self._set_configuration(configuration)
                for interface, alt in alts.items():
                    if alt:
                        self._set_interface(interface, alt)
            self.changed.notify_all()

    # --- host-facing: data endpoints ---

    def bulk_out(self, ep: int, data: bytes | bytearray | memoryview, toggles: HostToggles | None = None) -> int:
        """One Bulk-OUT host transfer; returns the bytes the device took (all of them unless it
        NAKs the rest). :class:`NoData`: NAK, nothing taken. :class:`Stall`: halted.

        ``toggles``: the host's data toggles (:class:`HostToggles`); when the host's toggle
        for ``ep`` is not the one the device expects, the device acknowledges the first packet
        and drops it as a retransmission (USB 2.0 8.6), as real hardware does. None: the
        toggles are not modelled for this call.
        """
        with self.changed:
            self._check_attached()
            desc = self._endpoint(ep, want_in=False)
            if ep in self._out_halted:
                self._trace("out", ep, b"", "stall")
                raise Stall(f"endpoint 0x{ep:02X} is halted")
            self.last_activity_s = self.clock.now()
            if self.faults:
                self._fault(ep, "out", bytes(data))
            mp = max(1, desc.max_packet & 0x7FF)
            dropped = 0
            if toggles is not None and toggles.get(ep) != self._out_toggle.get(ep, 0):
                dropped = min(mp, len(data))
                self.toggle_drops += 1
                self._trace("out", ep, bytes(data[:dropped]), "dropped")
                toggles.set(ep, self._out_toggle.get(ep, 0))  # the host flips on the ACK: in step again
                data = data[dropped:]
                if not data:
                    self.changed.notify_all()
                    return dropped
            injector = self.fault_injector
            try:
                if injector is not None:
                    taken = injector.bulk_out(self, ep, data, self._handle_out)
                else:
                    taken = self._handle_out(ep, data)
            except Stall:
                self._trace("out", ep, bytes(data), "stall")
                self.changed.notify_all()
                raise
            packets = -(-taken // mp) if taken else (0 if data else 1)  # a zero-length packet is one
            self._out_toggle[ep] = self._out_toggle.get(ep, 0) ^ (packets & 1)
            if toggles is not None:
                toggles.set(ep, self._out_toggle[ep])
            if self.trace:
                self._trace("out", ep, bytes(data[:taken]))
            self.changed.notify_all()
            return dropped + taken

    def _handle_out(self, ep: int, data: bytes | bytearray | memoryview) -> int:
        return self._guarded(ep, lambda: self.handle_bulk_out(ep, data))

    def _guarded(self, ep: int, action: Callable[[], object]):
        """Run model code; an exception inside it halts ``ep`` and becomes a STALL (class docstring)."""
        try:
            return action()
        except SimError:
            raise
        except Exception as exc:
            text = traceback.format_exc()
            self.crashes.append(text)
            log.error("virtual device %s: the model raised an exception; endpoint 0x%02X answers with a STALL\n%s",
                      self.serial, ep, text)
            if ep:
                self.halt(ep)
            raise Stall(f"the device model failed: {type(exc).__name__}: {exc}") from None

    def bulk_in(self, ep: int, length: int, toggles: HostToggles | None = None) -> bytes:
        """One Bulk-IN host transfer with a ``length``-byte buffer (see :meth:`BulkInPipe.take`).

        ``toggles`` as for :meth:`bulk_out`: on a mismatch the host discards the first packet.
        """
        return self._take_in(ep, length, TRANSFER_TYPE_BULK, toggles)

    def interrupt_in(self, ep: int, length: int, toggles: HostToggles | None = None) -> bytes:
        """One Interrupt-IN host transfer with a ``length``-byte buffer."""
        return self._take_in(ep, length, TRANSFER_TYPE_INTERRUPT, toggles)

    def cancel_in(self, ep: int) -> bytes:
        """The host abandons its IN transfer on ``ep`` (timeout, URB discarded): returns the bytes
        that transfer had received, and the next host transfer starts afresh."""
        with self.changed:
            pipe = self.in_pipes.get(ep)
            return pipe.cancel() if pipe is not None else b""

    def handle_bulk_out(self, ep: int, data: bytes | bytearray | memoryview) -> int:
        """Consume one Bulk-OUT host transfer; override. Called with the lock held."""
        raise Stall(f"endpoint 0x{ep:02X} takes no data")

    # --- blocking convenience for in-process adapters ---

    def wait_for(self, predicate: Callable[[], object], timeout_s: float | None):
        """Evaluate ``predicate`` under the lock until it returns something other than None,
        waiting on :attr:`changed` in between; returns that value, or None after ``timeout_s``
        seconds (None: no limit). Device deadlines (:meth:`next_deadline`) wake it on time."""
        deadline = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)
        with self.changed:
            while True:
                result = predicate()
                if result is not None:
                    return result
                wait_s = None if deadline is None else deadline - time.monotonic()
                if wait_s is not None and wait_s <= 0:
                    return None
                due = self.next_deadline()
                if due is not None and self.clock.realtime:
                    until_due = max(0.0, due - self.clock.now()) + self.deadline_slack_s
                    wait_s = until_due if wait_s is None else min(wait_s, until_due)
                self.changed.wait(wait_s)

    # --- hooks ---

    def on_power_on(self) -> None:
        """Power-up state of the function (called by :meth:`plug`, lock held)."""

    def on_bus_reset(self) -> None:
        """A bus reset or unplug: endpoints are gone (lock held)."""

    def on_configured(self, value: int) -> None:
        """SET_CONFIGURATION(``value``) was accepted (value 0: unconfigured). Lock held."""

    def on_clear_halt(self, ep: int) -> None:
        """CLEAR_FEATURE(ENDPOINT_HALT) on ``ep`` was accepted (lock held)."""

    def on_in_taken(self, ep: int) -> None:
        """The host completed a transfer on IN endpoint ``ep`` (lock held)."""

    def service(self) -> None:
        """Time-driven work, run before every IN attempt (lock held): deliver what is due."""

    def next_deadline(self) -> float | None:
        """Device-clock time (s) of the next timed event that can produce IN data, if any."""
        return None

    # --- state queries ---

    @property
    def configured(self) -> bool:
        return self.attached and self.configuration != 0

    def active_config(self) -> ConfigDesc | None:
        return next((c for c in self.configs if c.value == self.configuration), None) if self.configuration else None

    def endpoints(self) -> dict[int, EndpointDesc]:
        """Endpoints of the active configuration's current alternate settings, by address."""
        config = self.active_config()
        if config is None:
            return {}
        found: dict[int, EndpointDesc] = {}
        for interface in config.interfaces:
            if interface.alt == self._alt.get(interface.number, 0):
                for ep in interface.endpoints:
                    found[ep.address] = ep
        return found

    def halt(self, ep: int) -> None:
        """Halt endpoint ``ep`` (the device's own decision, e.g. a bad USBTMC header). Lock held."""
        if ep & 0x80:
            self.in_pipes[ep].halted = True
        else:
            self._out_halted.add(ep)

    def is_halted(self, ep: int) -> bool:
        with self.changed:
            if ep & 0x80:
                pipe = self.in_pipes.get(ep)
                return bool(pipe and pipe.halted)
            return ep in self._out_halted

    # --- internals ---

    def _check_attached(self) -> None:
        if not self.attached:
            raise Gone("the device is not connected")

    def _endpoint(self, ep: int, want_in: bool, transfer_type: int | None = None) -> EndpointDesc:
        desc = self.endpoints().get(ep)
        if desc is None or desc.is_in != want_in or (transfer_type is not None and desc.transfer_type != transfer_type):
            raise Stall(f"no such endpoint 0x{ep:02X} in the active configuration")
        return desc

    def _take_in(self, ep: int, length: int, transfer_type: int, toggles: HostToggles | None = None) -> bytes:
        with self.changed:
            self._check_attached()
            self._endpoint(ep, want_in=True, transfer_type=transfer_type)
            self._guarded(ep, self.service)
            self._fault(ep, "in", b"")
            if self.fault_injector is not None:
                self.fault_injector.bulk_in(self, ep)
            pipe = self.in_pipes[ep]
            in_step = toggles is None or toggles.get(ep) == pipe.toggle
            if not in_step and not pipe.halted and pipe.drop_packet():
                self.toggle_drops += 1
                self._trace("in", ep, b"", "dropped")
                in_step = True  # the host acknowledged it and flipped; the device flipped too
            try:
                data = pipe.take(length)
            except Overflow as exc:
                self._trace("in", ep, exc.received, "overflow")
                self.on_in_taken(ep)
                self.changed.notify_all()
                raise
            except Stall:
                self._trace("in", ep, b"", "stall")
                raise
            finally:
                if in_step and toggles is not None:
                    toggles.set(ep, pipe.toggle)
            self._trace("in", ep, data)
            self.on_in_taken(ep)
            self.changed.notify_all()
            return data

    def _fault(self, ep: int, direction: str, data: bytes) -> None:
        fault = self.faults.get(ep)
        if fault is not None:
            fault(direction, data)

    def _trace(self, direction: str, ep: int, data: bytes, status: str = "ok") -> None:
        if self.trace:
            event = TraceEvent(self.clock.now(), direction, ep, bytes(data), status)
            for listener in list(self.trace):
                listener(event)

    def _bus_reset(self) -> None:
        self.address = 0
        self.configuration = 0
        self._alt.clear()
        self._out_halted.clear()
        self._out_toggle.clear()
        for pipe in self.in_pipes.values():
            pipe.clear()
            pipe.halted = False
            pipe.toggle = 0
        self.on_bus_reset()

    def _set_configuration(self, value: int) -> None:
        if value != 0 and not any(c.value == value for c in self.configs):
            raise Stall(f"no configuration {value}")
        # USB 2.0 9.4.7/9.4.5: (re)configuring resets halts and data toggles of all endpoints.
        self.configuration = value
        self._alt.clear()
        self._out_halted.clear()
        self._out_toggle.clear()
        for pipe in self.in_pipes.values():
            pipe.clear()
            pipe.halted = False
            pipe.toggle = 0
        self.on_configured(value)

    def _set_interface(self, interface: int, alt: int) -> None:
        config = self.active_config()
        if config is None or not any(i.number == interface and i.alt == alt for i in config.interfaces):
            raise Stall(f"no alternate setting {alt} of interface {interface}")
        self._alt[interface] = alt
        for i in config.interfaces:
            if i.number == interface:
                for ep in i.endpoints:
                    # USB 2.0 9.4.10: SET_INTERFACE resets the interface's halts and data toggles.
                    self._out_halted.discard(ep.address)
                    self._out_toggle.pop(ep.address, None)
                    if ep.is_in:
                        self.in_pipes[ep.address].clear()
                        self.in_pipes[ep.address].halted = False
                        self.in_pipes[ep.address].toggle = 0

    def _interface_exists(self, number: int) -> bool:
        config = self.active_config()
        return config is not None and any(i.number == number for i in config.interfaces)

    def _standard_request(self, bm: int, request: int, value: int, index: int, data: bytes, length: int) -> bytes:
        recipient = bm & 0x1F
        is_in = bool(bm & 0x80)
        # USB 2.0 9.4: requests other than these, or with the wrong direction, are Request Errors (STALL).
        if request == StdRequest.GET_DESCRIPTOR and is_in and recipient == 0:
            return self._get_descriptor(value >> 8, value & 0xFF, index)
        if request == StdRequest.GET_STATUS and is_in:
            if recipient == 0:
                return bytes([int(self.self_powered) | int(self.remote_wakeup) << 1, 0])
            if recipient == 1 and self._interface_exists(index & 0xFF):
                return b"\x00\x00"
            if recipient == 2:
                ep = index & 0xFF
                if ep & 0x7F == 0:
                    return b"\x00\x00"
                self._endpoint(ep, want_in=bool(ep & 0x80))
                return bytes([int(self.is_halted(ep)), 0])
            raise Stall("GET_STATUS: no such recipient")
        if request in (StdRequest.CLEAR_FEATURE, StdRequest.SET_FEATURE) and not is_in:
            setting = request == StdRequest.SET_FEATURE
            if recipient == 2 and value == Feature.ENDPOINT_HALT:
                ep = index & 0xFF
                if ep & 0x7F == 0:
                    return b""
                self._endpoint(ep, want_in=bool(ep & 0x80))
                if setting:
                    self.halt(ep)
                else:
                    # USB 2.0 9.4.5: clearing ENDPOINT_HALT resets the endpoint's data toggle to DATA0
                    # (on the device; the host resets its own only through its clear-halt call).
                    if ep & 0x80:
                        self.in_pipes[ep].halted = False
                        self.in_pipes[ep].toggle = 0
                    else:
                        self._out_halted.discard(ep)
                        self._out_toggle.pop(ep, None)
                    self.on_clear_halt(ep)
                return b""
            if recipient == 0 and value == Feature.DEVICE_REMOTE_WAKEUP:
                self.remote_wakeup = setting
                return b""
            raise Stall("feature not supported")
        if request == StdRequest.SET_ADDRESS and not is_in and recipient == 0:
            self.address = value & 0x7F
            return b""
        if request == StdRequest.GET_CONFIGURATION and is_in and recipient == 0:
            return bytes([self.configuration])
        if request == StdRequest.SET_CONFIGURATION and not is_in and recipient == 0:
            self._set_configuration(value & 0xFF)
            return b""
        if request == StdRequest.GET_INTERFACE and is_in and recipient == 1:
            if not self._interface_exists(index & 0xFF):
                raise Stall("GET_INTERFACE: no such interface")
            return bytes([self._alt.get(index & 0xFF, 0)])
        if request == StdRequest.SET_INTERFACE and not is_in and recipient == 1:
            self._set_interface(index & 0xFF, value & 0xFF)
            return b""
        raise Stall(f"standard request {request} not supported")

    def _get_descriptor(self, kind: int, index: int, langid: int) -> bytes:
        if kind == DescriptorType.DEVICE:
            return self.device_desc.to_bytes()
        if kind == DescriptorType.CONFIGURATION:
            if index >= len(self.configs):
                raise Stall(f"no configuration descriptor {index}")
            return self.configs[index].to_bytes()
        if kind == DescriptorType.STRING:
            if index == 0:
                return bytes([4, DescriptorType.STRING]) + struct.pack("<H", LANGID_EN_US)
            if index not in self.strings:
                raise Stall(f"no string descriptor {index}")
            return string_descriptor(self.strings[index])
        if kind == DescriptorType.DEVICE_QUALIFIER and self.speed == Speed.HIGH:
            return self.device_desc.qualifier_bytes()
        raise Stall(f"no descriptor of type {kind}")

