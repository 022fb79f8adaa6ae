"""A virtual USB bus: which virtual devices are connected, at which address.

Standard library only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .device import StdRequest, VirtualDevice

ROOT_HUB_ADDRESS = 1  # the root hub holds address 1; devices get 2..127


@dataclass(frozen=True, eq=False)
class BusEntry:
    """One connected device: ``bus_number``, USB ``address`` (2..127) and root-hub ``port`` (1..)."""

    bus_number: int
    address: int
    port: int
    device: VirtualDevice


class VirtualBus:
    """The devices plugged into one virtual root hub. Thread-safe.

    Addresses are handed out like a host controller does: each connection gets the next
    free address, so a device that is unplugged and plugged again comes back at a new one.
    ``listeners`` are called as ``listener(event, entry)`` with event "plug" or "unplug".
    """

    def __init__(self, bus_number: int = 1) -> None:
        self.bus_number = bus_number
        self.listeners: list[Callable[[str, BusEntry], None]] = []
        self._lock = threading.Lock()
        self._entries: dict[int, BusEntry] = {}  # by address
        self._next_address = ROOT_HUB_ADDRESS + 1

    def plug(self, device: VirtualDevice, port: int | None = None, *, configure: bool = True) -> BusEntry:
        """Connect ``device``: it powers up and the host stack enumerates it.

        Enumeration sets the address and, with ``configure``, selects the first
        configuration, as an operating system does on its own (Linux:
        usb_choose_configuration), so a host program finds the device configured.
        """
        with self._lock:
            if any(e.device is device for e in self._entries.values()):
                raise ValueError("the device is already plugged in")
            if len(self._entries) >= 126:
                raise RuntimeError("no free USB address on this bus")
            address = self._next_address
            while address in self._entries or address == ROOT_HUB_ADDRESS:
                address = address + 1 if address < 127 else ROOT_HUB_ADDRESS + 1
            self._next_address = address + 1 if address < 127 else ROOT_HUB_ADDRESS + 1
            used_ports = {e.port for e in self._entries.values()}
            if port is None:
                port = next(p for p in range(1, 128) if p not in used_ports)
            elif port in used_ports:
                raise ValueError(f"port {port} is in use")
            entry = BusEntry(self.bus_number, address, port, device)
            self._entries[address] = entry
        device.plug()
        device.control(0x00, StdRequest.SET_ADDRESS, address, 0, b"")
        if configure and device.configs:
            device.set_configuration(device.configs[0].value)
        self._emit("plug", entry)
        return entry

    def unplug(self, device: VirtualDevice) -> BusEntry:
        """Disconnect ``device``: host calls on it raise :class:`~app.sim.device.Gone` from now on."""
        with self._lock:
            entry = next((e for e in self._entries.values() if e.device is device), None)
            if entry is None:
                raise ValueError("the device is not plugged in")
            del self._entries[entry.address]
        device.unplug()
        self._emit("unplug", entry)
        return entry

    def entries(self) -> list[BusEntry]:
        """The connected devices, by address."""
        with self._lock:
            return [self._entries[a] for a in sorted(self._entries)]

    def devices(self) -> list[VirtualDevice]:
        return [e.device for e in self.entries()]

    def find(self, *, vid: int | None = None, pid: int | None = None, serial: str | None = None,
             kind: type | None = None) -> VirtualDevice | None:
        """The first connected device matching every given criterion, or None."""
        for device in self.devices():
            desc = device.device_desc
            if ((vid is None or desc.vid == vid) and (pid is None or desc.pid == pid)
                    and (serial is None or device.serial == serial) and (kind is None or isinstance(device, kind))):
                return device
        return None

    def _emit(self, event: str, entry: BusEntry) -> None:
        for listener in list(self.listeners):
            listener(event, entry)
