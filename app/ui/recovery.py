"""The way back for an instrument that stopped answering: reset its USB port and try it again.

A real instrument gets a port reset through libusb (:func:`app.usbtmc.discovery.reset_port`,
pyusb's ``Device.reset``): it enumerates again as after a replug, without losing power. A
virtual instrument is unplugged and plugged in again on its virtual bus, which also cycles
its power (the virtual DS1000Z, like the real one, only recovers from a hung device clear
that way). Either runs on a :class:`~app.ui.worker.WorkerThread`; the GUI thread never
touches USB. Afterwards a short session asks ``*IDN?`` to say whether the instrument answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.usbtmc import Instrument
from app.usbtmc.discovery import reset_port
from app.usbtmc.errors import TmcError
from app.usbtmc.resource import parse_resource

from .worker import WorkerThread

CHECK_TIMEOUT_MS = 1000


@dataclass(frozen=True)
class Recovered:
    """What the recovery did and whether the instrument answers now."""

    resource: str
    action: str  # "USB port reset" or "unplugged and plugged in again"
    answers: bool
    idn: str = ""
    problem: str = ""  # why it failed, or why the instrument still does not answer

    @property
    def message(self) -> str:
        action = self.action[:1].upper() + self.action[1:]
        if self.answers:
            return f"{action}: the instrument answers again ({self.idn})."
        return f"{action}: {self.problem}"


def recover(resource: str, backend) -> Recovered:
    """Reset (or, on a virtual bus, replug) the instrument ``resource`` names, then ask ``*IDN?``.

    Blocking: call it on a worker thread. Never raises for a device problem; the result says it.
    """
    bus = getattr(backend, "bus", None)  # the virtual bus's pyusb backend carries its bus
    action = "unplugged and plugged in again" if bus is not None else "USB port reset"
    try:
        if bus is not None:
            _replug(bus, resource)
        else:
            reset_port(parse_resource(resource), backend)
    except (TmcError, ValueError) as exc:
        return Recovered(resource, action, False, problem=f"it failed: {exc}")
    try:
        with Instrument(resource, backend=backend, timeout_ms=CHECK_TIMEOUT_MS) as inst:
            idn = inst.query("*IDN?").strip()
    except TmcError as exc:
        return Recovered(resource, action, False,
                         problem=f"the instrument still does not answer ({exc}); unplug it and plug it in again")
    return Recovered(resource, action, True, idn=idn)


def _replug(bus, resource: str) -> None:
    parsed = parse_resource(resource)
    device = bus.find(vid=parsed.vid, pid=parsed.pid, serial=parsed.serial)
    if device is None:
        raise ValueError(f"no virtual instrument {parsed.vid:04X}:{parsed.pid:04X} with serial "
                         f"{parsed.serial!r} is plugged in")
    bus.unplug(device)
    bus.plug(device)


class RecoveryRunner(QObject):
    """Runs :func:`recover` on its own thread and reports :class:`Recovered` by signal."""

    done = Signal(object)  # Recovered

    def __init__(self, resource: str, backend) -> None:
        super().__init__()
        self.resource = resource
        self.backend = backend

    @Slot()
    def run(self) -> None:
        try:
            self.done.emit(recover(self.resource, self.backend))
        finally:
            QThread.currentThread().quit()


class GuiCall(QObject):
    """Lives in the GUI thread, so a signal from another thread reaches ``callback`` there (queued).

    A plain Python callable connected to a signal emitted in a worker thread would run in
    that thread; a slot of an object living in the GUI thread runs in the GUI thread.
    """

    def __init__(self, callback, parent: QObject) -> None:
        super().__init__(parent)
        self._callback = callback

    @Slot(object)
    def deliver(self, value) -> None:
        self._callback(value)
        self.deleteLater()

    @Slot()
    def call(self) -> None:
        self._callback()
        self.deleteLater()


def start_recovery(resource: str, backend, parent: QObject, on_done) -> WorkerThread:
    """Run the recovery on a new worker thread; ``on_done(Recovered)`` is called on the GUI thread."""
    thread = WorkerThread(f"recover {resource}", parent)
    runner = RecoveryRunner(resource, backend)
    relay = GuiCall(on_done, parent)
    runner.moveToThread(thread)
    thread.runner = runner  # an unparented QObject lives only as long as its Python reference
    thread.started.connect(runner.run)
    runner.done.connect(relay.deliver)
    thread.finished.connect(runner.deleteLater)
    thread.start()
    return thread
