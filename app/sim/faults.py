"""A fault injector for the virtual instruments: make any USBTMC device misbehave, once or on a schedule.

    from app.sim.faults import FaultKind, Fault, FaultInjector, parse_fault_spec
    inj = FaultInjector.attach(device)            # idempotent; also device.fault_injector
    inj.add(Fault(FaultKind.STALL_BULK_OUT, after_bytes=100))
    inj.add(parse_fault_spec("size-zero:times=always"))
    ...
    inj.fired                                     # [(FaultKind.STALL_BULK_OUT, "..."), ...]

Every kind is something a real instrument has been seen to do, or a rule of USBTMC 1.0 /
USB488 1.0 / USB 2.0 it breaks; :data:`DESCRIPTIONS` says which in one line, and
docs/faults.md describes what the device does and what a host is expected to do.

A fault fires at its *opportunities*: the transfers or requests where its misbehaviour
can happen (a reply fault at the next reply, STATUS_PENDING at the next CHECK_*_STATUS
request...). ``every=N`` fires at every Nth opportunity, ``times`` limits how often it
fires (None: no limit). A fault fires only where it applies (NO_ZLP needs a reply that
ends on a packet boundary; SRQ_DURING_QUERY an Interrupt-IN endpoint), and what fired
is listed in :attr:`FaultInjector.fired`.

The injector works inside the device model (:class:`~app.sim.usbtmc_device.UsbtmcDevice`
calls it at fixed points with the device lock held), so every adapter serves the faults
alike: the in-process pyusb backend, the umockdev server (``tmc sim run --fault``) and the
GUI's device browser. Standard library only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum

from .device import Gone, NoData, Stall
from app.protocol.usbtmc import pack_header

from .usbtmc_device import MsgId, Request, Status, StbBit, UsbtmcDevice


class FaultKind(Enum):
    """What the device does wrong; the value is the name used by ``--fault`` and the GUI."""

    STALL_BULK_OUT = "stall-bulk-out"
    STALL_BULK_IN = "stall-bulk-in"
    NO_ANSWER = "no-answer"
    WRONG_BTAG = "wrong-btag"
    WRONG_MSGID = "wrong-msgid"
    SHORT_HEADER = "short-header"
    GARBAGE_HEADER = "garbage-header"
    SIZE_ZERO = "size-zero"
    SIZE_TOO_LARGE = "size-too-large"
    SIZE_TOO_SMALL = "size-too-small"
    EARLY_SHORT_PACKET = "early-short-packet"
    NO_ZLP = "no-zlp"
    SPLIT_REPLY = "split-reply"
    STATUS_PENDING = "status-pending"
    LEFTOVER_DATA = "leftover-data"
    STALE_INTERRUPT_TAG = "stale-interrupt-tag"
    SRQ_DURING_QUERY = "srq-during-query"
    UNPLUG = "unplug"
    STALL_TRIGGER = "stall-trigger"
    STALL_REQUEST_IN = "stall-request-in"
    STALL_VENDOR = "stall-vendor"
    PARTIAL_OUT_TIMEOUT = "partial-out-timeout"
    TOGGLE_MISMATCH = "toggle-mismatch"
    MODEL_CRASH = "model-crash"


#: One line per kind: what the device does (the GUI's menu and ``tmc sim run --fault help``).
DESCRIPTIONS: dict[FaultKind, str] = {
    FaultKind.STALL_BULK_OUT: "halts Bulk-OUT after taking after_bytes of a message (USBTMC 3.2.2.2)",
    FaultKind.STALL_BULK_IN: "halts Bulk-IN when the host reads (USBTMC 3.3)",
    FaultKind.NO_ANSWER: "never answers a REQUEST_DEV_DEP_MSG_IN until aborted or cleared (USBTMC 3.3)",
    FaultKind.WRONG_BTAG: "answers with a bTag the host did not send (USBTMC Table 8)",
    FaultKind.WRONG_MSGID: "answers with MsgID VENDOR_SPECIFIC_IN instead of DEV_DEP_MSG_IN (USBTMC Table 8)",
    FaultKind.SHORT_HEADER: "sends a reply transfer shorter than the 12-byte header (USBTMC 3.3.1)",
    FaultKind.GARBAGE_HEADER: "sends 12 bytes of garbage for the reply header (USBTMC Table 8)",
    FaultKind.SIZE_ZERO: "answers with TransferSize 0 and EOM clear (USBTMC Table 9: must be > 0)",
    FaultKind.SIZE_TOO_LARGE: "sends more than the host asked for (USBTMC 3.2.1.2 Table 4, 3.3.1)",
    FaultKind.SIZE_TOO_SMALL: "announces fewer bytes in TransferSize than it sends (USBTMC Table 9)",
    FaultKind.EARLY_SHORT_PACKET: "ends the reply with a short packet before TransferSize (USB 2.0 5.8.3)",
    FaultKind.NO_ZLP: "leaves out the zero-length packet after a reply that fills its last packet (USB 2.0 5.8.3)",
    FaultKind.SPLIT_REPLY: "splits a reply into 1-byte transfers, EOM on the last (legal: USBTMC 3.3.1)",
    FaultKind.STATUS_PENDING: "answers polls CHECK_*_STATUS with PENDING a few times (USBTMC 4.2.1.3-4.2.1.7)",
    FaultKind.LEFTOVER_DATA: "leaves data in the Bulk-IN FIFO for the clear or abort to drain (USBTMC 4.2.1.5/4.2.1.7)",
    FaultKind.STALE_INTERRUPT_TAG: "sends a stale status-byte notification before the right one (USB488 4.3.1.2)",
    FaultKind.SRQ_DURING_QUERY: "raises a service request while a query is being answered (USB488 3.4.2)",
    FaultKind.UNPLUG: "disappears from the bus mid-transfer; comes back after replug_after_s or on demand",
    FaultKind.STALL_TRIGGER: "halts Bulk-OUT on a TRIGGER message (USB488 3.2.1.1)",
    FaultKind.STALL_REQUEST_IN: "halts Bulk-OUT on a REQUEST_DEV_DEP_MSG_IN (USBTMC 3.2.2.3)",
    FaultKind.STALL_VENDOR: "halts Bulk-OUT on a vendor-specific message (USBTMC Table 2)",
    FaultKind.PARTIAL_OUT_TIMEOUT: ("takes part of a message, then NAKs until the host gives up "
                                    "(USBTMC 4.2.1.3 Table 22)"),
    FaultKind.TOGGLE_MISMATCH: "loses the first packet of a Bulk-OUT transfer to a data toggle mismatch (USB 2.0 8.6)",
    FaultKind.MODEL_CRASH: "the device model raises an exception on the next Bulk-OUT transfer (answered with a STALL)",
}

_REPLY_KINDS = (FaultKind.WRONG_BTAG, FaultKind.WRONG_MSGID, FaultKind.SHORT_HEADER, FaultKind.GARBAGE_HEADER,
                FaultKind.SIZE_TOO_LARGE, FaultKind.SIZE_TOO_SMALL, FaultKind.EARLY_SHORT_PACKET, FaultKind.NO_ZLP)
_HEADER_STALLS = {
    FaultKind.STALL_TRIGGER: (MsgId.TRIGGER,),
    FaultKind.STALL_REQUEST_IN: (MsgId.REQUEST_DEV_DEP_MSG_IN,),
    FaultKind.STALL_VENDOR: (MsgId.VENDOR_SPECIFIC_OUT, MsgId.REQUEST_VENDOR_SPECIFIC_IN),
}
_CHECK_REQUESTS = (Request.CHECK_ABORT_BULK_OUT_STATUS, Request.CHECK_ABORT_BULK_IN_STATUS, Request.CHECK_CLEAR_STATUS)
_LEFTOVER = b"LEFTOVER-REPLY-DATA;"


def _in_header(msg_id: int, btag: int, size: int, attributes: int) -> bytes:
    """A Bulk-IN header as the device would build it, bTag checks and all (USBTMC 3.3.1 Table 8/9)."""
    return pack_header(msg_id, btag, size, attributes)


@dataclass(frozen=True)
class Fault:
    """One misbehaviour and its schedule.

    ``times``: how often it fires (None: every opportunity); ``every``: fire at every Nth
    opportunity only. ``after_bytes``: STALL_BULK_OUT and UNPLUG act once the device has
    taken this many Bulk-OUT bytes (headers included) counted from the start of the next
    DEV_DEP_MSG_OUT transfer; PARTIAL_OUT_TIMEOUT takes this many bytes of the transfer
    (default: one packet). ``polls``: how many CHECK_*_STATUS polls STATUS_PENDING answers
    PENDING. ``replug_after_s``: UNPLUG plugs the device back after this many seconds
    (None: only when :meth:`FaultInjector.replug` is called).
    """

    kind: FaultKind
    times: int | None = 1
    every: int = 1
    after_bytes: int | None = None
    polls: int = 3
    replug_after_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FaultKind):
            raise TypeError(f"kind must be a FaultKind, not {self.kind!r}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be 1 or more (None, spelled times=always, for no limit), not {self.times}")
        if self.every < 1:
            raise ValueError(f"every must be 1 or more, not {self.every}")
        if self.after_bytes is not None and self.after_bytes < 0:
            raise ValueError(f"after_bytes must not be negative, not {self.after_bytes}")
        if self.polls < 1:
            raise ValueError(f"polls must be 1 or more, not {self.polls}")
        if self.replug_after_s is not None and self.replug_after_s < 0:
            raise ValueError(f"replug_after_s must not be negative, not {self.replug_after_s}")

    def spec(self) -> str:
        """The ``--fault`` spelling of this fault (what :func:`parse_fault_spec` reads back)."""
        options = []
        for field in fields(self)[1:]:
            value = getattr(self, field.name)
            if value != field.default:
                options.append(f"{field.name}={'always' if value is None else value}")
        return self.kind.value + (":" + ",".join(options) if options else "")


def parse_fault_spec(spec: str) -> Fault:
    """A :class:`Fault` from its text form, ``KIND[:OPTION=VALUE,...]``.

    ``KIND`` is a :class:`FaultKind` value (``stall-bulk-out``; underscores and case are
    accepted too); options are the :class:`Fault` fields, ``times=always`` for no limit.
    Raises ValueError naming the part that is wrong.
    """
    text = spec.strip()
    name, _, rest = text.partition(":")
    key = name.strip().lower().replace("_", "-")
    kind = next((k for k in FaultKind if k.value == key), None)
    if kind is None:
        raise ValueError(f"unknown fault kind {name.strip()!r} in {spec!r}; known: "
                         + ", ".join(k.value for k in FaultKind))
    known = {f.name: f for f in fields(Fault)[1:]}
    values: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        option, eq, raw = part.partition("=")
        option = option.strip().replace("-", "_")
        raw = raw.strip()
        if option not in known:
            raise ValueError(f"unknown option {option!r} in {spec!r}; {kind.value} takes: {', '.join(known)}")
        if not eq or not raw:
            raise ValueError(f"option {option!r} in {spec!r} needs a value ({option}=...)")
        try:
            if option == "times" and raw.lower() in ("always", "inf", "none"):
                values[option] = None
            elif option == "replug_after_s":
                values[option] = float(raw)
            else:
                values[option] = int(raw, 0)
        except ValueError:
            raise ValueError(f"{option}={raw!r} in {spec!r} is not a number") from None
    try:
        return Fault(kind, **values)
    except ValueError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None


class _Armed:
    """A fault and its progress through its schedule."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.seen = 0  # opportunities so far
        self.fired = 0

    @property
    def spent(self) -> bool:
        return self.fault.times is not None and self.fired >= self.fault.times

    def due(self) -> bool:
        """Count an opportunity; True when the fault fires at it."""
        if self.spent:
            return False
        self.seen += 1
        return self.seen % self.fault.every == 0


class FaultInjector:
    """The faults armed on one device; see the module docstring.

    Thread-safe through the device's lock: the device calls the hooks below with it held,
    and :meth:`add`, :meth:`clear`, :meth:`replug` take it.
    """

    def __init__(self, device: UsbtmcDevice, bus=None) -> None:
        self.device = device
        self.bus = bus
        self.fired: list[tuple[FaultKind, str]] = []
        #: Called to take the device off its bus and put it back (UNPLUG); set by an adapter
        #: whose bus is not a VirtualBus (the umockdev testbed). None: the device alone.
        self.on_unplug: Callable[[], None] | None = None
        self.on_replug: Callable[[], None] | None = None
        self._armed: list[_Armed] = []
        self._out_count: int | None = None  # Bulk-OUT bytes counted for after_bytes, None: not counting
        self._naking = False  # PARTIAL_OUT_TIMEOUT: NAK Bulk-OUT until an abort, clear or halt clear
        self._keep_input = False
        self._split = False  # SPLIT_REPLY: the reply being sent goes out one byte per transfer
        self._pending: dict[int, int] = {}  # CHECK_* bRequest -> PENDING answers left
        self._unplugged = False
        self._replug_lock = threading.Lock()  # the replug timer and a user may replug at once
        self._timer: threading.Timer | None = None

    # --- the test API ---

    @classmethod
    def attach(cls, device: UsbtmcDevice, bus=None) -> FaultInjector:
        """The device's injector, created on first use (``device.fault_injector`` from then on).

        ``bus`` (a :class:`~app.sim.bus.VirtualBus`) lets UNPLUG take the device off that bus
        and plug it back; without one the device only powers off and on.
        """
        if not isinstance(device, UsbtmcDevice):
            raise TypeError(f"faults are injected into USBTMC devices, not {type(device).__name__}")
        with device.changed:
            injector = device.fault_injector
            if injector is None:
                injector = device.fault_injector = cls(device, bus)
            elif bus is not None:
                injector.bus = bus
            return injector

    def add(self, fault: Fault) -> Fault:
        """Arm ``fault`` (in addition to those already armed); returns it."""
        with self.device.changed:
            self._armed.append(_Armed(fault))
        return fault

    def clear(self) -> None:
        """Disarm every fault and end any misbehaviour in progress (a held request is answered)."""
        with self.device.changed:
            self._armed.clear()
            self._out_count = None
            self._naking = False
            self._keep_input = False
            self._split = False
            self._pending.clear()
            self.device._in_hold = False
            self.device._serve()
            self.device.changed.notify_all()

    @property
    def armed(self) -> list[Fault]:
        """The faults that can still fire."""
        with self.device.changed:
            return [a.fault for a in self._armed if not a.spent]

    @property
    def unplugged(self) -> bool:
        """Whether an UNPLUG fault has taken the device off its bus and it is not back yet."""
        return self._unplugged

    def replug(self) -> None:
        """Plug the device back after an UNPLUG (no-op when it is connected)."""
        with self._replug_lock:
            timer, self._timer = self._timer, None
            if timer is not None and timer is not threading.current_thread():
                timer.cancel()
            if not self._unplugged:
                return
            self._unplugged = False
        if self.on_replug is not None:
            self.on_replug()
        elif self.bus is not None:
            self.bus.plug(self.device)
        else:
            self.device.plug()
            self.device.set_configuration(self.device.configs[0].value)

    # --- hooks the device calls (lock held) ---

    def _fire(self, kinds) -> _Armed | None:
        for armed in self._armed:
            if armed.fault.kind in kinds and armed.due():
                return armed
        return None

    def _record(self, armed: _Armed, detail: str) -> None:
        armed.fired += 1
        self.fired.append((armed.fault.kind, detail))

    def bulk_out(self, device: UsbtmcDevice, ep: int, data, process: Callable[[int, object], int]) -> int:
        """One Bulk-OUT host transfer; ``process`` is the device's normal handling."""
        if ep != device.bulk_out_ep:
            return process(ep, data)
        if self._naking:
            raise NoData("the device takes no more of this transfer (PARTIAL_OUT_TIMEOUT)")
        mp = device.endpoints()[ep].max_packet & 0x7FF
        armed = self._fire((FaultKind.MODEL_CRASH,))
        if armed is not None:
            self._record(armed, f"exception inside the model on a {len(data)}-byte Bulk-OUT transfer")
            return device._guarded(ep, _crash)
        armed = self._fire((FaultKind.TOGGLE_MISMATCH,)) if len(data) else None
        if armed is not None:
            dropped = min(mp, len(data))
            device.toggle_drops += 1
            self._record(armed, f"dropped the first {dropped}-byte packet of a {len(data)}-byte transfer")
            if len(data) <= dropped:
                return dropped
            # What is left starts mid-transfer: refusing it is this fault's doing, not the host's.
            device._quiet_refusals = True
            try:
                return dropped + process(ep, data[dropped:])
            finally:
                device._quiet_refusals = False
        partial = next((a for a in self._armed if a.fault.kind == FaultKind.PARTIAL_OUT_TIMEOUT and not a.spent), None)
        if partial is not None and len(data) > 1 and partial.due():
            take = min(partial.fault.after_bytes if partial.fault.after_bytes is not None else mp, len(data) - 1)
            taken = process(ep, data[:take])
            self._naking = True
            self._keep_input = True
            self._record(partial, f"took {taken} of {len(data)} bytes, then NAKs")
            return taken
        return self._stall_or_unplug(device, ep, data, process)

    def _stall_or_unplug(self, device, ep, data, process) -> int:
        watched = [a for a in self._armed if a.fault.kind in (FaultKind.STALL_BULK_OUT, FaultKind.UNPLUG)
                   and not a.spent]
        if not watched:
            return process(ep, data)
        if self._out_count is None:
            if not (len(data) and data[0] == MsgId.DEV_DEP_MSG_OUT and device._xfer is None and not device._hdr):
                return process(ep, data)
            self._out_count = 0
        armed = watched[0]
        limit = armed.fault.after_bytes or 0
        room = limit - self._out_count
        if room >= len(data):
            self._out_count += len(data)
            return process(ep, data)
        if not armed.due():
            self._out_count = None
            return process(ep, data)
        taken = process(ep, data[:room]) if room > 0 else 0
        self._out_count = None
        if armed.fault.kind == FaultKind.UNPLUG:
            self._record(armed, f"unplugged after taking {limit} bytes of a message")
            self._unplug(armed.fault)
            raise Gone("the device was unplugged (UNPLUG fault)")
        device.halt(ep)
        self._record(armed, f"halted Bulk-OUT after taking {limit} bytes of a message ({taken} of this transfer)")
        raise Stall("Bulk-OUT halted mid-message (STALL_BULK_OUT fault)")

    def bulk_in(self, device: UsbtmcDevice, ep: int) -> None:
        if ep != device.bulk_in_ep:
            return
        armed = self._fire((FaultKind.STALL_BULK_IN, FaultKind.UNPLUG))
        if armed is None:
            return
        if armed.fault.kind == FaultKind.UNPLUG:
            if armed.fault.after_bytes:  # counted on Bulk-OUT: not this opportunity
                armed.seen -= 1
                return
            self._record(armed, "unplugged at a Bulk-IN read")
            self._unplug(armed.fault)
            raise Gone("the device was unplugged (UNPLUG fault)")
        device.halt(ep)
        self._record(armed, "halted Bulk-IN at a read")

    def header(self, device: UsbtmcDevice, msg_id: int, btag: int) -> str | None:
        """A Bulk-OUT header arrived; returns a reason to refuse it (halt Bulk-OUT), or None."""
        for kind, ids in _HEADER_STALLS.items():
            if msg_id in ids:
                armed = self._fire((kind,))
                if armed is not None:
                    self._record(armed, f"halted Bulk-OUT on MsgID {msg_id} bTag {btag}")
                    return f"MsgID {msg_id} refused ({kind.name} fault)"
        if msg_id == MsgId.REQUEST_DEV_DEP_MSG_IN:
            armed = self._fire((FaultKind.NO_ANSWER,))
            if armed is not None:
                device._in_hold = True
                self._record(armed, f"holds REQUEST_DEV_DEP_MSG_IN bTag {btag} unanswered")
            if device.has_interrupt_in and device.attached:
                armed = self._fire((FaultKind.SRQ_DURING_QUERY,))
                if armed is not None:
                    stb = device.status.stb() | StbBit.MSS
                    device.request_service(stb)
                    self._record(armed, f"SRQ notification (STB 0x{stb:02X}) during the query bTag {btag}")
        return None

    def reply_count(self, device: UsbtmcDevice, count: int) -> int:
        """How many message bytes the next Bulk-IN transfer carries (normally ``count``)."""
        if count <= 0:
            return count
        armed = self._fire((FaultKind.SIZE_ZERO,))
        if armed is not None:
            self._record(armed, "TransferSize 0 with EOM clear")
            return 0
        if not self._split:
            armed = self._fire((FaultKind.SPLIT_REPLY,))
            if armed is not None and count > 1:
                self._split = True
                self._record(armed, "reply split into 1-byte transfers")
            elif armed is not None:
                armed.seen -= 1  # a 1-byte reply cannot be split: wait for a longer one
        return 1 if self._split else count

    def send_reply(self, device: UsbtmcDevice, btag: int, max_bytes: int, chunk: bytes, attributes: int) -> bool:
        """Queue a malformed DEV_DEP_MSG_IN transfer instead of the right one; False: send it normally."""
        if attributes & 0x01:
            self._split = False
        mp = device.in_pipes[device.bulk_in_ep].max_packet
        pad = bytes(-len(chunk) % 4)
        for armed in self._armed:
            kind = armed.fault.kind
            if kind not in _REPLY_KINDS or armed.spent:
                continue
            if kind == FaultKind.NO_ZLP and (12 + len(chunk) + len(pad)) % mp:
                continue  # only a reply that fills its last packet has a ZLP to leave out
            if kind in (FaultKind.SIZE_TOO_SMALL, FaultKind.EARLY_SHORT_PACKET) and len(chunk) < 2:
                continue
            if not armed.due():
                continue
            if kind == FaultKind.NO_ZLP:
                device._queue_in_frame(btag, _in_header(MsgId.DEV_DEP_MSG_IN, btag, len(chunk),
                                                             attributes) + chunk + pad, zlp=False)
                detail = f"no ZLP after a {12 + len(chunk) + len(pad)}-byte reply"
            elif kind == FaultKind.WRONG_BTAG:
                wrong = btag % 255 + 1
                device._queue_in_frame(btag, _in_header(MsgId.DEV_DEP_MSG_IN, wrong, len(chunk),
                                                             attributes) + chunk + pad)
                detail = f"bTag {wrong} in the answer to bTag {btag}"
            elif kind == FaultKind.WRONG_MSGID:
                device._queue_in_frame(btag, _in_header(MsgId.VENDOR_SPECIFIC_IN, btag, len(chunk), attributes) + chunk + pad)
                detail = f"MsgID {int(MsgId.VENDOR_SPECIFIC_IN)} in the answer to bTag {btag}"
            elif kind == FaultKind.SHORT_HEADER:
                header = _in_header(MsgId.DEV_DEP_MSG_IN, btag, len(chunk), attributes)
                device._queue_in_frame(btag, header[:7])
                detail = "a 7-byte transfer for the answer"
            elif kind == FaultKind.GARBAGE_HEADER:
                device._queue_in_frame(btag, b"\xde\xad\xbe\xef\x13\x37\xc0\xde\xfa\xce\xb0\x0c" + chunk + pad)
                detail = "12 bytes of garbage for the header"
            elif kind == FaultKind.SIZE_TOO_LARGE:
                extra = bytes(b"~" * (max_bytes - len(chunk) + mp + 4))
                data = chunk + extra
                device._queue_in_frame(btag, _in_header(MsgId.DEV_DEP_MSG_IN, btag, len(data),
                                                             attributes) + data + bytes(-len(data) % 4))
                detail = f"TransferSize {len(data)} after {max_bytes} were requested"
            elif kind == FaultKind.SIZE_TOO_SMALL:
                size = len(chunk) // 2
                device._queue_in_frame(btag, _in_header(MsgId.DEV_DEP_MSG_IN, btag, size,
                                                             attributes) + chunk + pad)
                detail = f"TransferSize {size} for {len(chunk)} bytes sent"
            else:  # EARLY_SHORT_PACKET
                frame = _in_header(MsgId.DEV_DEP_MSG_IN, btag, len(chunk), attributes)
                frame += chunk[: len(chunk) // 2]
                if len(frame) % mp == 0:
                    frame = frame[:-1]  # a short packet, not a full one
                device._queue_in_frame(btag, frame)
                detail = f"short packet after {len(frame) - 12} of {len(chunk)} announced bytes"
            self._record(armed, detail)
            return True
        return False

    def class_request(self, device: UsbtmcDevice, b_request: int, length: int) -> bytes | None:
        """A USBTMC class request; returns the reply to give instead of the real one, or None."""
        if b_request not in _CHECK_REQUESTS:
            return None
        left = self._pending.get(b_request)
        if left is None:
            armed = self._fire((FaultKind.STATUS_PENDING,))
            if armed is None:
                return None
            left = armed.fault.polls
            self._record(armed, f"PENDING for {left} polls of request {b_request}")
        if left <= 0:
            self._pending.pop(b_request, None)
            return None
        self._pending[b_request] = left - 1
        if b_request == Request.CHECK_CLEAR_STATUS:
            return bytes([Status.PENDING, 0])
        # USBTMC Tables 21 and 26: status, bmAbortBulkIn (D0 = 0: nothing to read), 2 reserved, NBYTES_RXD.
        return bytes([Status.PENDING, 0, 0, 0, 0, 0, 0, 0])

    def status_byte_request(self, device: UsbtmcDevice, btag: int) -> None:
        armed = self._fire((FaultKind.STALE_INTERRUPT_TAG,))
        if armed is None:
            return
        stale = btag - 1 if btag > 2 else 127  # USB488 Table 11: bTags 2..127
        device.in_pipes[device.interrupt_in_ep].send(bytes([0x80 | stale, device.status.stb()]), end=True)
        self._record(armed, f"notification with bTag {stale} before the one for bTag {btag}")

    def transport_reset(self, device: UsbtmcDevice, what: str) -> bool:
        """The host ran a recovery step (see UsbtmcDevice._fault_reset); True: keep the received input."""
        keep = False
        if what in ("abort_out", "clear", "clear_halt_out", "reset"):
            keep = what == "abort_out" and self._keep_input
            self._naking = False
            self._keep_input = False
            self._out_count = None
        if what == "reset":
            self._pending.clear()
        if what in ("abort_in", "clear", "reset"):
            self._split = False
        if what in ("clear", "abort_in"):
            armed = self._fire((FaultKind.LEFTOVER_DATA,))
            if armed is not None:
                pipe = device.in_pipes[device.bulk_in_ep]
                leftover = _LEFTOVER * (-(-(2 * pipe.max_packet + 5) // len(_LEFTOVER)))
                leftover = leftover[: 2 * pipe.max_packet + 5]  # two full packets and a short one
                pipe.clear()
                pipe.send(leftover, end=True)
                self._record(armed, f"{len(leftover)} bytes left in the Bulk-IN FIFO at the {what.replace('_', ' ')}")
        return keep

    # --- internals ---

    def _unplug(self, fault: Fault) -> None:
        self._unplugged = True
        if self.on_unplug is not None:
            self.on_unplug()
        elif self.bus is not None:
            self.bus.unplug(self.device)
        else:
            self.device.unplug()
        if fault.replug_after_s is not None:
            self._timer = threading.Timer(fault.replug_after_s, self.replug)
            self._timer.daemon = True
            self._timer.start()


def _crash() -> int:
    raise RuntimeError("MODEL_CRASH fault: an exception inside the device model")
