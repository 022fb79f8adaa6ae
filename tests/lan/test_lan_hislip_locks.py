"""HiSLIP locks (IVI-6.1 AsyncLock, AsyncLockInfo) between sessions on the virtual HiSLIP server:
exclusive and shared, a timeout, a release, and the locks of a connection that goes."""

from __future__ import annotations

import threading

import pytest

from app.lan import open_session
from app.lan.hislip import LockInfo, LockRefusedError, LockTimeoutError
from app.usbtmc.errors import UsageError

GENEROUS_MS = 30000  # a wait that ends when the lock is released, long before this


@pytest.fixture
def hislip(lan):
    resource = next(e.resource for e in lan.resources if e.protocol == "HiSLIP" and "Loopback" in e.label)
    sessions = []

    def connect():
        session = open_session(resource, timeout_ms=3000)
        sessions.append(session)
        return session

    yield connect
    for session in sessions:
        session.close()


def test_the_exclusive_lock_keeps_others_out_until_released(hislip):
    a, b = hislip(), hislip()
    assert a.lock() == "exclusive"
    assert b.lock_info() == LockInfo(exclusive=True, holders=1)
    with pytest.raises(LockTimeoutError, match="another client holds it") as caught:
        b.lock(timeout_ms=0)
    assert caught.value.usable
    with pytest.raises(LockTimeoutError):
        b.lock(timeout_ms=0, shared_key="bench")
    assert b.query("*IDN?").startswith("TMC Console")  # the session is fine after a refusal
    assert a.unlock() == "exclusive"
    assert b.lock(timeout_ms=0) == "exclusive"
    assert a.lock_info() == LockInfo(exclusive=True, holders=1)


def test_a_waiting_request_is_granted_when_the_holder_releases(hislip):
    a, b = hislip(), hislip()
    a.lock()
    a.write("*CLS")
    granted = []
    waiter = threading.Thread(target=lambda: granted.append(b.lock(timeout_ms=GENEROUS_MS)))
    waiter.start()
    assert a.unlock() == "exclusive"  # after the server has handled *CLS, as IVI-6.1 asks
    waiter.join(GENEROUS_MS / 1000)
    assert granted == ["exclusive"]


def test_the_locks_of_a_connection_that_goes_are_released(hislip):
    a, b = hislip(), hislip()
    a.lock()
    granted = []
    waiter = threading.Thread(target=lambda: granted.append(b.lock(timeout_ms=GENEROUS_MS)))
    waiter.start()
    a.close()
    waiter.join(GENEROUS_MS / 1000)
    assert granted == ["exclusive"]


def test_shared_locks_share_one_key_and_a_sharer_may_take_the_exclusive_lock(hislip):
    a, b, c = hislip(), hislip(), hislip()
    assert a.lock(shared_key="bench") == "shared"
    assert b.lock(shared_key="bench") == "shared"
    assert c.lock_info() == LockInfo(exclusive=False, holders=2)
    with pytest.raises(LockTimeoutError):
        c.lock(timeout_ms=0, shared_key="another key")
    with pytest.raises(LockTimeoutError):
        c.lock(timeout_ms=0)  # the exclusive lock while others share
    assert a.lock(timeout_ms=0) == "exclusive"  # nested, as VISA locks are
    assert c.lock_info() == LockInfo(exclusive=True, holders=2)
    assert a.unlock() == "exclusive"
    assert a.unlock() == "shared"
    assert b.unlock() == "shared"
    assert c.lock_info() == LockInfo(exclusive=False, holders=0)


def test_invalid_requests_are_refused_and_the_session_stays_usable(hislip):
    a = hislip()
    with pytest.raises(LockRefusedError, match="holds no lock"):
        a.unlock()
    a.lock()
    with pytest.raises(LockRefusedError, match="holds it already"):
        a.lock()
    with pytest.raises(UsageError):
        a.lock(shared_key="clé")
    with pytest.raises(UsageError):
        a.lock(timeout_ms=-1)
    assert a.query("*IDN?").startswith("TMC Console")
    assert a.unlock() == "exclusive"
