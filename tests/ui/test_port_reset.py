"""The way back for a stuck instrument from the browser and from its tab: reset the USB port, reopen.

The virtual DS1104Z hangs on a device clear as the real one does (python-usbtmc PR #62): opened
without its quirks, the clear on open leaves it unable to answer until it is unplugged, and
opening it with its quirks fails too ("control request ... timed out"). The reset (a replug on
the virtual bus) brings it back and the tab's session opens again.
"""

from support.ui import find_ref, open_from_browser, wait_idle

from app.session.events import Failed, Reply


def _menu_action(window, ref, text):
    assert window.browser.select(ref)
    menu = window.browser.context_menu(window.browser.tree.currentItem())
    return next(a for a in menu.actions() if a.text() == text)


def _answers(tab, qtbot, prefix):
    with qtbot.waitSignal(tab.session.event, timeout=5000,
                          check_params_cb=lambda e: isinstance(e, (Reply, Failed))) as got:
        tab.console.submit_line("*IDN?")
    return isinstance(got.args[0], Reply) and got.args[0].data.decode().startswith(prefix)


def test_a_hung_scope_that_cannot_be_opened_is_brought_back_from_its_tabs_banner(window, qtbot):
    window.quirky_action.trigger()
    ref = find_ref(window, "DS1104Z", qtbot, timeout=5000)
    tab = window.open_device(ref, use_quirks=False)  # its device clear on open hangs it
    qtbot.waitUntil(lambda: tab.session.state == "failed", timeout=8000)
    assert "Reset USB port" in tab.banner.text() and f"href='{tab.RESET_LINK}'" in tab.banner.text()
    assert "plugs it in again" in tab.banner.text()
    window.open_device(ref)  # "Open session" again, with its quirks: still no answer
    qtbot.waitUntil(lambda: tab.session.use_quirks and tab.session.state == "failed", timeout=8000)
    assert "Reset USB port" in tab.banner.text()
    with qtbot.waitSignal(tab.port_reset, timeout=10000) as done:
        tab.banner.linkActivated.emit(tab.RESET_LINK)  # what a click on the link does
    result = done.args[0]
    assert result.answers and result.idn.startswith("RIGOL") and "plugged in again" in result.action
    qtbot.waitUntil(lambda: tab.session.state == "idle", timeout=5000)
    assert window.tab_for(ref) is tab  # the same tab, its transcript kept
    assert any("answers again" in e.text for e in tab.console.transcript.entries())
    assert _answers(tab, qtbot, "RIGOL")


def test_a_timeout_in_an_open_tab_offers_the_reset_and_the_browser_menu_runs_it(window, qtbot):
    tab = open_from_browser(window, qtbot)
    tab.console.timeout_spin.setValue(300)
    tab.console.timeout_spin.editingFinished.emit()
    assert not tab.banner.isVisible()
    # An undefined query: the SAM7 flags CME and never answers.
    with qtbot.waitSignal(tab.session.event, timeout=5000,
                          check_params_cb=lambda e: isinstance(e, Failed) and e.kind == "timeout"):
        tab.console.submit_line("NOSUCH:QUERY?")
    qtbot.waitUntil(lambda: tab.banner.isVisible() and "Reset USB port" in tab.banner.text(), timeout=3000)
    assert "did not answer in time" in tab.banner.text()
    wait_idle(qtbot, tab)
    action = _menu_action(window, tab.ref, "Reset USB port")
    assert action.isEnabled() and "open its session again" in action.toolTip()
    with qtbot.waitSignal(tab.port_reset, timeout=10000) as done:
        action.trigger()
    assert done.args[0].answers
    qtbot.waitUntil(lambda: tab.session.state == "idle", timeout=5000)
    assert "answers again" in window.statusBar().currentMessage()
    assert _answers(tab, qtbot, "XYZ Company Ltd, SAM7-EK")


def test_the_reset_of_a_device_without_a_tab_says_how_it_went_in_the_status_bar(window, qtbot):
    sam7 = find_ref(window, "SAM7", qtbot)
    _menu_action(window, sam7, "Reset USB port").trigger()
    qtbot.waitUntil(lambda: "answers again" in window.statusBar().currentMessage(), timeout=10000)
    assert "XYZ Company Ltd, SAM7-EK" in window.statusBar().currentMessage()
    assert window.tab_for(sam7) is None  # nothing was opened that the user did not open
