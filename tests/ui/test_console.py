"""The SCPI console against the virtual SAM7, driven through the real window."""

import time

from PySide6.QtCore import Qt, QTimer
from support.ui import open_from_browser, transcript_has, wait_idle

from app.session.events import Failed, Reply


def type_line(qtbot, console, text, key=Qt.Key.Key_Return, modifier=Qt.KeyboardModifier.NoModifier):
    console.input.setFocus()
    qtbot.keyClicks(console.input, text)
    console.input.hide_completions()
    qtbot.keyClick(console.input, key, modifier)


def test_open_from_the_browser_and_query_idn(sam7_tab, qtbot):
    console = sam7_tab.console
    assert sam7_tab.console.idn.startswith("XYZ Company Ltd, SAM7-EK")
    type_line(qtbot, console, "*IDN?")
    qtbot.waitUntil(lambda: sum(transcript_has(console, "received", "SAM7-EK") for _ in [0]) and
                    len([e for e in console.transcript.entries() if e.kind == "received"]) >= 2, timeout=2000)
    sent = [e for e in console.transcript.entries() if e.kind == "sent" and e.text == "*IDN?" and not e.tag]
    assert sent, "the typed line is in the transcript"
    reply = [e for e in console.transcript.entries() if e.kind == "received"][-1]
    assert reply.text.startswith("XYZ Company Ltd, SAM7-EK")
    assert reply.duration_ms is not None and reply.data.endswith(b"\n")
    assert console.input.text() == ""
    assert "SAM7-EK" in sam7_tab.title_label.text() or "SAM7" in sam7_tab.subtitle_label.text()


def test_a_command_without_a_query_is_only_sent(sam7_tab, qtbot):
    console = sam7_tab.console
    type_line(qtbot, console, "INDICATOR 1")
    qtbot.waitUntil(lambda: transcript_has(console, "sent", "INDICATOR 1"), timeout=2000)
    wait_idle(qtbot, sam7_tab)
    type_line(qtbot, console, "INDICATOR?")
    qtbot.waitUntil(lambda: transcript_has(console, "received", "ON"), timeout=2000)


def test_compound_lines_and_always_read(sam7_tab, qtbot):
    console = sam7_tab.console
    type_line(qtbot, console, "COUNT:RESET;COUNT:READ?")
    qtbot.waitUntil(lambda: transcript_has(console, "received", "0"), timeout=2000)
    wait_idle(qtbot, sam7_tab)
    # "Always read" reads after a line that is not a query: the SAM7 answers nothing, so it times out.
    console.timeout_spin.setValue(200)
    console.timeout_spin.editingFinished.emit()
    console.always_read.setChecked(True)
    type_line(qtbot, console, "*CLS")
    qtbot.waitUntil(lambda: transcript_has(console, "error", "*CLS: timeout"), timeout=3000)


def test_history_is_recalled_with_up_and_down_and_kept_across_restarts(window, sam7_tab, qtbot):
    console = sam7_tab.console
    for line in ("*CLS", "COUNT:READ?"):
        type_line(qtbot, console, line)
        qtbot.waitUntil(lambda line=line: transcript_has(console, "sent", line), timeout=2000)
    qtbot.keyClicks(console.input, "draft")
    qtbot.keyClick(console.input, Qt.Key.Key_Up)
    assert console.input.text() == "COUNT:READ?"
    qtbot.keyClick(console.input, Qt.Key.Key_Up)
    assert console.input.text() == "*CLS"
    qtbot.keyClick(console.input, Qt.Key.Key_Down)
    assert console.input.text() == "COUNT:READ?"
    qtbot.keyClick(console.input, Qt.Key.Key_Down)
    assert console.input.text() == "draft"

    # Searchable: Ctrl+R goes to the filter; Enter takes the first match into the input line.
    # (The offscreen platform has no window manager to hand activation back after the completion popup.)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=1000)
    qtbot.keyClick(console.input, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert console.history_panel.filter.hasFocus()
    qtbot.keyClicks(console.history_panel.filter, "count")
    assert console.history_panel.visible_lines() == ["COUNT:READ?"]
    qtbot.keyClick(console.history_panel.filter, Qt.Key.Key_Return)
    assert console.input.text() == "COUNT:READ?"

    # Close the tab and open the instrument again: the history is still there.
    wait_idle(qtbot, sam7_tab)
    window.close_tab(window.tabs.indexOf(sam7_tab))
    again = open_from_browser(window, qtbot)
    assert again is not sam7_tab
    assert again.console.input.history()[-2:] == ["*CLS", "COUNT:READ?"]


def test_completion_offers_the_sam7_command_set(sam7_tab, qtbot):
    console = sam7_tab.console
    console.input.setFocus()
    qtbot.keyClicks(console.input, "COUNT:R")
    qtbot.waitUntil(console.input.completion_popup_visible, timeout=1000)
    assert set(console.input.completions()) == {"COUNT:READ?", "COUNT:RESET"}
    popup = console.input.completer.popup()
    qtbot.keyClick(popup, Qt.Key.Key_Down)
    qtbot.keyClick(popup, Qt.Key.Key_Return)
    assert console.input.text() in ("COUNT:READ?", "COUNT:RESET")
    assert not console.input.completion_popup_visible()
    assert not transcript_has(console, "sent", "COUNT:RE"), "picking a completion must not send the line"

    # Tab completes a unique match in place, also after a ';'.
    console.input.setText("*CLS;*ID")
    console.input.setCursorPosition(len("*CLS;*ID"))
    qtbot.keyClick(console.input, Qt.Key.Key_Tab)
    assert console.input.text() == "*CLS;*IDN?"
    # Commands the SAM7 does not have are not offered.
    console.input.setText("")
    qtbot.keyClicks(console.input, "*OP")
    assert console.input.completions() == []


def test_the_error_check_catches_a_command_error(sam7_tab, qtbot):
    console = sam7_tab.console
    assert console.check_method() == "esr", "the SAM7 has no error queue: *ESR? is decoded"
    type_line(qtbot, console, "FOO:BAR 1")
    qtbot.waitUntil(lambda: transcript_has(console, "error", "CME"), timeout=2000)
    entry = [e for e in console.transcript.entries() if e.kind == "error" and "CME" in e.text][-1]
    assert "after FOO:BAR 1" in entry.text
    assert "*ESR? #H" in entry.detail


def test_a_query_that_never_answers_times_out_while_the_ui_keeps_running(sam7_tab, qtbot):
    console = sam7_tab.console
    console.timeout_spin.setValue(400)
    console.timeout_spin.editingFinished.emit()
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(10)
    try:
        # An undefined query: the SAM7 flags CME and never answers (its design document says so).
        with qtbot.waitSignal(sam7_tab.session.event, timeout=3000,
                              check_params_cb=lambda e: isinstance(e, Failed) and e.kind == "timeout"):
            started = time.monotonic()
            type_line(qtbot, console, "NOSUCH:QUERY?")
        waited = time.monotonic() - started
    finally:
        timer.stop()
    assert waited >= 0.35
    during = [t for t in ticks if started <= t <= started + waited]
    assert len(during) >= 10, f"the event loop stalled: {len(during)} ticks in {waited:.2f} s"
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert max(gaps) < 0.2, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"
    qtbot.waitUntil(lambda: transcript_has(console, "error", "NOSUCH:QUERY?: timeout"), timeout=1000)
    failure = [e for e in console.transcript.entries() if "NOSUCH:QUERY?: timeout" in e.text][-1]
    assert "recovery:" in failure.detail and "usable" in failure.detail
    qtbot.waitUntil(lambda: transcript_has(console, "error", "CME"), timeout=2000)
    # The session recovered: the next query works.
    wait_idle(qtbot, sam7_tab)
    with qtbot.waitSignal(sam7_tab.session.event, timeout=2000, check_params_cb=lambda e: isinstance(e, Reply)):
        type_line(qtbot, console, "*IDN?")


def test_device_buttons_use_the_control_requests(sam7_tab, qtbot):
    console = sam7_tab.console
    actions = console.actions_by_name
    assert actions["read_stb"].isEnabled()
    actions["read_stb"].trigger()
    qtbot.waitUntil(lambda: transcript_has(console, "info", "status byte #H"), timeout=2000)
    actions["clear"].trigger()
    qtbot.waitUntil(lambda: transcript_has(console, "info", "device clear: done"), timeout=2000)
    caps = sam7_tab.session.info.capabilities
    assert actions["indicator_pulse"].isEnabled() == bool(caps and caps.indicator_pulse)
    if actions["indicator_pulse"].isEnabled():
        actions["indicator_pulse"].trigger()
        qtbot.waitUntil(lambda: transcript_has(console, "info", "indicator pulse: done"), timeout=2000)
    for name in ("remote", "local", "lockout"):
        assert actions[name].isEnabled() == bool(caps and caps.ren_control)


def test_escapes_reach_the_device_and_the_raw_view_shows_bytes(sam7_tab, qtbot):
    console = sam7_tab.console
    type_line(qtbot, console, r"\x2AIDN?")  # \x2A is '*'
    qtbot.waitUntil(lambda: len([e for e in console.transcript.entries() if e.kind == "received"]) >= 2, timeout=2000)
    entry = [e for e in console.transcript.entries() if e.kind == "received"][-1]
    dialog = console.show_raw(entry.id)
    qtbot.addWidget(dialog)
    assert dialog.hex_view.toPlainText().startswith("00000000  58 59 5A")  # "XYZ"
    assert dialog.escaped_view.toPlainText().endswith("\\n")
    dialog.close()


def test_run_a_file_of_scpi_lines_and_save_the_transcript(sam7_tab, qtbot, tmp_path):
    console = sam7_tab.console
    script = tmp_path / "demo.scpi"
    script.write_text("# a comment\n*CLS\nINDICATOR 0\n\nINDICATOR?\nPARAM:SET 12,-34\nPARAM:ENQ?\n")
    assert console.run_file(str(script))
    qtbot.waitUntil(lambda: not console.script_running, timeout=5000)
    assert transcript_has(console, "note", "demo.scpi: done, 5 line(s) sent")
    assert transcript_has(console, "received", "OFF")
    assert transcript_has(console, "received", "12")
    tagged = [e for e in console.transcript.entries() if e.tag.startswith("demo.scpi:")]
    assert {e.tag for e in tagged} >= {"demo.scpi:2", "demo.scpi:7"}
    saved = console.save_transcript(str(tmp_path / "t.txt"))
    text = saved.read_text()
    assert ">> INDICATOR?" in text and "<< OFF" in text


def test_a_script_stops_at_the_first_error(sam7_tab, qtbot, tmp_path):
    console = sam7_tab.console
    script = tmp_path / "bad.scpi"
    script.write_text("*CLS\nPARAM:SET 99999,1\nINDICATOR 1\n")
    console.run_file(str(script))
    qtbot.waitUntil(lambda: not console.script_running, timeout=5000)
    assert transcript_has(console, "error", "EXE")
    assert transcript_has(console, "warning", "stopped at line 2")
    assert not transcript_has(console, "sent", "INDICATOR 1")


def test_the_transcript_says_when_queries_go_out_as_one_batch(sam7_tab, qtbot):
    from app.session.events import Opened

    console = sam7_tab.console
    # The in-process bus runs transfers one at a time: no such note on open.
    assert not transcript_has(console, "note", "one batch")
    # A session over libusb reports its queries batched, and the transcript says so.
    console.handle_event(Opened(0, console.info, True, pipelined=True))
    assert transcript_has(console, "note", "queries go out as one batch")
