"""Service requests from the virtual instruments: notices, the timeline, badges, follow-ups, floods."""

from PySide6.QtCore import QRect, Qt
from support.ui import open_from_browser, transcript_has, wait_idle

from app.session.events import ErrorEntry, ErrorReport
from app.sim.usbtmc_device import EsrBit
from app.ui.srq import TIMELINE_BURST, RateLimiter, SrqNotice, describe_report


def srq_entries(tab):
    return [e for e in tab.console.transcript.entries() if e.kind == "srq"]


def counted(tab):
    return sum(e.extra.get("srq_count", 0) for e in srq_entries(tab))


def model(backend, kind_name):
    from app.sim.sam7 import Sam7Counter
    from app.sim.scpi_device import VirtualLoopback

    return backend.bus.find(kind={"SAM7": Sam7Counter, "Loopback": VirtualLoopback}[kind_name])


def raise_cme_srq(board):
    """Make the SAM7 model request service the way its firmware does: an enabled ESR event."""
    with board.changed:
        board.status.ese = EsrBit.CME
        board.status.sre = 0x20  # ESB
        board.status.set_event(EsrBit.CME)


# --- no Qt needed ------------------------------------------------------------------------


def test_the_rate_limiter_lets_a_burst_through_and_counts_the_rest():
    limiter = RateLimiter(burst=3, window_s=1.0)
    shown = [limiter.offer(10.0 + i * 0.01) for i in range(10)]
    assert shown == [True] * 3 + [False] * 7
    assert limiter.held == 7 and limiter.next_free_s(10.1) > 0.8
    assert limiter.take_held() == 7 and limiter.held == 0
    assert limiter.offer(11.05), "the window moved on"


def test_notices_say_what_happened():
    one = SrqNotice("R", "SAM7-EK", 0x60, ("MSS", "ESB"), "FOO:BAR", 1, 1, 0.0)
    assert one.text() == "Service request: status byte #H60 (MSS, ESB) after FOO:BAR"
    many = SrqNotice("R", "SAM7-EK", 0x60, ("MSS", "ESB"), "NOSUCH:CMD", 47, 50, 0.0)
    assert many.summary
    assert many.text() == "47 more service requests, the last with status byte #H60 (MSS, ESB) after NOSUCH:CMD"
    report = ErrorReport(1, 0, "esr", (ErrorEntry(5, "CME (command error)"),), esr=0x20)
    assert describe_report(report) == "*ESR? #H20: CME (command error)"
    queue = ErrorReport(1, 0, "syst_err", (ErrorEntry(-113, "Undefined header"),))
    assert describe_report(queue) == 'SYST:ERR?: -113,"Undefined header"'


# --- against the virtual instruments --------------------------------------------------------


def test_an_srq_is_notified_at_once_and_put_on_the_timeline_after_its_cause(window, qtbot):
    tab = open_from_browser(window, qtbot, "Loopback")
    center = window.srq_center
    with qtbot.waitSignal(center.notified, timeout=3000) as blocker:
        tab.console.submit_line("*CLS;*ESE 1;*SRE 32;*OPC")  # OPC -> ESB -> SRQ on interrupt-IN
    note = blocker.args[0]
    assert note.resource == tab.ref.resource and note.status_byte & 0x20 and "ESB" in note.bits
    assert note.cause == "*CLS;*ESE 1;*SRE 32;*OPC"
    entry = srq_entries(tab)[-1]
    assert "service request: status byte" in entry.text and "after *CLS;*ESE 1;*SRE 32;*OPC was sent" in entry.text
    # No system tray offscreen: the notice shows in the window.
    assert center.notices.isVisible() and center.notices.cards[-1].note.resource == tab.ref.resource
    # The follow-up says what raised it: the error check already read ESR (OPC), and the queue is empty.
    qtbot.waitUntil(lambda: transcript_has(tab.console, "info", "SRQ follow-up"), timeout=3000)
    follow = next(e for e in tab.console.transcript.entries() if e.text.startswith("SRQ follow-up"))
    assert "OPC" in follow.text
    card = center.notices.cards[-1]
    assert "Raised by:" in card.body.text()
    assert "Raised by:" in card.toolTip()  # the whole text, where one line cannot hold it


def test_the_follow_up_reads_esr_and_the_error_queue_itself(window, sim_backend, qtbot):
    tab = open_from_browser(window, qtbot, "Loopback")
    device = model(sim_backend, "Loopback")
    tab.console.check_combo.setCurrentIndex(tab.console.check_combo.findData("off"))
    tab.console.submit_line("*ESE 32;*SRE 32")
    wait_idle(qtbot, tab)
    with qtbot.waitSignal(window.srq_center.notified, timeout=3000):
        tab.console.submit_line("NOSUCH:CMD")  # -113 in the queue, CME in ESR, ESB, SRQ
    qtbot.waitUntil(lambda: transcript_has(tab.console, "info", "SRQ follow-up"), timeout=3000)
    follow = next(e for e in tab.console.transcript.entries() if e.text.startswith("SRQ follow-up"))
    assert "*ESR? #H" in follow.text and "CME" in follow.text and "-113" in follow.text
    assert device.status.esr == 0, "the follow-up read (and so cleared) ESR"


def test_the_badge_marks_an_instrument_until_the_user_looks(window, sim_backend, qtbot):
    sam7 = open_from_browser(window, qtbot)
    loop = open_from_browser(window, qtbot, "Loopback")
    window.tabs.setCurrentWidget(loop)
    center = window.srq_center
    with qtbot.waitSignal(center.notified, timeout=3000):
        raise_cme_srq(model(sim_backend, "SAM7"))
    item = window.browser._device_items[sam7.ref]
    qtbot.waitUntil(lambda: "⚑ 1" in item.text(0), timeout=2000)
    assert center.unseen[sam7.ref] == 1
    window.tabs.setCurrentWidget(sam7)  # the user looks
    qtbot.waitUntil(lambda: "⚑" not in item.text(0), timeout=2000)
    assert sam7.ref not in center.unseen


def test_several_instruments_at_once(window, sim_backend, qtbot):
    sam7 = open_from_browser(window, qtbot)
    loop = open_from_browser(window, qtbot, "Loopback")
    center = window.srq_center
    notes = []
    center.notified.connect(notes.append)
    raise_cme_srq(model(sim_backend, "SAM7"))
    loop.console.submit_line("*CLS;*ESE 1;*SRE 32;*OPC")
    qtbot.waitUntil(lambda: {n.resource for n in notes} == {sam7.ref.resource, loop.ref.resource}, timeout=3000)
    assert center.monitor(sam7).total == 1 and center.monitor(loop).total == 1
    assert len(center.notices.cards) == 2
    card = next(c for c in center.notices.cards if c.note.resource == sam7.ref.resource)
    window.tabs.setCurrentWidget(loop)
    qtbot.mouseClick(card.show_button, Qt.MouseButton.LeftButton)  # "Show" goes to the instrument
    assert window.current_tab() is sam7 and sam7.panels.currentWidget() is sam7.console
    assert sam7.ref not in center.unseen


def test_a_flood_is_rate_limited_without_losing_count(window, sim_backend, qtbot):
    tab = open_from_browser(window, qtbot, "Loopback")
    monitor = window.srq_center.monitor(tab)
    notes = []
    window.srq_center.notified.connect(notes.append)
    device = model(sim_backend, "Loopback")
    for _ in range(200):
        device.request_service(0x60)  # a device gone wild: 200 notifications on interrupt-IN
    qtbot.waitUntil(lambda: monitor.total == 200, timeout=5000)
    qtbot.waitUntil(lambda: counted(tab) == 200, timeout=5000)  # the "N more" entry comes after the window
    entries = srq_entries(tab)
    assert len(entries) <= TIMELINE_BURST + 2
    summary = entries[-1]
    assert summary.extra["srq_count"] > 100 and "more service requests" in summary.text and "200 so far" in summary.text
    assert monitor.shown + monitor.summarised == 200
    qtbot.waitUntil(lambda: sum(n.count for n in notes) == 200, timeout=5000)
    assert len(notes) <= 3, "notifications are limited too, and say how many they stand for"
    follow_ups = [e for e in tab.console.transcript.entries() if e.text.startswith("SRQ follow-up")]
    assert len(follow_ups) <= TIMELINE_BURST
    assert window.browser.device(tab.ref) is not None


def test_a_notice_held_back_keeps_its_cause(window, sim_backend, qtbot):
    sam7 = open_from_browser(window, qtbot)
    notes = []
    window.srq_center.notified.connect(notes.append)
    board = model(sim_backend, "SAM7")
    with board.changed:
        board.status.ese = EsrBit.CME
        board.status.sre = 0x20
    sam7.console.submit_line("FOO:BAR")  # CME: an SRQ; the error check then reads ESR and clears ESB
    qtbot.waitUntil(lambda: len(notes) == 1, timeout=3000)
    sam7.console.submit_line("NOSUCH:CMD")  # a second SRQ within the notice limit's window
    qtbot.waitUntil(lambda: len(notes) == 2, timeout=5000)
    assert [n.cause for n in notes] == ["FOO:BAR", "NOSUCH:CMD"] and notes[1].count == 1


def test_notifications_can_be_switched_off_but_srqs_still_count(window, sim_backend, qtbot):
    sam7 = open_from_browser(window, qtbot)
    center = window.srq_center
    center.notify = False
    notes = []
    center.notified.connect(notes.append)
    raise_cme_srq(model(sim_backend, "SAM7"))
    qtbot.waitUntil(lambda: center.monitor(sam7).total == 1, timeout=3000)
    assert notes == [] and srq_entries(sam7)
    assert window.settings.value("srq/notify") == "false"


def _controls(root):
    from PySide6.QtWidgets import QAbstractButton, QComboBox, QLineEdit

    return [w for cls in (QAbstractButton, QLineEdit, QComboBox) for w in root.findChildren(cls) if w.isVisible()]


def _global_rect(widget):
    """The part of ``widget`` on screen (a scroll area clips its contents), in global coordinates."""
    shown = widget.visibleRegion().boundingRect()
    return QRect(widget.mapToGlobal(shown.topLeft()), shown.size())


def test_a_notice_never_covers_controls(window, sim_backend, qtbot):
    """Issue 15 item 3: the notice used to float over Send, Query, Read and Abort, and over the
    waveform panel's legend, Clear runs and Export, for 8 s right after an error."""
    window.resize(1024, 700)
    sam7 = open_from_browser(window, qtbot)
    awg = open_from_browser(window, qtbot, "Virtual AWG")
    awg.panels.setCurrentWidget(awg.waveform)
    qtbot.waitUntil(lambda: awg.waveform.built, timeout=2000)
    window.tabs.setCurrentWidget(sam7)
    bar_height = window.statusBar().height()
    with qtbot.waitSignal(window.srq_center.notified, timeout=3000):
        raise_cme_srq(model(sim_backend, "SAM7"))
    area = window.srq_center.notices
    qtbot.waitUntil(lambda: area.isVisible() and area.width() > 0, timeout=2000)
    assert window.statusBar().height() == bar_height, "the status bar keeps its height: nothing moves"
    for tab in (sam7, awg):  # the console's Send/Query/Read/Abort; the graph's legend, Clear runs, Export
        window.tabs.setCurrentWidget(tab)
        qtbot.waitUntil(lambda: area.isVisible(), timeout=1000)
        notice = QRect(area.mapToGlobal(area.rect().topLeft()), area.size())
        central = window.centralWidget()
        assert not notice.intersects(_global_rect(central)), "the notice sits outside the tabs and their panels"
        covered = [w for w in _controls(central) if _global_rect(w).intersects(notice)]
        assert covered == []
    panel = awg.waveform.panel()
    for widget in (panel.graph.legend, panel.graph.clear_button, panel.graph.csv_button, panel.graph.png_button):
        assert not _global_rect(widget).intersects(notice)
    for widget in (sam7.console.send_button, sam7.console.abort_button):
        window.tabs.setCurrentWidget(sam7)
        assert not _global_rect(widget).intersects(notice)
    card = area.cards[-1]
    assert card.show_button.isVisible() and "Service request" in card.toolTip()  # the whole text
