"""Start a umockdev bus with virtual instruments and run programs against it.

This side runs under the project's Python (standard library only). The device
side needs PyGObject with the UMockdev typelib, which Linux distributions ship for
their own Python, so it runs as a separate process (:mod:`.server`) under the first
interpreter that has them. Programs started with :attr:`UmockdevBus.env` see the
virtual devices as real USB devices through the real libusb::

    with UmockdevBus(["sam7", "loopback"]) as bus:
        subprocess.run(["lsusb", "-v"], env=bus.env)
        gone = bus.unplug(bus.devices[0]["key"])

Only Linux: umockdev emulates the Linux kernel's sysfs and usbdevfs.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from .server import DEFAULT_KINDS

PRELOAD = "libumockdev-preload.so.0"
# libusb with udev support (the distribution's) receives umockdev's hot-plug uevents; the
# libusb wheel bundled through libusb-package listens for kernel netlink messages instead,
# which umockdev cannot fake. Programs that enumerate while devices come and go need the former.
LIBUSB_ENV = {"TMC_LIBUSB": "system"}
INSTALL_HINT = "on Debian/Ubuntu: sudo apt install umockdev gir1.2-umockdev-1.0 python3-gi libusb-1.0-0"
_START_TIMEOUT_S = 30.0
_REQUEST_TIMEOUT_S = 60.0
_APP_DIR = Path(__file__).resolve().parents[2]  # the "app" package
EXIT_UNAVAILABLE = 3  # the bus process's exit status when umockdev cannot be used (server.py)


class SimUnavailable(RuntimeError):
    """The virtual instruments cannot be served to libusb here; the message says why and what to do."""


class BusError(RuntimeError):
    """The bus process refused a request or stopped answering."""


def _candidate_pythons() -> list[str]:
    override = os.environ.get("TMC_UMOCKDEV_PYTHON")
    if override:
        return [override]
    found = [sys.executable, "/usr/bin/python3", shutil.which("python3") or ""]
    unique: list[str] = []
    for path in found:
        if path and os.path.exists(path) and path not in unique:
            unique.append(path)
    return unique


class _Overlay:
    """A directory holding only a link to our ``app`` package.

    The server's interpreter imports ``app.sim`` from there and nothing else of the
    project's environment (whose compiled packages belong to another Python).
    """

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="tmc-umockdev-")
        os.symlink(_APP_DIR, os.path.join(self.path, "app"))

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _server_command(python: str, args: Sequence[str]) -> list[str]:
    # -E: ignore PYTHONPATH/PYTHONHOME meant for the project's Python; -s: no user site-packages.
    return [python, "-E", "-s", "-m", "app.sim.umockdev.server", *args]


_checked: tuple[str | None, str | None] | None = None


def find_server_python() -> str:
    """The interpreter that can run the device side (has gi + UMockdev), or :class:`SimUnavailable`."""
    global _checked
    if _checked is None:
        _checked = _probe()
    python, problem = _checked
    if python is None:
        raise SimUnavailable(problem or "umockdev is unavailable")
    return python


def _probe() -> tuple[str | None, str | None]:
    if not sys.platform.startswith("linux"):
        return None, "serving virtual instruments to libusb needs Linux (umockdev emulates the Linux kernel's USB interface)"
    if ctypes.util.find_library("umockdev-preload") is None:
        return None, f"umockdev is not installed ({PRELOAD} not found); {INSTALL_HINT}"
    overlay = _Overlay()
    problems = []
    try:
        for python in _candidate_pythons():
            try:
                result = subprocess.run(
                    _server_command(python, ["--check"]), cwd=overlay.path, capture_output=True, text=True, timeout=30
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                problems.append(f"{python}: {exc}")
                continue
            try:
                reply = json.loads(result.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                problems.append(f"{python}: {(result.stderr.strip().splitlines() or ['no answer'])[-1]}")
                continue
            if reply.get("event") == "ok":
                return python, None
            problems.append(f"{python}: {reply.get('error')}")
    finally:
        overlay.close()
    detail = "; ".join(problems) or "no Python 3 interpreter found"
    return None, f"no Python here can drive umockdev ({detail}); {INSTALL_HINT}"


def check() -> str | None:
    """None when virtual instruments can be served to libusb here, else why not and what to install."""
    try:
        find_server_python()
    except SimUnavailable as exc:
        return str(exc)
    return None


def _with_preload(env: dict[str, str]) -> dict[str, str]:
    preload = env.get("LD_PRELOAD", "")
    if PRELOAD not in preload.split():
        env["LD_PRELOAD"] = f"{PRELOAD} {preload}".strip()
    return env


def preload_env(umockdev_dir: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) plus what makes a process see the testbed."""
    env = _with_preload(dict(os.environ if base is None else base))
    env["UMOCKDEV_DIR"] = umockdev_dir
    return env


class UmockdevBus:
    """A running umockdev bus process with virtual instruments plugged in.

    ``devices`` names the models to plug at start (see :data:`.server.KINDS`, or
    ``package.module:callable``). Use as a context manager, or call :meth:`close`:
    it ends the bus process and removes its testbed directory.
    """

    def __init__(self, devices: Iterable[str] = DEFAULT_KINDS, *, python: str | None = None, trace: bool = False,
                 park_ms: int | None = None, extra_path: Sequence[str] = (), faults: Sequence[str] = (),
                 data_toggles: bool = False) -> None:
        self.python = python or find_server_python()
        kinds = list(devices)
        args = [arg for kind in kinds for arg in ("--device", kind)] or ["--device", "none"]
        args += [arg for spec in faults for arg in ("--fault", spec)]
        if data_toggles:
            args.append("--data-toggles")
        if trace:
            args.append("--trace")
        if park_ms is not None:
            args += ["--park-ms", str(park_ms)]
        self._overlay = _Overlay()
        # The bus process runs under the preload too (the testbed activates it by setting
        # UMOCKDEV_DIR inside): umockdev's uevent sender reads the fake sysfs through it.
        env = _with_preload(dict(os.environ))
        env.pop("UMOCKDEV_DIR", None)
        if extra_path:
            env["TMC_UMOCKDEV_EXTRA_PATH"] = os.pathsep.join(extra_path)
        self._lock = threading.Lock()
        self._replies: queue.Queue = queue.Queue()
        self._next_id = 0
        self._process = subprocess.Popen(
            _server_command(self.python, args), cwd=self._overlay.path, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self._reader = threading.Thread(target=self._read_replies, name="umockdev-bus-reader", daemon=True)
        self._reader.start()
        try:
            ready = self._replies.get(timeout=_START_TIMEOUT_S)
        except queue.Empty:
            self.close()
            raise BusError(f"the umockdev bus did not start within {_START_TIMEOUT_S:.0f} s") from None
        if ready is None or ready.get("event") != "ready":
            self.close()
            error = (ready or {}).get("error") or f"the bus process exited with status {self._process.returncode}"
            if self._process.returncode == EXIT_UNAVAILABLE:
                raise SimUnavailable(f"{error}; {INSTALL_HINT}")
            raise BusError(error)
        self.umockdev_dir: str = ready["umockdev_dir"]
        self.pid: int = ready["pid"]
        self.devices: list[dict] = ready["devices"]

    # --- what programs need ---

    @property
    def env(self) -> dict[str, str]:
        """This process's environment plus LD_PRELOAD/UMOCKDEV_DIR (and TMC_LIBUSB=system unless set)."""
        return self.environment()

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = preload_env(self.umockdev_dir, base)
        for name, value in LIBUSB_ENV.items():
            env.setdefault(name, value)
        return env

    # --- requests ---

    def _read_replies(self) -> None:
        for line in self._process.stdout:
            try:
                self._replies.put(json.loads(line))
            except ValueError:
                print(f"tmc sim: unexpected output from the bus: {line.rstrip()}", file=sys.stderr)
        self._replies.put(None)  # the process is gone

    def request(self, op: str, **fields) -> dict:
        """Send one request to the bus process and return its reply (raises :class:`BusError`)."""
        with self._lock:
            if self._process.poll() is not None:
                raise BusError("the umockdev bus process has exited")
            self._next_id += 1
            ident = self._next_id
            try:
                self._process.stdin.write(json.dumps({"id": ident, "op": op, **fields}) + "\n")
                self._process.stdin.flush()
            except (BrokenPipeError, OSError):
                raise BusError("the umockdev bus process has exited") from None
            try:
                reply = self._replies.get(timeout=_REQUEST_TIMEOUT_S)
            except queue.Empty:
                raise BusError(f"the umockdev bus did not answer {op!r}") from None
        if reply is None:
            raise BusError("the umockdev bus process has exited")
        if not reply.get("ok"):
            raise BusError(reply.get("error", f"{op} failed"))
        return reply

    def plug(self, kind: str, **options) -> dict:
        """Plug a new device of ``kind`` (constructor keyword ``options``); returns its description."""
        device = self.request("plug", kind=kind, options=options)["device"]
        self.devices.append(device)
        return device

    def unplug(self, key: str) -> dict:
        """Pull the device ``key`` (e.g. ``"1-1"``) off the bus."""
        device = self.request("unplug", key=key)["device"]
        self.devices = [d for d in self.devices if d["key"] != key]
        return device

    def stats(self, key: str) -> dict[str, int]:
        """URB counters of device ``key``: submitted, reaped, discarded, in_flight."""
        return self.request("stats", key=key)["stats"]

    def wait_in_flight(self, key: str, timeout_s: float = 10.0) -> bool:
        """Block until a host has a transfer in flight on device ``key``; False after ``timeout_s``."""
        return self.request("wait_in_flight", key=key, timeout_s=timeout_s)["in_flight"]

    def fault(self, key: str, spec: str) -> list[tuple[str, str]]:
        """Arm the fault ``spec`` (:func:`app.sim.faults.parse_fault_spec`; "clear" disarms all,
        "replug" plugs back a device an unplug fault took away) in device ``key``; returns the
        (kind, detail) of every fault that has fired there so far."""
        return [tuple(pair) for pair in self.request("fault", key=key, spec=spec)["fired"]]

    def call(self, key: str, method: str, *args, **kwargs):
        """Call a public method of the device model ``key`` inside the bus process; returns its result."""
        return self.request("call", key=key, method=method, args=list(args), kwargs=kwargs)["result"]

    # --- lifetime ---

    def close(self, timeout_s: float = 10.0) -> None:
        """End the bus process (closing its stdin asks it to clean up) and remove the overlay."""
        process = self._process
        if process.poll() is None:
            try:
                process.stdin.close()
            except OSError:
                pass
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if process.stdout:
            process.stdout.close()
        self._reader.join(timeout=timeout_s)
        self._overlay.close()

    def __enter__(self) -> UmockdevBus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(command: Sequence[str], devices: Iterable[str] = DEFAULT_KINDS, *, quiet: bool = False, trace: bool = False,
        faults: Sequence[str] = ()) -> int:
    """Run ``command`` against a fresh bus holding ``devices``; returns its exit status.

    ``faults``: fault specs (:func:`app.sim.faults.parse_fault_spec`) armed in every USBTMC
    device. Raises :class:`SimUnavailable` where umockdev cannot be used.
    """
    with UmockdevBus(devices, trace=trace, faults=faults) as bus:
        if not quiet:
            for device in bus.devices:
                print(f"tmc sim: {device['resource']}  {device['manufacturer']} {device['product']}"
                      f"  (bus {device['bus']:03d} device {device['address']:03d})", file=sys.stderr)
            for spec in faults:
                print(f"tmc sim: fault armed in every instrument: {spec}", file=sys.stderr)
        try:
            child = subprocess.Popen(list(command), env=bus.env)
        except FileNotFoundError:
            print(f"tmc sim: {command[0]}: command not found", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"tmc sim: {command[0]}: permission denied", file=sys.stderr)
            return 126
        while True:
            try:
                status = child.wait()
                break
            except KeyboardInterrupt:
                continue  # the terminal sent SIGINT to the child too; let it decide
        return 128 - status if status < 0 else status  # killed by a signal: the shell's convention
