"""Fixtures for the LAN sessions: the virtual LAN instruments on free ports of 127.0.0.1."""

from __future__ import annotations

import threading

import pytest

from app.sim.lan import serve


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in left:
        thread.join(timeout=3)
    left = [t for t in left if t.is_alive()]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def lan():
    servers = serve()
    yield servers
    servers.close()

