"""What devices and files say reaches the user as plain text, and odd descriptors or a broken
quirks file are explained in the device browser instead of breaking it."""

from __future__ import annotations

import traceback

import pytest
from PySide6.QtCore import Qt

from app.sim import VirtualBus
from app.sim import backend as sim_backend_of
from app.sim.device import ConfigDesc, DeviceDesc, EndpointDesc, InterfaceDesc, VirtualDevice
from app.ui.browser import DeviceBrowser, DeviceRef
from app.ui.discovery import BackendProvider, Scanner, Snapshot
from app.ui.srq import NoticeCard, SrqNotice
from app.usbtmc import list_resources
from app.usbtmc.errors import BackendUnavailableError

MARKUP = "<b>Bold</b> <img src='x.png'> &amp;"


class OddDevice(VirtualDevice):
    """A USBTMC interface with the endpoints and serial number given (descriptors only)."""

    def __init__(self, endpoints, serial: str, product: str = "Odd") -> None:
        intf = InterfaceDesc(0, 0, 0xFE, 0x03, 0x01, tuple(endpoints))
        super().__init__(device_desc=DeviceDesc(0x0200, 0, 0, 0, 64, 0x1209, 0x0077, 0x0100, 1, 2, 3, 1),
                         configs=[ConfigDesc(1, (intf,), 0x80, 50)],
                         strings={1: "Odd Co", 2: product, 3: serial})


BULK_PAIR = (EndpointDesc(0x01, 2, 64, 0), EndpointDesc(0x82, 2, 64, 0))


@pytest.fixture
def browser(qtbot, settings):
    widget = DeviceBrowser(settings)
    qtbot.addWidget(widget)
    widget.resize(420, 500)
    widget.show()
    return widget


@pytest.mark.parametrize("endpoints, serial, why", [
    ((EndpointDesc(0x01, 2, 64, 0), EndpointDesc(0x81, 3, 8, 10), EndpointDesc(0x81, 2, 64, 0)), "ODD-1",
     "describes endpoint 0x81 twice (interrupt and bulk)"),
    ((EndpointDesc(0x01, 2, 64, 0), EndpointDesc(0x82, 2, 64, 0), EndpointDesc(0x01, 3, 8, 10)), "ODD-2",
     "describes endpoint 0x01 twice (bulk and interrupt)"),
    (BULK_PAIR, "A::B", "The serial number 'A::B' holds '::'"),
])
def test_odd_descriptors_say_cannot_open_and_why(browser, endpoints, serial, why):
    bus = VirtualBus()
    bus.plug(OddDevice(endpoints, serial))
    (info,) = list_resources(sim_backend_of(bus))
    assert why in info.problem
    browser.apply_snapshot(Snapshot("usb", (info,)))
    ref = DeviceRef("usb", info.resource)
    item = browser._device_items[ref]
    assert "cannot open" in item.text(0)
    browser.select(ref)
    assert "Cannot open:" in browser.details.text()


def test_a_product_string_with_markup_is_shown_as_typed(qtbot):
    card = NoticeCard(SrqNotice("R", MARKUP, 0x40, ("MSS",), "", 1, 1, 0.0))
    qtbot.addWidget(card)
    assert card.title.textFormat() == Qt.TextFormat.PlainText and card.title.text() == MARKUP


def test_the_browser_shows_skipped_quirk_entries_in_a_banner(browser, sim_backend, tmp_path, monkeypatch, qtbot):
    import app.usbtmc.quirks as quirks

    user = tmp_path / "quirks.toml"
    user.write_text("quirk_typo = 1\n[[ quirk ]]\nname = 'x'\nvid = 1\nreason = 'r'\nsource = 's'\n[quirk.flags]\nno_eom = 'yes'\n"
                    "\nquirk_typo = 1\n")
    monkeypatch.setattr(quirks, "user_quirks_path", lambda: user)
    quirks.default_database.cache_clear()
    try:
        snap = Scanner("virtual", BackendProvider({"virtual": lambda: sim_backend})).scan()
    finally:
        quirks.default_database.cache_clear()
    assert snap.devices  # the instruments are still listed
    browser.apply_snapshot(snap)
    assert not browser.quirk_banner.isHidden()
    assert browser.quirk_banner.text().splitlines() == [
        "Skipped in your quirks file (the rest of it is in use):",
        f"{user}: unknown top-level keys ['quirk_typo']; entries are [[quirk]] tables",
        f"{user}:8: entry 'x': flag 'no_eom' must be true or false; entry skipped",
    ]
    browser.apply_snapshot(Snapshot("virtual", snap.devices))
    assert browser.quirk_banner.isHidden()


def test_an_unavailable_backend_does_not_grow_a_traceback_per_scan():
    def no_libusb():
        raise BackendUnavailableError("libusb-1.0 is not installed")

    provider = BackendProvider({"usb": no_libusb})
    depths = []
    for _ in range(50):
        try:
            provider.get("usb")
        except BackendUnavailableError as exc:
            depths.append(len(traceback.extract_tb(exc.__traceback__)))
            assert str(exc) == "libusb-1.0 is not installed"
    assert len(set(depths)) == 1 and depths[0] < 5
