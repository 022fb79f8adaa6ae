"""usbdevfs semantics over one virtual device: URB queues, reaping, discards, claims, disconnect.

This is the part of the umockdev adapter that knows USB and the kernel's usbdevfs
rules but nothing of umockdev's memory handling: the ioctl handler in
:mod:`.testbed` turns client memory into :class:`Urb` records and back.

Rules taken from the kernel's usbdevfs (drivers/usb/core/devio.c) as libusb relies on them:
- URBs on one endpoint complete in submission order; endpoints are independent.
- A URB is reaped only through the file descriptor that submitted it.
- DISCARDURB completes a URB with -ENOENT; discarding one that already completed is EINVAL.
- After a disconnect the URBs still queued complete with -ESHUTDOWN and can be reaped
  (USBDEVFS_CAP_REAP_AFTER_DISCONNECT); then every request fails with ENODEV.
- Closing the descriptor cancels its URBs and releases its interfaces.
- One deliberate difference: claiming an interface another descriptor holds takes it over
  (see :meth:`UrbEngine.claim`).

Standard library only: this module runs under the system Python.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from app.sim.device import (
    DATA_TOGGLES_BY_DEFAULT,
    TRANSFER_TYPE_BULK,
    TRANSFER_TYPE_INTERRUPT,
    Gone,
    HostToggles,
    NoData,
    Overflow,
    Stall,
)

from .usbdevfs import SETUP, UrbFlag, UrbType

log = logging.getLogger("app.sim.umockdev")

# USB 2.0 Table 9-4 / 9-3: the standard SET_CONFIGURATION request the kernel keeps track of.
_STD_OUT_DEVICE = 0x00
_SET_CONFIGURATION = 9


class UsbdevfsError(Exception):
    """An ioctl fails with ``errno``."""

    def __init__(self, err: int, why: str = "") -> None:
        super().__init__(why or errno.errorcode.get(err, str(err)))
        self.errno = err


@dataclass(eq=False)
class Urb:
    """One submitted URB as the device sees it.

    ``token`` is the handler's handle on the client's memory; ``owner`` the file
    descriptor (client) that submitted it. For control URBs ``length`` counts the
    data stage only (the kernel's actual_length never includes the 8 SETUP bytes).
    """

    owner: Hashable
    token: object
    type: UrbType
    endpoint: int
    flags: int
    length: int
    out_data: bytes = b""
    setup: bytes | None = None
    # results
    status: int = 0
    in_data: bytes = b""
    actual_length: int = 0
    sent_bytes: int = 0  # OUT: how much the device has taken so far

    @property
    def is_in(self) -> bool:
        if self.type == UrbType.CONTROL:
            return bool(self.setup and self.setup[0] & 0x80)
        return bool(self.endpoint & 0x80)

    @property
    def queue_key(self) -> int:
        # Control transfers in both directions share endpoint 0.
        return 0 if self.type == UrbType.CONTROL else self.endpoint


class UrbEngine:
    """usbdevfs requests against one :class:`~app.sim.device.VirtualDevice`.

    Thread-safe: umockdev's worker thread submits and reaps while the server's
    control thread may disconnect the device.

    The engine is the host controller of its device too: :attr:`toggles` holds the host's data
    toggles (see :class:`~app.sim.device.HostToggles`). USBDEVFS_CLEAR_HALT, SET_CONFIGURATION
    and SET_INTERFACE reset them as the kernel does (usb_clear_halt(), usb_reset_endpoint());
    a CLEAR_FEATURE sent through USBDEVFS_CONTROL reaches only the device.
    An exception raised while a URB runs (a bug in the adapter or a model) completes that URB
    with -EPROTO and is logged, so the client's libusb never finds it stuck in the queue.
    """

    def __init__(self, device, on_configuration: Callable[[int], None] | None = None, *,
                 data_toggles: bool | None = None) -> None:
        self.device = device
        self._on_configuration = on_configuration
        self.toggles: HostToggles | None = (
            HostToggles() if (DATA_TOGGLES_BY_DEFAULT if data_toggles is None else data_toggles) else None)
        self._lock = threading.RLock()
        self._activity = threading.Condition(self._lock)  # notified when a URB is submitted
        self._queues: dict[int, deque[Urb]] = {}
        self._completed: dict[Hashable, deque[Urb]] = {}
        self._claims: dict[int, Hashable] = {}
        self._gone = False
        self._counts = {"submitted": 0, "reaped": 0, "discarded": 0, "most_outstanding": 0}
        self._outstanding = 0  # submitted and not yet reaped (or dropped with their descriptor)

    @property
    def gone(self) -> bool:
        return self._gone

    # --- URBs ---

    def submit(self, urb: Urb) -> None:
        """Queue ``urb`` and run it as far as the device allows now."""
        if urb.type == UrbType.ISO:
            raise UsbdevfsError(errno.EINVAL, "isochronous URBs are not emulated")
        if urb.type == UrbType.CONTROL and (urb.setup is None or len(urb.setup) != SETUP.size):
            raise UsbdevfsError(errno.EINVAL, "a control URB needs an 8-byte SETUP packet")
        with self._lock:
            self._check_present()
            if urb.type != UrbType.CONTROL:
                self._check_endpoint(urb)
            queue = self._queues.setdefault(urb.queue_key, deque())
            queue.append(urb)
            self._counts["submitted"] += 1
            self._outstanding += 1
            self._counts["most_outstanding"] = max(self._counts["most_outstanding"], self._outstanding)
            self._activity.notify_all()
            if len(queue) == 1:
                self._advance(queue)

    def reap(self, owner: Hashable) -> Urb | None:
        """The oldest finished URB of ``owner``, or None when none has finished yet."""
        with self._lock:
            if not self._gone:
                for queue in list(self._queues.values()):
                    self._advance(queue)
            done = self._completed.get(owner)
            if done:
                self._counts["reaped"] += 1
                self._outstanding -= 1
                return done.popleft()
            self._check_present()
            return None

    def in_flight(self, owner: Hashable) -> bool:
        """Whether ``owner`` has URBs the device has not finished yet."""
        with self._lock:
            return any(urb.owner == owner for queue in self._queues.values() for urb in queue)

    def stats(self) -> dict[str, int]:
        """Counts of URBs submitted, reaped and discarded so far, the most ever submitted and not
        yet reaped at one time (a host that overlaps transfers has several), and how many are in flight now."""
        with self._lock:
            return {**self._counts, "in_flight": sum(len(queue) for queue in self._queues.values())}

    def wait_in_flight(self, timeout_s: float) -> bool:
        """Block until some URB is in flight (a host is mid-transfer); False after ``timeout_s``."""
        with self._lock:
            return self._activity.wait_for(
                lambda: any(self._queues.values()) or self._gone, timeout=timeout_s) and not self._gone

    def discard(self, owner: Hashable, token_matches: Callable[[object], bool]) -> None:
        """Cancel the queued URB of ``owner`` whose token matches (it completes with -ENOENT)."""
        with self._lock:
            for queue in self._queues.values():
                for urb in queue:
                    if urb.owner == owner and token_matches(urb.token):
                        queue.remove(urb)
                        self._cancel(urb)
                        self._finish(urb, -errno.ENOENT)
                        self._counts["discarded"] += 1
                        self._advance(queue)
                        return
            raise UsbdevfsError(errno.EINVAL, "no such URB in flight (already completed?)")

    def forget(self, owner: Hashable) -> None:
        """The client closed its descriptor: drop its URBs and release its interfaces."""
        with self._lock:
            for queue in self._queues.values():
                mine = [urb for urb in queue if urb.owner == owner]
                for urb in mine:
                    queue.remove(urb)
                    self._cancel(urb)
                if mine:
                    self._advance(queue)
                self._outstanding -= len(mine)
            self._outstanding -= len(self._completed.pop(owner, ()))
            for interface in [i for i, o in self._claims.items() if o == owner]:
                del self._claims[interface]

    def disconnect(self) -> None:
        """The device left the bus: queued URBs complete with -ESHUTDOWN, later requests get ENODEV."""
        with self._lock:
            self._gone = True
            for queue in self._queues.values():
                while queue:
                    self._finish(queue.popleft(), -errno.ESHUTDOWN)

    # --- the other requests ---

    def claim(self, owner: Hashable, interface: int) -> None:
        """Claim ``interface`` for ``owner``.

        Unlike the kernel (EBUSY), a claim held by another descriptor is taken over and that
        descriptor's URBs are cancelled: umockdev cannot always tell that a process died (one
        killed inside an ioctl stays "connected"), and a crashed script must not lock the
        device for the next one.
        """
        with self._lock:
            self._check_present()
            holder = self._claims.get(interface)
            if holder is not None and holder != owner:
                self.forget(holder)
            self._claims[interface] = owner

    def release(self, owner: Hashable, interface: int) -> None:
        with self._lock:
            self._check_present()
            if self._claims.get(interface) != owner:
                raise UsbdevfsError(errno.EINVAL, f"interface {interface} is not claimed here")
            del self._claims[interface]

    def set_configuration(self, value: int) -> None:
        self._call(lambda: self.device.set_configuration(value))
        self._reset_toggles()
        if self._on_configuration is not None:
            self._on_configuration(value)

    def set_interface(self, interface: int, alternate: int) -> None:
        self._call(lambda: self.device.set_interface(interface, alternate))
        if self.toggles is not None:
            config = self.device.active_config()
            self.toggles.reset(ep.address for i in (config.interfaces if config else ()) if i.number == interface
                               for ep in i.endpoints)

    def clear_halt(self, endpoint: int) -> None:
        self._call(lambda: self.device.clear_halt(endpoint, self.toggles))

    def reset(self) -> None:
        self._call(self.device.reset)
        self._reset_toggles()

    def _reset_toggles(self) -> None:
        if self.toggles is not None:
            self.toggles.reset()

    def control(self, setup: bytes, out_data: bytes = b"") -> bytes:
        """A synchronous control transfer (USBDEVFS_CONTROL); returns the IN data stage."""
        urb = Urb(owner=None, token=None, type=UrbType.CONTROL, endpoint=0, flags=0,
                  length=SETUP.unpack(setup)[4], out_data=out_data, setup=setup)
        with self._lock:
            self._check_present()
            if not self._attempt(urb):
                raise UsbdevfsError(errno.ETIMEDOUT, "the device did not answer the control request")
        if urb.status:
            raise UsbdevfsError(-urb.status)
        return urb.in_data

    def next_event_s(self) -> float | None:
        """Seconds until the device's next timed event that can produce IN data (None: none known)."""
        with self.device.changed:
            due = self.device.next_deadline()
            if due is None or not getattr(self.device.clock, "realtime", True):
                return None
            return max(0.0, due - self.device.clock.now())

    # --- internals (called with the lock held) ---

    def _check_endpoint(self, urb: Urb) -> None:
        # drivers/usb/core/devio.c proc_do_submiturb(): an endpoint outside the active
        # configuration is ENOENT; a bulk URB on an interrupt endpoint runs as an interrupt
        # transfer, an interrupt URB on a bulk endpoint is EINVAL.
        with self.device.changed:
            desc = self.device.endpoints().get(urb.endpoint)
        if desc is None:
            raise UsbdevfsError(errno.ENOENT, f"no endpoint 0x{urb.endpoint:02X} in the active configuration")
        if desc.transfer_type == TRANSFER_TYPE_INTERRUPT:
            urb.type = UrbType.INTERRUPT
        elif desc.transfer_type != TRANSFER_TYPE_BULK or urb.type != UrbType.BULK:
            raise UsbdevfsError(errno.EINVAL, f"URB type {urb.type.name} does not fit endpoint 0x{urb.endpoint:02X}")

    def _cancel(self, urb: Urb) -> None:
        """The host gave up ``urb``: an IN transfer keeps the bytes it had received."""
        if urb.type != UrbType.CONTROL and urb.is_in:
            try:
                urb.in_data = self.device.cancel_in(urb.endpoint)
            except Gone:
                urb.in_data = b""
            urb.actual_length = len(urb.in_data)
        elif urb.type != UrbType.CONTROL:
            urb.actual_length = urb.sent_bytes

    def _check_present(self) -> None:
        if self._gone:
            raise UsbdevfsError(errno.ENODEV, "the device is gone")

    def _call(self, action: Callable[[], object]) -> None:
        with self._lock:
            self._check_present()
            try:
                action()
            except Stall:
                raise UsbdevfsError(errno.EPIPE) from None
            except Gone:
                self.disconnect()
                raise UsbdevfsError(errno.ENODEV) from None

    def _advance(self, queue: deque[Urb]) -> None:
        while queue and self._attempt(queue[0]):
            if not queue:
                return  # the device left while the URB ran: disconnect() has finished them all
            self._finish(queue.popleft())
            if self._gone:
                self.disconnect()
                return

    def _finish(self, urb: Urb, status: int | None = None) -> None:
        if status is not None:
            urb.status = status
        self._completed.setdefault(urb.owner, deque()).append(urb)

    def _attempt(self, urb: Urb) -> bool:
        """Run ``urb`` against the device; True when it finished (status set), False on NAK."""
        try:
            if urb.type == UrbType.CONTROL:
                self._control(urb)
            elif urb.is_in:
                self._in(urb)
            else:
                self._out(urb)
        except NoData:
            return False
        except Stall:
            urb.status = -errno.EPIPE
        except Overflow as exc:
            urb.in_data, urb.actual_length = exc.received, len(exc.received)
            urb.status = -errno.EOVERFLOW
        except Gone:
            urb.status = -errno.ESHUTDOWN
            self._gone = True
        except Exception:  # never leave a URB queued for ever: the client's libusb would abort
            log.exception("URB on endpoint 0x%02X failed inside the virtual device; completed with EPROTO",
                          urb.endpoint)
            urb.status = -errno.EPROTO
        return True

    def _control(self, urb: Urb) -> None:
        request_type, request, value, index, length = SETUP.unpack(urb.setup)
        length = min(length, urb.length)
        if request_type & 0x80:
            reply = bytes(self.device.control(request_type, request, value, index, length))[:length]
            urb.in_data, urb.actual_length = reply, len(reply)
        else:
            self.device.control(request_type, request, value, index, urb.out_data[:length])
            urb.actual_length = length
            if request_type == _STD_OUT_DEVICE and request == _SET_CONFIGURATION:
                self._reset_toggles()  # the kernel resets its endpoints on a configuration change
                if self._on_configuration:
                    self._on_configuration(value & 0xFF)

    def _in(self, urb: Urb) -> None:
        read = self.device.interrupt_in if urb.type == UrbType.INTERRUPT else self.device.bulk_in
        # A device may move some packets into the transfer and NAK the rest: NoData, and the
        # next attempt continues the same transfer (see app.sim.device.BulkInPipe).
        data = bytes(read(urb.endpoint, urb.length, self.toggles))[: urb.length]
        urb.in_data, urb.actual_length = data, len(data)
        if len(data) < urb.length and urb.flags & UrbFlag.SHORT_NOT_OK:
            urb.status = -errno.EREMOTEIO

    def _out(self, urb: Urb) -> None:
        if not urb.out_data:
            self.device.bulk_out(urb.endpoint, b"", self.toggles)  # a zero-length packet
        # A device may take part of a long transfer and NAK the rest until it has room.
        while urb.sent_bytes < len(urb.out_data):
            taken = self.device.bulk_out(urb.endpoint, urb.out_data[urb.sent_bytes:], self.toggles)
            if taken <= 0:
                raise NoData
            urb.sent_bytes += taken
        urb.actual_length = len(urb.out_data)
