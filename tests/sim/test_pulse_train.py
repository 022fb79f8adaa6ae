"""The pulse-train planner behind the SAM7 panel's pulse source, alone and fed to the virtual board."""

import pytest

from app.sim.clock import ManualClock
from app.sim.pulse_train import PulsePlan
from app.sim.sam7 import GLITCH_FILTER_US, Sam7Counter


def test_a_pulse_plan_schedules_whole_pulses_a_little_ahead():
    plan = PulsePlan(rate_hz=10, low_ms=40, glitch_ms=5, lookahead_s=0.25)
    edges = plan.schedule(now_s=5.0, earliest_s=5.02)
    falls = [t for t, level in edges if level == 0]
    assert falls[0] == pytest.approx(5.02) and len(plan.falls) == 3  # pulses starting before 5.25
    # Each pulse: low for 40 ms, then a 5 ms blip in the middle of the 60 ms high phase.
    assert [round(t - 5.02, 4) for t, _ in edges[:4]] == [0.0, 0.04, 0.0675, 0.0725]
    assert plan.schedule(now_s=5.0, earliest_s=5.02) == [], "nothing twice"
    assert plan.sent(5.13) == (2, 2)
    with pytest.raises(ValueError, match="shorter than the period"):
        PulsePlan(rate_hz=25, low_ms=40)


@pytest.mark.parametrize("settings, problem", [
    ({"rate_hz": 0, "low_ms": 10}, "above 0 and at most 100 Hz"),
    ({"rate_hz": 150, "low_ms": 1}, "above 0 and at most 100 Hz"),
    ({"rate_hz": 10, "low_ms": 0}, "shorter than the period (100 ms)"),
    ({"rate_hz": 10, "low_ms": 40, "glitch_ms": 60}, "fit in the pulse's high phase"),
])
def test_settings_that_make_no_pulse_train_are_refused_in_words(settings, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        PulsePlan(**settings)


def test_no_edge_comes_before_the_input_accepts_one_and_the_train_keeps_its_period():
    plan = PulsePlan(rate_hz=20, low_ms=10, lookahead_s=0.1)
    assert plan.schedule(now_s=1.0, earliest_s=1.5) == []  # the input is busy until 1.5 s: beyond the lookahead
    first = plan.schedule(now_s=1.45, earliest_s=1.5)
    assert first[0][0] == pytest.approx(1.5) and all(t >= 1.5 for t, _ in first)
    later = plan.schedule(now_s=1.6, earliest_s=1.0)
    falls = [t for t, level in first + later if level == 0]
    assert [round(b - a, 6) for a, b in zip(falls, falls[1:])] == [0.05] * (len(falls) - 1)
    assert plan.sent(1.49) == (0, 0) and plan.sent(10.0) == (len(falls), 0)


def test_the_virtual_board_counts_the_pulses_and_filters_the_glitches():
    clock = ManualClock(100.0)
    board = Sam7Counter(clock=clock)
    filter_ms = GLITCH_FILTER_US / 1000
    # 5 Hz, low for 50 ms (longer than the filter), a 5 ms glitch in each 150 ms high phase.
    plan = PulsePlan(rate_hz=5, low_ms=50, glitch_ms=5, lookahead_s=0.25)
    assert plan.low_ms > filter_ms and plan.glitch_ms < filter_ms
    start = board.count
    for _ in range(20):  # two seconds of device time, fed as the panel's timer does
        now = clock.now()
        board.feed_edges(plan.schedule(now, now + 0.02))
        clock.advance(0.1)
    pulses, glitches = plan.sent(clock.now() - 0.1)  # the last pulse has had time to pass the filter
    assert pulses >= 9 and glitches == pulses
    assert board.count - start == pulses
