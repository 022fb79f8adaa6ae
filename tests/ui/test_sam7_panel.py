"""The SAM7 counter demo panel, on a virtual bus whose clock the test moves (so debounce timing is exact)."""

import pytest
from PySide6.QtCore import QPoint, Qt
from support.ui import open_from_browser, transcript_has, wait_idle

import app.sim
from app.sim.clock import ManualClock
from app.sim.sam7 import COUNT_MAX, Sam7Counter
from app.ui.sam7_panel import DEMO, check_param


@pytest.fixture
def clock():
    return ManualClock(100.0)


@pytest.fixture
def manual_backend(clock):
    return app.sim.backend(app.sim.default_bus(clock))


@pytest.fixture
def manual_window(qtbot, manual_backend, settings):
    """The real window on a virtual bus with a manual clock (no USB access)."""
    from support.ui import no_usb

    from app.ui.main_window import MainWindow

    win = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: manual_backend},
                     discovery_interval_ms=100)
    qtbot.addWidget(win)
    win.resize(1200, 760)
    win.show()
    win.start()
    yield win
    assert win.shutdown(timeout_ms=5000)


@pytest.fixture
def board(manual_backend):
    return manual_backend.bus.find(kind=Sam7Counter)


@pytest.fixture
def panel(manual_window, qtbot):
    tab = open_from_browser(manual_window, qtbot)
    qtbot.waitUntil(lambda: tab.panel("sam7Panel") is not None, timeout=2000)
    panel = tab.panel("sam7Panel")
    panel.set_poll_interval(100)
    tab.panels.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: panel.isVisible() and panel.count is not None, timeout=3000)
    panel.tab = tab
    return panel


def click_sw1(qtbot, view, clock, hold_s):
    center = view.sw1_rect().center()
    pos = QPoint(int(center.x()), int(center.y()))
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=pos)
    clock.advance(hold_s)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=pos)


# --- no Qt needed ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, value, problem", [
    ("1200", 1200, ""), ("-10000", -10000, ""), (" +10000 ", 10000, ""),
    ("10001", None, "out of range"), ("-20000", None, "out of range"),
    ("12.5", None, "whole number"), ("#H10", None, "whole number"), ("", None, "empty"),
])
def test_param_fields_are_checked_like_the_firmware(text, value, problem):
    got, why = check_param(text, "n1")
    assert got == value and (problem in why if problem else why == "")


# --- the panel ---------------------------------------------------------------------------------


def test_the_panel_is_there_for_the_sam7_only(manual_window, qtbot):
    sam7 = open_from_browser(manual_window, qtbot)
    qtbot.waitUntil(lambda: sam7.panel("sam7Panel") is not None, timeout=2000)
    assert sam7.panels.tabText(sam7.panels.indexOf(sam7.panel("sam7Panel"))) == "SAM7 counter"
    assert sam7.panel("sam7Panel").virtual
    loop = open_from_browser(manual_window, qtbot, "Loopback")
    assert loop.panel("sam7Panel") is None and loop.panel("statusView") is not None


def test_only_a_virtual_board_gets_the_picture_and_the_pulse_source(manual_window, manual_backend):
    from app.ui.browser import DeviceRef
    from app.ui.device_panels import virtual_model

    resource = "USB0::0x1209::0x0001::SAM7-0001::INSTR"
    assert virtual_model(DeviceRef("usb", resource), manual_window.backends) is None, "a real board's inside is out of reach"
    lookup = virtual_model(DeviceRef("virtual", resource), manual_window.backends, Sam7Counter)
    assert lookup() is manual_backend.bus.find(kind=Sam7Counter)


def test_the_count_follows_sw1_and_respects_the_debounce(panel, board, clock, qtbot):
    view = panel.board_view
    qtbot.waitUntil(view.isVisible, timeout=2000)
    click_sw1(qtbot, view, clock, 0.020)  # 20 ms: shorter than the 30 ms filter
    clock.advance(0.1)
    assert board.count == 0
    with qtbot.waitSignal(panel.count_changed, timeout=3000, check_params_cb=lambda count: count == 1):
        click_sw1(qtbot, view, clock, 0.050)  # 50 ms: a hit
        clock.advance(0.1)
    assert panel.count_label.text() == "1"
    end = board.pulse_train(rate_hz=10, count=3)
    board.feed_edges([(end + 0.1, 0), (end + 0.11, 1)])  # a 10 ms glitch after the train: ignored
    clock.set(end + 0.5)
    qtbot.waitUntil(lambda: panel.count == 4, timeout=3000)
    panel.reset_button.click()
    qtbot.waitUntil(lambda: panel.count == 0, timeout=3000)
    assert transcript_has(panel.console, "sent", "COUNT:RESET")


def test_the_pulse_source_shows_pulses_sent_against_pulses_counted(panel, board, clock, qtbot):
    source = panel.pulse_source
    source.rate.setValue(10)
    source.low.setValue(20)  # every pulse is shorter than the filter
    assert source.start()
    assert not panel.board_view.sw1_enabled, "the source owns SW1's input while it runs"
    for _ in range(10):
        clock.advance(0.1)
        qtbot.waitUntil(lambda: source.last_edge_s > clock.now() + 0.1, timeout=2000)
    source.stop()
    clock.advance(0.5)
    source.update_label()
    pulses, _ = source.plan.sent(clock.now())
    assert pulses >= 10 and board.count == 0
    assert f"sent {pulses} pulses · counted 0 · filtered out {pulses}" in source.sent_label.text()

    source.rate.setValue(5)
    source.low.setValue(50)  # 150 ms high: room for a 5 ms blip with 30 ms of steady input on each side
    source.glitch.setChecked(True)  # the blips are filtered out too
    assert source.start()
    assert "merge" not in source.problem_label.text()
    for _ in range(10):
        clock.advance(0.1)
        qtbot.waitUntil(lambda: source.last_edge_s > clock.now() + 0.1, timeout=2000)
    source.stop()
    clock.advance(0.5)
    source.update_label()
    pulses, glitches = source.plan.sent(clock.now())
    assert glitches == pulses and board.count == pulses
    qtbot.waitUntil(lambda: panel.count == pulses, timeout=3000)
    assert panel.board_view.sw1_enabled

    source.rate.setValue(10)  # 50 ms high phases: a blip in the middle leaves 22.5 ms on each side
    assert source.start()
    assert "merge" in source.problem_label.text()
    source.stop()


def test_invalid_params_are_refused_and_a_forced_one_shows_exe(panel, qtbot):
    panel.param1.setText("20000")
    assert not panel.set_button.isEnabled() and panel.force_button.isEnabled()
    assert "out of range" in panel.param_message.text() and "EXE" in panel.param_message.text()
    sent_before = [e.text for e in panel.console.transcript.entries() if e.kind == "sent"]
    assert panel.set_params() == 0, "refused in the UI"
    assert [e.text for e in panel.console.transcript.entries() if e.kind == "sent"] == sent_before
    view = panel.status_view
    qtbot.mouseClick(panel.force_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool((view.state["ESR"].value or 0) & 0x10), timeout=3000)  # EXE
    assert transcript_has(panel.console, "sent", "PARAM:SET 20000,0")
    assert transcript_has(panel.console, "error", "EXE")
    assert panel.mini["ESR"][4].isChecked(), "the status at a glance shows it too"

    panel.param1.setText("1200")
    panel.param2.setText("-35")
    assert panel.set_button.isEnabled() and not panel.force_button.isEnabled()
    panel.set_button.click()
    qtbot.waitUntil(lambda: panel.params_text == "1200, -35", timeout=3000)


def test_the_ready_indicator_shows_what_the_board_reports(panel, board, clock, qtbot):
    panel.on_button.click()
    qtbot.waitUntil(lambda: panel.indicator == "ON", timeout=3000)
    assert board.leds().ready
    panel.pulse_button.click()  # USB488 INDICATOR_PULSE: toggles for 500 ms of board time
    qtbot.waitUntil(lambda: panel.indicator == "OFF", timeout=3000)
    clock.advance(0.6)
    qtbot.waitUntil(lambda: panel.indicator == "ON", timeout=3000)
    panel.off_button.click()
    qtbot.waitUntil(lambda: panel.indicator == "OFF" and not board.leds().ready, timeout=3000)


def test_the_count_stops_at_30000_and_says_so(panel, board, clock, qtbot):
    end = board.pulse_train(rate_hz=10, count=COUNT_MAX + 2)
    clock.set(end + 1)
    qtbot.waitUntil(lambda: panel.count == COUNT_MAX and panel.overflow, timeout=5000)
    assert "Overflow" in panel.overflow_label.text() and "Hits were lost" in panel.overflow_label.text()
    assert "COUNT_OVERFLOW" in panel.flags_text
    panel.reset_button.click()
    qtbot.waitUntil(lambda: panel.count == 0 and not panel.overflow, timeout=3000)
    assert panel.overflow_label.text() == ""


def test_busy_and_debug_flags_are_shown_decoded(panel, qtbot):
    panel.busy_button.click()
    panel.flags_button.click()
    qtbot.waitUntil(lambda: panel.busy_text == "NO" and bool(panel.flags_text), timeout=3000)
    assert "USB_CONFIGURED" in panel.flags_text and panel.flags_text.startswith("#H")


def test_the_demo_script_walks_the_command_set_with_the_status_view_following(panel, qtbot):
    panel.demo_step_ms = 0
    view = panel.status_view
    with qtbot.waitSignal(panel.demo_finished, timeout=15000) as blocker:
        qtbot.mouseClick(panel.demo_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [True]
    console = panel.console
    notes = [e.text for e in console.transcript.entries() if e.kind == "note" and e.text.startswith("demo ")]
    assert len(notes) == len(DEMO) and notes[0].startswith(f"demo 1/{len(DEMO)}: reset")
    tagged = {e.tag for e in console.transcript.entries() if e.tag.startswith("demo ")}
    assert len(tagged) == sum(step.mode != "control" for step in DEMO), "each line sent is tagged with its step"
    assert transcript_has(console, "sent", "PARAM:SET 20000,0") and transcript_has(console, "sent", "FOO:BAR")
    # The status view followed: ESB seen in the status byte, ESR read with the errors, then cleared.
    assert any(value & 0x20 for _, value in view.history.samples)
    assert view.history.errors and "CME" in view.history.errors[-1][1] and "EXE" in view.history.errors[-1][1]
    # A late SRQ notification may still show ESB; the next live poll of the status byte has it clear.
    qtbot.waitUntil(lambda: view.state["STB"].how == "polled" and view.state["STB"].value & 0x20 == 0, timeout=3000)
    assert view.state["ESE"].value == 0 and view.state["SRE"].value == 0
    # The SRQ notification reaches the monitor on its own schedule: wait for it, not for time.
    qtbot.waitUntil(lambda: window_srq_total(panel) >= 1, timeout=5000)  # the errors raised a service request
    wait_idle(qtbot, panel.tab)


def window_srq_total(panel):
    return panel.monitor.total if panel.monitor is not None else 0
