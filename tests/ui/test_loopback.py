"""The console against the virtual SCPI loopback: the SYST:ERR? check, block replies, SRQ,
and two instruments at once."""

import time

from PySide6.QtCore import Qt
from support.ui import open_from_browser, transcript_has, wait_idle

from app.session.events import Reply


def send(qtbot, tab, line):
    console = tab.console
    console.input.setFocus()
    console.input.setText(line)
    qtbot.keyClick(console.input, Qt.Key.Key_Return)


def test_an_scpi_instrument_gets_its_error_queue_drained(window, qtbot):
    tab = open_from_browser(window, qtbot, "Loopback")
    console = tab.console
    assert console.check_method() == "syst_err"
    assert "SYST:ERR?" in console.check_combo.currentText()
    send(qtbot, tab, "BOGUS:HEADER 1")
    qtbot.waitUntil(lambda: transcript_has(console, "error", "-113"), timeout=2000)
    entry = [e for e in console.transcript.entries() if "-113" in e.text][-1]
    assert "Undefined header" in entry.text and "after BOGUS:HEADER 1" in entry.text
    # The SCPI-99 catalogue is offered to an SCPI instrument.
    console.input.setText("")
    console.input.setFocus()
    qtbot.keyClicks(console.input, "syst:vers")
    assert console.input.completions() == ["SYST:VERS?"]


def test_a_block_reply_is_summarised_and_its_data_saved(window, qtbot, tmp_path):
    tab = open_from_browser(window, qtbot, "Loopback")
    console = tab.console
    send(qtbot, tab, r"MEM:DATA #16\x00\x01\x02ABC")
    wait_idle(qtbot, tab)
    send(qtbot, tab, "MEM:DATA?")
    qtbot.waitUntil(lambda: any(e.block is not None for e in console.transcript.entries()), timeout=2000)
    entry = next(e for e in console.transcript.entries() if e.block is not None)
    assert entry.block.payload_bytes == 6
    assert "block of 6 bytes: 00 01 02 41 42 43" in console.transcript.plain_text()
    assert "save…" in console.transcript.toHtml()
    saved = console._save_block(entry.id, str(tmp_path / "block.bin"))
    assert saved.read_bytes() == b"\x00\x01\x02ABC"


def test_a_service_request_appears_in_the_transcript(window, qtbot):
    tab = open_from_browser(window, qtbot, "Loopback")
    console = tab.console
    send(qtbot, tab, "*CLS;*ESE 1;*SRE 32;*OPC")  # operation complete -> ESB -> SRQ on interrupt-IN
    qtbot.waitUntil(lambda: transcript_has(console, "srq", "service request"), timeout=3000)
    entry = [e for e in console.transcript.entries() if e.kind == "srq"][-1]
    assert "ESB" in entry.text


def test_a_hung_instrument_does_not_hold_up_another(window, qtbot):
    sam7 = open_from_browser(window, qtbot)
    loop = open_from_browser(window, qtbot, "Loopback")
    sam7.console.timeout_spin.setValue(800)
    sam7.console.timeout_spin.editingFinished.emit()
    wait_idle(qtbot, sam7)
    window.tabs.setCurrentWidget(sam7)
    send(qtbot, sam7, "NOSUCH:QUERY?")  # the SAM7 never answers: its worker waits 0.8 s
    qtbot.waitUntil(lambda: "busy: NOSUCH:QUERY?" in sam7.console.state_label.text(), timeout=1000)
    started = time.monotonic()
    window.tabs.setCurrentWidget(loop)
    with qtbot.waitSignal(loop.session.event, timeout=500, check_params_cb=lambda e: isinstance(e, Reply)):
        send(qtbot, loop, "*IDN?")
    assert time.monotonic() - started < 0.5
    assert sam7.session.state == "busy", "the SAM7 was still waiting while the loopback answered"
    assert "busy: NOSUCH:QUERY?" in sam7.console.state_label.text()
    qtbot.waitUntil(lambda: sam7.session.state == "idle", timeout=4000)


def test_abort_stops_a_running_script(window, qtbot, tmp_path):
    tab = open_from_browser(window, qtbot, "Loopback")
    console = tab.console
    script = tmp_path / "slow.scpi"
    script.write_text("SYST:DEL 300;*IDN?\n" * 4)  # each answer is held back 300 ms
    console.run_file(str(script))
    # Wait until the first line is out and its answer is being waited for.
    qtbot.waitUntil(lambda: any(e.kind == "sent" and e.tag == "slow.scpi:1" for e in console.transcript.entries()),
                    timeout=2000)
    assert tab.session.state == "busy"
    qtbot.keyClick(console.input, Qt.Key.Key_Escape)
    assert not console.script_running
    assert transcript_has(console, "warning", "script slow.scpi stopped by the user")
    wait_idle(qtbot, tab, timeout=4000)
    replies = [e for e in console.transcript.entries() if e.kind == "received" and e.tag.startswith("slow.scpi")]
    assert len(replies) <= 1, "lines after the abort were sent"
