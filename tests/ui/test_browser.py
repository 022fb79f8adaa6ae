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


# --- one instrument, several connections (docs/lan.md) -------------------------------------

def lan_twin(usb, protocol: str, resource: str, **changes):
    from app.lan.directory import LanListing

    fields = dict(manufacturer=usb.manufacturer, product=usb.product, serial=usb.serial,
                  idn=f"{usb.manufacturer},{usb.product},{usb.serial},1.0", serial_from="*IDN?")
    fields.update(changes)
    return LanListing(resource, protocol, "10.0.0.5", None if protocol == "VXI-11" else 4880, **fields)


@pytest.fixture
def sam7(infos):
    return next(i for i in infos if i.product == "SAM7-EK")


def instrument_rows(browser, source):
    group = browser._group(source)
    return [group.child(i) for i in range(group.childCount()) if group.child(i).data(0, TITLE_ROLE)]


def test_one_instrument_over_usb_and_lan_is_one_entry_with_its_connections(browser, infos, sam7, qtbot):
    hislip = lan_twin(sam7, "HiSLIP", "TCPIP::10.0.0.5::hislip0::INSTR")
    vxi = lan_twin(sam7, "VXI-11", "TCPIP::10.0.0.5::inst0::INSTR")
    browser.apply_snapshot(Snapshot("lan", (hislip, vxi)))
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    usb_ref, hislip_ref, vxi_ref = (DeviceRef("virtual", sam7.resource), DeviceRef("lan", hislip.resource),
                                    DeviceRef("lan", vxi.resource))
    assert browser.connections(hislip_ref) == (usb_ref, hislip_ref, vxi_ref)
    # One entry, under the USB side's group; the LAN group says where its connections went.
    entries = [row for row in instrument_rows(browser, "virtual") if row.data(0, TITLE_ROLE) == "SAM7-EK"]
    assert len(entries) == 1 and not instrument_rows(browser, "lan")
    assert "Virtual instruments" in browser._group("lan").child(0).text(0)
    entry = entries[0]
    assert entry.text(0).endswith("USB + 2 LAN")
    children = {entry.child(i).text(0): entry.child(i) for i in range(entry.childCount())}
    assert children["Serial"].text(1) == "SAM7-0001"  # the identity, once
    assert [entry.child(i).text(1) for i in range(entry.childCount()) if entry.child(i).childCount()] == [
        sam7.resource, hislip.resource, vxi.resource]
    facts = rows(children["HiSLIP"])
    assert facts["Host"] == "10.0.0.5" and facts["Port"] == "4880" and facts["Service requests"].startswith("yes")
    assert rows(children["VXI-11"])["Port"] == "from the portmapper (port 111)"
    assert rows(children["USB"])["VID:PID"] == f"{sam7.vid:04X}:{sam7.pid:04X}"
    # Enter on the instrument opens its USB connection; on a connection's row, that connection.
    assert browser.select(usb_ref) and browser.tree.currentItem() is entry
    browser.tree.setFocus()
    with qtbot.waitSignal(browser.open_requested) as blocker:
        qtbot.keyClick(browser.tree, Qt.Key.Key_Return)
    assert blocker.args == [usb_ref]
    assert browser.select(hislip_ref) and browser.tree.currentItem() is children["HiSLIP"]
    with qtbot.waitSignal(browser.open_requested) as blocker:
        qtbot.keyClick(browser.tree, Qt.Key.Key_Return)
    assert blocker.args == [hislip_ref]
    text = browser.details.text()
    assert text.count("serial SAM7-0001") == 1 and "▸ <b>HiSLIP:" in text and "service requests: yes" in text
    # A session on one connection shows on its row and on the instrument's.
    browser.set_open_state(hislip_ref, "idle")
    assert "open (HiSLIP)" in entry.text(0) and children["HiSLIP"].font(0).bold()
    assert not children["USB"].font(0).bold()


def test_a_connection_that_goes_leaves_the_instrument_with_the_others(browser, infos, sam7):
    hislip = lan_twin(sam7, "HiSLIP", "TCPIP::10.0.0.5::hislip0::INSTR")
    vxi = lan_twin(sam7, "VXI-11", "TCPIP::10.0.0.5::inst0::INSTR")
    usb_ref, hislip_ref, vxi_ref = (DeviceRef("virtual", sam7.resource), DeviceRef("lan", hislip.resource),
                                    DeviceRef("lan", vxi.resource))
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    browser.apply_snapshot(Snapshot("lan", (hislip, vxi)))
    entry = browser._instrument_items[usb_ref]
    entry.setExpanded(True)
    browser._device_items[hislip_ref].setExpanded(True)
    browser.set_open_state(hislip_ref, "idle")  # changes the connection row's text
    browser.select(vxi_ref)
    browser.apply_snapshot(Snapshot("lan", (hislip,)))  # the host stopped answering VXI-11
    assert browser.connections(usb_ref) == (usb_ref, hislip_ref)
    assert browser._instrument_items[usb_ref] is entry and entry.isExpanded()  # the same entry, kept open
    assert browser._device_items[hislip_ref].isExpanded()  # the rows were rebuilt, unfolded as before
    assert browser.selected() != vxi_ref and browser.device(vxi_ref) is None
    browser.select(hislip_ref)
    browser.apply_snapshot(Snapshot("virtual", tuple(i for i in infos if i is not sam7)))  # unplugged
    assert browser.connections(hislip_ref) == (hislip_ref,)
    lan_rows = instrument_rows(browser, "lan")
    assert [row.data(0, TITLE_ROLE) for row in lan_rows] == ["SAM7-EK (HiSLIP)"]
    assert browser.selected() == hislip_ref  # the selection followed the connection into the LAN group
    assert rows(lan_rows[0])["Resource"] == hislip.resource  # alone again: its rows right under it
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))  # plugged back: one instrument again
    assert browser.connections(hislip_ref) == (usb_ref, hislip_ref)
    assert not instrument_rows(browser, "lan")


@pytest.mark.parametrize("lan_serial, changes", [
    ("0", {}),  # IEEE 488.2 10.14: "0" when the instrument has no serial number to give
    ("", {}),
    ("SAM7-0001", {"product": "SAM9-EK"}),  # another model with the same serial
    ("SAM7-0001", {"manufacturer": "Another Maker"}),
])
def test_an_unknown_serial_or_another_identity_is_never_merged(browser, infos, sam7, lan_serial, changes):
    twin = lan_twin(sam7, "HiSLIP", "TCPIP::10.0.0.5::hislip0::INSTR", serial=lan_serial, **changes)
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    browser.apply_snapshot(Snapshot("lan", (twin,)))
    assert browser.connections(DeviceRef("lan", twin.resource)) == (DeviceRef("lan", twin.resource),)
    assert len(instrument_rows(browser, "lan")) == 1


def test_two_lan_connections_with_no_serial_stay_apart_and_usb_never_joins_usb(browser, infos, sam7):
    a = lan_twin(sam7, "HiSLIP", "TCPIP::10.0.0.5::hislip0::INSTR", serial="0")
    b = lan_twin(sam7, "SOCKET", "TCPIP::10.0.0.5::5025::SOCKET", serial="0")
    clone = replace(sam7, resource=sam7.resource.replace("::INSTR", "::1::INSTR"), interface_number=1)
    browser.apply_snapshot(Snapshot("lan", (a, b)))
    browser.apply_snapshot(Snapshot("virtual", (*infos, clone)))
    assert len(instrument_rows(browser, "lan")) == 2
    assert browser.connections(DeviceRef("virtual", clone.resource)) == (DeviceRef("virtual", clone.resource),)


def test_the_menus_of_an_instrument_and_its_connections(browser, infos, sam7, settings, qtbot):
    hislip = lan_twin(sam7, "HiSLIP", "TCPIP::10.0.0.5::hislip0::INSTR")
    settings.lan_resources = [hislip.resource]
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    browser.apply_snapshot(Snapshot("lan", (hislip,)))
    usb_ref, hislip_ref = DeviceRef("virtual", sam7.resource), DeviceRef("lan", hislip.resource)
    seen = []
    browser.menu_hook = lambda menu, ref, source: seen.append((ref, source))

    def entries(item):
        return {a.text(): a for a in browser.context_menu(item).actions() if a.text()}

    on_instrument = entries(browser._instrument_items[usb_ref])
    assert {"Open session (USB)", "Open over HiSLIP", "Reset USB port", "Probe compliance…"} <= set(on_instrument)
    assert seen[-1] == (usb_ref, "virtual")  # the virtual instrument's fault menu still comes in
    with qtbot.waitSignal(browser.open_requested) as blocker:
        on_instrument["Open over HiSLIP"].trigger()
    assert blocker.args == [hislip_ref]
    on_lan = entries(browser._device_items[hislip_ref])
    assert "Reset USB port" not in on_lan and "Probe compliance…" not in on_lan
    assert seen[-1] == (hislip_ref, "lan")
    assert on_lan["Forget this LAN instrument"].isEnabled()
    with qtbot.waitSignal(browser.rescan_requested):
        on_lan["Forget this LAN instrument"].trigger()
    assert settings.lan_resources == []
    assert not entries(browser._device_items[hislip_ref])["Forget this LAN instrument"].isEnabled()


def test_an_alias_names_every_connection_of_the_instrument(browser, infos, sam7, settings):
    hislip = lan_twin(sam7, "HiSLIP", "TCPIP::10.0.0.5::hislip0::INSTR")
    browser.apply_snapshot(Snapshot("virtual", tuple(infos)))
    browser.apply_snapshot(Snapshot("lan", (hislip,)))
    browser.set_alias(DeviceRef("lan", hislip.resource), "Bench counter")
    assert settings.alias(sam7.resource) == settings.alias(hislip.resource) == "Bench counter"
    entry = browser._instrument_items[DeviceRef("virtual", sam7.resource)]
    assert entry.data(0, TITLE_ROLE) == "Bench counter" and rows(entry)["Alias"] == "Bench counter"
