"""A pyusb backend for a :class:`~app.sim.bus.VirtualBus`: the in-process adapter.

``usb.core.find(backend=VirtualBackend(bus))`` sees the virtual devices as real USB
devices. The backend behaves like pyusb's libusb 1.0 backend on Linux, so host code
cannot tell the difference: the same descriptor attributes, transfers that block for
``timeout`` milliseconds (0: forever), and the same ``usb.core.USBError`` codes
(``backend_error_code`` is libusb's, ``errno`` the matching errno):

=====================  =======  ==========  ===========================================
condition              code     errno       when
=====================  =======  ==========  ===========================================
timeout                -7       ETIMEDOUT   ``usb.core.USBTimeoutError``
pipe (STALL)           -9       EPIPE       halted endpoint, refused control request
no device              -4       ENODEV      unplugged
overflow (babble)      -8       EOVERFLOW   a packet larger than the room left
busy                   -6       EBUSY       interface claimed by another handle
not found              -5       ENOENT      no such interface/configuration/setting
I/O                    -1       EIO         no such endpoint
=====================  =======  ==========  ===========================================

:meth:`VirtualBackend.fail_open` and :meth:`VirtualBackend.bind_kernel_driver` make a device
fail as the real platforms do when a driver is in the way (the driver doctor's tests).

As with libusb, a transfer that times out after moving some bytes returns that count
(pyusb does not raise in that case).

The backend is the host controller too: it keeps the host's data toggles of each
connected device (:class:`~app.sim.device.HostToggles`). ``clear_halt`` (pyusb's
``Device.clear_halt``), ``set_configuration``, ``set_interface_altsetting`` and
``reset_device`` reset them as libusb does; a CLEAR_FEATURE built by hand with
``ctrl_transfer`` reaches only the device, so the next packet can be lost exactly as on
real hardware (USB 2.0 8.6). ``data_toggles=False`` leaves the toggles out of the model
(:data:`~app.sim.device.DATA_TOGGLES_BY_DEFAULT` is the default). This is the only module of :mod:`app.sim` that
imports pyusb.
"""

from __future__ import annotations

import errno
import threading
import weakref

import usb.backend
import usb.core

from app.protocol.libusb import LibusbError

from .bus import BusEntry, VirtualBus
from .device import (
    DATA_TOGGLES_BY_DEFAULT,
    TRANSFER_TYPE_INTERRUPT,
    Gone,
    HostToggles,
    NoData,
    Overflow,
    Stall,
    VirtualDevice,
)

# libusb.h error codes, and the messages and errno values pyusb's libusb1 backend attaches to them.
LIBUSB_ERROR_IO = LibusbError.IO
LIBUSB_ERROR_INVALID_PARAM = LibusbError.INVALID_PARAM
LIBUSB_ERROR_ACCESS = LibusbError.ACCESS
LIBUSB_ERROR_NO_DEVICE = LibusbError.NO_DEVICE
LIBUSB_ERROR_NOT_FOUND = LibusbError.NOT_FOUND
LIBUSB_ERROR_BUSY = LibusbError.BUSY
LIBUSB_ERROR_TIMEOUT = LibusbError.TIMEOUT
LIBUSB_ERROR_OVERFLOW = LibusbError.OVERFLOW
LIBUSB_ERROR_PIPE = LibusbError.PIPE
LIBUSB_ERROR_NOT_SUPPORTED = LibusbError.NOT_SUPPORTED
LIBUSB_ERROR_INTERRUPTED = LibusbError.INTERRUPTED

_ERRORS = {
    LIBUSB_ERROR_IO: ("Input/output error", errno.EIO),
    LIBUSB_ERROR_INVALID_PARAM: ("Invalid parameter", errno.EINVAL),
    LIBUSB_ERROR_ACCESS: ("Access denied (insufficient permissions)", errno.EACCES),
    LIBUSB_ERROR_NO_DEVICE: ("No such device (it may have been disconnected)", errno.ENODEV),
    LIBUSB_ERROR_NOT_FOUND: ("Entity not found", errno.ENOENT),
    LIBUSB_ERROR_BUSY: ("Resource busy", errno.EBUSY),
    LIBUSB_ERROR_TIMEOUT: ("Operation timed out", errno.ETIMEDOUT),
    LIBUSB_ERROR_OVERFLOW: ("Overflow", errno.EOVERFLOW),
    LIBUSB_ERROR_PIPE: ("Pipe error", errno.EPIPE),
    LIBUSB_ERROR_INTERRUPTED: ("System call interrupted (perhaps due to signal)", errno.EINTR),
}


def usb_error(code: int) -> usb.core.USBError:
    """The exception pyusb's libusb1 backend raises for libusb error ``code``."""
    message, err = _ERRORS[code]
    if code == LIBUSB_ERROR_TIMEOUT:
        return usb.core.USBTimeoutError(message, code, err)
    return usb.core.USBError(message, code, err)


# What pyusb raises when libusb_open fails, per cause (for the driver doctor's tests):
# "not_supported" is Windows with a driver other than WinUSB (pyusb turns
# LIBUSB_ERROR_NOT_SUPPORTED into NotImplementedError); "access" is Linux without
# permission, or Windows while another program has the device open; "busy" is a claim
# held elsewhere.
OPEN_FAILURES = {
    "not_supported": lambda: NotImplementedError("Operation not supported or unimplemented on this platform"),
    "access": lambda: usb_error(LIBUSB_ERROR_ACCESS),
    "busy": lambda: usb_error(LIBUSB_ERROR_BUSY),
}


class _Descriptor:
    """A descriptor record with the attribute names pyusb reads (libusb's struct fields)."""

    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"_Descriptor({self.__dict__!r})"


class _DeviceRef:
    """What :meth:`VirtualBackend.enumerate_devices` yields: one connection of one device."""

    def __init__(self, entry: BusEntry) -> None:
        self.entry = entry

    @property
    def device(self) -> VirtualDevice:
        return self.entry.device


class _Handle:
    def __init__(self, ref: _DeviceRef) -> None:
        self.ref = ref
        self.claimed: set[int] = set()
        self.closed = False
        self.cancelled = False  # cancel_transfers() was called: every transfer fails at once


class _Cancelled(Exception):
    """A transfer on a handle whose transfers were cancelled."""


class VirtualBackend(usb.backend.IBackend):
    """pyusb's backend interface over a :class:`VirtualBus`. Thread-safe."""

    def __init__(self, bus: VirtualBus, *, data_toggles: bool | None = None) -> None:
        super().__init__()
        self.bus = bus
        # Whether transfers model the host's toggles (see the module docstring); None: the default.
        self.data_toggles = DATA_TOGGLES_BY_DEFAULT if data_toggles is None else data_toggles
        self._lock = threading.Lock()
        self._claims: dict[int, dict[int, _Handle]] = {}  # id(device) -> interface -> handle
        # One connection's host-side toggles; a replugged device is a new entry and starts at DATA0.
        self._toggles: weakref.WeakKeyDictionary[BusEntry, HostToggles] = weakref.WeakKeyDictionary()
        self._open_failures: dict[int, str] = {}  # id(device) -> OPEN_FAILURES key
        self._kernel_bound: dict[int, set[int]] = {}  # id(device) -> interfaces a kernel driver holds

    # --- faults the real platforms show, on demand ---

    def fail_open(self, device: VirtualDevice, failure: str | None) -> None:
        """Make opening ``device`` raise what pyusb raises for ``failure`` (an OPEN_FAILURES
        key); None lets it open again."""
        if failure is not None and failure not in OPEN_FAILURES:
            raise ValueError(f"unknown open failure {failure!r}; known: {sorted(OPEN_FAILURES)}")
        with self._lock:
            if failure is None:
                self._open_failures.pop(id(device), None)
            else:
                self._open_failures[id(device)] = failure

    def bind_kernel_driver(self, device: VirtualDevice, interface: int) -> None:
        """Bind a kernel driver (Linux's usbtmc) to ``interface``, as usbfs sees it: requests to
        the interface and claims fail with EBUSY until the driver is detached."""
        with self._lock:
            self._kernel_bound.setdefault(id(device), set()).add(interface)

    def _kernel_holds(self, device: VirtualDevice, interface: int) -> bool:
        with self._lock:
            return interface in self._kernel_bound.get(id(device), ())

    # --- enumeration and descriptors ---

    def enumerate_devices(self):
        return [_DeviceRef(entry) for entry in self.bus.entries()]

    def get_parent(self, dev):
        return None  # the root hub is not modelled

    def get_device_descriptor(self, dev):
        d = dev.device.device_desc
        entry = dev.entry
        return _Descriptor(
            bLength=18, bDescriptorType=1, bcdUSB=d.bcd_usb, bDeviceClass=d.cls, bDeviceSubClass=d.subclass,
            bDeviceProtocol=d.protocol, bMaxPacketSize0=d.max_packet0, idVendor=d.vid, idProduct=d.pid,
            bcdDevice=d.bcd_device, iManufacturer=d.i_manufacturer, iProduct=d.i_product,
            iSerialNumber=d.i_serial, bNumConfigurations=d.num_configurations,
            bus=entry.bus_number, address=entry.address, port_number=entry.port, port_numbers=(entry.port,),
            speed=int(dev.device.speed),
        )

    def get_configuration_descriptor(self, dev, config):
        configs = dev.device.configs
        if not 0 <= config < len(configs):
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)
        c = configs[config]
        return _Descriptor(
            bLength=9, bDescriptorType=2, wTotalLength=len(c.to_bytes()), bNumInterfaces=c.num_interfaces,
            bConfigurationValue=c.value, iConfiguration=c.string_index, bmAttributes=c.attributes,
            bMaxPower=min(255, (c.max_power_ma + 1) // 2), extra_descriptors=list(c.extra),
        )

    def get_interface_descriptor(self, dev, intf, alt, config):
        groups = self._interface_groups(dev, config)
        if not 0 <= intf < len(groups):
            raise IndexError(f"Invalid interface index {intf}")
        if not 0 <= alt < len(groups[intf]):
            raise IndexError(f"Invalid alternate setting index {alt}")
        i = groups[intf][alt]
        return _Descriptor(
            bLength=9, bDescriptorType=4, bInterfaceNumber=i.number, bAlternateSetting=i.alt,
            bNumEndpoints=len(i.endpoints), bInterfaceClass=i.cls, bInterfaceSubClass=i.subclass,
            bInterfaceProtocol=i.protocol, iInterface=i.string_index, extra_descriptors=list(i.extra),
        )

    def get_endpoint_descriptor(self, dev, ep, intf, alt, config):
        groups = self._interface_groups(dev, config)
        if not (0 <= intf < len(groups) and 0 <= alt < len(groups[intf])):
            raise IndexError(f"Invalid interface {intf} / alternate setting {alt}")
        endpoints = groups[intf][alt].endpoints
        if not 0 <= ep < len(endpoints):
            raise IndexError(f"Invalid endpoint index {ep}")
        e = endpoints[ep]
        return _Descriptor(
            bLength=7, bDescriptorType=5, bEndpointAddress=e.address, bmAttributes=e.attributes,
            wMaxPacketSize=e.max_packet, bInterval=e.interval, bRefresh=0, bSynchAddress=0,
            extra_descriptors=list(e.extra),
        )

    # --- handles and configuration ---

    def open_device(self, dev):
        device = self._live(dev)
        with self._lock:
            failure = self._open_failures.get(id(device))
        if failure is not None:
            raise OPEN_FAILURES[failure]()
        return _Handle(dev)

    def close_device(self, dev_handle):
        with self._lock:
            claims = self._claims.get(id(dev_handle.ref.device), {})
            for number in list(dev_handle.claimed):
                if claims.get(number) is dev_handle:
                    del claims[number]
            dev_handle.claimed.clear()
            dev_handle.closed = True

    def set_configuration(self, dev_handle, config_value):
        device = self._device(dev_handle)
        value = 0 if config_value in (-1, None) else int(config_value)
        with self._lock:
            if self._claims.get(id(device)):
                raise usb_error(LIBUSB_ERROR_BUSY)  # libusb: interfaces are claimed
        if value and not any(c.value == value for c in device.configs):
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)
        self._call(lambda: device.set_configuration(value))
        self.host_toggles(dev_handle).reset()

    def get_configuration(self, dev_handle):
        return self._device(dev_handle).configuration

    def set_interface_altsetting(self, dev_handle, intf, altsetting):
        device = self._device(dev_handle)
        if intf not in dev_handle.claimed:
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)
        config = device.active_config()
        if config is None or not any(i.number == intf and i.alt == altsetting for i in config.interfaces):
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)
        self._call(lambda: device.set_interface(intf, altsetting))
        self.host_toggles(dev_handle).reset(
            ep.address for i in config.interfaces if i.number == intf for ep in i.endpoints)

    def claim_interface(self, dev_handle, intf):
        device = self._device(dev_handle)
        config = device.active_config()
        if config is None or not any(i.number == intf for i in config.interfaces):
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)
        if self._kernel_holds(device, intf):
            raise usb_error(LIBUSB_ERROR_BUSY)
        with self._lock:
            claims = self._claims.setdefault(id(device), {})
            holder = claims.get(intf)
            if holder is not None and holder is not dev_handle:
                raise usb_error(LIBUSB_ERROR_BUSY)
            claims[intf] = dev_handle
            dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle, intf):
        device = self._device(dev_handle)
        with self._lock:
            claims = self._claims.get(id(device), {})
            if claims.get(intf) is not dev_handle:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            del claims[intf]
            dev_handle.claimed.discard(intf)

    # --- transfers ---

    def bulk_write(self, dev_handle, ep, intf, data, timeout):
        return self._write(dev_handle, ep, data, timeout)

    def intr_write(self, dev_handle, ep, intf, data, timeout):
        return self._write(dev_handle, ep, data, timeout)

    def bulk_read(self, dev_handle, ep, intf, buff, timeout):
        return self._read(dev_handle, ep, buff, timeout)

    def intr_read(self, dev_handle, ep, intf, buff, timeout):
        return self._read(dev_handle, ep, buff, timeout)

    def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data, timeout):
        device = self._device(dev_handle)
        # usbfs claims an interface for a request addressed to it, which fails while a
        # kernel driver holds the interface (Linux, devio.c check_ctrlrecip).
        if bmRequestType & 0x1F == 1 and self._kernel_holds(device, wIndex & 0xFF):
            raise usb_error(LIBUSB_ERROR_BUSY)
        is_in = bool(bmRequestType & 0x80)
        with memoryview(data) as view:
            length = view.nbytes
            out = b"" if is_in else view.tobytes()

        def attempt():
            try:
                if is_in:
                    return device.control(bmRequestType, bRequest, wValue, wIndex, length)
                device.control(bmRequestType, bRequest, wValue, wIndex, out)
                return b""
            except NoData:
                return None

        reply = self._wait(device, attempt, timeout, dev_handle)
        if reply is None:
            raise usb_error(LIBUSB_ERROR_TIMEOUT)
        if is_in:
            _copy_into(data, reply)
            return len(reply)
        return length

    def clear_halt(self, dev_handle, ep):
        device = self._device(dev_handle)
        if ep not in device.endpoints():
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)
        self._call(lambda: device.clear_halt(ep, self.host_toggles(dev_handle)))

    def reset_device(self, dev_handle):
        device = self._device(dev_handle)
        self._call(device.reset)
        self.host_toggles(dev_handle).reset()

    def host_toggles(self, dev_handle) -> HostToggles:
        """The host's data toggles for the device ``dev_handle`` (or a device reference) is connected as."""
        ref = dev_handle.ref if isinstance(dev_handle, _Handle) else dev_handle
        with self._lock:
            toggles = self._toggles.get(ref.entry)
            if toggles is None:
                toggles = self._toggles[ref.entry] = HostToggles()
            return toggles

    def is_kernel_driver_active(self, dev_handle, intf):
        # No kernel driver binds to a virtual device unless bind_kernel_driver() says so.
        return self._kernel_holds(self._device(dev_handle), intf)

    def detach_kernel_driver(self, dev_handle, intf):
        device = self._device(dev_handle)
        with self._lock:
            bound = self._kernel_bound.get(id(device), set())
            if intf not in bound:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            bound.discard(intf)

    def attach_kernel_driver(self, dev_handle, intf):
        device = self._device(dev_handle)
        with self._lock:
            if id(device) not in self._kernel_bound:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)  # no driver was ever bound to this device
            self._kernel_bound[id(device)].add(intf)

    # --- internals ---

    def _interface_groups(self, dev, config):
        configs = dev.device.configs
        if not 0 <= config < len(configs):
            raise IndexError(f"Invalid configuration index {config}")
        groups: dict[int, list] = {}
        for interface in configs[config].interfaces:
            groups.setdefault(interface.number, []).append(interface)
        return list(groups.values())

    def _live(self, ref: _DeviceRef) -> VirtualDevice:
        # A device reference is good for one connection only, as with libusb.
        if not any(entry is ref.entry for entry in self.bus.entries()) or not ref.device.attached:
            raise usb_error(LIBUSB_ERROR_NO_DEVICE)
        return ref.device

    def _device(self, dev_handle: _Handle) -> VirtualDevice:
        if dev_handle.closed:
            raise usb_error(LIBUSB_ERROR_INVALID_PARAM)
        return self._live(dev_handle.ref)

    @staticmethod
    def _call(action) -> None:
        try:
            action()
        except Stall:
            raise usb_error(LIBUSB_ERROR_PIPE) from None
        except Gone:
            raise usb_error(LIBUSB_ERROR_NO_DEVICE) from None

    def cancel_transfers(self, dev_handle: _Handle) -> None:
        """End the transfers waiting on ``dev_handle`` now, and every later one at once, with
        LIBUSB_ERROR_INTERRUPTED (what libusb's synchronous calls report for a cancelled
        transfer). Thread-safe: a session being closed calls it from another thread."""
        dev_handle.cancelled = True
        device = dev_handle.ref.device
        with device.changed:
            device.changed.notify_all()

    @staticmethod
    def _wait(device: VirtualDevice, attempt, timeout_ms, dev_handle: _Handle | None = None):
        timeout_s = None if not timeout_ms else timeout_ms / 1000  # libusb: 0 waits forever
        if dev_handle is not None:
            inner = attempt

            def attempt():
                if dev_handle.cancelled:
                    raise _Cancelled
                return inner()

        try:
            return device.wait_for(attempt, timeout_s)
        except Stall:
            raise usb_error(LIBUSB_ERROR_PIPE) from None
        except Gone:
            raise usb_error(LIBUSB_ERROR_NO_DEVICE) from None
        except _Cancelled:
            raise usb_error(LIBUSB_ERROR_INTERRUPTED) from None

    def _endpoint(self, device: VirtualDevice, ep: int, want_in: bool):
        desc = device.endpoints().get(ep)
        if desc is None or desc.is_in != want_in:
            raise usb_error(LIBUSB_ERROR_IO)  # usbfs refuses the URB; libusb reports an I/O error
        return desc

    def _read(self, dev_handle, ep, buff, timeout):
        device = self._device(dev_handle)
        desc = self._endpoint(device, ep, want_in=True)
        # Linux runs a bulk call on an interrupt endpoint as an interrupt transfer, and vice versa.
        take = device.interrupt_in if desc.transfer_type == TRANSFER_TYPE_INTERRUPT else device.bulk_in
        toggles = self.host_toggles(dev_handle) if self.data_toggles else None
        with memoryview(buff) as view:
            length = view.nbytes

        def attempt():
            try:
                return take(ep, length, toggles)
            except NoData:
                return None

        try:
            data = self._wait(device, attempt, timeout, dev_handle)
        except Overflow as exc:
            _copy_into(buff, exc.received)
            raise usb_error(LIBUSB_ERROR_OVERFLOW) from None
        if data is None:
            partial = device.cancel_in(ep)
            if not partial:
                raise usb_error(LIBUSB_ERROR_TIMEOUT)
            data = partial  # libusb reports the timeout with the bytes moved; pyusb returns them
        _copy_into(buff, data)
        return len(data)

    def _write(self, dev_handle, ep, data, timeout):
        device = self._device(dev_handle)
        self._endpoint(device, ep, want_in=False)
        # The host's buffer is lent to the device for the call, as a controller reads it by DMA:
        # the device copies what it keeps, so the transfer is not copied here.
        payload = memoryview(data).cast("B")
        toggles = self.host_toggles(dev_handle) if self.data_toggles else None
        sent = 0

        def attempt():
            nonlocal sent
            try:
                if not payload:
                    device.bulk_out(ep, b"", toggles)  # a zero-length packet
                    return 0
                while sent < len(payload):
                    taken = device.bulk_out(ep, payload[sent:], toggles)
                    if taken <= 0:
                        return None
                    sent += taken
                return sent
            except NoData:
                return None

        try:
            written = self._wait(device, attempt, timeout, dev_handle)
        finally:
            payload.release()
        if written is None:
            if not sent:
                raise usb_error(LIBUSB_ERROR_TIMEOUT)
            return sent
        return written


def _copy_into(buff, data: bytes) -> None:
    with memoryview(buff) as view, view.cast("B") as target:
        target[: len(data)] = data
