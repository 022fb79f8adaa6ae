"""The LAN instruments the browser lists: the ones the user added by resource string, the ones
discovery finds (mDNS and the VXI-11 broadcast, every minute) and, in demo mode, the virtual LAN
instruments. Qt-free; the console's discovery thread lists them.

LAN has no bus to enumerate: a listed instrument is one the user named (or that discovery found,
docs/lan.md). Probing connects once and asks ``*IDN?``, which names the instrument and gives
the serial number that matches it to its USB connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from app.usbtmc.errors import TmcError

from . import open_lan
from .resource import parse_lan_resource
from .session import LanInfo

PROBE_TIMEOUT_MS = 1500
DISCOVER_EVERY_S = 60.0


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
                listed += [entry.resource for entry in self._virtual.resources]
        return list(dict.fromkeys(listed))

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


def list_lan(directory: LanDirectory, probe: bool = False) -> list[LanInfo]:
    """One :class:`LanInfo` per listed resource; with ``probe`` each is asked for ``*IDN?``
    (at most :data:`PROBE_TIMEOUT_MS` each), and one that cannot be reached says why in ``problem``."""
    infos = []
    for resource in directory.resources():
        try:
            address = parse_lan_resource(resource)
        except TmcError as exc:
            infos.append(LanInfo(resource, "?", "", None, problem=str(exc)))
            continue
        info = LanInfo(str(address), address.protocol, address.host, address.port, address=address.port)
        if probe:
            try:
                with open_lan(resource, PROBE_TIMEOUT_MS) as session:
                    maker, model, serial = _idn_fields(session.query("*IDN?"))
                info = replace(info, manufacturer=maker, product=model, serial=serial,
                               capabilities=session.capabilities)
            except TmcError as exc:
                info = replace(info, problem=f"cannot be reached: {exc}")
        infos.append(info)
    return infos
