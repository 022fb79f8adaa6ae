"""The one module of the core that talks to pyusb.

It opens one USBTMC interface of one device and offers bulk, interrupt and
control transfers with timeouts in milliseconds, translating pyusb's errors into
the core's typed errors. Everything above it works on bytes.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import usb.core
import usb.util

from app.protocol.libusb import LibusbError

from . import libusb_async, libusb_library, trace as tr
from .errors import (
    AbortedError,
    AccessError,
    BackendUnavailableError,
    DeviceGoneError,
    NotSupportedError,
    TmcError,
    TmcTimeoutError,
)



class TransferError(TmcError):
    """A USB transfer failed for a reason other than timeout or unplug."""


class StallError(TransferError):
    """The endpoint answered STALL (halted)."""


class OverflowError_(TransferError):
    """The device sent more than the read buffer could hold (babble)."""


def default_backend():
    """pyusb's libusb 1.0 backend using the libusb shipped by libusb-package.

    ``TMC_LIBUSB=system`` picks the operating system's libusb instead: it hears
    udev's hot-plug announcements, which the bundled one does not (needed under
    umockdev, where devices appear only through udev). pyusb keeps the first
    libusb a process loads, so the choice holds from the first call on.
    Raises :class:`BackendUnavailableError` when no libusb can be loaded.
    """
    import usb.backend.libusb1

    backend = None
    if os.environ.get("TMC_LIBUSB", "bundled").strip().lower() != "system":
        # Named explicitly: pyusb's own lookup misses the bundled file (pyusb #549).
        path = libusb_library.bundled_library_path()
        if path is not None:
            try:
                libusb_library.prepare(path)
                backend = usb.backend.libusb1.get_backend(find_library=lambda _name: str(path))
            except OSError:
                backend = None
    if backend is None:
        backend = usb.backend.libusb1.get_backend()
    if backend is None:
        raise BackendUnavailableError(
            "libusb could not be loaded, so USB instruments cannot be reached; "
            "install libusb-1.0 (Linux: the libusb-1.0-0 package) or use the virtual instruments"
        )
    return backend


def translate(exc: usb.core.USBError, what: str) -> TmcError:
    """The typed error for a pyusb error raised while doing ``what``."""
    code = getattr(exc, "backend_error_code", None)
    err = getattr(exc, "errno", None)
    if isinstance(exc, usb.core.USBTimeoutError) or code == LibusbError.TIMEOUT or err == errno.ETIMEDOUT:
        return TmcTimeoutError(f"{what} timed out")
    if code == LibusbError.NO_DEVICE or err == errno.ENODEV:
        return DeviceGoneError(f"the device is gone ({what} failed: {exc.strerror or exc})")
    if code == LibusbError.PIPE or err == errno.EPIPE:
        return StallError(f"{what}: the device answered STALL")
    if code == LibusbError.OVERFLOW or err == errno.EOVERFLOW:
        return OverflowError_(f"{what}: the device sent more data than requested")
    if code == LibusbError.INTERRUPTED or err == errno.EINTR:
        # A synchronous transfer that was cancelled (libusb sync.c: LIBUSB_TRANSFER_CANCELLED).
        return AbortedError(f"{what} was cancelled: the session is closing")
    if code == LibusbError.ACCESS or err == errno.EACCES:
        return AccessError(f"{what}: access denied by the operating system ({exc.strerror or exc})")
    if code == LibusbError.BUSY or err == errno.EBUSY:
        return AccessError(f"{what}: the interface is held by another driver or program")
    return TransferError(f"{what} failed: {exc.strerror or exc}")


@dataclass(frozen=True)
class Outcome:
    """One transfer of a batch (:meth:`UsbTransport.bulk_batch`).

    ``count`` is the bytes written (OUT) and ``data`` the bytes read (IN). ``error`` is
    the typed error that ended the transfer, or None. ``started`` is False for a
    transfer that was never run or was cancelled before any byte moved: it cannot
    have reached the device.
    """

    count: int = 0
    data: bytes = b""
    error: TmcError | None = None
    started: bool = True

    @property
    def ok(self) -> bool:
        return self.started and self.error is None

    def result(self) -> bytes:
        """The data read; raises the transfer's error, or a timeout for one that never ran."""
        if self.error is not None:
            raise self.error
        if not self.started:
            raise TmcTimeoutError("the transfer was cancelled before it started")
        return self.data


_NOT_STARTED = Outcome(started=False)

# libusb transfer statuses -> the I/O trace's statuses.
_TRACE_STATUS = {
    libusb_async.COMPLETED: tr.OK, libusb_async.TIMED_OUT: tr.TIMEOUT, libusb_async.STALL: tr.STALL,
    libusb_async.NO_DEVICE: tr.GONE, libusb_async.OVERFLOW: tr.OVERFLOW, libusb_async.CANCELLED: tr.CANCELLED,
    libusb_async.ERROR: tr.ERROR,
}
_perf_counter_ns = time.perf_counter_ns  # the trace's clock (SessionTrace.now)
_SETUP = struct.Struct("<BBHHH")  # USB 2.0 Table 9-2: bmRequestType, bRequest, wValue, wIndex, wLength


def _trace_status(exc: TmcError) -> str:
    if isinstance(exc, TmcTimeoutError):
        return tr.TIMEOUT
    if isinstance(exc, StallError):
        return tr.STALL
    if isinstance(exc, DeviceGoneError):
        return tr.GONE
    if isinstance(exc, OverflowError_):
        return tr.OVERFLOW
    if isinstance(exc, AbortedError):
        return tr.CANCELLED
    return tr.ERROR

# libusb transfer statuses -> the typed errors translate() gives for the synchronous calls.
_STATUS_ERRORS = {
    libusb_async.TIMED_OUT: lambda what: TmcTimeoutError(f"{what} timed out"),
    libusb_async.STALL: lambda what: StallError(f"{what}: the device answered STALL"),
    libusb_async.NO_DEVICE: lambda what: DeviceGoneError(f"the device is gone ({what} failed)"),
    libusb_async.OVERFLOW: lambda what: OverflowError_(f"{what}: the device sent more data than requested"),
    libusb_async.ERROR: lambda what: TransferError(f"{what} failed"),
}


def _cancelled(what: str) -> AbortedError:
    return AbortedError(f"{what} was cancelled: the session is closing")


def _synchronous(transfer: Callable[[], Outcome]) -> Outcome:
    """Run a synchronous transfer; its typed error becomes the outcome, but a gone device still raises."""
    try:
        return transfer()
    except DeviceGoneError:
        raise
    except TmcError as exc:
        return Outcome(error=exc)


@dataclass(frozen=True)
class Endpoints:
    """Endpoint addresses and packet sizes of a USBTMC interface (USBTMC 1.0 section 5.4)."""

    bulk_out: int
    bulk_in: int
    bulk_out_packet_bytes: int
    bulk_in_packet_bytes: int
    interrupt_in: int | None = None
    interrupt_in_packet_bytes: int = 0


def find_endpoints(interface) -> Endpoints | None:
    """The USBTMC endpoints of a pyusb interface, or None when bulk IN/OUT are missing."""
    found: dict[str, tuple[int, int]] = {}
    for ep in interface:
        direction = usb.util.endpoint_direction(ep.bEndpointAddress)
        kind = usb.util.endpoint_type(ep.bmAttributes)
        key = None
        if kind == usb.util.ENDPOINT_TYPE_BULK:
            key = "bulk_in" if direction == usb.util.ENDPOINT_IN else "bulk_out"
        elif kind == usb.util.ENDPOINT_TYPE_INTR and direction == usb.util.ENDPOINT_IN:
            key = "interrupt_in"
        if key and key not in found:
            found[key] = (ep.bEndpointAddress, ep.wMaxPacketSize & 0x7FF)
    if "bulk_in" not in found or "bulk_out" not in found:
        return None
    intr = found.get("interrupt_in")
    return Endpoints(
        bulk_out=found["bulk_out"][0],
        bulk_in=found["bulk_in"][0],
        bulk_out_packet_bytes=found["bulk_out"][1] or 64,
        bulk_in_packet_bytes=found["bulk_in"][1] or 64,
        interrupt_in=intr[0] if intr else None,
        interrupt_in_packet_bytes=intr[1] if intr else 0,
    )


class UsbTransport:
    """One claimed USBTMC interface. Not thread-safe: one session thread owns it."""

    def __init__(self, device, interface_number: int, endpoints: Endpoints) -> None:
        self.device = device
        self.interface_number = interface_number
        self.endpoints = endpoints
        self._claimed = False
        self._detached_kernel_driver = False
        self._async: libusb_async.AsyncBulk | None = None
        self._async_checked = False
        #: The I/O trace of this session, or None (tracing off: one None check per transfer).
        self.trace: tr.SessionTrace | None = None
        #: Set by cancel(): every transfer from then on fails at once with AbortedError.
        self.cancelled = False

    @classmethod
    def open(cls, device, configuration_value: int, interface_number: int, endpoints: Endpoints) -> UsbTransport:
        """Configure the device, detach a kernel driver if one holds the interface, and claim it."""
        transport = cls(device, interface_number, endpoints)
        try:
            try:
                if device.is_kernel_driver_active(interface_number):
                    device.detach_kernel_driver(interface_number)
                    transport._detached_kernel_driver = True
            except (NotImplementedError, usb.core.USBError):
                pass  # not on this platform, or nothing to detach
            try:
                active = device.get_active_configuration().bConfigurationValue
            except usb.core.USBError:
                active = None
            if active != configuration_value:
                device.set_configuration(configuration_value)
            usb.util.claim_interface(device, interface_number)
            transport._claimed = True
        except usb.core.USBError as exc:
            raise translate(exc, "opening the device") from exc
        return transport

    # --- transfers; timeouts in ms (pyusb treats 0 as "forever", so callers never pass 0) ---

    def bulk_out(self, data, timeout_ms: int) -> int:
        trace = self.trace
        if trace is None:
            return self._bulk_out(data, timeout_ms)
        # Traced: _traced() spelled out for the hot path (a closure and a call less per transfer).
        start = _perf_counter_ns()
        try:
            count = self._bulk_out(data, timeout_ms)
        except TmcError as exc:
            trace.transfer(tr.BULK, self.endpoints.bulk_out, "out", memoryview(data).nbytes, 0, _trace_status(exc),
                           data, start, _perf_counter_ns())
            raise
        trace.bulk(self.endpoints.bulk_out, "out", memoryview(data).nbytes, count, data, start)
        return count

    def _bulk_out(self, data, timeout_ms: int) -> int:
        if self.cancelled:
            raise _cancelled("Bulk-OUT transfer")
        engine = self._async_engine()
        if engine is not None:
            # On libusb 1.0 through the asynchronous engine, so that cancel() can stop it.
            request = libusb_async.BulkRequest(self.endpoints.bulk_out, max(1, timeout_ms), data=data)
            outcome = self._outcome(engine.run([request])[0], "Bulk-OUT transfer")
            if outcome.error is not None:
                raise outcome.error
            return outcome.count
        try:
            return self.device.write(self.endpoints.bulk_out, data, timeout=max(1, timeout_ms))
        except usb.core.USBError as exc:
            raise translate(exc, "Bulk-OUT transfer") from exc

    def bulk_in(self, length: int, timeout_ms: int) -> bytes:
        trace = self.trace
        if trace is None:
            return self._bulk_in(length, timeout_ms)
        start = _perf_counter_ns()
        try:
            data = self._bulk_in(length, timeout_ms)
        except TmcError as exc:
            trace.transfer(tr.BULK, self.endpoints.bulk_in, "in", length, 0, _trace_status(exc), None, start,
                           _perf_counter_ns())
            raise
        trace.bulk(self.endpoints.bulk_in, "in", length, len(data), data, start)
        return data

    def _bulk_in(self, length: int, timeout_ms: int) -> bytes:
        if self.cancelled:
            raise _cancelled("Bulk-IN transfer")
        engine = self._async_engine()
        if engine is not None:
            request = libusb_async.BulkRequest(self.endpoints.bulk_in, max(1, timeout_ms), length=length)
            return self._outcome(engine.run([request])[0], "Bulk-IN transfer").result()
        try:
            return self.device.read(self.endpoints.bulk_in, length, timeout=max(1, timeout_ms)).tobytes()
        except usb.core.USBError as exc:
            raise translate(exc, "Bulk-IN transfer") from exc

    # --- the I/O trace ---

    def start_trace(self, trace: tr.SessionTrace) -> None:
        """Record every transfer from now on through ``trace``, beginning with the device and
        configuration descriptors (USB 2.0 9.4.3), which a capture needs first: Wireshark
        learns the interface class, and so the dissector for the endpoints, from them."""
        self.trace = trace
        before = trace.recorder.last_seq
        for value, length in ((0x0100, 18), (0x0200, 9)):
            try:
                reply = self.control_in(0x80, 6, value, 0, length, 1000)
                if value == 0x0200 and len(reply) >= 4 and int.from_bytes(reply[2:4], "little") > length:
                    self.control_in(0x80, 6, value, 0, int.from_bytes(reply[2:4], "little"), 1000)
            except TmcError:
                pass  # the trace then lacks the descriptors; the session goes on
        for entry in trace.recorder.since(before):
            if entry.session == trace.number and entry.kind == tr.CONTROL and entry.setup[:2] == b"\x80\x06":
                trace.descriptor(entry)

    def _traced(self, kind: str, endpoint: int, out_data, in_length: int, call, setup: bytes = b""):
        """Run one synchronous transfer and record it (OUT: ``out_data``; IN: ``in_length`` asked)."""
        trace = self.trace
        direction = "in" if endpoint & 0x80 else "out"
        requested = memoryview(out_data).nbytes if out_data is not None else in_length
        start = trace.now()
        try:
            result = call()
        except TmcError as exc:
            trace.transfer(kind, endpoint, direction, requested, 0, _trace_status(exc), out_data, start,
                           trace.now(), setup)
            raise
        end = trace.now()
        if direction == "out":
            trace.transfer(kind, endpoint, direction, requested, result if isinstance(result, int) else requested,
                           tr.OK, out_data, start, end, setup)
        else:
            trace.transfer(kind, endpoint, direction, requested, len(result), tr.OK, result, start, end, setup)
        return result

    def _trace_async(self, endpoint: int, out_data, in_length: int, result: libusb_async.BulkResult) -> None:
        direction = "in" if endpoint & 0x80 else "out"
        requested = memoryview(out_data).nbytes if out_data is not None else in_length
        start = result.submitted_ns or self.trace.now()
        self.trace.transfer(tr.BULK, endpoint, direction, requested, result.actual_length,
                            _TRACE_STATUS.get(result.status, tr.ERROR),
                            out_data if direction == "out" else result.data, start, result.finished_ns or start)

    @property
    def pipelines(self) -> bool:
        """True when :meth:`bulk_batch` really overlaps transfers (pyusb's libusb 1.0 backend)."""
        return self._async_engine() is not None

    def bulk_batch(self, outs: Sequence[tuple[object, int]], in_length: int, in_timeout_ms: int, *,
                   on_sent: Callable[[], None] | None = None) -> list[Outcome]:
        """Bulk-OUT transfers ``(data, timeout_ms)`` in order, then one Bulk-IN of ``in_length`` bytes.

        On libusb 1.0 all of them are submitted at once, so they follow each other on
        the bus without a host round trip in between; elsewhere they run one by one.
        A transfer that fails stops the ones after it (their outcome says whether they
        started). ``on_sent()`` is called when the OUT transfers have finished, before the IN
        one is waited for. Returns one :class:`Outcome` per transfer; never raises for a
        transfer's failure except :class:`DeviceGoneError` from the synchronous path.
        """
        engine = self._async_engine()
        if engine is None or self.cancelled:
            return self._batch_one_by_one(outs, in_length, in_timeout_ms, on_sent)
        requests = [libusb_async.BulkRequest(self.endpoints.bulk_out, max(1, t), data=d) for d, t in outs]
        requests.append(libusb_async.BulkRequest(self.endpoints.bulk_in, max(1, in_timeout_ms), length=in_length))
        results = engine.run(requests, after=len(outs), then=on_sent)
        if self.trace is not None:  # one call and one lock for the batch, as _batch_traced()
            now = _perf_counter_ns()
            self.trace.bulks([
                (r.endpoint, "in" if r.endpoint & 0x80 else "out",
                 memoryview(r.data).nbytes if r.data is not None else r.length, result.actual_length,
                 _TRACE_STATUS.get(result.status, tr.ERROR), result.data if r.endpoint & 0x80 else r.data,
                 result.submitted_ns or now, result.finished_ns or result.submitted_ns or now)
                for r, result in zip(requests, results)])
        return [self._outcome(result, "Bulk-IN transfer" if index == len(outs) else "Bulk-OUT transfer")
                for index, result in enumerate(results)]

    def start_bulk_out(self, data, timeout_ms: int):
        """Begin a Bulk-OUT transfer of ``data`` and return a token for :meth:`finish_bulk_out`.

        On libusb 1.0 the transfer is only submitted, so the caller can prepare the next
        one while it runs (``data`` must then stay untouched until it is finished);
        elsewhere it runs to completion here.
        """
        engine = self._async_engine()
        if engine is None or self.cancelled:
            return _synchronous(lambda: Outcome(count=self.bulk_out(data, timeout_ms)))
        pending = engine.submit(libusb_async.BulkRequest(self.endpoints.bulk_out, max(1, timeout_ms), data=data))
        return (pending, data) if self.trace is not None else pending

    def cancel_bulk_out(self, token) -> None:
        """Cancel a transfer begun by :meth:`start_bulk_out` that may still be in flight
        (:meth:`finish_bulk_out` then reports whether any of it started)."""
        if isinstance(token, tuple):  # traced: (pending, data)
            token = token[0]
        if not isinstance(token, Outcome) and self._async is not None:
            self._async.cancel(token)

    def finish_bulk_out(self, token) -> Outcome:
        """Wait for a transfer begun by :meth:`start_bulk_out`. If it failed, the transfers
        begun after it are cancelled (their outcomes say whether they started)."""
        if isinstance(token, Outcome):
            return token
        if isinstance(token, tuple):  # traced: (pending, data)
            result = self._async.wait(token[0])
            if self.trace is not None:
                self._trace_async(self.endpoints.bulk_out, token[1], 0, result)
            return self._outcome(result, "Bulk-OUT transfer")
        return self._outcome(self._async.wait(token), "Bulk-OUT transfer")

    def cancel(self) -> None:
        """Cancel the transfer in flight, if any, and fail every later one at once with
        :class:`AbortedError`, until the transport is closed.

        The one call that another thread may make (the GUI's, closing a session): a transfer
        waiting out a long timeout would otherwise keep the session's thread, and the
        process, alive that long. libusb 1.0 cancels the engine's transfers (every Bulk
        transfer goes through it there); a backend with ``cancel_transfers(handle)`` (the
        virtual bus) is asked to end its waiting transfers. Control transfers on libusb run
        synchronously and end by their own (short) timeout.
        """
        self.cancelled = True
        engine = self._async
        if engine is not None:
            engine.cancel_all()
        hook = getattr(getattr(self.device, "backend", None), "cancel_transfers", None)
        handle = getattr(getattr(self.device, "_ctx", None), "handle", None)
        if hook is not None and handle is not None:
            hook(handle)

    def _outcome(self, result: libusb_async.BulkResult, what: str) -> Outcome:
        if result.status == libusb_async.CANCELLED and self.cancelled:
            return Outcome(result.actual_length, result.data, _cancelled(what), started=result.actual_length > 0)
        if result.status == libusb_async.CANCELLED:
            return Outcome(result.actual_length, result.data, None, started=result.actual_length > 0)
        if result.ok:
            return Outcome(result.actual_length, result.data)
        error = _STATUS_ERRORS.get(result.status, _STATUS_ERRORS[libusb_async.ERROR])(what)
        return Outcome(result.actual_length, result.data, error)

    def _batch_one_by_one(self, outs, in_length: int, in_timeout_ms: int, on_sent=None) -> list[Outcome]:
        if self.trace is not None:
            return self._batch_traced(outs, in_length, in_timeout_ms, on_sent)
        outcomes: list[Outcome] = []
        for data, timeout_ms in outs:
            outcomes.append(_synchronous(lambda: Outcome(count=self.bulk_out(data, timeout_ms))))
            if outcomes[-1].error is not None:
                return outcomes + [_NOT_STARTED] * (len(outs) + 1 - len(outcomes))
        if on_sent is not None:
            on_sent()
        outcomes.append(_synchronous(lambda: Outcome(data=self.bulk_in(in_length, in_timeout_ms))))
        return outcomes

    def _batch_traced(self, outs, in_length: int, in_timeout_ms: int, on_sent) -> list[Outcome]:
        # _batch_one_by_one() recording its transfers with one SessionTrace call: a query's
        # three records cost one call and one lock instead of three (docs/benchmarks.md). The
        # end of one transfer is the start of the next (they follow each other with no wait).
        times = [_perf_counter_ns()]
        counts: list[int] = []
        try:
            for data, timeout_ms in outs:
                counts.append(self._bulk_out(data, timeout_ms))
                times.append(_perf_counter_ns())
            if on_sent is not None:
                on_sent()
                times[-1] = _perf_counter_ns()
            reply = self._bulk_in(in_length, in_timeout_ms)
        except TmcError as exc:
            failed = len(counts)
            records = [(self.endpoints.bulk_out, "out", memoryview(data).nbytes, count, tr.OK, data, times[i],
                        times[i + 1]) for i, ((data, _), count) in enumerate(zip(outs, counts))]
            if failed < len(outs):
                data = outs[failed][0]
                records.append((self.endpoints.bulk_out, "out", memoryview(data).nbytes, 0, _trace_status(exc),
                                data, times[-1], _perf_counter_ns()))
            else:
                records.append((self.endpoints.bulk_in, "in", in_length, 0, _trace_status(exc), None, times[-1],
                                _perf_counter_ns()))
            self.trace.bulks(records)
            if isinstance(exc, DeviceGoneError):
                raise
            outcomes = [Outcome(count=count) for count in counts] + [Outcome(error=exc)]
            return outcomes + [_NOT_STARTED] * (len(outs) + 1 - len(outcomes))
        times.append(_perf_counter_ns())
        self.trace.batch(self.endpoints.bulk_out, outs, counts, self.endpoints.bulk_in, in_length, reply, times)
        return [Outcome(count=count) for count in counts] + [Outcome(data=reply)]

    def _async_engine(self) -> libusb_async.AsyncBulk | None:
        if not self._async_checked:
            self._async_checked = True
            if os.environ.get("TMC_PIPELINE", "on").strip().lower() not in ("off", "0", "no"):
                self._async = self._make_async_engine()
        return self._async

    def _make_async_engine(self) -> libusb_async.AsyncBulk | None:
        # Reaches into pyusb for what its libusb 1.0 backend already holds: the loaded
        # library, its context and the open device handle. Any other backend (libusb
        # 0.1, OpenUSB, the virtual bus) has no such things and runs batches one by one.
        try:
            import usb.backend.libusb1 as libusb1

            backend = self.device.backend
            if not isinstance(backend, libusb1._LibUSB):
                return None
            handle = self.device._ctx.managed_open()
            return libusb_async.AsyncBulk.create(backend.lib, backend.ctx, handle.handle)
        except (ImportError, AttributeError, usb.core.USBError):
            return None

    def interrupt_in(self, length: int, timeout_ms: int) -> bytes:
        if self.endpoints.interrupt_in is None:
            raise NotSupportedError("the interface has no interrupt-IN endpoint")
        if self.trace is not None:
            return self._traced(tr.INTERRUPT, self.endpoints.interrupt_in, None, length,
                                lambda: self._interrupt_in(length, timeout_ms))
        return self._interrupt_in(length, timeout_ms)

    def _interrupt_in(self, length: int, timeout_ms: int) -> bytes:
        if self.cancelled:
            raise _cancelled("Interrupt-IN transfer")
        try:
            return self.device.read(self.endpoints.interrupt_in, length, timeout=max(1, timeout_ms)).tobytes()
        except usb.core.USBError as exc:
            raise translate(exc, "Interrupt-IN transfer") from exc

    def control_in(self, request_type: int, request: int, value: int, index: int, length: int, timeout_ms: int) -> bytes:
        if self.trace is not None:
            setup = _SETUP.pack(request_type, request, value, index, length)
            return self._traced(tr.CONTROL, 0x80, None, length,
                                lambda: self._control_in(request_type, request, value, index, length, timeout_ms),
                                setup)
        return self._control_in(request_type, request, value, index, length, timeout_ms)

    def _control_in(self, request_type: int, request: int, value: int, index: int, length: int,
                    timeout_ms: int) -> bytes:
        if self.cancelled:
            raise _cancelled(f"control request {request}")
        try:
            return bytes(self.device.ctrl_transfer(request_type, request, value, index, length, timeout=max(1, timeout_ms)))
        except usb.core.USBError as exc:
            raise translate(exc, f"control request {request}") from exc

    def clear_halt(self, endpoint: int) -> None:
        """Clear a halt on both sides of the pipe: libusb's clear_halt sends
        CLEAR_FEATURE(ENDPOINT_HALT) (USB 2.0 section 9.4.1) and resets the host's data
        toggle too, as the Linux usbtmc driver's usb_clear_halt() does. A hand-built
        CLEAR_FEATURE control request would reset only the device's toggle, and the
        device would then drop the next packet as a retransmission (USB 2.0 section 8.6)."""
        if self.trace is not None:
            # CLEAR_FEATURE(ENDPOINT_HALT) to the endpoint: OUT, standard, endpoint (USB 2.0 9.4.1)
            setup = _SETUP.pack(0x02, 1, 0, endpoint, 0)
            self._traced(tr.CONTROL, 0x00, b"", 0, lambda: self._clear_halt(endpoint), setup)
            return
        self._clear_halt(endpoint)

    def _clear_halt(self, endpoint: int) -> None:
        if self.cancelled:
            raise _cancelled("CLEAR_FEATURE(ENDPOINT_HALT)")
        try:
            self.device.clear_halt(endpoint)
        except usb.core.USBError as exc:
            raise translate(exc, f"clearing the halt of endpoint 0x{endpoint:02X}") from exc

    def close(self) -> None:
        """Release the interface and hand the device back to its kernel driver if we took it."""
        try:
            if self._claimed:
                usb.util.release_interface(self.device, self.interface_number)
            if self._detached_kernel_driver:
                self.device.attach_kernel_driver(self.interface_number)
        except (usb.core.USBError, NotImplementedError):
            pass  # the device may be gone already; nothing is left to release
        finally:
            self._claimed = False
            self._async, self._async_checked = None, True  # its device handle goes with the resources
            usb.util.dispose_resources(self.device)
