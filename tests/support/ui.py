"""Helpers shared by the GUI tests: ``from support.ui import open_from_browser``."""

from app.usbtmc.errors import BackendUnavailableError

SAM7_PRODUCT = "SAM7"

NO_USB = (
    "libusb could not be loaded, so USB instruments cannot be reached; "
    "install libusb-1.0 (Linux: the libusb-1.0-0 package) or use the virtual instruments"
)


def no_usb():
    """A ``backend_factories["usb"]`` for a machine without libusb: opening USB fails as it would there."""
    raise BackendUnavailableError(NO_USB)


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


def load_waveform_file(panel, qtbot, path) -> bool:
    """Read a file in the waveform panel as its Load button does (off the GUI thread); True when
    it became the source."""
    panel.path.setText(str(path))
    with qtbot.waitSignal(panel.file_loaded, timeout=20000) as blocker:
        panel.load_path()
    return blocker.args[0]
