"""Time sources for virtual devices.

Every timed behaviour of a device model (the SW1 glitch filter, the 500 ms indicator
pulse, the 1 Hz heartbeat, the USB LED blinking on bus activity, delayed answers) is
computed from the device's clock when it is read, so no thread has to run for it.
Tests use :class:`ManualClock` and move time explicitly.

Standard library only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of time in seconds.

    ``realtime`` tells a waiting adapter whether the clock moves by itself (so a
    device deadline can be waited for with a real timeout) or only when told to
    (a :class:`ManualClock`, which notifies its listeners instead).
    """

    realtime: bool

    def now(self) -> float:
        """The current time in seconds (an arbitrary origin; only differences matter)."""
        ...


class MonotonicClock:
    """Wall time from :func:`time.monotonic`: what a running instrument sees."""

    realtime = True

    def now(self) -> float:
        return time.monotonic()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Real time needs no notifications; accepted so devices treat every clock alike."""

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """See :meth:`add_listener`."""


class ManualClock:
    """A clock that moves only when :meth:`advance` or :meth:`set` is called.

    Listeners (devices) are called after every move so that anything waiting on a
    device condition re-evaluates its deadlines. Thread-safe.
    """

    realtime = False

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = float(start_s)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        with self._lock:
            return self._now_s

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0); returns the new time in seconds."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now_s += seconds
            now, listeners = self._now_s, list(self._listeners)
        for listener in listeners:
            listener()
        return now

    def set(self, now_s: float) -> None:
        """Move time forward to ``now_s`` seconds."""
        self.advance(max(0.0, now_s - self.now()))

    def add_listener(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)
