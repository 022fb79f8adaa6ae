"""The device browser's context menu for virtual instruments: inject a fault, unplug, replug."""

from __future__ import annotations

from support.ui import find_ref, open_from_browser, transcript_has, wait_idle

from app.sim.faults import DESCRIPTIONS, FaultKind
from app.ui.virtual_menu import FAULT_MENU_TITLE

LOOPBACK = "Virtual Loopback"


def actions(menu) -> dict:
    return {a.text(): a for a in menu.actions() if a.text()}


def menu_of(win, ref):
    return win.browser.context_menu(win.browser._device_items[ref])


def fault_menu(menu):
    return actions(menu)[FAULT_MENU_TITLE].menu()


def test_a_virtual_instrument_offers_every_fault_and_unplug_replug(window, qtbot):
    ref = find_ref(window, LOOPBACK, qtbot)
    menu = menu_of(window, ref)
    entries = actions(menu)
    assert {"Unplug", "Replug", FAULT_MENU_TITLE} <= set(entries)
    kinds = [a.text() for a in fault_menu(menu).actions()]
    assert len(kinds) == len(FaultKind)
    for kind, text in zip(FaultKind, kinds):
        assert text.startswith(kind.value) and DESCRIPTIONS[kind] in text


def test_the_empty_area_and_the_usb_group_get_no_virtual_entries(window, qtbot):
    find_ref(window, LOOPBACK, qtbot)
    assert set(actions(window.browser.context_menu(None))) == {"Rescan now"}


def test_an_injected_fault_hits_the_next_transfer_and_the_session_recovers(window, qtbot, sim_backend):
    tab = open_from_browser(window, qtbot, LOOPBACK)
    device = window.virtual_actions.device_for(tab.ref)
    faults = actions(fault_menu(menu_of(window, tab.ref)))
    faults[next(t for t in faults if t.startswith("no-answer"))].trigger()
    assert "no-answer armed" in window.statusBar().currentMessage()
    tab.console.submit_line("*IDN?")
    qtbot.waitUntil(lambda: bool(device.fault_injector.fired), timeout=3000)
    assert device.fault_injector.fired[0][0] == FaultKind.NO_ANSWER
    qtbot.waitUntil(lambda: transcript_has(tab.console, "error", "*IDN?"), timeout=15000)  # a timeout, reported
    wait_idle(qtbot, tab, timeout=15000)
    before = replies(tab.console)
    tab.console.submit_line("*IDN?")
    qtbot.waitUntil(lambda: replies(tab.console) == before + 1, timeout=5000)  # the next query is intact


def replies(console) -> int:
    return sum(e.kind == "received" and "Virtual Loopback" in e.text for e in console.transcript.entries())


def test_unplug_and_replug_from_the_menu(window, qtbot, sim_backend):
    ref = find_ref(window, LOOPBACK, qtbot)
    device = window.virtual_actions.device_for(ref)
    actions(menu_of(window, ref))["Unplug"].trigger()
    assert device not in sim_backend.bus.devices()
    qtbot.waitUntil(lambda: find_ref(window, LOOPBACK) is None, timeout=3000)
    group = window.browser._groups["virtual"]
    replug = actions(window.browser.context_menu(group))
    title = next(t for t in replug if t.startswith("Replug "))
    assert "Loopback" in title
    replug[title].trigger()
    assert device in sim_backend.bus.devices()
    qtbot.waitUntil(lambda: find_ref(window, LOOPBACK) is not None, timeout=3000)
    assert not any(t.startswith("Replug ") for t in actions(window.browser.context_menu(group)))


def test_replug_of_a_plugged_instrument_re_enumerates_it(window, qtbot, sim_backend):
    ref = find_ref(window, LOOPBACK, qtbot)
    device = window.virtual_actions.device_for(ref)
    before = next(e.address for e in sim_backend.bus.entries() if e.device is device)
    actions(menu_of(window, ref))["Replug"].trigger()
    after = next(e.address for e in sim_backend.bus.entries() if e.device is device)
    assert after != before
