"""The status-register view against the virtual SAM7 and loopback, and the device profiles behind it."""

from support.ui import find_ref, open_from_browser, transcript_has, wait_idle

from app.session.device_profile import GENERIC, UNUSED, profile_for_idn
from app.session.events import Query, Write
from app.session.status_history import StatusHistory
from app.sim.sam7 import DebugFlag
from app.sim.usbtmc_device import EsrBit
from app.ui.history_strip import REPAINT_INTERVAL_MS, HistoryStrip
from app.ui.status_view import register_for_query

SAM7_IDN = "XYZ Company Ltd, SAM7-EK, 0, v1.0.001"


def board_of(backend):
    return backend.bus.find(vid=0x1209, pid=0x0001)


def status_view(tab):
    view = tab.panel("statusView")
    assert view is not None, "every instrument tab has a status view"
    return view


def show(qtbot, tab, view):
    tab.panels.setCurrentWidget(view)
    qtbot.waitUntil(view.isVisible, timeout=2000)


def qtbot_left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def sent_lines(tab):
    return [e.text for e in tab.console.transcript.entries() if e.kind == "sent"]


# --- profiles (no Qt needed) ---------------------------------------------------------------


def test_the_sam7_profile_is_data_matched_by_idn():
    profile = profile_for_idn(SAM7_IDN)
    assert profile.name == "SAM7 counter" and profile.panel == "sam7"
    assert profile.stb_bits[6][0] == "MSS" and profile.stb_bits[3][0] == UNUSED
    assert profile.esr_bits[1][0] == "RTL" and profile.esr_bits[5][0] == "CME"
    assert profile_for_idn("TMC Console,Virtual Loopback,LOOP-0001,1.0") is GENERIC
    assert profile_for_idn(None) is GENERIC
    assert GENERIC.stb_bits[2][0] == "EAV"


def test_the_sam7_debug_flags_match_the_device_model():
    register = profile_for_idn(SAM7_IDN).register("DEBUG:FLAGS")
    assert register.query == "DEBUG:FLAGS?" and register.width == 32
    named = {bit: name for bit, (name, _) in register.bits.items()}
    model = {flag.value.bit_length() - 1: flag.name for flag in DebugFlag}
    assert named == model
    value = DebugFlag.USB_CONFIGURED | DebugFlag.COUNT_OVERFLOW | DebugFlag.SRQ_SENT
    assert [name for _, name, _ in register.decode(value)] == ["SRQ_SENT", "COUNT_OVERFLOW", "USB_CONFIGURED"]
    assert register.group_of(3) == "events" and register.group_of(15) == "latched" and register.group_of(20) == "state"
    assert register.unnamed_bits(1 << 12 | 1 << 3) == [12]


def test_queries_are_recognised_only_alone():
    profile = profile_for_idn(SAM7_IDN)
    assert register_for_query(profile, Query(b"*esr?\n")) == "ESR"
    assert register_for_query(profile, Query(b"DEBUG:FLAGS?\n")) == "DEBUG:FLAGS"
    assert register_for_query(profile, Query(b"*CLS;*ESR?\n")) is None
    assert register_for_query(profile, Write(b"*ESR?\n")) is None


# --- the history strip --------------------------------------------------------------------


def test_the_history_keeps_changes_and_how_long_each_value_lasted():
    history = StatusHistory()
    for t, value in ((10.0, 0x00), (10.2, 0x00), (10.4, 0x60), (10.6, 0x60), (10.8, 0x00)):
        history.observe(t, value)
    assert list(history.samples) == [(10.0, 0x00), (10.4, 0x60), (10.8, 0x00)]
    assert history.segments(0, 20) == [(10.0, 10.4, 0x00), (10.4, 10.8, 0x60), (10.8, 10.8, 0x00)]
    assert history.segments(10.5, 20)[0] == (10.5, 10.8, 0x60)


def test_time_nobody_read_the_status_byte_is_blank_not_the_old_value(qtbot):
    """MSS and ESB read, then a minute and a half with nothing reading the byte, then #H00: the
    strip must not draw MSS and ESB set through that time (issue 15 item 7)."""
    history = StatusHistory()
    for t in (100.0, 100.2, 100.4):
        history.observe(t, 0x60)  # polled while the view was shown
    for t in (190.0, 190.2):
        history.observe(t, 0x00)  # the view shown again later
    segments = history.segments(0, 500)
    assert all(not (t0 < 150 < t1) for t0, t1, _ in segments), segments
    assert (100.0, 100.4, 0x60) in segments and segments[-1] == (190.0, 190.2, 0x00)
    strip = HistoryStrip(history)
    qtbot.addWidget(strip)
    strip.redraw(now=191.0)
    xs = [x for curve in strip.high.values() if curve.getData()[0] is not None for x in curve.getData()[0]]
    assert xs and max(xs) <= strip.x_of(100.4) + 1e-6, "the MSS and ESB bars end where the last read saw them"
    base_x, _ = strip.baseline.getData()
    assert not any(strip.x_of(101) < x < strip.x_of(189) for x in base_x), "no baseline through unread time"


def test_the_strip_axis_shows_wall_clock_time(qtbot):
    import time

    strip = HistoryStrip(StatusHistory())
    qtbot.addWidget(strip)
    axis = strip.plot_item.getAxis("bottom")
    label = axis.tickStrings([strip.x_of(time.mktime((2026, 12, 5, 8, 45, 50, 0, 0, -1)))], 1, 5)[0]
    assert label == "08:45:50"
    # Ticks leave room for their labels: no more of them than 300 px hold.
    from PySide6.QtGui import QFontMetrics

    label_px = QFontMetrics(axis.font()).horizontalAdvance("00:00:00")
    step = axis.tickSpacing(0, 60, 300)[0][0]
    assert (60 / step) * label_px < 300


def test_the_strip_repaints_from_its_timer_never_per_event(qtbot):
    assert REPAINT_INTERVAL_MS >= 40, "at most 25 repaints a second"
    history = StatusHistory()
    strip = HistoryStrip(history)
    qtbot.addWidget(strip)
    before = strip.repaints
    for i in range(500):  # a burst of events, no event loop in between
        history.observe(1000.0 + i * 0.01, 0x20 if i % 2 else 0x00)
        history.command(1000.0 + i * 0.01, f"cmd {i}")
    assert strip.repaints == before, "events only fill the buffer"
    strip.tick(now=1010.0)
    assert strip.repaints == before + 1
    strip.tick(now=1010.1)
    assert strip.repaints == before + 1, "nothing changed: the timer only scrolls"


# --- against the virtual instruments ---------------------------------------------------------


def test_bits_follow_the_virtual_devices_registers(window, sim_backend, qtbot):
    tab = open_from_browser(window, qtbot)
    view = status_view(tab)
    view.set_poll_interval(100)
    show(qtbot, tab, view)
    board = board_of(sim_backend)
    with board.changed:  # the device's own state changes, as after an error on the board
        board.status.ese = EsrBit.CME
        board.status.set_event(EsrBit.CME)
    qtbot.waitUntil(lambda: view.state["STB"].value == 0x60, timeout=3000)  # ESB and MSS, polled
    assert view.state["STB"].how == "polled"
    cells = view.rows["STB"].cells
    assert cells[5].isChecked() and cells[6].isChecked() and not cells[4].isChecked()
    assert cells[5].text() == "ESB" and cells[6].text() == "MSS"
    with board.changed:
        board.status.clear()
    qtbot.waitUntil(lambda: view.state["STB"].value == 0x00, timeout=3000)
    assert not cells[5].isChecked()
    assert view.history.samples[-1][1] == 0x00 and any(v == 0x60 for _, v in view.history.samples)


def test_polling_runs_only_while_someone_shows_the_status_byte(window, qtbot):
    tab = open_from_browser(window, qtbot)
    view = status_view(tab)
    assert not view.isVisible() and view._polling_ms in (-1, 0)
    assert tab.session.worker.runner.session.stb_interval_ms == 0
    view.set_poll_interval(100)
    show(qtbot, tab, view)
    qtbot.waitUntil(lambda: view.state["STB"].how == "polled", timeout=3000)
    tab.panels.setCurrentWidget(tab.console)
    qtbot.waitUntil(lambda: view._polling_ms == 0, timeout=2000)
    wait_idle(qtbot, tab)
    assert tab.session.worker.runner.session.stb_interval_ms == 0


def test_clicking_enable_bits_sends_ese_and_sre_and_reads_them_back(window, sim_backend, qtbot):
    tab = open_from_browser(window, qtbot)
    view = status_view(tab)
    show(qtbot, tab, view)
    qtbot.waitUntil(lambda: view.state["ESE"].value == 0 and view.state["SRE"].value == 0, timeout=3000)
    board = board_of(sim_backend)

    qtbot.mouseClick(view.rows["ESE"].cells[5], qtbot_left())
    qtbot.waitUntil(lambda: view.state["ESE"].value == 32 and view.state["ESE"].pending is None, timeout=3000)
    assert "*ESE 32" in sent_lines(tab) and "*ESE?" in sent_lines(tab)
    assert board.status.ese == 32
    assert view.rows["ESE"].cells[5].isChecked()

    qtbot.mouseClick(view.rows["SRE"].cells[4], qtbot_left())
    qtbot.waitUntil(lambda: view.state["SRE"].value == 16, timeout=3000)
    assert "*SRE 16" in sent_lines(tab) and board.status.sre == 16

    qtbot.mouseClick(view.rows["ESE"].cells[5], qtbot_left())
    qtbot.waitUntil(lambda: view.state["ESE"].value == 0, timeout=3000)
    assert "*ESE 0" in sent_lines(tab)
    assert view.toggle_bit("SRE", 6) == 0, "bit 6 of SRE cannot be set"
    entry = next(e for e in tab.console.transcript.entries() if e.text == "*ESE 32")
    assert entry.tag == "status view"
    assert "*ESE 32" not in tab.console.input.history(), "panel lines stay out of the history"


def test_enable_registers_written_from_the_console_are_read_back(window, qtbot):
    tab = open_from_browser(window, qtbot)
    view = status_view(tab)
    show(qtbot, tab, view)
    qtbot.waitUntil(lambda: view.state["ESE"].value == 0, timeout=3000)
    tab.console.submit_line("*ESE #H3C")
    qtbot.waitUntil(lambda: view.state["ESE"].value == 0x3C, timeout=3000)
    assert [n for n in ("CME", "EXE", "DDE", "QYE") if view.rows["ESE"].cells[
        {"CME": 5, "EXE": 4, "DDE": 3, "QYE": 2}[n]].isChecked()] == ["CME", "EXE", "DDE", "QYE"]


def test_reading_esr_is_an_explicit_action_that_says_it_clears_it(window, sim_backend, qtbot):
    tab = open_from_browser(window, qtbot)
    view = status_view(tab)
    show(qtbot, tab, view)
    assert "clears" in view.read_esr_button.text() and "clears" in view.read_esr_button.toolTip()
    assert "clears it" in view.esr_note.text()
    board = board_of(sim_backend)
    with board.changed:
        board.status.set_event(EsrBit.EXE | EsrBit.QYE)
    qtbot.mouseClick(view.read_esr_button, qtbot_left())
    qtbot.waitUntil(lambda: (view.state["ESR"].value or 0) & 0x14 == 0x14, timeout=3000)
    assert view.state["ESR"].how == "*ESR?"
    assert view.rows["ESR"].cells[4].isChecked() and view.rows["ESR"].cells[2].isChecked()
    assert board.status.esr == 0, "the read cleared it on the device"
    assert view.history.errors, "error bits read are marked on the history strip"


def test_esr_read_by_the_consoles_error_check_is_shown(window, qtbot):
    tab = open_from_browser(window, qtbot)
    view = status_view(tab)
    tab.console.submit_line("FOO:BAR")  # undefined: CME, found by the automatic *ESR? check
    qtbot.waitUntil(lambda: bool((view.state["ESR"].value or 0) & 0x20), timeout=3000)
    assert view.state["ESR"].how == "error check after FOO:BAR"
    assert any(label == "FOO:BAR" for _, label in view.history.commands), "a marker where the command was sent"


def test_debug_flags_are_decoded_from_the_profile(window, qtbot):
    tab = open_from_browser(window, qtbot)
    view = status_view(tab)
    assert view.profile.name == "SAM7 counter"
    view.read_device_register("DEBUG:FLAGS")
    qtbot.waitUntil(lambda: "DEBUG:FLAGS" in view.device_values, timeout=3000)
    value, how = view.device_values["DEBUG:FLAGS"]
    assert value & DebugFlag.USB_CONFIGURED and how == "DEBUG:FLAGS?"
    view.build()  # the widgets exist once the view has been shown; build them without painting
    box = view.device_boxes["DEBUG:FLAGS"]
    assert box.cells[16].isChecked() and box.cells[16].text() == "USB_CONFIGURED"
    assert not box.cells[15].isChecked()
    assert "clears bits 0-14" in box.read_button.toolTip()


def test_a_generic_instrument_gets_the_ieee_488_2_names(window, qtbot):
    tab = open_from_browser(window, qtbot, "Loopback")
    view = status_view(tab)
    assert view.profile is GENERIC
    view.build()
    assert view.rows["STB"].cells[2].text() == "EAV" and view.rows["ESR"].cells[1].text() == "RQC/RTL"
    assert not view.device_boxes
    assert tab.panel("sam7Panel") is None


def test_a_reopened_session_reads_its_enable_registers_again(window, sim_backend, qtbot):
    from support.ui import plug_again, unplug

    tab = open_from_browser(window, qtbot)
    view = status_view(tab)
    show(qtbot, tab, view)
    qtbot.waitUntil(lambda: view.state["ESE"].value == 0, timeout=3000)
    ref = find_ref(window, "SAM7")
    device = unplug(sim_backend, ref)
    qtbot.waitUntil(lambda: tab.session.state == "gone" and window.browser.device(ref) is None, timeout=4000)
    plug_again(sim_backend, device)
    qtbot.waitUntil(lambda: window.browser.device(ref) is not None and not tab.missing, timeout=4000)
    tab.reconnect()
    wait_idle(qtbot, tab, timeout=4000)
    qtbot.waitUntil(lambda: sum(1 for line in sent_lines(tab) if line == "*ESE?") >= 2, timeout=3000)
    assert transcript_has(tab.console, "sent", "*SRE?")
