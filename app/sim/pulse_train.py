"""A pulse train for the virtual SAM7's SW1 input: the planner behind the SAM7 panel's pulse
source, which feeds its edges to :meth:`app.sim.sam7.Sam7Counter.feed_edges` as the device
clock moves on. Stdlib only, like the device models; times are device-clock seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PulsePlan:
    """Low-going pulses on SW1's input, scheduled a little ahead of device time.

    Each period starts with the input pulled low for ``low_ms``; with ``glitch_ms`` set, the
    high phase gets a short low blip in its middle. ``schedule(now_s)`` returns the edges of
    every pulse that starts before ``now_s + lookahead_s`` and has not been returned yet.
    """

    rate_hz: float
    low_ms: float
    glitch_ms: float = 0.0
    lookahead_s: float = 0.25
    next_fall_s: float | None = None
    falls: list[tuple[float, bool]] = field(default_factory=list)  # (time of each pulse, with a glitch)

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    def problem(self) -> str:
        """Why these settings make no pulse train ("" when they do)."""
        if not 0 < self.rate_hz <= 100:
            return "the rate must be above 0 and at most 100 Hz"
        if not 0 < self.low_ms < self.period_s * 1000:
            return f"the pulse must be shorter than the period ({self.period_s * 1000:.0f} ms)"
        if self.glitch_ms and self.glitch_ms >= self.period_s * 1000 - self.low_ms:
            return "the glitch must fit in the pulse's high phase"
        return ""

    def schedule(self, now_s: float, earliest_s: float) -> list[tuple[float, int]]:
        """Edges to feed now; ``earliest_s`` is the first time the input accepts (no edges before it)."""
        if self.next_fall_s is None or self.next_fall_s < earliest_s:
            self.next_fall_s = earliest_s
        edges: list[tuple[float, int]] = []
        low_s, glitch_s = self.low_ms / 1000, self.glitch_ms / 1000
        while self.next_fall_s < now_s + self.lookahead_s:
            fall = self.next_fall_s
            rise = fall + low_s
            edges += [(fall, 0), (rise, 1)]
            if glitch_s:
                blip = rise + (self.period_s - low_s - glitch_s) / 2
                edges += [(blip, 0), (blip + glitch_s, 1)]
            self.falls.append((fall, bool(glitch_s)))
            self.next_fall_s = fall + self.period_s
        return edges

    def sent(self, now_s: float) -> tuple[int, int]:
        """(pulses, glitches) whose falling edge has happened by ``now_s``."""
        pulses = glitches = 0
        for fall, glitch in self.falls:
            if fall <= now_s:
                pulses += 1
                glitches += glitch
        return pulses, glitches
