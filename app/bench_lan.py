"""``tmc bench --lan``: uploads and queries over each LAN protocol on loopback, beside the virtual USB bus.

One virtual AWG model is plugged into the virtual USB bus and served on 127.0.0.1 over a raw
SCPI socket, VXI-11 and HiSLIP (:mod:`app.sim.lan`), so every implementation talks to the same
instrument: the core over USB, TMC Console's LAN sessions (:mod:`app.lan`) and pyvisa-py's
over each protocol. Measures, rounds and verification are those of :mod:`app.bench` (the
stored waveform's length and CRC-32 are checked after each size); figures are medians.

Loopback TCP has no wire limit, so these figures compare the hosts' protocol code, not
networks: on a real instrument the LAN link and the instrument's own stack set the rate.
"""

from __future__ import annotations

import gc
import statistics
import sys

from app.bench import MIB, TIMEOUT_MS, BenchError, CorePeer, Peer, _measure_queries, _measure_upload, waveform_message

PROTOCOLS = ("SOCKET", "VXI-11", "HiSLIP")
USB_CORE = "app.usbtmc USB"
DEFAULT_SIZES = (1 * MIB, 8 * MIB, 64 * MIB)


class UsbPeer(CorePeer):
    name = USB_CORE


class LanPeer(CorePeer):
    """The core's calls on a LAN session: the same as on USB once it is open."""

    def __init__(self, resource: str, protocol: str) -> None:
        from app.lan import open_lan

        self.name = f"app.lan {protocol}"
        self.inst = open_lan(resource, TIMEOUT_MS)


class PyvisaLanPeer(Peer):
    def __init__(self, rm, resource: str, protocol: str) -> None:
        self.name = f"pyvisa-py {protocol}"
        self.inst = rm.open_resource(resource, timeout=TIMEOUT_MS)
        if protocol == "SOCKET":
            self.inst.read_termination = "\n"
            self.inst.write_termination = "\n"

    def upload(self, message: bytes) -> None:
        self.inst.write_raw(message)

    def query(self, text: str) -> str:
        return self.inst.query(text).rstrip("\n")

    def close(self) -> None:
        self.inst.close()


def run(sizes=DEFAULT_SIZES, queries: int = 300, rounds: int = 3, pyvisa: bool = True) -> list[dict]:
    """Measure; one dict per implementation and measure (``MBps`` or ``round_trip_ms``, ``verified``)."""
    from app.sim import backend as sim_backend
    from app.sim import default_bus
    from app.sim.awg import VirtualAwg
    from app.sim.lan import serve

    bus = default_bus()
    backend = sim_backend(bus)
    awg = bus.find(kind=VirtualAwg)
    if pyvisa:
        try:
            from app.usbtmc import default_backend
            from app.usbtmc.errors import BackendUnavailableError

            # pyvisa-py loads pyusb's default libusb when it starts: make that the one libusb-package
            # ships (pyusb keeps the first it loaded), not the system's, for the rest of the process.
            default_backend()
        except BackendUnavailableError:
            pass  # no libusb at all: pyvisa-py's LAN sessions do not need it
        try:
            import pyvisa as pv

            rm = pv.ResourceManager("@py")
        except (ImportError, OSError, ValueError) as exc:
            raise BenchError(f"pyvisa-py is not usable here ({exc}); pip install \".[bench]\" or use --no-peers") from exc
    usb_resource = "USB0::0x1209::0x000C::AWG-0001::INSTR"
    messages = {size: waveform_message(size) for size in sizes}
    samples: dict = {}
    with serve([awg]) as servers:
        resources = {e.protocol: e.resource for e in servers.resources}
        makers = [(USB_CORE, lambda: UsbPeer(backend, usb_resource))]
        for protocol in PROTOCOLS:
            makers.append((f"app.lan {protocol}", lambda p=protocol: LanPeer(resources[p], p)))
            if pyvisa:
                makers.append((f"pyvisa-py {protocol}", lambda p=protocol: PyvisaLanPeer(rm, resources[p], p)))
        steps = [("upload", size) for size in sizes] + [("query", None)]
        collecting = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            for round_index in range(rounds):
                shift = round_index % len(makers)
                for kind, size in steps:
                    for _name, make in makers[shift:] + makers[:shift]:
                        peer = make()
                        try:
                            peer.query("FORM:BORD SWAP;*OPC?")
                            if kind == "upload":
                                _measure_upload(peer, size, *messages[size], awg, samples)
                            else:
                                _measure_queries(peer, queries, awg, samples)
                        finally:
                            peer.close()
                    gc.collect()
        finally:
            if collecting:
                gc.enable()
            if pyvisa:
                rm.close()
    records = []
    for (name, kind, size), entry in samples.items():
        if kind == "upload":
            records.append({"implementation": name, "measure": "upload", "size_bytes": size,
                            "MBps": statistics.median(entry["MBps"]), "verified": entry["verified"]})
        else:
            records.append({"implementation": name, "measure": "query", "size_bytes": None,
                            "round_trip_ms": statistics.median(entry["ms"]), "verified": True})
    return records


def report(records: list[dict]) -> str:
    names = list(dict.fromkeys(r["implementation"] for r in records))
    sizes = sorted({r["size_bytes"] for r in records if r["measure"] == "upload"})
    cell = {(r["implementation"], r["measure"], r["size_bytes"]): r for r in records}
    head = f"{'implementation':<20}" + "".join(f"{f'{s // MIB} MiB MB/s':>14}" for s in sizes) + f"{'*IDN? ms':>11}"
    lines = ["tmc bench --lan: the virtual AWG on the virtual USB bus and on 127.0.0.1 (one model, medians)", head]
    for name in names:
        row = f"{name:<20}"
        for s in sizes:
            r = cell.get((name, "upload", s))
            row += f"{(r['MBps'] if r else float('nan')):>13.1f}{'' if not r or r['verified'] else '!'}" + " "
        q = cell.get((name, "query", None))
        row += f"{(q['round_trip_ms'] if q else float('nan')):>10.3f}"
        lines.append(row)
    ratios = []
    for protocol in PROTOCOLS:
        ours, theirs = f"app.lan {protocol}", f"pyvisa-py {protocol}"
        if (theirs, "query", None) not in cell:
            continue
        parts = [f"{s // MIB} MiB x{cell[(ours, 'upload', s)]['MBps'] / cell[(theirs, 'upload', s)]['MBps']:.2f}"
                 for s in sizes if (theirs, "upload", s) in cell]
        q = cell[(theirs, "query", None)]["round_trip_ms"] / cell[(ours, "query", None)]["round_trip_ms"]
        ratios.append(f"  {protocol}: upload {', '.join(parts)}; query x{q:.2f}")
    if ratios:
        lines.append("app.lan vs pyvisa-py (> 1: app.lan faster):")
        lines += ratios
    if any(not r["verified"] for r in records):
        lines.append("! the instrument's length/CRC or error queue disagreed after this upload")
    return "\n".join(lines)


def cmd_bench_lan(args) -> int:
    from app.bench import parse_size

    try:
        sizes = tuple(parse_size(s) for s in args.sizes.split(",")) if args.sizes != "64K,1M,8M,64M" else DEFAULT_SIZES
        records = run(sizes, min(args.queries, 1000), args.rounds, pyvisa=not args.no_peers)
    except BenchError as exc:
        print(f"tmc bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json

        for record in records:
            print(json.dumps(record))
    else:
        print(report(records))
    return 0
