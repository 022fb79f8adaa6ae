"""The device side of a umockdev bus, as a process: ``python3 -m app.sim.umockdev.server``.

Runs under a Python that has PyGObject and the UMockdev typelib (on Debian, the
system ``/usr/bin/python3``); :mod:`.launcher` starts it and talks to it. It plugs the
requested virtual instruments into a fresh umockdev testbed, prints one JSON line::

    {"event": "ready", "umockdev_dir": "/tmp/umockdev.XXXX", "devices": [{...}, ...]}

and then answers one JSON request per stdin line with one JSON reply line::

    {"op": "plug", "kind": "sam7"}                     -> {"ok": true, "device": {...}}
    {"op": "unplug", "key": "1-2"}                     -> {"ok": true, "device": {...}}
    {"op": "list"}                                     -> {"ok": true, "devices": [...]}
    {"op": "stats", "key": "1-2"}                      -> {"ok": true, "stats": {"submitted": ..., ...}}
    {"op": "wait_in_flight", "key": "1-2", "timeout_s": 10}
                                                       -> {"ok": true, "in_flight": true}
    {"op": "call", "key": "1-2", "method": "press_sw1", "args": []}
                                                       -> {"ok": true, "result": ...}
    {"op": "fault", "key": "1-2", "spec": "stall-bulk-out:after_bytes=100"}
                                                       -> {"ok": true, "fired": [...]}
    {"op": "fault", "key": "1-2", "spec": "clear"}      -> {"ok": true, "fired": [...]}
    {"op": "fault", "key": "1-2", "spec": "replug"}     -> {"ok": true, "fired": [...]}

``--fault SPEC`` (repeatable) arms faults (:mod:`app.sim.faults`) in every USBTMC device
plugged at start; the "fault" request arms one in a device later, and lists the faults
that have fired there (["kind", "detail"] pairs); "replug" brings back a device an unplug
fault took away (it keeps its key for these requests). An exception inside a device model is
logged on stderr and answered on the bus with a STALL (see :class:`app.sim.device.VirtualDevice`).

End of stdin (or SIGTERM) unplugs everything, removes the testbed and exits.
Standard library and gi only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import signal
import sys
import traceback

# What --device accepts by name: the device models of app.sim ("module:callable").
KINDS = {
    "sam7": "app.sim.sam7:Sam7Counter",
    "loopback": "app.sim.scpi_device:VirtualLoopback",
    "awg": "app.sim.awg:VirtualAwg",
}
DEFAULT_KINDS = ("sam7", "loopback", "awg")  # what app.sim.default_devices() plugs
_METHOD = re.compile(r"^[a-z][a-z0-9_]*$")
EXIT_UNAVAILABLE = 3


def make_device(kind: str, options: dict | None = None):
    """A new device model for ``kind``: a name from :data:`KINDS` or ``package.module:callable``."""
    spec = KINDS.get(kind, kind)
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"unknown device kind {kind!r}; known: {', '.join(sorted(KINDS))} (or module:callable)")
    factory = getattr(importlib.import_module(module_name), attribute)
    return factory(**(options or {}))


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return repr(value)


class Server:
    def __init__(self, bus, faults: list[str] | None = None) -> None:
        self.bus = bus
        self.faults = list(faults or [])  # specs armed in every USBTMC device plugged from now on
        self._unplugged: dict[str, object] = {}  # key -> device an unplug fault took off the bus

    def plug(self, kind: str, options: dict | None = None) -> dict:
        device = make_device(kind, options)
        plugged = self.bus.plug(device, kind=kind)
        if self.faults and _is_usbtmc(device):
            for spec in self.faults:
                self._injector(plugged.key, device).add(_parse_fault(spec))
        return plugged.as_dict()

    def fault(self, key: str, spec: str) -> list:
        """Arm ``spec`` in device ``key`` ("clear" disarms them all, "replug" plugs back a device an
        unplug fault took away); returns what has fired there."""
        if key in self._unplugged:
            device = self._unplugged[key]
        else:
            device = self.bus.device(key)
        if not _is_usbtmc(device):
            raise ValueError(f"device {key} is not a USBTMC instrument: no faults can be injected")
        injector = self._injector(key, device)
        if spec.strip().lower() == "clear":
            injector.clear()
        elif spec.strip().lower() == "replug":
            injector.replug()
        else:
            injector.add(_parse_fault(spec))
        return [[kind.value, detail] for kind, detail in injector.fired]

    def _injector(self, key: str, device):
        from app.sim.faults import FaultInjector

        injector = FaultInjector.attach(device)
        if injector.on_unplug is None:
            state = {"key": key}
            kind = next((p.kind for p in self.bus.devices() if p.key == key), "device")

            def unplug() -> None:
                self.bus.unplug(state["key"])
                self._unplugged[key] = device

            def replug() -> None:
                self._unplugged.pop(key, None)
                state["key"] = self.bus.plug(device, kind=kind).key

            injector.on_unplug, injector.on_replug = unplug, replug
        return injector

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "plug":
            return {"device": self.plug(request["kind"], request.get("options"))}
        if op == "unplug":
            return {"device": self.bus.unplug(request["key"]).as_dict()}
        if op == "list":
            return {"devices": [d.as_dict() for d in self.bus.devices()]}
        if op == "stats":
            return {"stats": self.bus.engine(request["key"]).stats()}
        if op == "wait_in_flight":
            return {"in_flight": self.bus.engine(request["key"]).wait_in_flight(float(request.get("timeout_s", 10)))}
        if op == "fault":
            return {"fired": self.fault(request["key"], str(request["spec"]))}
        if op == "call":
            # A test or script drives the model (press a switch, feed pulses) through a public method.
            method = request["method"]
            if not _METHOD.match(method):
                raise ValueError(f"{method!r} is not a public method name")
            target = getattr(self.bus.device(request["key"]), method)
            result = target(*request.get("args", []), **request.get("kwargs", {})) if callable(target) else target
            return {"result": _jsonable(result)}
        raise ValueError(f"unknown op {op!r}")

    def serve(self, lines, out) -> None:
        for line in lines:
            if not line.strip():
                continue
            request = None
            try:
                request = json.loads(line)
                reply = {"ok": True, **self.handle(request)}
            except Exception as exc:  # every failure becomes a reply; the bus keeps running
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                if not isinstance(exc, (KeyError, ValueError, TypeError, AttributeError)):
                    print(traceback.format_exc(), file=sys.stderr, flush=True)
            if isinstance(request, dict) and "id" in request:
                reply["id"] = request["id"]
            out.write(json.dumps(reply) + "\n")
            out.flush()


def _is_usbtmc(device) -> bool:
    from app.sim.usbtmc_device import UsbtmcDevice

    return isinstance(device, UsbtmcDevice)


def _parse_fault(spec: str):
    from app.sim.faults import parse_fault_spec

    return parse_fault_spec(spec)


def _emit(out, message: dict) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m app.sim.umockdev.server", description=__doc__.split("\n")[0])
    parser.add_argument("--device", action="append", metavar="KIND",
                        help=f"plug this device at start (repeatable; default {', '.join(DEFAULT_KINDS)}; 'none' for an empty bus)")
    parser.add_argument("--check", action="store_true", help="only check that umockdev can be used here")
    parser.add_argument("--park-ms", type=int, default=None, help="how long an empty non-blocking reap waits")
    parser.add_argument("--trace", action="store_true", help="log every ioctl on stderr")
    parser.add_argument("--data-toggles", action="store_true",
                        help="model the host's data toggles (a hand-built CLEAR_FEATURE then loses packets)")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC",
                        help="arm this fault in every USBTMC device plugged (app.sim.faults; repeatable)")
    args = parser.parse_args(argv)
    # Device models report exceptions on the app.sim logger: they go to stderr with a traceback.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="tmc-umockdev: %(name)s: %(message)s")
    out = sys.stdout
    # Where device models outside app.sim live ("module:callable" kinds); -E hides PYTHONPATH.
    extra = os.environ.get("TMC_UMOCKDEV_EXTRA_PATH")
    if extra:
        sys.path[:0] = [p for p in extra.split(os.pathsep) if p]
    try:
        from . import testbed
    except Exception as exc:  # UmockdevUnavailable, or a broken gi install
        _emit(out, {"event": "error", "error": str(exc)})
        return EXIT_UNAVAILABLE
    if args.check:
        _emit(out, {"event": "ok", "python": sys.executable})
        return 0
    # Ctrl-C in a terminal reaches the whole process group; the launcher decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    park_ms = testbed.PARK_MS if args.park_ms is None else args.park_ms
    bus = testbed.VirtualUsbBus(park_ms=park_ms, trace=args.trace or bool(os.environ.get("TMC_UMOCKDEV_TRACE")),
                                data_toggles=True if args.data_toggles else None)
    try:
        for spec in args.fault:
            _parse_fault(spec)
    except ValueError as exc:
        _emit(out, {"event": "error", "error": f"--fault: {exc}"})
        return 2
    server = Server(bus, args.fault)
    try:
        kinds = args.device if args.device is not None else list(DEFAULT_KINDS)
        try:
            devices = [server.plug(kind) for kind in kinds if kind != "none"]
        except Exception as exc:
            _emit(out, {"event": "error", "error": f"{type(exc).__name__}: {exc}"})
            return 1
        _emit(out, {"event": "ready", "umockdev_dir": bus.root_dir, "devices": devices, "pid": os.getpid()})
        server.serve(sys.stdin, out)
    finally:
        bus.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
