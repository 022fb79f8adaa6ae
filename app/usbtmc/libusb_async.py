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
import time
from dataclasses import dataclass

# libusb.h: enum libusb_transfer_status and enum libusb_transfer_type.
COMPLETED, ERROR, TIMED_OUT, CANCELLED, STALL, NO_DEVICE, OVERFLOW = range(7)
_TRANSFER_TYPE_BULK = 2
_ERROR_NOT_FOUND = -5  # libusb_cancel_transfer: already finished
_ERROR_INTERRUPTED = -10
# How long one libusb_handle_events_timeout_completed call may block; the
# transfers carry their own timeouts, this only bounds a wait on a lost callback.
_EVENT_SLICE_S = 0.5
_CANCEL_GRACE_S = 2.0

STATUS_NAMES = {
    COMPLETED: "completed",
    ERROR: "failed",
    TIMED_OUT: "timed out",
    CANCELLED: "cancelled",
    STALL: "stalled",
    NO_DEVICE: "device gone",
    OVERFLOW: "overflowed",
}


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

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED


class AsyncBulk:
    """Bulk transfers submitted together on one libusb device handle.

    Thread-safe in libusb's sense: another thread may run synchronous transfers on
    the same context (the interrupt-IN listener does); whichever thread handles
    events runs our completion callback, and :meth:`run` waits on its own flag.
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
        self._callback = _Callback(self._on_complete)  # kept alive as long as we are
        self._pending: dict[int, int] = {}  # transfer address -> index in the running batch
        self._finished: list[bool] = []
        self._transfers: list = []
        self._all_done = ctypes.c_int(0)
        self._stop_after_failure = True

    @classmethod
    def create(cls, lib, ctx, handle) -> AsyncBulk | None:
        """An AsyncBulk for ``handle`` (a ``libusb_device_handle*``), or None if this libusb lacks the calls."""
        try:
            if not handle or ctx is None:
                return None
            return cls(lib, ctx, handle)
        except (AttributeError, TypeError):
            return None

    def run(self, requests: list[BulkRequest], stop_after_failure: bool = True) -> list[BulkResult]:
        """Submit every transfer in order, wait for all of them, return their results in order.

        With ``stop_after_failure`` a transfer that does not complete cancels the ones
        submitted after it (a query's request must not follow a command that failed).
        A transfer that could not be submitted at all comes back CANCELLED, as do the
        ones after it. Never raises for a transfer's failure; the caller reads the statuses.
        """
        count = len(requests)
        buffers, transfers = [], []
        self._stop_after_failure = stop_after_failure
        self._finished = [False] * count
        self._pending = {}
        self._all_done.value = 0
        submitted = 0
        try:
            for index, request in enumerate(requests):
                transfer = self._alloc(0)
                if not transfer:
                    raise MemoryError("libusb could not allocate a transfer")
                transfers.append(transfer)
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
                buffers.append(buffer)
                t = transfer.contents
                t.dev_handle = self._handle
                t.flags = 0
                t.endpoint = request.endpoint
                t.type = _TRANSFER_TYPE_BULK
                t.timeout = max(1, int(request.timeout_ms))
                t.status = COMPLETED
                t.length = length
                t.actual_length = 0
                t.callback = self._callback
                t.user_data = None
                t.buffer = ctypes.addressof(buffer) if length else None
                t.num_iso_packets = 0
            self._transfers = transfers
            for index, transfer in enumerate(transfers):
                self._pending[ctypes.addressof(transfer.contents)] = index
                rc = self._submit(transfer)
                if rc < 0:
                    del self._pending[ctypes.addressof(transfer.contents)]
                    transfer.contents.status = NO_DEVICE if rc == -4 else CANCELLED
                    self._finished[index] = True
                    break
                submitted += 1
            for index in range(submitted + 1, count):
                transfers[index].contents.status = CANCELLED
                self._finished[index] = True
            self._wait(max((r.timeout_ms for r in requests), default=0) / 1000)
            results = []
            for index, transfer in enumerate(transfers):
                t = transfer.contents
                data = b""
                if requests[index].data is None and t.actual_length > 0:
                    data = ctypes.string_at(buffers[index], t.actual_length)
                results.append(BulkResult(int(t.status), int(t.actual_length), data))
            return results
        finally:
            self._transfers = []
            if not self._pending:
                for transfer in transfers:
                    self._free(transfer)
            # else: libusb still owns some transfer (a callback never came); leaking it is safer than freeing it

    def _on_complete(self, pointer) -> None:
        index = self._pending.pop(ctypes.addressof(pointer.contents), None)
        if index is None:
            return
        self._finished[index] = True
        if self._stop_after_failure and pointer.contents.status != COMPLETED:
            self._cancel_from(index + 1)
        if not self._pending:
            self._all_done.value = 1

    def _cancel_from(self, first: int) -> None:
        for address, index in list(self._pending.items()):
            if index >= first:
                rc = self._cancel(self._transfers[index])
                if rc == _ERROR_NOT_FOUND:
                    continue  # finishing already; its callback is on the way

    def _wait(self, longest_timeout_s: float) -> None:
        # libusb times each transfer out itself; the deadline only guards against a callback that never comes.
        deadline = time.monotonic() + longest_timeout_s + _CANCEL_GRACE_S
        cancelled = False
        tv = _Timeval(0, int(_EVENT_SLICE_S * 1e6))
        while self._pending:
            rc = self._handle_events(self._ctx, ctypes.byref(tv), ctypes.byref(self._all_done))
            if rc < 0 and rc != _ERROR_INTERRUPTED:
                # The context itself failed (the device is gone with it): stop what is left.
                if not cancelled:
                    self._cancel_from(0)
                    cancelled = True
                    deadline = time.monotonic() + _CANCEL_GRACE_S
            if time.monotonic() > deadline:
                if cancelled:
                    return
                self._cancel_from(0)
                cancelled = True
                deadline = time.monotonic() + _CANCEL_GRACE_S
