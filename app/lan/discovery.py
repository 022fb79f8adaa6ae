"""Finding LAN instruments: mDNS/DNS-SD (LXI Device Specification 2022 section 10, IVI-6.1 for
``_hislip._tcp``) and the VXI-11 broadcast to portmappers (RFC 1833 GETPORT over UDP).

Each finding is a resource string the sessions open. Qt-free; the zeroconf package is needed for
mDNS only.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.protocol import oncrpc, vxi11
from app.protocol.oncrpc import XdrError

from .resource import HISLIP_PORT

#: DNS-SD service types instruments announce, and the protocol each one's port speaks.
SERVICE_TYPES = {
    "_hislip._tcp.local.": "HiSLIP",
    "_scpi-raw._tcp.local.": "SOCKET",
    "_vxi-11._tcp.local.": "VXI-11",
    "_lxi._tcp.local.": "LXI",  # the instrument's web page: an LXI device answers VXI-11 too
}


@dataclass(frozen=True)
class Found:
    resource: str
    how: str  # "mDNS _hislip._tcp", "VXI-11 broadcast"...
    name: str = ""  # the announced instance name, when there is one


def resource_for(protocol: str, address: str, port: int) -> str | None:
    host = f"[{address}]" if ":" in address else address
    if protocol == "HiSLIP":
        return f"TCPIP::{host}::hislip0::INSTR" if port == HISLIP_PORT else f"TCPIP::{host}::hislip0,{port}::INSTR"
    if protocol == "SOCKET":
        return f"TCPIP::{host}::{port}::SOCKET"
    if protocol in ("VXI-11", "LXI"):
        return f"TCPIP::{host}::inst0::INSTR"  # the portmapper gives the core port
    return None


#: Asked with what has been found so far; True ends the listening early.
Enough = Callable[[list[Found]], bool]


def browse_mdns(wait_s: float = 2.0, interfaces=None, until: Enough | None = None) -> list[Found]:
    """Instruments announcing :data:`SERVICE_TYPES` on the local network within ``wait_s`` seconds
    (less when ``until`` says what has been found is enough)."""
    try:
        from zeroconf import ServiceBrowser, Zeroconf
    except ImportError as exc:  # an install without it: say what is missing
        raise RuntimeError("mDNS discovery needs the zeroconf package (pip install zeroconf)") from exc
    zc = Zeroconf() if interfaces is None else Zeroconf(interfaces=interfaces)
    seen: list[tuple[str, str]] = []  # appended by zeroconf's thread
    arrived = threading.Event()

    class Listener:
        def add_service(self, zc_, type_, name):
            seen.append((type_, name))
            arrived.set()

        def update_service(self, zc_, type_, name):
            pass

        def remove_service(self, zc_, type_, name):
            pass

    found: dict[str, Found] = {}
    resolved: set[tuple[str, str]] = set()
    deadline = time.monotonic() + wait_s
    try:
        browser = ServiceBrowser(zc, list(SERVICE_TYPES), Listener())
        try:
            # The announcements come when they come: listen until the deadline, resolving each
            # service as it is seen, or until the caller has what it waits for.
            while True:
                arrived.clear()  # before reading ``seen``: a service added meanwhile sets it again
                for type_, name in [s for s in dict.fromkeys(list(seen)) if s not in resolved]:
                    resolved.add((type_, name))
                    for f in _resolve(zc, type_, name):
                        found.setdefault(f.resource, f)
                remaining = deadline - time.monotonic()
                if (until is not None and until(list(found.values()))) or remaining <= 0:
                    break
                arrived.wait(remaining)
        finally:
            browser.cancel()
        return list(found.values())
    finally:
        zc.close()


def _resolve(zc, type_: str, name: str) -> list[Found]:
    info = zc.get_service_info(type_, name, timeout=1000)
    if info is None or not info.port:
        return []
    found = []
    for address in info.parsed_addresses():
        resource = resource_for(SERVICE_TYPES[type_], address, info.port)
        if resource is not None:
            found.append(Found(resource, f"mDNS {type_.split('.')[0]}", name.split(".")[0]))
    return found


def broadcast_vxi11(address: str = "255.255.255.255", port: int = oncrpc.PMAP_PORT,
                    wait_s: float = 1.0, until: Enough | None = None) -> list[Found]:
    """Hosts whose portmapper knows a VXI-11 core channel: one GETPORT call sent to ``address``
    (a broadcast address, or one host), every reply within ``wait_s`` seconds (or until
    ``until`` says what has been found is enough)."""
    xid = random.getrandbits(32)
    call = oncrpc.pack_call(xid, oncrpc.PMAP_PROG, oncrpc.PMAP_VERS, oncrpc.PmapProc.GETPORT,
                            oncrpc.pack_mapping(vxi11.DEVICE_CORE_PROG, vxi11.DEVICE_VERS, oncrpc.IPPROTO_TCP, 0))
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setblocking(False)
        sock.sendto(call, (address, port))
        deadline = time.monotonic() + wait_s
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], remaining)
            if not readable:
                break
            try:
                data, (host, _port) = sock.recvfrom(65536)
                core_port = oncrpc.parse_reply(data, xid).uint()
            except (OSError, XdrError):
                continue  # another host's garbage: the others still count
            if core_port:
                # A portmapper off its standard port (a virtual one) cannot be found by VISA: name the core port.
                where = host if port == oncrpc.PMAP_PORT else f"{host},{core_port}"
                found.append(Found(f"TCPIP::{where}::inst0::INSTR", "VXI-11 broadcast"))
                if until is not None and until(list({f.resource: f for f in found}.values())):
                    break
    return list({f.resource: f for f in found}.values())
