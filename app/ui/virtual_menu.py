"""The device browser's actions for virtual instruments: inject a fault, unplug, replug.

A person learning USBTMC right-clicks a virtual instrument and makes it misbehave on its
next transfer (app.sim.faults), then watches the console recover; or pulls it off the bus
and puts it back. Everything here runs on the GUI thread and only touches the device
models through their own locks.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMenu

from app.sim.faults import DESCRIPTIONS, Fault, FaultInjector, FaultKind
from app.sim.usbtmc_device import UsbtmcDevice

from .browser import DeviceBrowser, DeviceRef, device_title

FAULT_MENU_TITLE = "Inject fault into next transfer"


class VirtualInstrumentActions(QObject):
    """Adds the virtual instrument entries to the browser's context menu (``browser.menu_hook``).

    ``bus_getter`` returns the virtual bus (an :class:`app.sim.bus.VirtualBus`), or None when
    the virtual instruments are off. :attr:`changed` carries a line for the status bar after
    the bus or a device changed (the window rescans on it).
    """

    changed = Signal(str)

    def __init__(self, browser: DeviceBrowser, bus_getter: Callable[[], object], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.browser = browser
        self._bus_getter = bus_getter
        self._unplugged: list = []  # devices taken off the bus here, newest last
        self._titles: dict[int, str] = {}  # id(device) -> its title when last listed
        browser.menu_hook = self.extend

    # --- the menu ---

    def extend(self, menu: QMenu, ref: DeviceRef | None, source: str | None) -> None:
        if source != "virtual":
            return
        bus = self._bus_getter()
        if bus is None:
            return
        device = self.device_for(ref) if ref is not None else None
        added = False
        if device is not None:
            title = self._titles[id(device)] = device_title(self.browser.device(ref))
            if isinstance(device, UsbtmcDevice):
                # Owned by the window, not the browser: the browser's newest QMenu child stays the
                # context menu itself (code that looks menus up by their parent relies on it).
                faults = QMenu(FAULT_MENU_TITLE, self.browser.window())
                menu.addMenu(faults)
                menu.destroyed.connect(faults.deleteLater)
                faults.setToolTipsVisible(True)
                for kind in FaultKind:
                    action = faults.addAction(f"{kind.value}  \N{EM DASH}  {DESCRIPTIONS[kind]}")
                    action.setToolTip(f"Arm {kind.value} once in {title}; docs/faults.md says what to expect.")
                    action.triggered.connect(lambda _=False, d=device, k=kind: self.inject(d, k))
            unplug = menu.addAction("Unplug")
            unplug.setToolTip("Pull the instrument off the virtual bus (its sessions see the device gone).")
            unplug.triggered.connect(lambda _=False, d=device: self.unplug(d))
            replug = menu.addAction("Replug")
            replug.setToolTip("Unplug the instrument and plug it back: it re-enumerates at a new address.")
            replug.triggered.connect(lambda _=False, d=device: self.replug(d))
            added = True
        for gone in self.unplugged_devices():
            action = menu.addAction(f"Replug {self._titles.get(id(gone), gone.serial)}")
            action.triggered.connect(lambda _=False, d=gone: self.replug(d))
            added = True
        if added:
            menu.addSeparator()

    # --- what the entries do ---

    def device_for(self, ref: DeviceRef):
        """The device model behind the virtual instrument ``ref``, or None."""
        bus = self._bus_getter()
        info = self.browser.device(ref)
        if bus is None or info is None:
            return None
        entry = next((e for e in bus.entries() if e.address == info.address and e.bus_number == info.bus), None)
        return entry.device if entry is not None else None

    def unplugged_devices(self) -> list:
        """Devices taken off the bus here or by an UNPLUG fault, and not back yet."""
        bus = self._bus_getter()
        plugged = set(map(id, bus.devices())) if bus is not None else set()
        self._unplugged = [d for d in self._unplugged if id(d) not in plugged]
        return list(self._unplugged)

    def inject(self, device: UsbtmcDevice, kind: FaultKind) -> None:
        FaultInjector.attach(device, self._bus_getter()).add(Fault(kind))
        if kind == FaultKind.UNPLUG:
            self._unplugged.append(device)  # listed for Replug once it has fired
        self.changed.emit(f"{kind.value} armed in {self._title(device)}: {DESCRIPTIONS[kind]}")

    def unplug(self, device) -> None:
        bus = self._bus_getter()
        if bus is None or device not in bus.devices():
            return
        bus.unplug(device)
        self._unplugged.append(device)
        self.changed.emit(f"{self._title(device)} unplugged")

    def replug(self, device) -> None:
        bus = self._bus_getter()
        if bus is None:
            return
        injector = device.fault_injector if isinstance(device, UsbtmcDevice) else None
        if injector is not None and injector.unplugged:
            injector.replug()
        else:
            if device in bus.devices():
                bus.unplug(device)
            bus.plug(device)
        self.unplugged_devices()
        self.changed.emit(f"{self._title(device)} plugged in again")

    def _title(self, device) -> str:
        return self._titles.get(id(device), device.serial or "the instrument")
