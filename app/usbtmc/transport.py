"""The one module of the core that talks to pyusb.

It opens one USBTMC interface of one device and offers bulk, interrupt and
control transfers with timeouts in milliseconds, translating pyusb's errors into
the core's typed errors. Everything above it works on bytes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import usb.core
import usb.util

from app.protocol.libusb import LibusbError

from . import libusb_async, libusb_library
from .errors import (
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

# libusb transfer statuses -> the typed errors translate() gives for the synchronous calls.
_STATUS_ERRORS = {
    libusb_async.TIMED_OUT: lambda what: TmcTimeoutError(f"{what} timed out"),
    libusb_async.STALL: lambda what: StallError(f"{what}: the device answered STALL"),
    libusb_async.NO_DEVICE: lambda what: DeviceGoneError(f"the device is gone ({what} failed)"),
    libusb_async.OVERFLOW: lambda what: OverflowError_(f"{what}: the device sent more data than requested"),
    libusb_async.ERROR: lambda what: TransferError(f"{what} failed"),
}


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
        try:
            return self.device.write(self.endpoints.bulk_out, data, timeout=max(1, timeout_ms))
        except usb.core.USBError as exc:
            raise translate(exc, "Bulk-OUT transfer") from exc

    def bulk_in(self, length: int, timeout_ms: int) -> bytes:
        try:
            return self.device.read(self.endpoints.bulk_in, length, timeout=max(1, timeout_ms)).tobytes()
        except usb.core.USBError as exc:
            raise translate(exc, "Bulk-IN transfer") from exc

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
        if engine is None:
            return self._batch_one_by_one(outs, in_length, in_timeout_ms, on_sent)
        requests = [libusb_async.BulkRequest(self.endpoints.bulk_out, max(1, t), data=d) for d, t in outs]
        requests.append(libusb_async.BulkRequest(self.endpoints.bulk_in, max(1, in_timeout_ms), length=in_length))
        results = engine.run(requests, after=len(outs), then=on_sent)
        return [self._outcome(result, "Bulk-IN transfer" if index == len(outs) else "Bulk-OUT transfer")
                for index, result in enumerate(results)]

    def start_bulk_out(self, data, timeout_ms: int):
        """Begin a Bulk-OUT transfer of ``data`` and return a token for :meth:`finish_bulk_out`.

        On libusb 1.0 the transfer is only submitted, so the caller can prepare the next
        one while it runs (``data`` must then stay untouched until it is finished);
        elsewhere it runs to completion here.
        """
        engine = self._async_engine()
        if engine is None:
            return _synchronous(lambda: Outcome(count=self.bulk_out(data, timeout_ms)))
        return engine.submit(libusb_async.BulkRequest(self.endpoints.bulk_out, max(1, timeout_ms), data=data))

    def cancel_bulk_out(self, token) -> None:
        """Cancel a transfer begun by :meth:`start_bulk_out` that may still be in flight
        (:meth:`finish_bulk_out` then reports whether any of it started)."""
        if not isinstance(token, Outcome) and self._async is not None:
            self._async.cancel(token)

    def finish_bulk_out(self, token) -> Outcome:
        """Wait for a transfer begun by :meth:`start_bulk_out`. If it failed, the transfers
        begun after it are cancelled (their outcomes say whether they started)."""
        if isinstance(token, Outcome):
            return token
        return self._outcome(self._async.wait(token), "Bulk-OUT transfer")

    @staticmethod
    def _outcome(result: libusb_async.BulkResult, what: str) -> Outcome:
        if result.status == libusb_async.CANCELLED:
            return Outcome(result.actual_length, result.data, None, started=result.actual_length > 0)
        if result.ok:
            return Outcome(result.actual_length, result.data)
        error = _STATUS_ERRORS.get(result.status, _STATUS_ERRORS[libusb_async.ERROR])(what)
        return Outcome(result.actual_length, result.data, error)

    def _batch_one_by_one(self, outs, in_length: int, in_timeout_ms: int, on_sent=None) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for data, timeout_ms in outs:
            outcomes.append(_synchronous(lambda: Outcome(count=self.bulk_out(data, timeout_ms))))
            if outcomes[-1].error is not None:
                return outcomes + [_NOT_STARTED] * (len(outs) + 1 - len(outcomes))
        if on_sent is not None:
            on_sent()
        outcomes.append(_synchronous(lambda: Outcome(data=self.bulk_in(in_length, in_timeout_ms))))
        return outcomes

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
        try:
            return self.device.read(self.endpoints.interrupt_in, length, timeout=max(1, timeout_ms)).tobytes()
        except usb.core.USBError as exc:
            raise translate(exc, "Interrupt-IN transfer") from exc

    def control_in(self, request_type: int, request: int, value: int, index: int, length: int, timeout_ms: int) -> bytes:
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
