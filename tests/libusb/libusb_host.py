"""Host-side scenarios for the libusb layer, run in a child process under the umockdev preload.

    python tests/libusb/libusb_host.py SCENARIO '{"json": "arguments"}'

Each scenario talks to the virtual instruments through the real libusb and prints
one JSON object (its observations) as its last line; the tests assert on that.
Interactive scenarios print ``{"step": ...}`` lines and wait for a line on stdin
between steps, so the test can plug or unplug devices at a known moment.
Errors are reported as ``{"error": "..."}`` with exit status 1.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import json
import sys
import threading
import time
import traceback

SCENARIOS = {}


def scenario(func):
    SCENARIOS[func.__name__] = func
    return func


def step(name: str, **data) -> None:
    """Report a step and wait until the test says go."""
    print(json.dumps({"step": name, **data}), flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit(0)


def library_name(backend) -> str:
    return getattr(getattr(backend, "lib", None), "_name", "?")


def system_backend():
    """pyusb on the distribution's libusb (udev-aware, so it hears umockdev's hot-plug uevents).

    Must run before anything loads another libusb: pyusb keeps the first one per process.
    """
    import usb.backend.libusb1

    backend = usb.backend.libusb1.get_backend(find_library=lambda _name: ctypes.util.find_library("usb-1.0"))
    assert backend is not None, "no system libusb-1.0"
    return backend


def describe(info) -> dict:
    caps = info.capabilities
    return {
        "resource": info.resource, "manufacturer": info.manufacturer, "product": info.product,
        "serial": info.serial, "protocol": info.protocol, "speed": info.speed, "bus": info.bus,
        "address": info.address, "problem": info.problem,
        "capabilities": None if caps is None else {
            name: getattr(caps, name) for name in ("indicator_pulse", "talk_only", "listen_only", "term_char")
        },
        "endpoints": [[e.address, e.kind, e.direction, e.max_packet_bytes] for e in info.endpoints],
    }


@scenario
def enumeration(args) -> dict:
    """list_resources() and raw pyusb, both on the default backend."""
    import usb.core
    import usb.util

    from app.usbtmc import default_backend, list_resources

    backend = default_backend()
    raw = []
    for device in usb.core.find(find_all=True, backend=backend):
        raw.append({
            "vid": device.idVendor, "pid": device.idProduct, "bus": device.bus, "address": device.address,
            "manufacturer": usb.util.get_string(device, device.iManufacturer),
            "product": usb.util.get_string(device, device.iProduct),
            "serial": usb.util.get_string(device, device.iSerialNumber),
            "speed": device.speed,
        })
        usb.util.dispose_resources(device)
    return {"libusb": library_name(backend), "raw": raw, "resources": [describe(i) for i in list_resources()]}


def run_script(resource: str, script: list[str], backend=None, timeout_ms: int = 2000) -> dict:
    """Run a list of program messages through app.usbtmc.Instrument; returns every reply.

    ``@name`` calls a session method without arguments (``@read_stb``, ``@wait_srq``...).
    Also runs in-process on the virtual backend, so the two paths can be compared.
    """
    from app.usbtmc import Instrument

    replies = {}
    with Instrument(resource, backend=backend, timeout_ms=timeout_ms) as inst:
        for index, command in enumerate(script):
            key = f"{index:02d} {command}"
            if command.startswith("@"):
                replies[key] = getattr(inst, command[1:])()
            elif command.rstrip().endswith("?"):
                replies[key] = inst.query(command)
            else:
                inst.write(command)
        caps = inst.capabilities
        replies["capabilities"] = {name: getattr(caps, name) for name in sorted(vars(caps))}
    return replies


@scenario
def sam7(args) -> dict:
    """The SAM7 command set through app.usbtmc.Instrument with the default backend."""
    return {"replies": run_script(args["resource"], args["script"])}


@scenario
def block(args) -> dict:
    """A multi-MiB definite-length block written and read back byte for byte.

    ``read_query`` None writes only; ``write_prefix`` None reads back what an earlier run wrote.
    """
    from dataclasses import replace

    from app.usbtmc import Instrument, Quirks

    size = args["bytes"]
    payload = bytes((i * 7 + (i >> 11)) & 0xFF for i in range(size))
    quirks = replace(Quirks(), max_out_transfer_bytes=args.get("transfer_bytes", Quirks().max_out_transfer_bytes))
    observed = {"sent_sha256": hashlib.sha256(payload).hexdigest()}
    with Instrument(args["resource"], timeout_ms=20000, quirks=quirks) as inst:
        if args.get("write_prefix") is not None:
            start = time.perf_counter()
            if args.get("cancellable"):
                # The console's upload: an abort flag, transfers paced for a 50 ms Cancel.
                head = args["write_prefix"].encode() + f"#{len(str(size))}{size}".encode()
                inst.write_stream((head, payload, b"\n"), len(head) + size + 1, abort=threading.Event(),
                                  abort_latency_ms=50)
            else:
                inst.write_block(args["write_prefix"], payload)
            observed["write_s"] = time.perf_counter() - start
        if args.get("read_query") is not None:
            start = time.perf_counter()
            echoed = inst.query_block(args["read_query"])
            observed["read_s"] = time.perf_counter() - start
            observed.update(got_sha256=hashlib.sha256(echoed).hexdigest(), got_bytes=len(echoed))
            observed["idn_after"] = inst.query("*IDN?")
    return observed


@scenario
def timeout(args) -> dict:
    """A read with nothing to answer times out; the session recovers by abort and the next query works."""
    from app.usbtmc import Instrument, TmcTimeoutError

    with Instrument(args["resource"], timeout_ms=args.get("timeout_ms", 300)) as inst:
        inst.write(args["silent_query"])
        start = time.perf_counter()
        try:
            outcome = {"raised": None, "reply": inst.read()}
        except TmcTimeoutError as exc:
            outcome = {"raised": type(exc).__name__, "message": str(exc), "recovery": exc.recovery}
        outcome["elapsed_s"] = time.perf_counter() - start
        outcome["next"] = inst.query(args.get("next", "*IDN?"))
    return outcome


@scenario
def fault_case(args) -> dict:
    """One operation while the test has a fault armed in the device, then the next *IDN? on the same session.

    Steps: "open" (the test arms the fault), "done" with the operation's outcome (the test
    disarms it); the result holds the next *IDN?.
    """
    from dataclasses import replace as with_changes

    from app.usbtmc import Instrument, TmcError

    with Instrument(args["resource"], timeout_ms=args.get("timeout_ms", 300)) as inst:
        if args.get("transfer_bytes"):
            inst.quirks = with_changes(inst.quirks, max_out_transfer_bytes=args["transfer_bytes"])
        if args.get("memory_bytes"):
            inst.write_block("MEM:DATA ", (bytes(range(256)) * (args["memory_bytes"] // 256 + 1))[:args["memory_bytes"]])
        step("open", pipelined=inst.pipelined)
        operations = {
            "query": lambda: inst.query_raw(b"*IDN?\n").decode(),
            "memory query": lambda: len(inst.query_raw(b"MEM:DATA?\n")),
            "read": lambda: (inst.write_raw(b"*IDN?\n"), inst.read_raw().decode())[1],
            "write": lambda: inst.write_raw(b"*ESE 32\n"),
            "upload": lambda: inst.write_raw(b"MEM:DATA #520000" + bytes(20000) + b"\n"),
            "clear": inst.clear,
            "status byte": inst.read_stb,
            "trigger": inst.trigger,
        }
        start = time.perf_counter()
        try:
            outcome = {"raised": None, "result": operations[args["op"]]()}
        except TmcError as exc:
            outcome = {"raised": type(exc).__name__, "message": str(exc), "recovery": exc.recovery,
                       "usable": exc.usable}
        outcome["elapsed_s"] = time.perf_counter() - start
        step("done", **outcome)
        return {**outcome, "next": inst.query("*IDN?")}


@scenario
def pipelined_query(args) -> dict:
    """Queries over libusb: whether they are pipelined, their replies, and a silent one timing out inside the batch."""
    from app.usbtmc import Instrument, TmcTimeoutError

    with Instrument(args["resource"], timeout_ms=args.get("timeout_ms", 300)) as inst:
        observed = {"pipelined": inst.pipelined, "replies": [inst.query(q) for q in args["queries"]]}
        start = time.perf_counter()
        try:
            observed["silent"] = {"raised": None, "reply": inst.query(args["silent_query"])}
        except TmcTimeoutError as exc:
            observed["silent"] = {"raised": type(exc).__name__, "recovery": exc.recovery}
        observed["silent"]["elapsed_s"] = time.perf_counter() - start
        observed["next"] = inst.query(args["queries"][0])
    return observed


@scenario
def traced(args) -> dict:
    """A traced session over libusb: a pipelined query, a timeout and its abort, a device clear, a small upload."""
    from app.usbtmc import Instrument, TmcTimeoutError
    from app.usbtmc.trace import Decoder, Recorder

    recorder = Recorder()
    with Instrument(args["resource"], timeout_ms=300, trace=recorder) as inst:
        observed = {"pipelined": inst.pipelined, "reply": inst.query("*IDN?")}
        try:
            inst.query("NOPE?")
        except TmcTimeoutError:
            pass
        inst.clear()
    decoder = Decoder()
    observed["entries"] = [{"kind": e.kind, "direction": e.direction, "status": e.status, "group": e.group,
                            "step": e.step, "seq": e.seq, "duration_ns": e.duration_ns, "actual": e.actual,
                            "summary": decoder.decode(e).summary, "op": e.op} for e in recorder.entries()]
    observed["descriptors"] = len(recorder.sessions[1].descriptors)
    return observed


@scenario
def cancel_stuck(args) -> dict:
    """A query the SAM7 never answers, with a 600 s timeout, cancelled from another thread."""
    from app.usbtmc import AbortedError, Instrument

    inst = Instrument(args["resource"], timeout_ms=600_000)
    sent, raised = threading.Event(), []

    def run() -> None:
        try:
            inst.query_raw(b"NOSUCH:QUERY?\n", on_sent=sent.set)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    sent.wait(30)
    inst.cancel_transfers()
    thread.join(30)
    observed = {"ended": not thread.is_alive(), "raised": [f"{type(e).__name__}: {e}" for e in raised],
                "aborted": bool(raised) and isinstance(raised[0], AbortedError)}
    inst.close()
    with Instrument(args["resource"], timeout_ms=5000) as again:
        observed["after"] = again.query("*IDN?")
    return observed


@scenario
def concurrent_sessions(args) -> dict:
    """Sessions on two devices, each on its own thread, share libusb's context: either thread may
    run the other's completions. Every reply must still reach its own session intact."""
    import threading
    from dataclasses import replace

    from app.usbtmc import Instrument, Quirks

    rounds = args.get("rounds", 200)
    results: dict[str, object] = {}

    def sam7() -> None:
        with Instrument(args["sam7"], timeout_ms=5000) as inst:
            replies = [inst.query("*IDN?") for _ in range(rounds)]
            results["sam7_pipelined"] = inst.pipelined
            results["sam7_distinct"] = sorted(set(replies))

    def loopback() -> None:
        quirks = replace(Quirks(), max_out_transfer_bytes=4096)  # uploads overlap their transfers
        with Instrument(args["loopback"], timeout_ms=5000, quirks=quirks) as inst:
            payload = bytes(range(256)) * 40
            ok = 0
            for index in range(rounds // 10):
                inst.write_block("MEM:DATA ", payload[index:])
                ok += inst.query_block("MEM:DATA?") == payload[index:]
            results["loopback_blocks_ok"] = ok

    def run(target) -> None:
        try:
            target()
        except Exception as exc:  # reported, not raised: the other thread keeps going
            results.setdefault("errors", []).append(f"{target.__name__}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(t,)) for t in (sam7, loopback)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    results["alive"] = [t.name for t in threads if t.is_alive()]
    return results


@scenario
def stall(args) -> dict:
    """A halted Bulk-OUT endpoint: raw pyusb sees STALL; the session clears the halt and goes on."""
    import usb.core
    import usb.util

    from dataclasses import replace

    from app.usbtmc import Instrument, ProtocolError, Quirks, default_backend

    def attempt(write) -> object:
        try:
            write()
            return "accepted"
        except usb.core.USBError as exc:
            return {"errno": exc.errno, "backend_error_code": getattr(exc, "backend_error_code", None)}

    device = usb.core.find(idVendor=args["vid"], idProduct=args["pid"], backend=default_backend())
    out_ep = usb.util.find_descriptor(
        device.get_active_configuration()[(0, 0)],
        custom_match=lambda ep: usb.util.endpoint_direction(ep.bEndpointAddress) == usb.util.ENDPOINT_OUT,
    ).bEndpointAddress
    usb.util.claim_interface(device, 0)
    valid = b"\x01\x06\xf9\x00" + (6).to_bytes(4, "little") + b"\x01\x00\x00\x00*IDN?\n\x00\x00"
    observed = {
        # bTagInverse is not the complement of bTag: USBTMC 1.0 3.2.2.3 has the device halt Bulk-OUT.
        "bad_header": attempt(lambda: device.write(out_ep, b"\x01\x05\x00\x00" + valid[4:], 1000)),
        "while_halted": attempt(lambda: device.write(out_ep, valid, 1000)),
    }
    usb.util.dispose_resources(device)
    # Without the device clear a session sends on open, so that the session itself meets the halt.
    with Instrument(args["resource"], timeout_ms=1000, quirks=replace(Quirks(), clear_on_open=False)) as inst:
        try:
            inst.write("*IDN?")  # the session meets the STALL, clears the halt and says so
            observed["session"] = "accepted"
        except ProtocolError as exc:
            observed["session"] = str(exc)
        observed["after_clear"] = inst.query("*IDN?")
    return observed


@scenario
def unplug(args) -> dict:
    """The device disappears while a read (or a batched query's read) waits: the session raises
    DeviceGoneError, the process lives on."""
    from app.usbtmc import DeviceGoneError, Instrument, TmcError, list_resources

    inst = Instrument(args["resource"], timeout_ms=args.get("timeout_ms", 20000))
    inst.query("*IDN?")
    print(json.dumps({"step": "reading"}), flush=True)
    start = time.perf_counter()
    outcome: dict = {}
    try:
        if args.get("during") == "query":
            inst.query_raw(b"NOPE?\n")  # no answer comes (a command error): the batch's read waits
        else:
            inst.read_raw()  # no query pending: the device has nothing to send, so the IN transfer waits
        outcome["raised"] = None
    except TmcError as exc:
        outcome.update(raised=type(exc).__name__, message=str(exc))
    outcome["elapsed_s"] = time.perf_counter() - start
    try:
        inst.query("*IDN?")
        outcome["after"] = "answered"
    except DeviceGoneError:
        outcome["after"] = "DeviceGoneError"
    inst.close()
    outcome["closed"] = inst.closed
    outcome["still_listed"] = [i.resource for i in list_resources() if i.resource == args["resource"]]
    return outcome


@scenario
def hotplug(args) -> dict:
    """Devices plugged and unplugged while this process runs appear and vanish on re-enumeration."""
    from app.usbtmc import list_resources

    backend = system_backend()
    step("listed", resources=[i.resource for i in list_resources(backend, probe=False)], libusb=library_name(backend))
    deadline = time.monotonic() + 5
    while True:  # the uevent reaches libusb's hot-plug thread asynchronously
        after_plug = [i.resource for i in list_resources(backend, probe=False)]
        if len(after_plug) > args["count"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    step("plugged", resources=after_plug)
    deadline = time.monotonic() + 5
    while True:
        after_unplug = [i.resource for i in list_resources(backend, probe=False)]
        if len(after_unplug) < len(after_plug) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return {"after_unplug": after_unplug}


@scenario
def python_usbtmc(args) -> dict:
    """python-usbtmc (PyPI) on pyusb's own default backend: a user's unchanged script."""
    import usbtmc

    inst = usbtmc.Instrument(args["vid"], args["pid"], args["serial"])
    try:
        inst.timeout = 2
        return {"idn": inst.ask("*IDN?"), "count": inst.ask("COUNT:READ?")}
    finally:
        inst.close()


@scenario
def pyvisa_py(args) -> dict:
    """pyvisa with the pyvisa-py backend: list and query like a user's script."""
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    try:
        found = list(rm.list_resources("USB?*::INSTR"))
        inst = rm.open_resource(args["resource"])
        inst.timeout = 2000
        idn = inst.query("*IDN?")
        inst.close()
        return {"found": found, "idn": idn}
    finally:
        rm.close()


@scenario
def gui_browser(args) -> dict:
    """The console's main window lists a device plugged while it runs in its device browser."""
    import tempfile

    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    import app.sim
    from app.ui.main_window import MainWindow
    from app.ui.settings import Settings

    application = QApplication.instance() or QApplication([])
    backend = system_backend()
    with tempfile.TemporaryDirectory() as config:
        settings = Settings(QSettings(f"{config}/settings.ini", QSettings.Format.IniFormat))
        window = MainWindow(settings, backend_factories={"usb": lambda: backend, "virtual": app.sim.backend},
                            discovery_interval_ms=100)

        def listed() -> list[str]:
            return sorted(ref.resource for ref in window.browser.devices("usb"))

        def wait_for(count: int, timeout_ms: int = 8000) -> list[str]:
            """Run the event loop until the browser's USB group lists ``count`` devices."""
            loop = QEventLoop()

            def check(_snapshot) -> None:
                if len(listed()) == count:
                    loop.quit()

            window.discovery.snapshot.connect(check)  # after the window's own slot, which fills the browser
            QTimer.singleShot(timeout_ms, loop.quit)
            if len(listed()) != count:
                loop.exec()
            window.discovery.snapshot.disconnect(check)
            if len(listed()) != count:
                raise AssertionError(f"the browser lists {listed()}, not {count} USB devices")
            return listed()

        window.show()
        window.start()
        try:
            first = wait_for(args["count"])
            step("listed", resources=first)
            second = wait_for(args["count"] + 1)
        finally:
            stopped = window.shutdown(timeout_ms=5000)
            window.close()
            application.processEvents()
    return {"first": first, "second": second, "stopped": stopped}


def main(argv: list[str]) -> int:
    name, raw_args = argv[1], json.loads(argv[2]) if len(argv) > 2 else {}
    try:
        result = SCENARIOS[name](raw_args)
    except Exception as exc:  # reported to the test, which shows the traceback
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        traceback.print_exc()
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
