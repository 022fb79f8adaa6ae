"""The LAN instruments the browser lists: the ones the user added by resource string, the ones
discovery finds (mDNS and the VXI-11 broadcast, every minute) and, in demo mode, the virtual LAN
instruments. Qt-free; the console's discovery thread lists them.

LAN has no bus to enumerate: a listed instrument is one the user named (or that discovery found,
docs/lan.md). Probing connects once and asks ``*IDN?``, which names the instrument and gives
the serial number that matches it to its USB connection (:func:`same_instrument`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from app.usbtmc.errors import TmcError

from . import open_lan
from .resource import parse_lan_resource
from .session import LanInfo

PROBE_TIMEOUT_MS = 1500
DISCOVER_EVERY_S = 60.0

#: Serial numbers that name no instrument: IEEE 488.2 10.14 has ``*IDN?`` give "0" when there is
#: none, and instruments (and USB descriptors) also use these. Such a serial never matches.
NO_SERIAL = frozenset({"", "0", "none", "na", "unknown", "null", "serial", "serialnumber", "sn"})


@dataclass(frozen=True)
class LanListing(LanInfo):
    """A listed LAN connection, with what ``*IDN?`` said and where its serial number comes from."""

    idn: str = ""
    serial_from: str = ""  # "*IDN?", or what else gave it when *IDN? names none


def _norm(text: str) -> str:
    """Case and punctuation left out: "RIGOL TECHNOLOGIES" and "Rigol Technologies" agree."""
    return "".join(ch for ch in (text or "").casefold() if ch.isalnum())


def known_serial(serial: str) -> str:
    """``serial`` as compared (normalised), or "" when it names no instrument (:data:`NO_SERIAL`, all zeros)."""
    norm = _norm(serial)
    return "" if norm in NO_SERIAL or set(norm) <= {"0"} else norm


def _agree(a: str, b: str) -> bool:
    # A USB product string often says more than *IDN?'s model ("33622A Waveform Generator" and
    # "33622A"): one must hold the other; an empty one confirms nothing.
    na, nb = _norm(a), _norm(b)
    return bool(na and nb) and (na in nb or nb in na)


def same_instrument(a, b) -> bool:
    """Whether two connections (``app.usbtmc.DeviceInfo`` or :class:`LanInfo`) reach one instrument:
    the same known serial number, with maker and model agreeing. A connection whose serial is
    unknown or empty is never matched with another."""
    serial = known_serial(a.serial)
    return (bool(serial) and serial == known_serial(b.serial) and _agree(a.manufacturer, b.manufacturer)
            and _agree(a.product, b.product))


class LanDirectory:
    """``manual()`` returns the added resource strings; ``start_virtual()`` (demo mode) starts the
    virtual LAN servers and returns an object with ``resources`` (each with ``.resource``) and
    ``close()``. It is started on first listing and stopped by :meth:`close`."""

    def __init__(self, manual: Callable[[], list[str]] = list, start_virtual: Callable[[], object] | None = None,
                 virtual_enabled: Callable[[], bool] = lambda: True, *,
                 discover: Callable[[], list[str]] | None = None, discover_every_s: float = DISCOVER_EVERY_S) -> None:
        self._manual = manual
        self._start_virtual = start_virtual
        self._virtual_enabled = virtual_enabled
        self._virtual = None
        self._identities: dict[str, tuple[str, str, str]] = {}  # of the virtual LAN instruments
        self._lock = threading.Lock()
        self._closed = False
        # Discovery (mDNS, the VXI-11 broadcast) listens for seconds: it runs on a thread of its
        # own, so the bus scans that list this directory never wait for it.
        self._discover = discover
        self._discovered: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._every_s = discover_every_s

    def _discovery_loop(self) -> None:
        while not self._stop.is_set():
            try:
                found = self._discover()
            except Exception:  # a network without multicast, a missing package: try again later
                found = None
            if found is not None:
                with self._lock:
                    self._discovered = list(found)
            self._stop.wait(self._every_s)

    def resources(self) -> list[str]:
        listed = [r for r in self._manual() if r]
        with self._lock:
            if self._discover is not None and self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._discovery_loop, daemon=True, name="lan-discovery")
                self._thread.start()
            listed += self._discovered
        with self._lock:
            if self._start_virtual is not None and self._virtual_enabled() and not self._closed:
                if self._virtual is None:
                    self._virtual = self._start_virtual()
                    self._identities = {entry.resource: entry.identity for entry in self._virtual.resources
                                        if getattr(entry, "identity", None)}
                listed += [entry.resource for entry in self._virtual.resources]
        return list(dict.fromkeys(listed))

    def identity(self, resource: str) -> tuple[str, str, str] | None:
        """Manufacturer, product and serial of the model a virtual LAN instrument serves (None for
        any other): the same model the virtual USB bus lists, so its serial is known for certain."""
        with self._lock:
            return self._identities.get(resource)

    def close(self, wait_s: float = 5.0) -> None:
        """Stop discovery (waiting at most ``wait_s`` for a listen under way: its thread is a
        daemon) and the virtual LAN servers."""
        self._stop.set()
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            if self._virtual is not None:
                self._virtual.close()
                self._virtual = None
                self._identities = {}
        if thread is not None:
            thread.join(timeout=wait_s)


def discover_all(wait_s: float = 2.0) -> list[str]:
    """Resource strings of the instruments mDNS and the VXI-11 broadcast find (docs/lan.md)."""
    from .discovery import broadcast_vxi11, browse_mdns

    found = [f.resource for f in broadcast_vxi11(wait_s=wait_s)]
    try:
        found += [f.resource for f in browse_mdns(wait_s=wait_s)]
    except RuntimeError:
        pass  # no zeroconf: the broadcast alone
    return list(dict.fromkeys(found))


def _idn_fields(idn: str) -> tuple[str, str, str]:
    parts = [p.strip() for p in idn.split(",")]  # IEEE 488.2 10.14: maker, model, serial, firmware
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def list_lan(directory: LanDirectory, probe: bool = False) -> list[LanListing]:
    """One :class:`LanListing` per listed resource; with ``probe`` each is asked for ``*IDN?``
    (at most :data:`PROBE_TIMEOUT_MS` each), and one that cannot be reached says why in ``problem``.

    A virtual LAN instrument whose ``*IDN?`` names no serial (the SAM7's says 0) takes the
    serial of the model served (:meth:`LanDirectory.identity`), and says so in ``serial_from``."""
    infos = []
    for resource in directory.resources():
        try:
            address = parse_lan_resource(resource)
        except TmcError as exc:
            infos.append(LanListing(resource, "?", "", None, problem=str(exc)))
            continue
        info = LanListing(str(address), address.protocol, address.host, address.port, address=address.port)
        if probe:
            try:
                with open_lan(resource, PROBE_TIMEOUT_MS) as session:
                    idn = session.query("*IDN?").strip()
                maker, model, serial = _idn_fields(idn)
                serial_from = "*IDN?"
                served = directory.identity(resource) if hasattr(directory, "identity") else None
                if served and not known_serial(serial) and known_serial(served[2]) \
                        and _agree(served[0], maker) and _agree(served[1], model):
                    serial_from = f"the virtual instrument's USB descriptor (*IDN? gives {serial or 'none'})"
                    serial = served[2]
                info = replace(info, manufacturer=maker, product=model, serial=serial, idn=idn,
                               serial_from=serial_from, capabilities=session.capabilities)
            except TmcError as exc:
                info = replace(info, problem=f"cannot be reached: {exc}")
        infos.append(info)
    return infos
