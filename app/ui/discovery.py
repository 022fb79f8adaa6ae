"""Device discovery off the GUI thread.

A :class:`Scanner` (no Qt) lists one source's USBTMC interfaces: "usb" through
libusb, "virtual" through the in-process virtual bus. Polls are cheap
(``probe=False``: descriptors and strings only); a device seen for the first time
(or re-enumerated at a new address) is probed once for its capabilities, and that
answer is kept. Probing every device on every poll would knock on interfaces
that open sessions have claimed.

:class:`Discovery` runs the scanners in a :class:`~app.ui.worker.WorkerThread`
every ``interval_ms`` and emits a :class:`Snapshot` per source whenever what it
sees changes (and on every explicit rescan).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from app.usbtmc import list_resources
from app.usbtmc.doctor import Situation, diagnose
from app.usbtmc.errors import BackendUnavailableError, TmcError
from app.usbtmc.quirks import default_database

from .worker import WorkerThread

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_MS = 1500


@dataclass(frozen=True)
class Snapshot:
    """What one source holds now. ``error``: why the source cannot be scanned at all."""

    source: str  # "usb", "virtual" or "lan"
    devices: tuple  # of app.usbtmc.DeviceInfo, sorted by resource
    error: str | None = None
    quirk_problems: tuple[str, ...] = ()  # what of the user's quirks file was skipped, with file:line
    diagnosis: object = None  # app.usbtmc.doctor.Diagnosis when the source cannot be scanned (no libusb)


class BackendProvider:
    """Creates each source's pyusb backend once, on first use, from any thread.

    ``factories`` maps a source name to a callable returning a backend; it may raise
    ``BackendUnavailableError`` (no libusb), which is remembered until :meth:`retry`.
    """

    def __init__(self, factories: dict[str, Callable[[], object]]) -> None:
        self._factories = dict(factories)
        self._lock = threading.Lock()
        self._backends: dict[str, object] = {}
        self._errors: dict[str, str] = {}  # why a source's backend cannot be created

    @property
    def sources(self) -> list[str]:
        return list(self._factories)

    def get(self, source: str):
        with self._lock:
            if source in self._backends:
                return self._backends[source]
            if source in self._errors:
                # A fresh error each time: re-raising the stored one would add this call's frames
                # to its traceback on every scan, for as long as libusb stays unavailable.
                raise BackendUnavailableError(self._errors[source])
            try:
                backend = self._factories[source]()
            except BackendUnavailableError as exc:
                self._errors[source] = str(exc)
                raise BackendUnavailableError(str(exc)) from None
            self._backends[source] = backend
            return backend

    def retry(self) -> None:
        with self._lock:
            self._errors.clear()


class Scanner:
    """Lists one source's devices, probing each new one once (no Qt; runs in the discovery thread)."""

    def __init__(self, source: str, backends: BackendProvider, lister=list_resources) -> None:
        self.source = source
        self._backends = backends
        self._list = lister
        self._probed: dict[str, object] = {}  # resource -> DeviceInfo with capabilities

    def scan(self) -> Snapshot:
        return replace(self._scan(), quirk_problems=tuple(default_database().problems))

    def _scan(self) -> Snapshot:
        try:
            backend = self._backends.get(self.source)
            quick = self._list(backend, probe=False)
            fresh = [info for info in quick if self._needs_probe(info)]
            if fresh:
                wanted = {info.resource for info in fresh}
                for info in self._list(backend, probe=True):
                    if info.resource in wanted:
                        self._probed[info.resource] = info
        except BackendUnavailableError as exc:
            if self.source == "usb":
                return Snapshot(self.source, (), f"No USB access: {exc}.",
                                diagnosis=diagnose(exc, Situation(vid=0, pid=0)))
            return Snapshot(self.source, (), f"The {self.source} instruments are unavailable: {exc}.")
        except TmcError as exc:
            return Snapshot(self.source, (), f"The {self.source} bus cannot be listed: {exc}.")
        present = {info.resource for info in quick}
        for gone in set(self._probed) - present:
            del self._probed[gone]
        devices = tuple(sorted((self._probed.get(info.resource, info) for info in quick), key=lambda i: i.resource))
        return Snapshot(self.source, devices)

    def _needs_probe(self, info) -> bool:
        known = self._probed.get(info.resource)
        return known is None or (known.bus, known.address) != (info.bus, info.address)


class DiscoveryWorker(QObject):
    """Lives in the discovery thread; scans on a timer."""

    snapshot = Signal(object)  # Snapshot

    def __init__(self, scanners: dict[str, Scanner], interval_ms: int) -> None:
        super().__init__()
        self._scanners = scanners
        self._enabled = {name: True for name in scanners}
        self._last: dict[str, Snapshot] = {}
        self._interval_ms = interval_ms
        self._timer: QTimer | None = None

    @Slot()
    def start(self) -> None:
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(self._interval_ms)
        self.rescan()

    def preset_enabled(self, source: str, enabled: bool) -> None:
        if source in self._enabled:
            self._enabled[source] = enabled

    @Slot()
    def rescan(self) -> None:
        self._last.clear()
        self._tick()

    @Slot(str, bool)
    def set_enabled(self, source: str, enabled: bool) -> None:
        if source in self._enabled:
            self._enabled[source] = enabled
            self._last.pop(source, None)
            if enabled:
                self._scan(source)

    @Slot()
    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer.setParent(None)
            self._timer.deleteLater()
            self._timer = None
        app = QCoreApplication.instance()
        if app is not None:
            self.moveToThread(app.thread())
        QThread.currentThread().quit()

    @Slot()
    def _tick(self) -> None:
        for source, enabled in self._enabled.items():
            if enabled:
                self._scan(source)

    def _scan(self, source: str) -> None:
        try:
            snap = self._scanners[source].scan()
        except Exception as exc:  # a scanner bug must not stop discovery of the other sources
            log.exception("scanning %s failed", source)
            snap = Snapshot(source, (), f"Scanning failed: {exc!r}")
        if self._last.get(source) != snap:
            self._last[source] = snap
            self.snapshot.emit(snap)


class Discovery(QObject):
    """The GUI's handle on the discovery thread."""

    snapshot = Signal(object)  # Snapshot, in the GUI thread
    _rescan = Signal()
    _enable = Signal(str, bool)
    _stop = Signal()

    def __init__(self, backends: BackendProvider, interval_ms: int = DEFAULT_INTERVAL_MS, parent=None) -> None:
        super().__init__(parent)
        self.backends = backends
        from app.lan.directory import list_lan  # the "lan" source's backend is an app.lan LanDirectory

        scanners = {source: Scanner(source, backends, list_lan if source == "lan" else list_resources)
                    for source in backends.sources}
        self.thread = WorkerThread("discovery")
        self.worker = DiscoveryWorker(scanners, interval_ms)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.start)
        self.worker.snapshot.connect(self.snapshot)
        self._rescan.connect(self.worker.rescan)
        self._enable.connect(self.worker.set_enabled)
        self._stop.connect(self.worker.stop)

    def start(self) -> None:
        self.thread.start()

    def rescan(self) -> None:
        self.backends.retry()
        self._rescan.emit()

    def set_enabled(self, source: str, enabled: bool) -> None:
        if self.thread.isRunning():
            self._enable.emit(source, enabled)
        else:
            # Not started yet: nothing runs in the worker's thread, so set it directly
            # (a source switched off now is never scanned).
            self.worker.preset_enabled(source, enabled)

    def stop(self, timeout_ms: int = 5000) -> bool:
        """End the discovery thread; True when it has ended."""
        if self.thread.isRunning():
            self._stop.emit()
            return self.thread.wait(timeout_ms)
        return True
