"""Latency and throughput over the real libusb, with the virtual loopback served by umockdev.

    python tests/libusb/benchmark.py [--upload-mib 8] [--queries 100] [--rounds 5] [--json]

Side by side on the same channel: a raw pyusb loop that frames USBTMC by hand (the
channel's own limit: frames built before the clock starts, nothing else done), TMC
Console's core (app.usbtmc), python-usbtmc and pyvisa-py. Methods take turns round
by round; each figure is the median over rounds, and each ratio the median of the
ratios taken within a round, so a busy spell of the machine slows both sides of a
ratio alike. All of them run in one host process on the same libusb.

Figures:
- query round trip (ms) of a short query (``*OPC?``), against three raw loops: a
  write+read (one Bulk-OUT carrying the message and REQUEST_DEV_DEP_MSG_IN, one
  Bulk-IN: two URBs, the channel's round trip, though not a form USBTMC devices
  accept), the three-transfer form (message, request, reply, each waited for), and
  the same three transfers submitted together (the least a valid query costs);
- upload (MB/s, 10^6 bytes/s) of a definite-length block to ``MEM:DATA``, against raw
  Bulk-OUT transfers of the same size (1 MiB payload each, like the core's default).

:func:`run` returns the figures as a dict; :func:`report` formats them with ratios.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOOPBACK = "USB0::0x1209::0x0002::LOOP-0001::INSTR"
LOOPBACK_IDS = (0x1209, 0x0002, "LOOP-0001")
MIB = 1024 * 1024
# pyvisa-py writes one packet per transfer, so it gets a smaller block to keep the run short.
PYVISA_UPLOAD_BYTES = 256 * 1024


# --- host side (runs under the umockdev preload) ------------------------------------------


class RawUsbtmc:
    """USBTMC framed by hand on pyusb: the least a host can do per query or upload."""

    def __init__(self, backend) -> None:
        import usb.core
        import usb.util

        vid, pid, _serial = LOOPBACK_IDS
        self.device = usb.core.find(idVendor=vid, idProduct=pid, backend=backend)
        interface = self.device.get_active_configuration()[(0, 0)]
        self.out_ep = next(e.bEndpointAddress for e in interface
                           if usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
                           and usb.util.endpoint_direction(e.bEndpointAddress) == usb.util.ENDPOINT_OUT)
        self.in_ep = next(e.bEndpointAddress for e in interface
                          if usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
                          and usb.util.endpoint_direction(e.bEndpointAddress) == usb.util.ENDPOINT_IN)
        usb.util.claim_interface(self.device, 0)
        self._tag = 0
        from app.usbtmc.libusb_async import AsyncBulk

        # libusb's asynchronous calls on pyusb's handle, for the overlapped form of the query.
        self._async = AsyncBulk.create(backend.lib, backend.ctx, self.device._ctx.handle.handle)

    def _next_tag(self) -> int:
        self._tag = self._tag % 255 + 1
        return self._tag

    @staticmethod
    def _header(msg_id: int, tag: int, size: int, attributes: int) -> bytes:
        # USBTMC 1.0 Table 1/3: MsgID, bTag, bTagInverse, reserved, TransferSize, attributes, 3 reserved.
        return struct.pack("<BBBBIBxxx", msg_id, tag, ~tag & 0xFF, 0, size, attributes)

    def message(self, payload: bytes, eom: bool = True) -> bytes:
        frame = self._header(1, self._next_tag(), len(payload), 1 if eom else 0) + payload
        return frame + bytes(-len(frame) % 4)

    def request(self, max_bytes: int = 1024) -> bytes:
        return self._header(2, self._next_tag(), max_bytes, 0)

    def query_write_read(self, command: bytes) -> bytes:
        self.device.write(self.out_ep, self.message(command) + self.request(), 2000)
        return bytes(self.device.read(self.in_ep, 1024 + 12, 2000))

    def query_three_transfers(self, command: bytes) -> bytes:
        self.device.write(self.out_ep, self.message(command), 2000)
        self.device.write(self.out_ep, self.request(), 2000)
        return bytes(self.device.read(self.in_ep, 1024 + 12, 2000))

    def query_overlapped(self, command: bytes) -> bytes:
        """The three transfers submitted together: the least a valid USBTMC query costs."""
        from app.usbtmc.libusb_async import BulkRequest

        message, request = array.array("B", self.message(command)), array.array("B", self.request())
        *_, reply = self._async.run([BulkRequest(self.out_ep, 2000, data=message),
                                     BulkRequest(self.out_ep, 2000, data=request),
                                     BulkRequest(self.in_ep, 2000, length=1024 + 12)])
        return reply.data

    def upload(self, frames: list) -> None:
        for frame in frames:
            self.device.write(self.out_ep, frame, 20000)

    def frames(self, message: bytes, chunk_bytes: int = MIB) -> list:
        """The Bulk-OUT transfers of ``message``, built in advance as the arrays pyusb sends without copying."""
        pieces = [message[i:i + chunk_bytes] for i in range(0, len(message), chunk_bytes)]
        return [array.array("B", self.message(piece, eom=i == len(pieces) - 1)) for i, piece in enumerate(pieces)]

    def close(self) -> None:
        import usb.util

        usb.util.dispose_resources(self.device)


def _block(payload: bytes) -> bytes:
    length = str(len(payload)).encode()
    return b"MEM:DATA #" + str(len(length)).encode() + length + payload + b"\n"


def _timed(action, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        action()
    return (time.perf_counter() - start) / repeat


def host_measure(options: dict) -> dict:
    """Run every method ``rounds`` times, interleaved; returns the raw samples per figure."""
    import pyvisa
    import usbtmc

    from app.usbtmc import Instrument, default_backend

    backend = default_backend()
    queries, rounds = options["queries"], options["rounds"]
    payload = os.urandom(options["upload_bytes"])
    small = payload[:PYVISA_UPLOAD_BYTES]
    message, small_message = _block(payload), _block(small)
    samples: dict[str, list[float]] = {}

    def sample(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    vid, pid, serial = LOOPBACK_IDS
    repeats = options.get("upload_repeats", 3)
    raw = RawUsbtmc(backend)
    frames, small_frames = raw.frames(message), raw.frames(small_message)
    # Warm up: the first multi-MiB transfers of a process pair pay for growing their heaps.
    for _ in range(2):
        raw.upload(frames)
    raw.close()

    # Queries and uploads are measured in phases of their own, so that the query figures of
    # one round are taken close together, not minutes apart between multi-MiB uploads.
    def query_raw() -> None:
        raw = RawUsbtmc(backend)
        assert raw.query_write_read(b"*OPC?\n").endswith(b"1\n\x00\x00")
        sample("query_ms/raw write+read", 1e3 * _timed(lambda: raw.query_write_read(b"*OPC?\n"), queries))
        sample("query_ms/raw 3 transfers", 1e3 * _timed(lambda: raw.query_three_transfers(b"*OPC?\n"), queries))
        assert raw.query_overlapped(b"*OPC?\n").endswith(b"1\n\x00\x00")
        sample("query_ms/raw 3 overlapped", 1e3 * _timed(lambda: raw.query_overlapped(b"*OPC?\n"), queries))
        raw.close()

    def query_core() -> None:
        with Instrument(LOOPBACK, backend=backend, timeout_ms=20000) as inst:
            inst.query("*OPC?")
            sample("query_ms/app.usbtmc", 1e3 * _timed(lambda: inst.query("*OPC?"), queries))

    def query_python_usbtmc() -> None:
        dev = usbtmc.Instrument(vid, pid, serial)
        dev.ask("*OPC?")
        sample("query_ms/python-usbtmc", 1e3 * _timed(lambda: dev.ask("*OPC?"), queries))
        dev.close()

    def query_pyvisa_py() -> None:
        rm = pyvisa.ResourceManager("@py")
        visa = rm.open_resource(LOOPBACK)
        visa.query("*OPC?")
        sample("query_ms/pyvisa-py", 1e3 * _timed(lambda: visa.query("*OPC?"), queries))
        visa.close()
        rm.close()

    def upload_raw() -> None:
        raw = RawUsbtmc(backend)
        sample("upload_MBps/raw", len(message) / _timed(lambda: raw.upload(frames), repeats) / 1e6)
        sample("small_upload_MBps/raw", len(small_message) / _timed(lambda: raw.upload(small_frames), repeats) / 1e6)
        raw.close()

    def upload_core() -> None:
        with Instrument(LOOPBACK, backend=backend, timeout_ms=20000) as inst:
            upload = lambda: inst.write_block("MEM:DATA ", payload)  # noqa: E731
            sample("upload_MBps/app.usbtmc", len(message) / _timed(upload, repeats) / 1e6)
            assert inst.query("MEM:DATA:LEN?") == str(len(payload))

    def upload_python_usbtmc() -> None:
        dev = usbtmc.Instrument(vid, pid, serial)
        dev.timeout = 20
        sample("upload_MBps/python-usbtmc", len(message) / _timed(lambda: dev.write_raw(message), repeats) / 1e6)
        dev.close()

    def upload_pyvisa_py() -> None:
        rm = pyvisa.ResourceManager("@py")
        visa = rm.open_resource(LOOPBACK)
        visa.timeout = 20000
        sample("small_upload_MBps/pyvisa-py", len(small_message) / _timed(lambda: visa.write_raw(small_message)) / 1e6)
        visa.close()
        rm.close()

    for phase in ([query_raw, query_core, query_python_usbtmc, query_pyvisa_py],
                  [upload_raw, upload_core, upload_python_usbtmc, upload_pyvisa_py]):
        for index in range(rounds):
            # Each method goes first in turn, so none always follows the same neighbour.
            for method in phase[index % len(phase):] + phase[: index % len(phase)]:
                method()
    return {"samples": samples, "libusb": getattr(getattr(backend, "lib", None), "_name", "?")}


# --- orchestration (runs in the project's Python, outside the preload) --------------------


def run(upload_mib: float = 8, queries: int = 100, rounds: int = 5) -> dict:
    """Start a bus with the loopback, measure in a host process, return the medians and ratios."""
    from app.sim.umockdev.launcher import UmockdevBus

    options = {"upload_bytes": int(upload_mib * MIB), "queries": queries, "rounds": rounds, "upload_repeats": 3}
    with UmockdevBus(["loopback"]) as bus:
        env = bus.environment()
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        proc = subprocess.run([sys.executable, __file__, "--host", json.dumps(options)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the benchmark's host process failed:\n{proc.stdout}\n{proc.stderr}")
    measured = json.loads(proc.stdout.splitlines()[-1])
    samples = measured["samples"]
    figures = {name: statistics.median(values) for name, values in samples.items()}
    spread = {name: (min(values), max(values)) for name, values in samples.items()}

    def paired(numerator: str, denominator: str) -> tuple[float, float, float]:
        # Ratios are taken within each round, between figures measured minutes apart at most,
        # so a slow spell of the shared machine cancels out; then the median over rounds.
        per_round = [a / b for a, b in zip(samples[numerator], samples[denominator])]
        return statistics.median(per_round), min(per_round), max(per_round)

    ratios = {}
    for name in figures:
        kind, method = name.split("/")
        if method.startswith("raw"):
            continue
        if kind == "query_ms":
            ratios[f"{method} query / raw write+read"] = paired(name, "query_ms/raw write+read")
            ratios[f"{method} query / raw 3 transfers"] = paired(name, "query_ms/raw 3 transfers")
            ratios[f"{method} query / raw 3 overlapped"] = paired(name, "query_ms/raw 3 overlapped")
        else:
            ratios[f"{method} upload / raw"] = paired(name, f"{kind}/raw")
    ratios["app.usbtmc upload / python-usbtmc upload"] = paired("upload_MBps/app.usbtmc", "upload_MBps/python-usbtmc")
    return {"options": options, "libusb": measured["libusb"], "figures": figures, "spread": spread, "ratios": ratios}


def report(result: dict) -> str:
    options = result["options"]
    lines = [
        f"Over umockdev and {result['libusb']} (median of {options['rounds']} rounds; "
        f"{options['queries']} queries, {options['upload_bytes'] / MIB:g} MiB uploads, "
        f"pyvisa-py {PYVISA_UPLOAD_BYTES // 1024} KiB):",
    ]
    for name, value in result["figures"].items():
        kind, method = name.split("/")
        unit = {"query_ms": "ms per query", "upload_MBps": "MB/s upload", "small_upload_MBps": "MB/s small upload"}[kind]
        low, high = result["spread"][name]
        lines.append(f"  {method:<18} {value:9.2f} {unit:<18} (rounds: {low:.2f} to {high:.2f})")
    lines.append("Ratios (median of the per-round ratios; lowest to highest round):")
    lines += [f"  {name:<48} {value:7.3g}   ({low:.3g} to {high:.3g})"
              for name, (value, low, high) in result["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upload-mib", type=float, default=8)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--host", metavar="OPTIONS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host:
        print(json.dumps(host_measure(json.loads(args.host))))
        return 0
    result = run(args.upload_mib, args.queries, args.rounds)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
