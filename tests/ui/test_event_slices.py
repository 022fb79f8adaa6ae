"""A burst of queued commands does not starve the GUI's timers: the session hands its events to
the GUI in slices, and the event loop runs between them."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer

from app.session.events import Reply
from app.ui import worker


def test_a_burst_of_answers_leaves_the_timers_running(sam7_tab, qtbot):
    session, console = sam7_tab.session, sam7_tab.console
    console.check_combo.setCurrentIndex(console.check_combo.findData("off"))
    qtbot.waitUntil(lambda: session.outstanding == 0, timeout=3000)
    ids = [console.submit_line("*IDN?", "query", remember=False) for _ in range(300)]
    # Keep the GUI thread from handling anything until the worker has answered every query, so
    # all their events wait in the queue at once (as when the GUI is slower than the device).
    deadline = time.monotonic() + 30
    while ids[-1] in session._flags._flags:
        assert time.monotonic() < deadline, "the worker did not answer the burst"
    order: list[str] = []
    timer = QTimer()
    timer.timeout.connect(lambda: order.append("tick"))
    timer.start(5)
    session.event.connect(lambda e: order.append("reply") if isinstance(e, Reply) else None)
    try:
        qtbot.waitUntil(lambda: session.outstanding == 0, timeout=30000)
    finally:
        timer.stop()
    replies = [i for i, what in enumerate(order) if what == "reply"]
    assert len(replies) == 300
    ticks_inside = [i for i, what in enumerate(order) if what == "tick" and replies[0] < i < replies[-1]]
    trace = "".join(what[0] for what in order)
    assert ticks_inside, f"no timer ran while the burst's replies were being shown: {trace[:400]}"
    assert worker.EVENT_SLICE_S <= 0.02
