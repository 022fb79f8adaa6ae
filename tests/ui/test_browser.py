"""The device browser on its own: rows for capabilities, quirks, problems; aliases; activation."""

from dataclasses import replace

import pytest
from PySide6.QtCore import Qt

from app.ui.browser import TITLE_ROLE, DeviceBrowser, DeviceRef
from app.ui.discovery import Snapshot
from app.usbtmc import AppliedQuirk, list_resources

ADVICE = (
    "Interface 0 is held by another driver or program: add a udev rule giving your user access, e.g. "
    '/etc/udev/rules.d/99-usbtmc.rules with SUBSYSTEM=="usb", ATTR{idVendor}=="1ab1", MODE="0666" (then replug).'
)


@pytest.fixture
def infos(sim_backend):
    return list_resources(sim_backend)


@pytest.fixture
def browser(qtbot, settings):
    widget = DeviceBrowser(settings)
    qtbot.addWidget(widget)
    widget.show()
    return widget


def rows(item):
    out = {}
    for i in range(item.childCount()):
        child = item.child(i)
        out[child.text(0)] = child.text(1)
        out.update(rows(child))
    return out


def test_a_device_that_cannot_be_opened_says_why_and_what_to_do(browser, infos, qtbot):
    rigol = replace(infos[0], vid=0x1AB1, pid=0x04CE, product="DS1104Z", manufacturer="Rigol",
                    resource="USB0::0x1AB1::0x04CE::DS1ZA000001::INSTR", capabilities=None, problem=ADVICE)
    browser.apply_snapshot(Snapshot("usb", (rigol,)))
    ref = DeviceRef("usb", rigol.resource)
    item = browser._device_items[ref]
    assert "cannot open" in item.text(0)
    assert rows(item)["Cannot open"] == ADVICE
    assert rows(item)["Capabilities"] == "not read"
    browser.select(ref)
    assert "udev rule" in browser.details.text()
    # It can still be asked to open (the problem may have been fixed meanwhile).
    with qtbot.waitSignal(browser.open_requested) as blocker:
        qtbot.keyClick(browser.tree, Qt.Key.Key_Return)
    assert blocker.args == [ref]


def test_applied_quirks_are_listed_with_their_reasons(browser, infos):
    quirk = AppliedQuirk("single_request_per_reply", True, "a repeated REQUEST_DEV_DEP_MSG_IN restarts the reply",
                         "python-usbtmc", "Rigol DS1000Z")
    device = replace(infos[0], quirks=(quirk,))
    browser.apply_snapshot(Snapshot("virtual", (device,)))
    item = browser._device_items[DeviceRef("virtual", device.resource)]
    found = rows(item)
    assert found["Quirks"] == "1 applied"
    assert "single_request_per_reply = True: a repeated REQUEST_DEV_DEP_MSG_IN restarts the reply" in found


def test_snapshots_update_in_place_keeping_expansion_and_selection(browser, infos):
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    ref = DeviceRef("virtual", infos[0].resource)
    item = browser._device_items[ref]
    item.setExpanded(True)
    browser.select(ref)
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    assert browser._device_items[ref] is item and item.isExpanded()
    assert browser.selected() == ref
    browser.apply_snapshot(Snapshot("virtual", tuple(infos[1:])))
    assert browser.device(ref) is None and browser.selected() != ref
    browser.apply_snapshot(Snapshot("virtual", ()))
    assert "none found" in browser._groups["virtual"].text(0)


def test_an_alias_names_the_device_and_is_kept(browser, infos, settings):
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    ref = DeviceRef("virtual", infos[0].resource)
    browser.set_alias(ref, "Bench counter")
    assert browser._device_items[ref].data(0, TITLE_ROLE) == "Bench counter"
    assert settings.alias(ref.resource) == "Bench counter"
    assert rows(browser._device_items[ref])["Alias"] == "Bench counter"
    browser.set_alias(ref, "")
    assert settings.alias(ref.resource) == ""


def test_open_sessions_and_badges_show_on_the_device_row(browser, infos):
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    ref = DeviceRef("virtual", infos[0].resource)
    browser.set_open_state(ref, "busy")
    browser.set_badge(ref, "SRQ 3")
    text = browser._device_items[ref].text(0)
    assert "open, busy" in text and text.endswith("SRQ 3")
    assert browser._device_items[ref].font(0).bold()
    browser.set_open_state(ref, None)
    assert not browser._device_items[ref].font(0).bold()


def test_copy_resource_string(browser, infos):
    from PySide6.QtGui import QGuiApplication

    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    ref = DeviceRef("virtual", infos[0].resource)
    browser.copy_resource(ref)
    assert QGuiApplication.clipboard().text() == ref.resource


def test_rows_keep_resource_order_and_two_of_one_model_are_told_apart(browser, infos):
    """Devices arriving in any order are listed by resource; a second SAM7 puts serials in both titles."""
    sam7 = next(i for i in infos if i.product == "SAM7-EK")
    twin = replace(sam7, resource=sam7.resource.replace("SAM7-0001", "SAM7-0002"), serial="SAM7-0002")
    group = browser._group("virtual")

    def titles():
        return [group.child(i).text(0) for i in range(group.childCount()) if group.child(i).data(0, TITLE_ROLE)]

    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    alone = titles()
    assert alone[[i.resource for i in sorted(infos, key=lambda i: i.resource)].index(sam7.resource)].startswith(
        "SAM7-EK  ·")
    browser.apply_snapshot(Snapshot("virtual", (twin, *reversed(infos))))  # the newcomer first
    listed = [browser._ref_of(group.child(i)).resource for i in range(group.childCount())
              if browser._ref_of(group.child(i)) is not None]
    assert listed == sorted(listed)
    shown = titles()
    assert any(t.startswith("SAM7-EK (SAM7-0001)") for t in shown)
    assert any(t.startswith("SAM7-EK (SAM7-0002)") for t in shown)
