"""Fixtures for the virtual instrument tests: a bus, the devices on it, pyusb handles with raw USBTMC."""

from __future__ import annotations

import threading

import pytest
from sim_helpers import RawTmc, open_pyusb

from app.sim import ManualClock, VirtualBus
from app.sim.pyusb_backend import VirtualBackend
from app.sim.sam7 import Sam7Counter
from app.sim.scpi_device import VirtualLoopback


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in left:
        thread.join(timeout=2)
    left = [t for t in left if t.is_alive()]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def clock():
    return ManualClock(1000.0)


@pytest.fixture
def bus():
    return VirtualBus()


@pytest.fixture
def backend(bus):
    return VirtualBackend(bus)


@pytest.fixture
def sam7(bus, clock):
    device = Sam7Counter(clock=clock)
    bus.plug(device)
    return device


@pytest.fixture
def loopback(bus, clock):
    device = VirtualLoopback(clock=clock)
    bus.plug(device)
    return device


@pytest.fixture
def tmc(backend, sam7):
    return RawTmc(open_pyusb(backend, 0x0001))


@pytest.fixture
def scpi(backend, loopback):
    return RawTmc(open_pyusb(backend, 0x0002), timeout_ms=2000)
