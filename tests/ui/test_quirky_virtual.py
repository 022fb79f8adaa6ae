"""The quirky virtual instruments can be put on the app's virtual bus and taken off again."""

from ui_helpers import find_ref


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
