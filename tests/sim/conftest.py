"""Fixtures for the virtual instrument tests: a bus, the devices on it, pyusb handles with raw USBTMC."""

from __future__ import annotations

import pytest
from support.rawtmc import RawTmc, open_pyusb

from app.sim import ManualClock, VirtualBus
from app.sim.pyusb_backend import VirtualBackend
from app.sim.sam7 import Sam7Counter
from app.sim.scpi_device import VirtualLoopback


@pytest.fixture(autouse=True)
def _threads_end_with_their_test(no_thread_left_behind):
    yield


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
