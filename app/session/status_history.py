"""The status byte over time, and what happened meanwhile: the model the status view's
history strip draws. No Qt here.
"""

from __future__ import annotations

from collections import deque

# A gap between two reads of the status byte longer than this is unread time: longer than the
# slowest live polling (2 s) allows, so it means the polling stopped or was held off.
UNREAD_GAP_S = 3.0


class StatusHistory:
    """The status byte over time, and what happened meanwhile (no Qt). Times are wall-clock seconds."""

    def __init__(self, max_samples: int = 20000) -> None:
        self.samples: deque[tuple[float, int]] = deque(maxlen=max_samples)  # (t, stb) at each change
        self.last_seen = 0.0  # when the status byte was last observed (value unchanged since the last sample)
        self.commands: deque[tuple[float, str]] = deque(maxlen=2000)
        self.srqs: deque[tuple[float, int]] = deque(maxlen=2000)
        self.errors: deque[tuple[float, str]] = deque(maxlen=2000)
        self.changes = 0  # bumped when a value changes or a mark is added (not on a repeated value)
        # (from, to): stretches longer than UNREAD_GAP_S in which nothing read the status byte.
        # The value before such a stretch is not known to have lasted through it.
        self.unread: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def observe(self, t: float, stb: int) -> None:
        if self.last_seen and t - self.last_seen > UNREAD_GAP_S:
            self.unread.append((self.last_seen, t))
            self.changes += 1
        if not self.samples or self.samples[-1][1] != stb or t < self.samples[-1][0]:
            self.samples.append((t, stb))
            self.changes += 1
        self.last_seen = max(self.last_seen, t)

    def command(self, t: float, label: str) -> None:
        self.commands.append((t, label))
        self.changes += 1

    def srq(self, t: float, stb: int) -> None:
        self.srqs.append((t, stb))
        self.observe(t, stb)

    def error(self, t: float, text: str) -> None:
        self.errors.append((t, text))
        self.changes += 1

    def segments(self, start: float, end: float) -> list[tuple[float, float, int]]:
        """(from, to, status byte) for each stretch of one value between ``start`` and ``end``.

        The last value lasts until it was last observed (``last_seen``), not until now: when
        nobody reads the status byte, the strip shows nothing rather than a guess.
        """
        samples = list(self.samples)
        unread = [(a, b) for a, b in self.unread if b > start and a < end]
        out = []
        for i, (t, value) in enumerate(samples):
            t_next = samples[i + 1][0] if i + 1 < len(samples) else self.last_seen
            t0, t1 = max(t, start), min(t_next, end)
            if t1 < t0:
                continue
            # Cut out the time nobody read the byte: unread time is blank, not the old value.
            cut = False
            for a, b in unread:
                if a < t1 and b > t0:
                    if a > t0:
                        out.append((t0, a, value))
                    t0, cut = max(t0, b), True
            if t1 > t0 or (t1 == t0 and not cut):  # a single read is a point; what a gap leaves is not
                out.append((t0, t1, value))
        return out
