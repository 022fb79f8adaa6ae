"""Fixtures for the quirk tests: a virtual bus carrying chosen quirky instruments.

Every test opens sessions with short timeouts, so a failure "as users reported it" (a
timeout, a hang avoided by the timeout) costs a fraction of a second.
"""

from __future__ import annotations

import pytest

from app.sim.bus import VirtualBus
from app.sim.pyusb_backend import VirtualBackend
from app.sim.quirky import model, plug_quirky
from app.usbtmc import Instrument, list_resources
from app.usbtmc.quirks import QuirkDatabase, shipped_entries

TIMEOUT_MS = 300


@pytest.fixture(autouse=True)
def _threads_end_with_their_test(no_thread_left_behind):
    yield


@pytest.fixture
def shipped_db():
    """The shipped database alone: a user's own quirks file must not change these tests."""
    return QuirkDatabase(entries=shipped_entries())


class QuirkyBus:
    """A virtual bus with some quirky instruments, its pyusb backend, and helpers to open them."""

    def __init__(self, keys, db):
        self.bus = VirtualBus()
        self.devices = dict(zip(keys, plug_quirky(self.bus, keys=keys)))
        self.backend = VirtualBackend(self.bus)
        self.db = db

    def device(self, key: str):
        return self.devices[key]

    def resource(self, key: str) -> str:
        entry = model(key)
        for info in list_resources(self.backend, probe=False, db=self.db):
            if info.vid == entry.vid and (info.pid == entry.pid or info.firmware_mode_pid == entry.pid):
                if info.serial == getattr(self.devices[key], "serial", info.serial) or info.firmware_mode_pid:
                    return info.resource
        raise AssertionError(f"{key} is not listed")

    def open(self, key: str, *, timeout_ms: int = TIMEOUT_MS, **kwargs) -> Instrument:
        kwargs.setdefault("quirk_db", self.db)
        return Instrument(self.resource(key), backend=self.backend, timeout_ms=timeout_ms, **kwargs)


@pytest.fixture
def quirky(shipped_db):
    """``quirky("rigol-ds1000", ...)`` builds a bus with those instruments."""
    return lambda *keys: QuirkyBus(keys, shipped_db)
