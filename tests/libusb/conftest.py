"""The ``libusb`` layer: the whole stack over the real libusb, the virtual instruments served by umockdev.

Two processes per test besides pytest: the bus (device side, under the Python that
has PyGObject) and the host (the code under test, started with LD_PRELOAD and
UMOCKDEV_DIR, which a process must have from its first instruction, so pytest itself
never talks to libusb here). Host code lives in ``libusb_host.py`` as named scenarios that
print JSON; the tests assert on it. Every process a test starts is gone when it ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.sim.umockdev import launcher

ROOT = Path(__file__).resolve().parents[2]
HOST = Path(__file__).with_name("libusb_host.py")
HOST_TIMEOUT_S = 60


@pytest.fixture(scope="session")
def umockdev_available() -> None:
    problem = launcher.check()
    if problem:
        pytest.skip(f"umockdev cannot serve the virtual instruments here: {problem}")


@pytest.fixture
def make_bus(umockdev_available):
    """``make_bus(["sam7", ...])``: a fresh bus process; all of them end with the test."""
    buses: list[launcher.UmockdevBus] = []

    def make(devices=("sam7", "loopback"), **kwargs) -> launcher.UmockdevBus:
        bus = launcher.UmockdevBus(devices, **kwargs)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()
        assert bus._process.poll() is not None, "the bus process outlived its test"
        assert not os.path.exists(bus.umockdev_dir), f"the testbed {bus.umockdev_dir} was left behind"


@pytest.fixture
def bus(make_bus) -> launcher.UmockdevBus:
    return make_bus()


def _host_env(bus: launcher.UmockdevBus, extra: dict | None) -> dict:
    env = bus.environment()
    env.pop("TMC_LIBUSB", None)  # scenarios choose their libusb explicitly
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


class HostProcess:
    """An interactive host scenario: it reports steps as JSON lines and waits for "go" between them."""

    def __init__(self, bus, scenario: str, args, env: dict | None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HOST), scenario, json.dumps(args)], cwd=ROOT, env=_host_env(bus, env),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )

    def step(self) -> dict:
        """The next step the scenario reports (it is waiting for :meth:`go` afterwards)."""
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the host scenario ended early:\n{self.proc.stderr.read()}")
        message = json.loads(line)
        if "error" in message:
            raise AssertionError(f"the host scenario failed: {message['error']}\n{self.proc.stderr.read()}")
        return message

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout_s: float = HOST_TIMEOUT_S) -> dict:
        out, err = self.proc.communicate(timeout=timeout_s)
        return _parse(out, err, self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def _parse(out: str, err: str, returncode: int) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if returncode != 0 or not lines:
        raise AssertionError(f"the host scenario failed (exit {returncode}):\n{out}\n{err}")
    message = json.loads(lines[-1])
    if "error" in message:
        raise AssertionError(f"the host scenario failed: {message['error']}\n{err}")
    return message


@pytest.fixture
def host():
    """``host.run(bus, "scenario", args)`` -> its JSON result; ``host.start(...)`` -> :class:`HostProcess`."""
    started: list[HostProcess] = []

    class Runner:
        @staticmethod
        def run(bus, scenario: str, args=None, env: dict | None = None, timeout_s: float = HOST_TIMEOUT_S) -> dict:
            proc = subprocess.run(
                [sys.executable, str(HOST), scenario, json.dumps(args or {})], cwd=ROOT, env=_host_env(bus, env),
                capture_output=True, text=True, timeout=timeout_s,
            )
            return _parse(proc.stdout, proc.stderr, proc.returncode)

        @staticmethod
        def start(bus, scenario: str, args=None, env: dict | None = None) -> HostProcess:
            process = HostProcess(bus, scenario, args or {}, env)
            started.append(process)
            return process

    yield Runner
    for process in started:
        process.kill()
