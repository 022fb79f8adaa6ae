"""The console, status byte, device clear and SRQ on LAN sessions, opened from the browser's LAN group."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from app.ui.browser import TITLE_ROLE, DeviceRef


def transcript_has(console, kind: str, text: str) -> bool:
    return any(e.kind == kind and text in e.text for e in console.transcript.entries())


def wait_idle(qtbot, tab, timeout=3000):
    qtbot.waitUntil(lambda: tab.session.outstanding == 0 and tab.session.state == "idle", timeout=timeout)


@pytest.fixture
def lan_window(qtbot, sim_backend, settings):
    from app.ui.main_window import MainWindow
    from app.usbtmc.errors import BackendUnavailableError

    def no_usb():
        raise BackendUnavailableError("libusb could not be loaded")

    settings.virtual_mode = "on"
    holder = {}
    win = MainWindow(settings, backend_factories={"usb": no_usb, "virtual": lambda: sim_backend,
                                                  "lan": lambda: holder["win"].lan_directory(discover=False)},
                     discovery_interval_ms=100)
    holder["win"] = win
    qtbot.addWidget(win)
    win.resize(1200, 760)
    win.show()
    win.start()
    yield win
    assert win.shutdown(timeout_ms=5000), "sessions, discovery or the LAN servers did not stop"


def lan_ref(win, qtbot, protocol: str, product: str = "SAM7"):
    def find():
        for ref in win.browser.devices("lan"):
            info = win.browser.device(ref)
            if info.protocol == protocol and product in (info.product or ""):
                return ref
        return None

    qtbot.waitUntil(lambda: find() is not None, timeout=5000)
    return find()


def open_lan(win, qtbot, ref):
    assert win.browser.select(ref)
    win.browser.tree.setFocus()
    qtbot.keyClick(win.browser.tree, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.tab_for(ref) is not None, timeout=2000)
    tab = win.tab_for(ref)
    qtbot.waitUntil(lambda: tab.console.idn is not None, timeout=5000)
    wait_idle(qtbot, tab, 5000)
    return tab


@pytest.mark.parametrize("protocol", ["SOCKET", "VXI-11", "HiSLIP"])
def test_the_console_runs_on_each_lan_protocol(lan_window, qtbot, protocol):
    tab = open_lan(lan_window, qtbot, lan_ref(lan_window, qtbot, protocol))
    console = tab.console
    assert console.idn.startswith("XYZ Company Ltd, SAM7-EK")
    assert transcript_has(console, "note", protocol)  # "session open: ... (TCPIP..., VXI-11, TCP)"
    actions = console.actions_by_name
    assert actions["read_stb"].isEnabled()  # the protocol's own read, or *STB? on a raw socket
    actions["read_stb"].trigger()
    qtbot.waitUntil(lambda: transcript_has(console, "info", "status byte #H"), timeout=3000)
    how = {"SOCKET": "*STB?", "VXI-11": "device_readstb", "HiSLIP": "AsyncStatusQuery"}[protocol]
    assert any(e.tag == how for e in console.transcript.entries() if e.text.startswith("status byte #H"))
    # The window's I/O trace has the status read as a message of this session (docs/lan.md).
    assert any(e.kind == "message" and e.op == "stb" and protocol in lan_window.trace.sessions[e.session].name
               for e in lan_window.trace.entries())
    actions["clear"].trigger()
    if protocol == "SOCKET":
        qtbot.waitUntil(lambda: transcript_has(console, "error", "no device clear"), timeout=3000)
    else:
        qtbot.waitUntil(lambda: transcript_has(console, "info", "device clear: done"), timeout=3000)
    assert not actions["indicator_pulse"].isEnabled()


def test_demo_mode_shows_each_virtual_instrument_once_with_its_usb_and_lan_connections(lan_window, qtbot):
    browser = lan_window.browser
    ref = lan_ref(lan_window, qtbot, "HiSLIP", "Loopback")
    assert browser.device(ref).serial == "LOOP-0001"  # from *IDN?, as on the USB descriptor
    sam7 = lan_ref(lan_window, qtbot, "HiSLIP", "SAM7")
    # The SAM7's *IDN? gives serial 0 (none); the virtual server names the model it serves.
    assert browser.device(sam7).serial == "SAM7-0001"
    qtbot.waitUntil(lambda: len(browser.connections(sam7)) == 4, timeout=5000)
    conns = browser.connections(sam7)
    assert [r.source for r in conns] == ["virtual", "lan", "lan", "lan"]
    assert [browser.device(r).protocol for r in conns[1:]] == ["HiSLIP", "VXI-11", "SOCKET"]
    group = browser._groups["virtual"]
    titles = [group.child(i).data(0, TITLE_ROLE) for i in range(group.childCount())]
    assert titles.count("SAM7-EK") == 1
    lan_group = browser._groups["lan"]
    assert not any(lan_group.child(i).data(0, TITLE_ROLE) for i in range(lan_group.childCount()))
    entry = browser._instrument_items[conns[0]]
    assert entry.text(0).endswith("USB + 3 LAN")
    # Its HiSLIP row opens a session on HiSLIP; the instrument's row stays one entry.
    tab = open_lan(lan_window, qtbot, sam7)
    assert tab.ref == sam7 and tab.console.idn.startswith("XYZ Company Ltd, SAM7-EK")
    assert "open (HiSLIP)" in entry.text(0)


def test_an_added_lan_instrument_is_remembered_and_bad_strings_are_refused(lan_window, qtbot, settings):
    assert lan_window.add_lan_instrument("TCPIP::nowhere.invalid::inst0") == "TCPIP::nowhere.invalid::inst0::INSTR"
    assert "TCPIP::nowhere.invalid::inst0::INSTR" in settings.lan_resources
    assert lan_window.add_lan_instrument("TCPIP::::SOCKET") is None
    assert "Not added" in lan_window.statusBar().currentMessage()
    ref = DeviceRef("lan", "TCPIP::nowhere.invalid::inst0::INSTR")
    qtbot.waitUntil(lambda: lan_window.browser.device(ref) is not None, timeout=8000)
    qtbot.waitUntil(lambda: bool(lan_window.browser.device(ref).problem), timeout=8000)
    assert "cannot be reached" in lan_window.browser.device(ref).problem


@pytest.mark.parametrize("protocol", ["VXI-11", "HiSLIP"])
def test_service_requests_reach_the_srq_view_on_lan(lan_window, qtbot, protocol):
    tab = open_lan(lan_window, qtbot, lan_ref(lan_window, qtbot, protocol, "Loopback"))
    console = tab.console
    console.input.setText("*CLS;*ESE 1;*SRE 32;*OPC")
    qtbot.keyClick(console.input, Qt.Key.Key_Return)
    # The VXI-11 interrupt channel or HiSLIP's AsyncServiceRequest, polled by the worker.
    qtbot.waitUntil(lambda: any(e.kind == "srq" and e.text.startswith("service request: status byte")
                                for e in console.transcript.entries()), timeout=5000)


@pytest.mark.parametrize("protocol", ["SOCKET", "VXI-11", "HiSLIP"])
def test_a_waveform_upload_runs_over_lan_and_feeds_the_throughput_graph(lan_window, qtbot, sim_backend, protocol):
    import zlib

    from app.sim.awg import VirtualAwg

    tab = open_lan(lan_window, qtbot, lan_ref(lan_window, qtbot, protocol, "Virtual AWG"))
    tab.panels.setCurrentWidget(tab.waveform)
    qtbot.waitUntil(lambda: tab.waveform.built, timeout=2000)
    panel = tab.waveform.panel()
    qtbot.waitUntil(lambda: panel.plan is not None and panel.upload_button.isEnabled(), timeout=3000)
    panel.points.setValue(1 << 20)  # 2 MiB of int16
    qtbot.waitUntil(lambda: panel.plan is not None and panel.plan.source.points == 1 << 20, timeout=3000)
    with qtbot.waitSignal(panel.upload_finished, timeout=30000) as blocker:
        assert panel.start_upload()
    result = blocker.args[0]
    assert result is not None and result.verified and result.errors == ()
    run = panel.graph.runs[-1]
    assert run.finished and run.done_bytes[-1] == result.bytes_sent and all(r > 0 for r in run.rates_MBps)
    # The model on the virtual bus is the one served on LAN: it holds what went over TCP.
    stored = sim_backend.bus.find(kind=VirtualAwg).waveform("tmc_wave")
    assert zlib.crc32(stored.data) == result.crc32
