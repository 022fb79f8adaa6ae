"""Virtual LAN instruments: the device models of :mod:`app.sim` served on TCP.

:func:`serve` puts each instrument on a raw SCPI socket, behind one VXI-11 server (device
names ``inst0``, ``inst1``...) and one HiSLIP server (``hislip0``, ``hislip1``...), and lists
the VISA resource string of each instrument and protocol (docs/lan.md). The models are the
same objects the virtual USB bus uses, so one instrument can be reached over both.

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import Clock
from ..usbtmc_device import UsbtmcDevice
from .hislip import HislipServer
from .port import MessagePort
from .raw import RawServer
from .vxi11 import Vxi11Server

__all__ = ["LanResource", "LanServers", "MessagePort", "serve"]

RAW_PORT = 5025  # the SCPI socket port LXI instruments use (IANA "scpi-raw")
PMAP_PORT = 111  # RFC 1833
HISLIP_PORT = 4880  # IVI-6.1 section 2.2


@dataclass(frozen=True)
class LanResource:
    """One way to reach one virtual instrument: ``protocol`` is "SOCKET", "VXI-11" or "HiSLIP"."""

    resource: str
    protocol: str
    device: UsbtmcDevice

    @property
    def label(self) -> str:
        return f"{self.device.strings.get(1, '')} {self.device.strings.get(2, '')}".strip()

    @property
    def identity(self) -> tuple[str, str, str]:
        """Manufacturer, product and serial of the model served: its USB descriptor strings,
        since it is the same object the virtual USB bus lists (the SAM7's ``*IDN?`` says serial 0)."""
        strings = self.device.strings
        return strings.get(1, ""), strings.get(2, ""), strings.get(3, "")


class LanServers:
    """The running servers; :meth:`close` stops them and resets their connections."""

    def __init__(self, devices: list[UsbtmcDevice], host: str, *, standard_ports: bool) -> None:
        self.host = host
        ports = [MessagePort(device) for device in devices]
        self.raw = [_either(lambda p, port=port: RawServer(port, host, p).start(), RAW_PORT + i, standard_ports)
                    for i, port in enumerate(ports)]
        self.vxi11 = _either(lambda p: Vxi11Server({f"inst{i}": port for i, port in enumerate(ports)}, host,
                                                   pmap_port=p), PMAP_PORT, standard_ports)
        self.hislip = _either(lambda p: HislipServer({f"hislip{i}": port for i, port in enumerate(ports)}, host, p),
                              HISLIP_PORT, standard_ports)
        self.resources: list[LanResource] = []
        for i, (device, raw) in enumerate(zip(devices, self.raw)):
            self.resources.append(LanResource(f"TCPIP::{host}::{raw.tcp_port}::SOCKET", "SOCKET", device))
            # Without the portmapper on its standard port the core channel's port goes in the
            # address ("host,port", as NI-VISA and pyvisa-py accept for VXI-11).
            vxi_host = host if self.vxi11.pmap_port == PMAP_PORT else f"{host},{self.vxi11.core_port}"
            self.resources.append(LanResource(f"TCPIP::{vxi_host}::inst{i}::INSTR", "VXI-11", device))
            hislip_name = f"hislip{i}" if self.hislip.tcp_port == HISLIP_PORT else f"hislip{i},{self.hislip.tcp_port}"
            self.resources.append(LanResource(f"TCPIP::{host}::{hislip_name}::INSTR", "HiSLIP", device))

    def close(self) -> None:
        # Side by side: each server's loop takes up to its poll interval to notice the stop.
        import threading

        closers = [threading.Thread(target=server.close, name="lan-server-close")
                   for server in (*self.raw, self.vxi11, self.hislip)]
        for thread in closers:
            thread.start()
        for thread in closers:
            thread.join()

    def __enter__(self) -> LanServers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _either(start, standard: int, try_standard: bool):
    """A server on its standard port when asked for and free, else on any free port."""
    if try_standard:
        try:
            return start(standard)
        except OSError:
            pass  # taken, or a port under 1024 without privileges
    return start(0)


def serve(devices: list[UsbtmcDevice] | None = None, host: str = "127.0.0.1", *, standard_ports: bool = False,
          clock: Clock | None = None) -> LanServers:
    """Serve ``devices`` (default: new SAM7, loopback and AWG models) on ``host``.

    With ``standard_ports`` each server tries its standard port first (raw sockets 5025 and up,
    the portmapper 111, HiSLIP 4880) and takes any free one where that fails; otherwise all
    take free ports, so several can run at once (tests).
    """
    if devices is None:
        from .. import default_devices

        devices = default_devices(clock)
    return LanServers(devices, host, standard_ports=standard_ports)
