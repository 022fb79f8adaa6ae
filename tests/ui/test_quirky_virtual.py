"""The quirky virtual instruments can be put on the app's virtual bus and taken off again."""

from support.ui import find_ref


def virtual_vids(window):
    return {window.browser.device(r).vid for r in window.browser.devices("virtual")}


def test_quirky_instruments_come_and_go_with_the_view_toggle(window, qtbot, sim_backend):
    find_ref(window, "SAM7", qtbot)
    assert virtual_vids(window) == {0x1209}
    window.quirky_action.trigger()
    assert window.settings.virtual_quirky
    # A Rigol, a Siglent and a Thorlabs twin appear beside the SAM7, with their quirks applied.
    qtbot.waitUntil(lambda: {0x1AB1, 0xF4EC, 0x1313} <= virtual_vids(window), timeout=5000)
    rigol = next(r for r in window.browser.devices("virtual") if window.browser.device(r).vid == 0x1AB1)
    assert window.browser.device(rigol).quirks, "the shipped quirk entry applies to the Rigol twin"
    window.quirky_action.trigger()
    assert not window.settings.virtual_quirky
    qtbot.waitUntil(lambda: virtual_vids(window) == {0x1209}, timeout=5000)
    assert {d.device_desc.vid for d in sim_backend.bus.devices()} == {0x1209}


def test_opening_the_ds1104z_twin_says_its_quirks_in_one_line_with_details_on_demand(window, qtbot):
    window.quirky_action.trigger()
    ds = find_ref(window, "DS1104Z", qtbot, timeout=5000)
    tab = window.open_device(ds)
    qtbot.waitUntil(lambda: tab.session.info is not None and tab.session.state == "idle", timeout=5000)
    transcript = tab.console.transcript
    notes = [e for e in transcript.entries() if e.kind == "note" and "quirk" in e.text]
    (line,) = notes  # one line, not one per flag repeating the entry's reason
    flags = [q.flag for q in tab.session.info.quirks]
    assert line.text.startswith(f"{len(flags)} quirks applied: ") and all(f in line.text for f in flags)
    assert "clear_on_open = false" in line.text
    shown = transcript.toPlainText()
    reason = tab.session.info.quirks[0].reason
    assert reason not in shown and "details" in shown
    transcript.show_details(line.id)
    shown = transcript.toPlainText()
    assert shown.count(reason) == 1  # each entry's reason once, on demand
    assert reason in transcript.plain_text()


def test_the_browser_selection_follows_the_active_tab_and_double_click_keeps_the_row_open(window, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    sam7 = find_ref(window, "SAM7", qtbot)
    loop = find_ref(window, "Loopback", qtbot)
    first = window.open_device(sam7)
    second = window.open_device(loop)
    qtbot.waitUntil(lambda: first.session.state == "idle" and second.session.state == "idle", timeout=5000)
    window.tabs.setCurrentWidget(first)
    assert window.browser.selected() == sam7
    window.tabs.setCurrentWidget(second)
    assert window.browser.selected() == loop
    tree = window.browser.tree
    item = tree.currentItem()
    item.setExpanded(True)
    rect = tree.visualItemRect(item)
    QTest.mousePress(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    QTest.mouseRelease(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    QTest.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert item.isExpanded()  # the double-click opened (brought forward) the device; the row stays open
    assert window.current_tab() is second
