"""Helpers shared by the GUI tests (imported by name: this folder is on sys.path)."""

SAM7_PRODUCT = "SAM7"


def find_ref(win, product_part: str, qtbot=None, timeout=3000):
    """The browser's DeviceRef for the first virtual device whose product contains ``product_part``."""

    def ref():
        for r in win.browser.devices("virtual"):
            if product_part in (win.browser.device(r).product or ""):
                return r
        return None

    if qtbot is not None:
        qtbot.waitUntil(lambda: ref() is not None, timeout=timeout)
    return ref()


def open_from_browser(win, qtbot, product_part: str = SAM7_PRODUCT):
    """Select the device in the browser and press Enter on it, as a user would; wait until it is identified."""
    from PySide6.QtCore import Qt

    ref = find_ref(win, product_part, qtbot)
    assert win.browser.select(ref)
    win.browser.tree.setFocus()
    qtbot.keyClick(win.browser.tree, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.tab_for(ref) is not None, timeout=2000)
    tab = win.tab_for(ref)
    qtbot.waitUntil(lambda: tab.console.idn is not None, timeout=3000)
    qtbot.waitUntil(lambda: tab.session.state == "idle", timeout=3000)
    return tab


def transcript_has(console, kind: str, text: str) -> bool:
    return any(e.kind == kind and text in e.text for e in console.transcript.entries())


def wait_idle(qtbot, tab, timeout=3000):
    qtbot.waitUntil(lambda: tab.session.outstanding == 0 and tab.session.state == "idle", timeout=timeout)


def unplug(backend, ref):
    """Pull the virtual device behind ``ref`` off its bus; returns what :func:`plug_again` needs."""
    from app.usbtmc import parse_resource

    wanted = parse_resource(ref.resource)
    device = backend.bus.find(vid=wanted.vid, pid=wanted.pid, serial=wanted.serial)
    assert device is not None, f"{ref.resource} is not on the virtual bus"
    backend.bus.unplug(device)
    return device


def plug_again(backend, device):
    backend.bus.plug(device)
