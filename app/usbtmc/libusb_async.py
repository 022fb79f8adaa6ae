"""Several bulk transfers in flight at once, through libusb's asynchronous API.

pyusb offers only libusb's synchronous calls: each transfer is submitted, waited for
and reaped before the next one starts. A USBTMC query needs three transfers
(the command, REQUEST_DEV_DEP_MSG_IN, the reply), so done that way it pays the
host's per-transfer latency three times in a row: a wake-up, a (micro)frame
boundary, and under emulation an ioctl round trip each. Submitted together, the
host controller runs them back to back; the endpoints' own queues keep the order
(USB 2.0 section 5.8: transfers on one endpoint complete in order).

This module only speaks ctypes to the libusb that pyusb already loaded; the
transport (the core's one pyusb module) hands it the library, context and device
handle. :func:`AsyncBulk.create` returns None wherever that is not possible, and
the transport then runs the same transfers one by one.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from dataclasses import dataclass

from app.protocol.libusb import LibusbError, TransferStatus

# libusb.h: enum libusb_transfer_status (the protocol leaf's) and enum libusb_transfer_type.
COMPLETED, ERROR, TIMED_OUT, CANCELLED, STALL, NO_DEVICE, OVERFLOW = (
    TransferStatus.COMPLETED, TransferStatus.ERROR, TransferStatus.TIMED_OUT, TransferStatus.CANCELLED,
    TransferStatus.STALL, TransferStatus.NO_DEVICE, TransferStatus.OVERFLOW)
_TRANSFER_TYPE_BULK = 2
_ERROR_INTERRUPTED = LibusbError.INTERRUPTED
# libusb_submit_transfer's errors -> the status the transfer is given.
_SUBMIT_ERRORS = {LibusbError.NO_DEVICE: NO_DEVICE, LibusbError.PIPE: STALL}
# How long one libusb_handle_events_timeout_completed call may block; the
# transfers carry their own timeouts, this only bounds a wait on a lost callback.
_EVENT_SLICE_S = 0.5
_CANCEL_GRACE_S = 2.0


class _Transfer(ctypes.Structure):
    pass


# WINAPI on Windows (libusb's LIBUSB_CALL); the C convention elsewhere.
_FUNCTYPE = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE) if sys.platform == "win32" else ctypes.CFUNCTYPE
_Callback = _FUNCTYPE(None, ctypes.POINTER(_Transfer))

# struct libusb_transfer (libusb.h), without the flexible iso_packet_desc array: bulk
# transfers are allocated with zero iso packets.
_Transfer._fields_ = [
    ("dev_handle", ctypes.c_void_p),
    ("flags", ctypes.c_uint8),
    ("endpoint", ctypes.c_ubyte),
    ("type", ctypes.c_ubyte),
    ("timeout", ctypes.c_uint),
    ("status", ctypes.c_int),
    ("length", ctypes.c_int),
    ("actual_length", ctypes.c_int),
    ("callback", _Callback),
    ("user_data", ctypes.c_void_p),
    ("buffer", ctypes.c_void_p),
    ("num_iso_packets", ctypes.c_int),
]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


@dataclass(frozen=True)
class BulkRequest:
    """One transfer of a batch: OUT when ``data`` is given, else IN of ``length`` bytes."""

    endpoint: int
    timeout_ms: int
    data: object = None  # bytes-like for OUT
    length: int = 0  # buffer size for IN


@dataclass(frozen=True)
class BulkResult:
    """What became of one transfer: libusb's status, the bytes moved, and an IN transfer's data."""

    status: int
    actual_length: int
    data: bytes = b""
    #: perf_counter_ns() at submission and at completion (for the I/O trace; 0: unknown).
    submitted_ns: int = 0
    finished_ns: int = 0

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED


class Pending:
    """A transfer libusb holds: :meth:`AsyncBulk.wait` turns it into a :class:`BulkResult`."""

    __slots__ = ("transfer", "buffer", "is_in", "order", "timeout_s", "done", "submitted_ns", "finished_ns")

    def __init__(self, transfer, buffer, is_in: bool, order: int, timeout_s: float) -> None:
        self.transfer = transfer
        self.buffer = buffer  # kept alive while libusb may touch it
        self.is_in = is_in
        self.order = order
        self.timeout_s = timeout_s
        self.done = ctypes.c_int(0)  # set by the completion callback; libusb waits on it
        self.submitted_ns = time.perf_counter_ns()
        self.finished_ns = 0


class AsyncBulk:
    """Bulk transfers in flight together on one libusb device handle.

    Thread-safe in libusb's sense: other threads may run transfers on the same context
    (every session of the process shares pyusb's); whichever thread handles events runs
    the completion callback, and :meth:`wait` waits on the transfer's own flag. A transfer
    that does not complete cancels the ones this engine submitted after it (a query's
    request must not follow a command that failed). Submitting and waiting belong to
    the one session thread that owns the handle.
    """

    def __init__(self, lib, ctx, handle) -> None:
        self._ctx = ctx
        self._handle = handle
        # Fresh function objects (CDLL[name]), so the prototypes pyusb set on its own stay as they are.
        self._alloc = lib["libusb_alloc_transfer"]
        self._alloc.argtypes, self._alloc.restype = [ctypes.c_int], ctypes.POINTER(_Transfer)
        self._free = lib["libusb_free_transfer"]
        self._free.argtypes, self._free.restype = [ctypes.POINTER(_Transfer)], None
        self._submit = lib["libusb_submit_transfer"]
        self._submit.argtypes, self._submit.restype = [ctypes.POINTER(_Transfer)], ctypes.c_int
        self._cancel = lib["libusb_cancel_transfer"]
        self._cancel.argtypes, self._cancel.restype = [ctypes.POINTER(_Transfer)], ctypes.c_int
        self._handle_events = lib["libusb_handle_events_timeout_completed"]
        self._handle_events.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Timeval), ctypes.POINTER(ctypes.c_int)]
        self._handle_events.restype = ctypes.c_int
        self._in_flight: dict[int, Pending] = {}  # transfer address -> its Pending
        self._order = 0
        # Held while a transfer is freed and while another thread cancels (cancel_all), so
        # a cancel never reaches a transfer that has just been freed.
        self._free_lock = threading.Lock()

    @classmethod
    def create(cls, lib, ctx, handle) -> AsyncBulk | None:
        """An AsyncBulk for ``handle`` (a ``libusb_device_handle*``), or None if this libusb lacks the calls."""
        try:
            if not handle or ctx is None:
                return None
            return cls(lib, ctx, handle)
        except (AttributeError, TypeError):
            return None

    def submit(self, request: BulkRequest) -> Pending:
        """Hand one transfer to libusb and return at once. A transfer libusb refuses comes
        back already finished (NO_DEVICE when the device is gone, STALL on a halted endpoint,
        else ERROR)."""
        transfer = self._alloc(0)
        if not transfer:
            raise MemoryError("libusb could not allocate a transfer")
        if request.data is not None:
            view = memoryview(request.data).cast("B")
            if view.readonly:
                buffer = ctypes.create_string_buffer(view.tobytes(), len(view))
            else:
                buffer = (ctypes.c_char * len(view)).from_buffer(view)
            length = len(view)
        else:
            buffer = ctypes.create_string_buffer(request.length)
            length = request.length
        t = transfer.contents
        t.dev_handle = self._handle
        t.flags = 0
        t.endpoint = request.endpoint
        t.type = _TRANSFER_TYPE_BULK
        t.timeout = max(1, int(request.timeout_ms))
        t.status = COMPLETED
        t.length = length
        t.actual_length = 0
        t.callback = _CALLBACK
        t.user_data = None
        t.buffer = ctypes.addressof(buffer) if length else None
        t.num_iso_packets = 0
        self._order += 1
        pending = Pending(transfer, buffer, request.data is None, self._order, max(1, request.timeout_ms) / 1000)
        address = ctypes.addressof(t)
        self._in_flight[address] = pending
        _ENGINES[address] = self
        rc = self._submit(transfer)
        if rc < 0:
            del self._in_flight[address]
            _ENGINES.pop(address, None)
            t.status = _SUBMIT_ERRORS.get(rc, ERROR)
            pending.done.value = 1
        return pending

    def wait(self, pending: Pending) -> BulkResult:
        """Wait until ``pending`` has finished (libusb times it out itself) and return its result."""
        self._wait_for(pending)
        t = pending.transfer.contents
        data = ctypes.string_at(pending.buffer, t.actual_length) if pending.is_in and t.actual_length > 0 else b""
        result = BulkResult(int(t.status), int(t.actual_length), data, pending.submitted_ns,
                            pending.finished_ns or time.perf_counter_ns())
        if pending.done.value:
            with self._free_lock:
                self._free(pending.transfer)
                pending.transfer, pending.buffer = None, None
        else:
            # libusb still owns the transfer (its callback never came): keep it and its buffer
            # alive for good, since libusb may yet write there; freeing either could corrupt memory.
            _ABANDONED.append(pending)
        return result

    def run(self, requests: list[BulkRequest], *, after: int = 0, then=None) -> list[BulkResult]:
        """Submit every transfer in order, wait for all of them, return their results in order.

        ``then()`` is called once the first ``after`` transfers have finished well, while the
        rest may still be in flight (a console shows a command as sent while its reply is
        awaited). Never raises for a transfer's failure; the caller reads the statuses.
        """
        pending = []
        for request in requests:
            item = self.submit(request)
            pending.append(item)
            if item.done.value and item.transfer.contents.status != COMPLETED:
                break  # refused: submit nothing after it
        results = []
        for index, item in enumerate(pending):
            if index == after and then is not None and all(r.status == COMPLETED for r in results):
                then()
            results.append(self.wait(item))
        return results + [BulkResult(CANCELLED, 0)] * (len(requests) - len(results))

    def cancel(self, pending: Pending) -> None:
        """Ask libusb to cancel a transfer still in flight (and those submitted after it);
        :meth:`wait` then returns it as CANCELLED, or as it finished if it was faster."""
        if not pending.done.value and pending.transfer is not None:
            self._cancel(pending.transfer)

    def cancel_all(self) -> None:
        """Ask libusb to cancel every transfer in flight. The one call another thread may
        make (closing a session whose thread waits on a transfer): libusb_cancel_transfer
        is thread-safe, and the lock keeps :meth:`wait` from freeing a transfer meanwhile."""
        with self._free_lock:
            for pending in list(self._in_flight.values()):
                if not pending.done.value and pending.transfer is not None:
                    self._cancel(pending.transfer)  # LIBUSB_ERROR_NOT_FOUND: finishing already

    def _on_complete(self, address: int, status: int) -> None:
        pending = self._in_flight.pop(address, None)
        if pending is None:
            return
        pending.finished_ns = time.perf_counter_ns()
        try:
            if status != COMPLETED:
                self._cancel_from(pending.order + 1)
        finally:
            # Last: once the flag is set the waiting thread may free the transfer.
            pending.done.value = 1

    def _cancel_from(self, first_order: int) -> None:
        for pending in list(self._in_flight.values()):
            if pending.order >= first_order:
                self._cancel(pending.transfer)  # LIBUSB_ERROR_NOT_FOUND: finishing already, its callback is on the way

    def _wait_for(self, pending: Pending) -> None:
        # libusb times each transfer out itself; the deadline only guards against a callback that never comes.
        deadline = time.monotonic() + pending.timeout_s + _CANCEL_GRACE_S
        cancelled = False
        tv = _Timeval(0, int(_EVENT_SLICE_S * 1e6))
        while not pending.done.value:
            rc = self._handle_events(self._ctx, ctypes.byref(tv), ctypes.byref(pending.done))
            failed = rc < 0 and rc != _ERROR_INTERRUPTED  # the context itself failed
            if failed:
                time.sleep(0.001)  # do not spin on a context that fails at once
            if failed or time.monotonic() > deadline:
                if cancelled:
                    if time.monotonic() > deadline:
                        return
                    continue
                self._cancel(pending.transfer)
                self._cancel_from(pending.order + 1)
                cancelled = True
                deadline = time.monotonic() + _CANCEL_GRACE_S


# One callback for the whole process, alive as long as the module: libusb may call it for a
# transfer whose engine is gone (a session closed while a transfer it gave up on was pending).
_ENGINES: dict[int, AsyncBulk] = {}  # transfer address -> the engine that submitted it
_ABANDONED: list[Pending] = []  # transfers whose callback never came (see AsyncBulk.wait)


def _dispatch(pointer) -> None:
    # Runs on whichever thread is handling libusb's events; it must never raise into C.
    try:
        address = ctypes.addressof(pointer.contents)
        engine = _ENGINES.pop(address, None)
        if engine is not None:
            engine._on_complete(address, int(pointer.contents.status))
    except Exception:  # noqa: BLE001 - an exception cannot cross into libusb
        pass


_CALLBACK = _Callback(_dispatch)
