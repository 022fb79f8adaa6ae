"""Serve virtual devices to the real libusb: a umockdev testbed with one usbdevfs ioctl handler per device.

This is the only module of TMC Console that imports ``gi`` (PyGObject with the
UMockdev 1.0 typelib). It runs under the system Python, where python3-gi lives,
next to the standard-library device models of :mod:`app.sim`.

How the pieces meet: umockdev fakes sysfs and udev in a temporary directory and
redirects a preloaded process's open()/ioctl() on our device nodes to a socket.
Each ioctl arrives in :meth:`UsbdevfsHandler.do_handle_ioctl` on umockdev's worker
thread; the handler copies the client's memory in (``IoctlData.resolve``/``retrieve``),
lets :class:`~.urbs.UrbEngine` run the request against the device, writes the
results back (``update``/``set_ptr``) and completes the ioctl.
"""

from __future__ import annotations

import errno
import math
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass

# libusb polls REAPURBNDELAY in a loop because the fake device node is a regular file that
# always polls ready; holding an empty reap keeps a wait from burning a core. The hold starts
# at PARK_MS and doubles up to MAX_PARK_MS while the client's transfers stay unfinished.
PARK_MS = 1
MAX_PARK_MS = 8
_INT = struct.Struct("<i")
# The first umockdev with the IoctlData.update/retrieve calls Python handlers need.
MINIMUM_VERSION = "0.17.14"


class UmockdevUnavailable(RuntimeError):
    """umockdev or its GObject bindings are missing or too old; the message says what to install."""


def load_umockdev():
    """The ``(UMockdev, GLib)`` modules, or :class:`UmockdevUnavailable` saying what is missing."""
    try:
        import gi
    except ImportError:
        raise UmockdevUnavailable("PyGObject (python3-gi) is missing") from None
    try:
        gi.require_version("UMockdev", "1.0")
        from gi.repository import GLib, UMockdev
    except (ValueError, ImportError):
        raise UmockdevUnavailable("the UMockdev 1.0 typelib (gir1.2-umockdev-1.0) is missing") from None
    if not (hasattr(UMockdev, "IoctlBase") and hasattr(UMockdev.IoctlData, "update")):
        raise UmockdevUnavailable(
            f"umockdev is too old: Python ioctl handlers need umockdev {MINIMUM_VERSION} or newer "
            "(Debian 12 and Ubuntu 24.04 have it)")
    return UMockdev, GLib


UMockdev, GLib = load_umockdev()

# Imported after the check above so that a missing gi is what gets reported, not a later import.
from .urbs import Urb, UrbEngine, UsbdevfsError  # noqa: E402
from .usbdevfs import (  # noqa: E402
    CAPABILITIES,
    CONNECTINFO,
    CTRLTRANSFER,
    CTRLTRANSFER_DATA_OFFSET,
    DISCONNECT_CLAIM,
    IOCTL,
    POINTER,
    SETINTERFACE,
    SETUP,
    SYSFS_SPEED,
    UINT,
    URB,
    URB_ACTUAL_LENGTH_OFFSET,
    URB_BUFFER_OFFSET,
    URB_STATUS_OFFSET,
    KernelSpeed,
    Request,
    UrbType,
    request_name,
)


def _log(message: str) -> None:
    print(f"tmc-umockdev: {message}", file=sys.stderr, flush=True)


class UsbdevfsHandler(UMockdev.IoctlBase):
    """Answers the usbdevfs ioctls of one device node, the way libusb's Linux backend uses them.

    Requests follow linux/usbdevice_fs.h; which ones libusb needs and how it reads their
    answers is what libusb's own tests/umockdev.c exercises. USBDEVFS_BULK and isochronous
    URBs are not emulated (libusb uses neither for bulk/interrupt/control transfers).
    """

    def __init__(self, engine: UrbEngine, speed: KernelSpeed, devnum: int, *, park_ms: int = PARK_MS, trace: bool = False):
        super().__init__()
        self.engine = engine
        self.speed = speed
        self.devnum = devnum
        self.park_ms = park_ms
        self.trace = trace
        self._idle_reaps: dict[object, int] = {}  # client -> empty reaps in a row
        self._watched: set[object] = set()  # clients whose disconnection we listen for
        self._dispatch = {
            Request.SUBMITURB: self._submit_urb,
            Request.REAPURBNDELAY: lambda client: self._reap(client, blocking=False),
            Request.REAPURB: lambda client: self._reap(client, blocking=True),
            Request.DISCARDURB: self._discard_urb,
            Request.GET_CAPABILITIES: self._get_capabilities,
            Request.CLAIMINTERFACE: self._claim_interface,
            Request.RELEASEINTERFACE: self._release_interface,
            Request.DISCONNECT_CLAIM: self._disconnect_claim,
            Request.SETCONFIGURATION: self._set_configuration,
            Request.SETINTERFACE: self._set_interface,
            Request.CLEAR_HALT: self._clear_halt,
            Request.RESETEP: lambda client: self._done(client),
            Request.RESET: self._reset,
            Request.GETDRIVER: self._getdriver,
            Request.IOCTL: self._driver_ioctl,
            Request.CONNECTINFO: self._connectinfo,
            Request.GET_SPEED: self._get_speed,
            Request.DROP_PRIVILEGES: lambda client: self._done(client),
            Request.CONTROL: self._control,
        }

    # --- entry points called by umockdev ---

    def do_handle_ioctl(self, client) -> bool:
        request = client.get_request() & 0xFFFFFFFF
        if self.trace:
            _log(f"{time.monotonic():.6f} devnum {self.devnum}: {request_name(request)}")
        if client not in self._watched:
            # umockdev 0.17 never emits client-vanished; its "connected" property does change.
            self._watched.add(client)
            client.connect("notify::connected", self._on_connection_changed)
        action = self._dispatch.get(request)
        try:
            if action is None:
                self._fail(client, errno.ENOTTY)
            else:
                action(client)
        except UsbdevfsError as exc:
            self._fail(client, exc.errno)
        except Exception:  # a bug here must not hang the client inside its ioctl
            _log(f"internal error answering {request_name(request)}:\n{traceback.format_exc()}")
            self._fail(client, errno.EIO)
        return True

    def _on_connection_changed(self, client, _pspec) -> None:
        if not client.get_connected():
            # The process closed the device node (or died): usbdevfs cancels its URBs and claims.
            self.engine.forget(client)
            self._idle_reaps.pop(client, None)
            self._watched.discard(client)

    # --- helpers ---

    @staticmethod
    def _done(client, result: int = 0) -> None:
        client.complete(result, 0)

    @staticmethod
    def _fail(client, err: int) -> None:
        client.complete(-1, err)

    @staticmethod
    def _resolve(data, offset: int, length: int):
        resolved = data.resolve(offset, length)
        if resolved is None:
            raise UsbdevfsError(errno.EFAULT, "null pointer in an ioctl argument")
        return resolved

    def _uint_arg(self, client) -> int:
        return UINT.unpack(self._resolve(client.get_arg(), 0, UINT.size).retrieve())[0]

    # --- URBs ---

    def _submit_urb(self, client) -> None:
        memory = self._resolve(client.get_arg(), 0, URB.size)
        urb_type, endpoint, _status, flags, _buffer, length, *_rest = URB.unpack(memory.retrieve())
        if length < 0 or urb_type not in (UrbType.CONTROL, UrbType.BULK, UrbType.INTERRUPT):
            raise UsbdevfsError(errno.EINVAL, f"URB type {urb_type} with {length} bytes is not emulated")
        urb = Urb(owner=client, token=memory, type=UrbType(urb_type), endpoint=endpoint, flags=flags, length=length)
        if urb.type == UrbType.CONTROL:
            if length < SETUP.size:
                raise UsbdevfsError(errno.EINVAL)
            raw = self._resolve(memory, URB_BUFFER_OFFSET, length).retrieve()
            urb.setup, urb.length = raw[: SETUP.size], length - SETUP.size
            urb.out_data = raw[SETUP.size:]
        elif not endpoint & 0x80 and length:
            urb.out_data = self._resolve(memory, URB_BUFFER_OFFSET, length).retrieve()
        # IN buffers are fetched only when data arrives, and only as much as arrived.
        self.engine.submit(urb)
        self._idle_reaps[client] = 0
        self._done(client)

    def _reap(self, client, blocking: bool) -> None:
        urb = self.engine.reap(client)
        if urb is not None:
            self._deliver(client, urb)
        elif blocking or (self.park_ms > 0 and self.engine.in_flight(client)):
            self._park(client, blocking)
        else:
            # Nothing in flight (libusb's last reap of a batch): parking would only add latency.
            self._fail(client, errno.EAGAIN)

    def _park(self, client, blocking: bool) -> None:
        """Answer the reap later from a timer on umockdev's worker context."""
        context = GLib.MainContext.get_thread_default()
        streak = self._idle_reaps.get(client, 0)
        self._idle_reaps[client] = streak + 1
        park_ms = min(max(MAX_PARK_MS, self.park_ms), max(1, self.park_ms) << min(streak, 4))
        due_s = self.engine.next_event_s()  # a timed answer: come back when it is due
        if due_s is not None:
            park_ms = max(1, min(park_ms, math.ceil(due_s * 1000)))
        timer = GLib.Timeout(park_ms)

        def retry(*_args) -> bool:
            if not client.get_connected():
                return False
            try:
                urb = self.engine.reap(client)
                if urb is not None:
                    self._deliver(client, urb)
                elif blocking:
                    return True  # REAPURB waits until something finishes
                else:
                    self._fail(client, errno.EAGAIN)
            except UsbdevfsError as exc:
                self._fail(client, exc.errno)
            except Exception:
                _log(f"internal error reaping a URB:\n{traceback.format_exc()}")
                self._fail(client, errno.EIO)
            return False

        timer.set_callback(retry)
        timer.attach(context)

    def _deliver(self, client, urb: Urb) -> None:
        self._idle_reaps[client] = 0
        memory = urb.token
        if urb.in_data:
            # Control URBs had their buffer fetched at submission (the same IoctlData comes back).
            buffer = self._resolve(memory, URB_BUFFER_OFFSET, len(urb.in_data))
            buffer.update(SETUP.size if urb.type == UrbType.CONTROL else 0, urb.in_data)
        memory.update(URB_STATUS_OFFSET, _INT.pack(urb.status))
        memory.update(URB_ACTUAL_LENGTH_OFFSET, _INT.pack(urb.actual_length))
        pointer = self._resolve(client.get_arg(), 0, POINTER.size)
        pointer.set_ptr(0, memory)
        self._done(client)

    def _discard_urb(self, client) -> None:
        # The argument is the URB's own address in the client, not a pointer to it.
        address = POINTER.unpack(client.get_arg().retrieve())[0]
        self.engine.discard(client, lambda token: token.client_addr == address)
        self._done(client)

    # --- the rest of usbdevfs ---

    def _get_capabilities(self, client) -> None:
        self._resolve(client.get_arg(), 0, UINT.size).update(0, UINT.pack(CAPABILITIES))
        self._done(client)

    def _claim_interface(self, client) -> None:
        self.engine.claim(client, self._uint_arg(client))
        self._done(client)

    def _release_interface(self, client) -> None:
        self.engine.release(client, self._uint_arg(client))
        self._done(client)

    def _disconnect_claim(self, client) -> None:
        interface, _flags, _driver = DISCONNECT_CLAIM.unpack(self._resolve(client.get_arg(), 0, DISCONNECT_CLAIM.size).retrieve())
        self.engine.claim(client, interface)  # no kernel driver is ever bound, so nothing to disconnect
        self._done(client)

    def _set_configuration(self, client) -> None:
        value = _INT.unpack(self._resolve(client.get_arg(), 0, UINT.size).retrieve())[0]
        self.engine.set_configuration(max(0, value))  # -1 means "unconfigured"
        self._done(client)

    def _set_interface(self, client) -> None:
        interface, alternate = SETINTERFACE.unpack(self._resolve(client.get_arg(), 0, SETINTERFACE.size).retrieve())
        self.engine.set_interface(interface, alternate)
        self._done(client)

    def _clear_halt(self, client) -> None:
        self.engine.clear_halt(self._uint_arg(client) & 0xFF)
        self._done(client)

    def _reset(self, client) -> None:
        self.engine.reset()
        self._done(client)

    def _getdriver(self, client) -> None:
        if self.engine.gone:
            raise UsbdevfsError(errno.ENODEV)
        raise UsbdevfsError(errno.ENODATA, "no kernel driver is bound to a virtual device")

    def _driver_ioctl(self, client) -> None:
        _interface, code, _data = IOCTL.unpack(self._resolve(client.get_arg(), 0, IOCTL.size).retrieve())
        if self.engine.gone:
            raise UsbdevfsError(errno.ENODEV)
        if (code & 0xFFFFFFFF) == Request.DISCONNECT:
            raise UsbdevfsError(errno.ENODATA, "no kernel driver to disconnect")
        self._done(client)

    def _connectinfo(self, client) -> None:
        memory = self._resolve(client.get_arg(), 0, CONNECTINFO.size)
        memory.update(0, CONNECTINFO.pack(self.devnum, int(self.speed == KernelSpeed.LOW)))
        self._done(client)

    def _get_speed(self, client) -> None:
        self._done(client, int(self.speed))

    def _control(self, client) -> None:
        memory = self._resolve(client.get_arg(), 0, CTRLTRANSFER.size)
        request_type, request, value, index, length, _timeout_ms, _data = CTRLTRANSFER.unpack(memory.retrieve())
        setup = SETUP.pack(request_type, request, value, index, length)
        data = self._resolve(memory, CTRLTRANSFER_DATA_OFFSET, length) if length else None
        reply = self.engine.control(setup, b"" if data is None or request_type & 0x80 else data.retrieve())
        if reply and data is not None:
            data.update(0, reply)
        self._done(client, len(reply) if request_type & 0x80 else length)


# --- sysfs ---

_DEVICE_DESCRIPTOR = struct.Struct("<BBHBBBBHHHBBBB")  # USB 2.0 Table 9-8


@dataclass(frozen=True)
class PluggedDevice:
    """Where a virtual device sits on the fake bus, as the host sees it."""

    key: str  # the sysfs name, e.g. "1-2"
    kind: str
    busnum: int
    devnum: int
    devnode: str
    syspath: str
    vid: int
    pid: int
    manufacturer: str
    product: str
    serial: str

    @property
    def resource(self) -> str:
        return f"USB0::0x{self.vid:04X}::0x{self.pid:04X}::{self.serial}::INSTR"

    def as_dict(self) -> dict:
        return {
            "key": self.key, "kind": self.kind, "bus": self.busnum, "address": self.devnum,
            "devnode": self.devnode, "vid": self.vid, "pid": self.pid, "manufacturer": self.manufacturer,
            "product": self.product, "serial": self.serial, "resource": self.resource,
        }


def _kernel_speed(device) -> KernelSpeed:
    name = getattr(getattr(device, "speed", None), "name", "FULL")
    return KernelSpeed[name] if name in KernelSpeed.__members__ else KernelSpeed.FULL


def _hex(value: bytes) -> str:
    return value.hex()


def _text(value: str) -> str:
    # "H:" attributes are written verbatim, so any string survives the record format.
    return _hex((value + "\n").encode("utf-8"))


class VirtualUsbBus:
    """A umockdev testbed holding virtual devices on bus ``busnum``.

    One testbed per process (umockdev keeps its state in the environment). Creating
    it sets ``UMOCKDEV_DIR`` for this process; pass :attr:`root_dir` to the processes
    that should see the devices, together with ``LD_PRELOAD=libumockdev-preload.so.0``.
    """

    def __init__(self, busnum: int = 1, *, park_ms: int = PARK_MS, trace: bool = False,
                 data_toggles: bool | None = None) -> None:
        self.busnum = busnum
        self.park_ms = park_ms
        self.trace = trace
        self.data_toggles = data_toggles  # model the host's data toggles (None: DATA_TOGGLES_BY_DEFAULT)
        self._testbed = UMockdev.Testbed.new()
        self.root_dir: str = self._testbed.get_root_dir()
        self._lock = threading.Lock()
        self._next_devnum = 2  # 1 is the root hub's address
        self._next_port = 1
        self._devices: dict[str, tuple[PluggedDevice, object, UrbEngine]] = {}

    def devices(self) -> list[PluggedDevice]:
        with self._lock:
            return [plugged for plugged, _device, _engine in self._devices.values()]

    def device(self, key: str):
        """The device model plugged in as ``key``."""
        with self._lock:
            if key not in self._devices:
                raise KeyError(f"no device {key!r} on the bus")
            return self._devices[key][1]

    def engine(self, key: str) -> UrbEngine:
        """The URB engine serving device ``key`` (counters, waits)."""
        with self._lock:
            if key not in self._devices:
                raise KeyError(f"no device {key!r} on the bus")
            return self._devices[key][2]

    def plug(self, device, kind: str = "device") -> PluggedDevice:
        """Connect ``device`` (an :class:`app.sim.device.VirtualDevice`); the host gets an "add" uevent."""
        with self._lock:
            devnum, port = self._next_devnum, self._next_port
            self._next_devnum += 1
            self._next_port += 1
        key = f"{self.busnum}-{port}"
        syspath = f"/sys/devices/pci0000:00/0000:00:14.0/usb{self.busnum}/{key}"
        devnode = f"/dev/bus/usb/{self.busnum:03d}/{devnum:03d}"
        device_desc = device.device_desc.to_bytes()
        configs = [config.to_bytes() for config in device.configs]
        fields = _DEVICE_DESCRIPTOR.unpack(device_desc[: _DEVICE_DESCRIPTOR.size])
        (_len, _type, bcd_usb, dev_class, dev_subclass, dev_protocol, max_packet0,
         vid, pid, bcd_device, i_manufacturer, i_product, i_serial, n_configs) = fields
        strings = getattr(device, "strings", {}) or {}
        manufacturer, product, serial = (str(strings.get(i, "")) if i else "" for i in (i_manufacturer, i_product, i_serial))
        speed = _kernel_speed(device)
        plugged = PluggedDevice(key, kind, self.busnum, devnum, devnode, syspath, vid, pid, manufacturer, product, serial)

        def configured(value: int) -> None:
            self._testbed.set_attribute(syspath, "bConfigurationValue", f"{value}\n" if value else "\n")

        device.plug()
        # The kernel configures a new device itself (usb_choose_configuration); so do we,
        # before the host can see it.
        configuration = device.configs[0].value if device.configs else 0
        if configuration:
            device.set_configuration(configuration)
        engine = UrbEngine(device, on_configuration=configured, data_toggles=self.data_toggles)
        handler = UsbdevfsHandler(engine, speed, devnum, park_ms=self.park_ms, trace=self.trace)
        first_config = configs[0] if configs else b""
        attributes = {
            "descriptors": _hex(device_desc + b"".join(configs)),
            "busnum": _text(str(self.busnum)),
            "devnum": _text(str(devnum)),
            "devpath": _text(str(port)),
            "speed": _text(SYSFS_SPEED.get(speed, "12")),
            "idVendor": _text(f"{vid:04x}"),
            "idProduct": _text(f"{pid:04x}"),
            "bcdDevice": _text(f"{bcd_device:04x}"),
            "version": _text(f"{bcd_usb >> 8:2x}.{bcd_usb & 0xFF:02x}"),
            "bDeviceClass": _text(f"{dev_class:02x}"),
            "bDeviceSubClass": _text(f"{dev_subclass:02x}"),
            "bDeviceProtocol": _text(f"{dev_protocol:02x}"),
            "bMaxPacketSize0": _text(str(max_packet0)),
            "bNumConfigurations": _text(str(n_configs)),
            "bNumInterfaces": _text(f"{first_config[4] if len(first_config) > 4 else 0:2d}"),
            "bConfigurationValue": _text(str(configuration) if configuration else ""),
            "maxchild": _text("0"),
        }
        for name, value in (("manufacturer", manufacturer), ("product", product), ("serial", serial)):
            if value:
                attributes[name] = _text(value)
        properties = {
            "SUBSYSTEM": "usb",
            "DEVTYPE": "usb_device",
            "DRIVER": "usb",
            "DEVNAME": devnode,
            "BUSNUM": f"{self.busnum:03d}",
            "DEVNUM": f"{devnum:03d}",
            "PRODUCT": f"{vid:x}/{pid:x}/{bcd_device:x}",
            "TYPE": f"{dev_class}/{dev_subclass}/{dev_protocol}",
            "MAJOR": "189",
            "MINOR": str((self.busnum - 1) * 128 + devnum - 1),
        }
        record = [f"P: {syspath.removeprefix('/sys')}", f"N: {devnode.removeprefix('/dev/')}"]
        record += [f"E: {name}={value}" for name, value in properties.items()]
        record += [f"H: {name}={value}" for name, value in attributes.items()]
        # The handler must sit on the node before the device (and its "add" uevent) appears.
        if not self._testbed.attach_ioctl(devnode, handler):
            device.unplug()
            raise RuntimeError(f"umockdev refused an ioctl handler on {devnode}")
        with self._lock:
            self._devices[key] = (plugged, device, engine)
        if not self._testbed.add_from_string("\n".join(record) + "\n"):
            with self._lock:
                del self._devices[key]
            device.unplug()
            raise RuntimeError(f"umockdev refused the sysfs record of {key}")
        return plugged

    def unplug(self, key: str) -> PluggedDevice:
        """Disconnect a device: its transfers fail with ENODEV and the host gets a "remove" uevent."""
        with self._lock:
            if key not in self._devices:
                raise KeyError(f"no device {key!r} on the bus")
            plugged, device, engine = self._devices.pop(key)
        device.unplug()
        engine.disconnect()
        # umockdev 0.17 sends no "remove" uevent of its own; libusb's hotplug needs one.
        self._testbed.uevent(plugged.syspath, "remove")
        self._testbed.remove_device(plugged.syspath)
        return plugged

    def close(self) -> None:
        """Unplug everything and remove the testbed's directory."""
        for plugged in self.devices():
            try:
                self.unplug(plugged.key)
            except Exception:  # closing goes on; the testbed directory goes away regardless
                _log(f"unplugging {plugged.key} failed:\n{traceback.format_exc()}")
        self._testbed.clear()
        self._testbed = None
