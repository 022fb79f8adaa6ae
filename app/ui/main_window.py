"""The main window: device browser on the left, a tab per open instrument on the right."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from html import escape

from PySide6.QtCore import QEventLoop, QSize, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.session import Origin, SessionState
from app.session.events import Control, Failed, Finished, Opened
from app.usbtmc.errors import BackendUnavailableError, ResourceError
from app.usbtmc.resource import parse_resource
from app.usbtmc.trace import Recorder

from .browser import DeviceBrowser, DeviceRef, device_title
from .device_panels import attach_panels
from .discovery import DEFAULT_INTERVAL_MS, BackendProvider, Discovery, Snapshot
from .icon import app_icon
from .instrument_tab import STATE_TEXT, InstrumentTab
from .live_text import hold_size
from .probe_dialog import ProbeDialog
from .recovery import Recovered, start_recovery
from .settings import TIMEOUT_RANGE_MS, Settings
from .settings_dialog import SettingsDialog
from .srq import SrqCenter
from .theme import apply_theme
from .virtual_menu import VirtualInstrumentActions
from .trace_dock import TraceDock
from .worker import Session, live_threads

log = logging.getLogger(__name__)

# Closing the window waits this long for the sessions to end. Every command was aborted, but a
# worker inside a synchronous transfer cannot be interrupted from outside: it is left to its
# timeout (up to 600 s), and main() ends the process without waiting for it.
CLOSE_WAIT_MS = 1000

def default_backend_factories() -> dict[str, Callable[[], object]]:
    """Real USB through libusb, and the in-process virtual bus (one per process)."""

    def usb():
        from app.usbtmc import default_backend

        return default_backend()

    def virtual():
        import app.sim

        return app.sim.backend()

    return {"usb": usb, "virtual": virtual}


class WelcomePage(QWidget):
    """What the right side shows before any instrument is open."""

    open_virtual_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcomePage")
        icon = QLabel(self)
        icon.setPixmap(app_icon().pixmap(QSize(96, 96)))
        icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title = QLabel("TMC Console", self)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setText(
            "<p>Open an instrument: double-click it in the list on the left, or select it and press Enter.</p>"
            "<p>No hardware at hand? The <b>Virtual instruments</b> group holds a SAM7 counter board and a "
            "SCPI loopback instrument that behave like the real thing.</p>"
            "<p><b>Enter</b> sends a line and reads the reply of a query · <b>Up/Down</b> recall history · "
            "<b>Tab</b> completes commands · <b>Ctrl+R</b> searches history · <b>F5</b> rescans</p>"
        )
        self.open_virtual = QPushButton("Open the virtual SAM7 counter", self)
        self.open_virtual.clicked.connect(self.open_virtual_requested)
        button_row = QHBoxLayout()
        button_row.addStretch(1)
        button_row.addWidget(self.open_virtual)
        button_row.addStretch(1)
        box = QVBoxLayout()
        box.addStretch(1)
        box.addWidget(icon)
        box.addWidget(title)
        box.addSpacing(8)
        box.addWidget(self.text)
        box.addSpacing(8)
        box.addLayout(button_row)
        box.addStretch(2)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(box, 4)
        outer.addStretch(1)


class MainWindow(QMainWindow):
    """The application window. Call :meth:`start` to begin discovery."""

    tab_opened = Signal(object)  # InstrumentTab

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backend_factories: dict[str, Callable[[], object]] | None = None,
        discovery_interval_ms: int = DEFAULT_INTERVAL_MS,
        instrument_factory=None,
    ) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("TMC Console")
        self.setWindowIcon(app_icon())
        self.settings = settings if settings is not None else Settings()
        factories = dict(backend_factories) if backend_factories else default_backend_factories()
        self._lan = None  # the LanDirectory behind the "lan" source, once created
        if backend_factories is None:
            factories["lan"] = self.lan_directory
        self.backends = BackendProvider(factories)
        self.discovery = Discovery(self.backends, discovery_interval_ms, self)
        self.discovery.snapshot.connect(self._on_snapshot)
        self._instrument_factory = instrument_factory
        self._tabs: dict[DeviceRef, InstrumentTab] = {}
        self._retiring: set[Session] = set()  # closed sessions whose threads are still ending
        self._probes: set[ProbeDialog] = set()  # compliance probe dialogs still open
        self._resets: dict[DeviceRef, QThread] = {}  # USB port resets of devices without a tab
        self._virtual_decided = self.settings.virtual_mode != "auto"
        self._shut_down = False
        self._open_sam7_when_listed = False
        # Instruments open when the window last closed, opened again once discovery lists them.
        self._reopen_pending: list[DeviceRef] = (
            [DeviceRef(source, resource) for source, resource in self.settings.open_at_quit]
            if self.settings.reopen_sessions else [])

        self.browser = DeviceBrowser(self.settings, self)
        self.browser.open_requested.connect(self.open_device)
        self.browser.open_without_quirks_requested.connect(lambda ref: self.open_device(ref, use_quirks=False))
        self.browser.probe_requested.connect(self.probe_device)
        self.browser.reset_port_requested.connect(self.reset_port)
        self.browser.identify_requested.connect(self.identify)
        self.browser.alias_changed.connect(self._on_alias)
        self.browser.rescan_requested.connect(self.rescan)
        self.browser.selection_changed.connect(lambda _ref: self._update_actions())
        self.virtual_actions = VirtualInstrumentActions(self.browser, self._virtual_bus, self)
        self.virtual_actions.changed.connect(lambda text: (self.rescan(), self.statusBar().showMessage(text, 8000)))
        self.dock = QDockWidget("Instruments", self)
        self.dock.setObjectName("instrumentsDock")
        self.dock.setWidget(self.browser)
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                              | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        # Every session records its transfers here; the dock shows them (docs/trace.md).
        self.trace = Recorder()
        self.trace_dock = TraceDock(self.trace, self)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.trace_dock)
        self.trace_dock.hide()
        self.trace_dock.panel.transcript_requested.connect(self.show_in_transcript)

        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("sessionTabs")
        self.tabs.setTabsClosable(True)
        self.tabs.setMovable(True)
        self.tabs.setDocumentMode(True)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.tabs.currentChanged.connect(lambda _i: self._update_actions())
        self.tabs.currentChanged.connect(self._select_current_in_browser)
        self.welcome = WelcomePage(self)
        self.welcome.open_virtual_requested.connect(self.open_virtual_sam7)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.tabs)
        self.setCentralWidget(self.stack)

        self.session_label = QLabel(self)
        self.session_label.setObjectName("sessionStatus")
        # Held at the widest state's size (see _update_actions), its text keeps to the right.
        self.session_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.bus_label = QLabel(self)
        self.bus_label.setObjectName("busStatus")
        self.bus_label.setContentsMargins(self.fontMetrics().averageCharWidth() * 2, 0, 0, 0)
        self.statusBar().addPermanentWidget(self.session_label)
        self.statusBar().addPermanentWidget(self.bus_label)

        self._build_menus()
        # SRQ notifications and badges for every tab, then the status view and demo panels (by device profile).
        self.srq_center = SrqCenter(self)
        self.tab_opened.connect(lambda tab: attach_panels(tab, self.backends, self.srq_center))
        self._apply_virtual_mode(initial=True)
        self._quirky_defaults: set[int] | None = None  # ids of the bus's own devices while quirky ones are plugged
        if self.settings.virtual_quirky:
            self.set_quirky_virtual(True)
        self.resize(1200, 760)
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self._update_actions()
        self._update_bus_label()

    # --- menus ------------------------------------------------------------------------

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "", checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_action = self._action(file_menu, "&Open selected instrument", lambda: self.browser.activate(),
                                        QKeySequence.StandardKey.Open, "Open a session with the instrument selected in the list")
        self.close_tab_action = self._action(file_menu, "&Close instrument tab", lambda: self.close_tab(self.tabs.currentIndex()),
                                             QKeySequence.StandardKey.Close)
        file_menu.addSeparator()
        self.run_file_action = self._action(file_menu, "&Run SCPI file…", lambda: self._console_call("run_file"),
                                            "Ctrl+Shift+O", "Send each line of a file to the current instrument")
        self.save_action = self._action(file_menu, "&Save transcript…", lambda: self._console_call("save_transcript"),
                                        QKeySequence.StandardKey.Save)
        file_menu.addSeparator()
        self._action(file_menu, "Se&ttings…", self.show_settings, "Ctrl+,")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        device_menu = bar.addMenu("&Device")
        self.device_actions: dict[str, QAction] = {}
        for name, text, shortcut in (
            ("clear", "Device &clear", "Ctrl+Shift+K"),
            ("read_stb", "Read &status byte", "Ctrl+Shift+B"),
            ("trigger", "&Trigger", "Ctrl+Shift+T"),
            ("indicator_pulse", "&Indicator pulse", "Ctrl+Shift+I"),
            (None, None, None),
            ("remote", "&Remote", None),
            ("local", "Go to &local", None),
            ("lockout", "Local loc&kout", None),
        ):
            if name is None:
                device_menu.addSeparator()
                continue
            self.device_actions[name] = self._action(device_menu, text, lambda _=False, n=name: self._control(n), shortcut)
        device_menu.addSeparator()
        self.abort_action = self._action(device_menu, "&Abort", lambda: self._console_call("abort"), "Ctrl+.",
                                         "Abort what the current instrument is doing (also Esc in the console)")
        self.reconnect_action = self._action(device_menu, "Reco&nnect", self._reconnect_current, "Ctrl+Shift+R")
        device_menu.addSeparator()
        self.identify_action = self._action(device_menu, "I&dentify selected (indicator pulse)",
                                            lambda: self.identify(self.browser.selected()))
        self._action(device_menu, "Resca&n buses", self.rescan, QKeySequence.StandardKey.Refresh)
        if "lan" in self.backends.sources:
            self._action(device_menu, "Add &LAN instrument…", lambda: self.add_lan_instrument(), None,
                         "Remember an instrument on the network by its VISA resource string (raw socket, VXI-11, HiSLIP)")

        view_menu = bar.addMenu("&View")
        toggle = self.dock.toggleViewAction()
        toggle.setText("&Instruments panel")
        toggle.setShortcut(QKeySequence("Ctrl+1"))
        view_menu.addAction(toggle)
        trace_toggle = self.trace_dock.toggleViewAction()
        trace_toggle.setText("I/O &trace")
        trace_toggle.setShortcut(QKeySequence("Ctrl+2"))
        view_menu.addAction(trace_toggle)
        self.virtual_action = self._action(view_menu, "Show &virtual instruments", self._toggle_virtual, None,
                                           "The SAM7 counter and SCPI loopback on an in-process virtual bus", True)
        self.quirky_action = self._action(view_menu, "Include &quirky virtual instruments", self.set_quirky_virtual,
                                          None, "Virtual instruments that break the USBTMC spec the way reported "
                                          "devices do, to see each failure and its quirk entry's cure", True)
        theme_menu = view_menu.addMenu("&Colours")
        group = QActionGroup(self)
        self.theme_actions = {}
        for value, text in (("system", "Follow the &system"), ("light", "&Light"), ("dark", "&Dark")):
            action = self._action(theme_menu, text, lambda _=False, v=value: self.set_theme(v), checkable=True)
            action.setChecked(self.settings.theme == value)
            group.addAction(action)
            self.theme_actions[value] = action
        view_menu.addSeparator()
        self.search_action = self._action(view_menu, "Search &history", lambda: self._console_call("search_history"), "Ctrl+R")
        self.clear_view_action = self._action(view_menu, "C&lear transcript",
                                              lambda: self._console_call("clear_transcript"), "Ctrl+L")
        view_menu.addSeparator()
        self._action(view_menu, "&Reset layout", self.reset_layout)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Documentation", self.show_docs, QKeySequence.StandardKey.HelpContents)
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts)
        help_menu.addSeparator()
        self._action(help_menu, "&About TMC Console", self.show_about)
        self._action(help_menu, "About &Qt", QApplication.aboutQt)

    # --- lifetime -------------------------------------------------------------------------

    def start(self) -> None:
        """Begin discovery (after the window is set up, so the first snapshot has somewhere to go)."""
        self.discovery.start()

    def shutdown(self, timeout_ms: int | None = None) -> bool:
        """Close every session (aborting what each has outstanding) and stop discovery; True when
        every thread has ended within ``timeout_ms`` (default: the longest session timeout + 2 s)."""
        if not self._shut_down:
            self._shut_down = True
            self.srq_center.shutdown()
            self.settings.save_window_state(self.saveGeometry(), self.saveState())
            self.settings.open_at_quit = [(tab.ref.source, tab.ref.resource) for tab in self.open_tabs()]
            for tab in list(self._tabs.values()):
                tab.close_session("the window closed")
                self._retire(tab.session)
            self.settings.sync()
        if timeout_ms is None:
            # A worker may be inside a transfer: give it its timeout to come out.
            timeout_ms = max([s.timeout_ms for s in self._retiring] + [0]) + 2000
        deadline = time.monotonic() + timeout_ms / 1000
        ok = self.discovery.stop(timeout_ms)
        if self._lan is not None:
            # The demo's virtual LAN servers; discovery's thread may be listening (a daemon: not waited for long).
            self._lan.close(wait_s=0.2)
        for session in list(self._retiring):
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            if not session.wait(remaining):
                log.warning("the session with %s did not end in time", session.resource)
                ok = False
        for thread in list(self._resets.values()):
            ok = thread.wait(max(0, int((deadline - time.monotonic()) * 1000))) and ok
        for dialog in list(self._probes):
            ok = dialog.stop(max(0, int((deadline - time.monotonic()) * 1000))) and ok
        return ok and not live_threads()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.hide()
        if not self.shutdown(timeout_ms=CLOSE_WAIT_MS):
            self.abandoned = [t.objectName() for t in live_threads()]
            log.warning("closing with threads still inside a transfer, abandoned: %s", ", ".join(self.abandoned))
        super().closeEvent(event)

    # --- sessions -----------------------------------------------------------------------

    def tab_for(self, ref: DeviceRef) -> InstrumentTab | None:
        return self._tabs.get(ref)

    def current_tab(self) -> InstrumentTab | None:
        widget = self.tabs.currentWidget()
        return widget if isinstance(widget, InstrumentTab) else None

    def open_tabs(self) -> list[InstrumentTab]:
        """The instrument tabs in their order on the tab bar (other tabs, if any, left out)."""
        widgets = (self.tabs.widget(i) for i in range(self.tabs.count()))
        return [w for w in widgets if isinstance(w, InstrumentTab)]

    @Slot(object)
    def open_device(self, ref: DeviceRef, use_quirks: bool = True) -> InstrumentTab | None:
        """Open a session with ``ref`` in a new tab, or bring its tab forward.

        ``use_quirks`` False opens it as if it were compliant (an open tab reopens that way).
        """
        tab = self._tabs.get(ref)
        if tab is not None:
            self.tabs.setCurrentWidget(tab)
            if tab.session.use_quirks != use_quirks:
                tab.session.use_quirks = use_quirks
                self._say_quirks(ref, use_quirks)
                tab.reconnect()
            elif tab.session.state.is_ended:
                tab.reconnect()
            return tab
        try:
            backend = self.backends.get(ref.source)
        except Exception as exc:  # the backend's own error says what is missing
            self.statusBar().showMessage(f"Cannot open {ref.resource}: {exc}", 10000)
            return None
        timeout_ms = self.settings.instrument_int(ref.resource, "timeout_ms", self.settings.default_timeout_ms,
                                                  *TIMEOUT_RANGE_MS, what=f"timeout (ms) of {ref.resource}")
        session = Session(ref.resource, backend, source=ref.source, timeout_ms=timeout_ms,
                          instrument_factory=self._instrument_factory, use_quirks=use_quirks, trace=self.trace,
                          parent=self)
        if not use_quirks:
            self._say_quirks(ref, use_quirks)
        info = self.browser.device(ref)
        tab = InstrumentTab(ref, session, self.settings, info, self)
        self._tabs[ref] = tab
        tab.state_changed.connect(lambda state, t=tab: self._on_tab_state(t, state))
        tab.title_changed.connect(lambda t=tab: self._retitle(t))
        tab.port_reset.connect(lambda result, r=ref: self._on_port_reset(r, result))
        tab.console.actions_changed.connect(self._update_actions)
        tab.console.transcript.trace_links = True
        tab.console.transcript.trace_requested.connect(lambda entry_id, t=tab: self.show_trace_of(t, entry_id))
        index = self.tabs.addTab(tab, tab.state_icon(), tab.title())
        self.tabs.setTabToolTip(index, ref.resource)
        self.tabs.setCurrentIndex(index)
        self.stack.setCurrentWidget(self.tabs)
        session.open()
        tab.console.input.setFocus()
        self.tab_opened.emit(tab)
        return tab

    def show_trace_of(self, tab: InstrumentTab, entry_id: int) -> bool:
        """Show the I/O trace dock at the transfers of a transcript entry's command."""
        entry = tab.console.transcript.entry(entry_id)
        if entry is None or not entry.command_id:
            return False
        self.trace_dock.show()
        self.trace_dock.raise_()
        found = self.trace_dock.panel.show_command(_trace_name(tab.session.resource), entry.command_id)
        if not found:
            self.statusBar().showMessage("That command left nothing in the I/O trace (it was cleared, "
                                         "or the session is not traced)", 8000)
        return found

    def show_in_transcript(self, session_name: str, command_id: int) -> bool:
        """From the trace back to the transcript line of the command ``command_id``."""
        for tab in self._tabs.values():
            if _trace_name(tab.session.resource) == session_name:
                self.tabs.setCurrentWidget(tab)
                tab.panels.setCurrentWidget(tab.console)
                return tab.console.transcript.scroll_to_command(command_id) is not None
        self.statusBar().showMessage("That session's tab is closed", 8000)
        return False

    def _say_quirks(self, ref: DeviceRef, use_quirks: bool) -> None:
        if use_quirks:
            self.statusBar().showMessage(f"{ref.resource}: reopening with its quirks.", 8000)
        else:
            self.statusBar().showMessage(
                f"{ref.resource}: opening without quirks, as if the device were compliant.", 8000)

    @Slot(int)
    def _select_current_in_browser(self, _index: int) -> None:
        """The browser's selection follows the active tab, so its details and actions are that instrument's."""
        tab = self.current_tab()
        if tab is not None and self.browser.selected() != tab.ref:
            self.browser.select(tab.ref)

    @Slot(object)
    def probe_device(self, ref: DeviceRef) -> ProbeDialog | None:
        """Open the compliance probe's dialog for ``ref``; the probe runs on its own worker thread.

        The dialog asks first: it lists the steps, says which are risky for this device, and
        starts when the user chooses. The probe opens the interface itself, so an open session
        is closed then.
        """
        try:
            backend = self.backends.get(ref.source)
        except Exception as exc:  # the backend's own error says what is missing
            self.statusBar().showMessage(f"Cannot probe {ref.resource}: {exc}", 10000)
            return None
        info = self.browser.device(ref)
        title = device_title(info, self.settings.alias(ref.resource)) if info is not None else ref.resource
        tab = self._tabs.get(ref)
        session_open = tab is not None and not tab.session.state.is_ended
        dialog = ProbeDialog(ref.resource, backend, title=title, product=info.product if info is not None else "",
                             session_open=session_open, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._probes.add(dialog)
        dialog.destroyed.connect(lambda *_, d=dialog: self._probes.discard(d))
        dialog.starter = lambda d=dialog, r=ref: self._start_probe(d, r)
        dialog.recovered.connect(lambda _result: self.rescan())
        dialog.show()
        return dialog

    @Slot(object)
    def reset_port(self, ref: DeviceRef) -> bool:
        """Reset the USB port of ``ref`` (replug a virtual instrument) and open its session again.

        With a tab open, the tab does it (it closes the instrument first and says in its
        banner how it went); otherwise the reset runs alone and the status bar says.
        """
        tab = self._tabs.get(ref)
        if tab is not None:
            self.tabs.setCurrentWidget(tab)
            return tab.reset_port()
        if ref in self._resets:
            return False
        try:
            backend = self.backends.get(ref.source)
        except Exception as exc:  # the backend's own error says what is missing
            self.statusBar().showMessage(f"Cannot reset {ref.resource}: {exc}", 10000)
            return False
        self.statusBar().showMessage(f"Resetting the USB port of {ref.resource}…")
        self._resets[ref] = start_recovery(ref.resource, backend, self,
                                           lambda result, r=ref: self._on_port_reset(r, result))
        return True

    def _on_port_reset(self, ref: DeviceRef, result: Recovered) -> None:
        self._resets.pop(ref, None)
        self.rescan()  # it says "Rescanning…": the result goes after it
        self.statusBar().showMessage(f"{ref.resource}: {result.message}", 15000)

    def _start_probe(self, dialog: ProbeDialog, ref: DeviceRef) -> None:
        tab = self._tabs.get(ref)
        if tab is None:
            dialog.start()
            return
        session = tab.session
        self.close_tab(self.tabs.indexOf(tab))
        dialog.start_after(session.thread)  # the interface is free once its worker ends

    @Slot(int)
    def close_tab(self, index: int) -> None:
        if index < 0:
            return
        tab = self.tabs.widget(index)
        if not isinstance(tab, InstrumentTab):
            return
        self.tabs.removeTab(index)
        self._tabs.pop(tab.ref, None)
        self.browser.set_open_state(tab.ref, None)
        tab.close_session()
        self._retire(tab.session)
        tab.deleteLater()
        if not self._tabs:
            self.stack.setCurrentWidget(self.welcome)
        self._update_actions()

    def _retire(self, session: Session) -> None:
        """Keep a closing session alive until its thread has ended."""
        self._retiring.add(session)
        session.thread.finished.connect(lambda s=session: self._retiring.discard(s))
        if not session.thread.isRunning():  # checked after connecting: it may have ended in between
            self._retiring.discard(session)

    def open_virtual_sam7(self) -> None:
        """Open the virtual SAM7 (switching the virtual instruments on if needed)."""
        if not self.virtual_action.isChecked():
            self.virtual_action.setChecked(True)
            self._toggle_virtual(True)
        ref = next((r for r in self.browser.devices("virtual") if "SAM7" in (self.browser.device(r).product or "")), None)
        if ref is None:
            self._open_sam7_when_listed = True  # the next virtual snapshot opens it
            self.statusBar().showMessage("Looking for the virtual SAM7…", 5000)
            return
        self._open_sam7_when_listed = False
        self.browser.select(ref)
        self.open_device(ref)

    def _on_tab_state(self, tab: InstrumentTab, state: str) -> None:
        index = self.tabs.indexOf(tab)
        if index >= 0:
            self.tabs.setTabIcon(index, tab.state_icon())
        shown = state in (SessionState.IDLE, SessionState.BUSY, SessionState.OPENING)
        self.browser.set_open_state(tab.ref, state if shown else
                                    ("gone" if state == SessionState.GONE else None))
        if state == SessionState.GONE:
            self.statusBar().showMessage(f"{tab.title()}: the device is gone", 10000)
        self._update_actions()

    def _retitle(self, tab: InstrumentTab) -> None:
        index = self.tabs.indexOf(tab)
        if index >= 0:
            self.tabs.setTabText(index, tab.title())
        self._update_actions()

    def _reconnect_current(self) -> None:
        tab = self.current_tab()
        if tab is not None:
            tab.reconnect()

    def _control(self, action: str) -> None:
        tab = self.current_tab()
        if tab is not None:
            tab.console.control(action)

    def _console_call(self, name: str) -> None:
        tab = self.current_tab()
        if tab is None:
            return
        console = tab.console
        if name == "clear_transcript":
            console.transcript.clear_entries()
        else:
            getattr(console, name)()

    @Slot(object)
    def identify(self, ref: DeviceRef | None) -> None:
        """Blink the device's indicator (USBTMC INDICATOR_PULSE), through its session or a short one."""
        if ref is None:
            return
        tab = self._tabs.get(ref)
        if tab is not None and tab.session.is_open:
            tab.console.control("indicator_pulse")
            return
        try:
            backend = self.backends.get(ref.source)
        except Exception as exc:  # the backend's own error says what is missing
            self.statusBar().showMessage(f"Cannot identify {ref.resource}: {exc}", 10000)
            return
        session = Session(ref.resource, backend, source=ref.source, timeout_ms=2000,
                          instrument_factory=self._instrument_factory, parent=self)
        name = device_title(self.browser.device(ref), self.settings.alias(ref.resource)) if self.browser.device(ref) else ref.resource
        pulse_id = [0]

        def on_event(event) -> None:
            if isinstance(event, Opened):
                pulse_id[0] = session.submit(Control("indicator_pulse"), origin=Origin.IDENTIFY)
            elif isinstance(event, Failed):
                self.statusBar().showMessage(f"Cannot identify {name}: {event.message}", 10000)
                if not pulse_id[0]:
                    session.close("identify failed")
            elif isinstance(event, Finished) and event.command_id == pulse_id[0]:
                if event.ok:
                    self.statusBar().showMessage(f"{name}: indicator pulsed", 5000)
                session.close("identify done")

        session.event.connect(on_event)
        session.open()
        self._retire(session)

    # --- discovery ------------------------------------------------------------------------

    @Slot(object)
    def _on_snapshot(self, snap: Snapshot) -> None:
        self.browser.apply_snapshot(snap)
        if snap.source == "usb" and not self._virtual_decided:
            self._virtual_decided = True
            if snap.devices:
                self.virtual_action.setChecked(False)
                self.browser.set_source_visible("virtual", False)
                self.discovery.set_enabled("virtual", False)
        if not snap.error:
            by_resource = {info.resource: info for info in snap.devices}
            for ref, tab in self._tabs.items():
                if ref.source != snap.source:
                    continue
                info = by_resource.get(ref.resource)
                if info is not None:
                    tab.device_present(info)
                elif not self._held_elsewhere(ref, snap):
                    tab.device_missing()
        self._update_bus_label()
        self._update_actions()
        if snap.source == "virtual" and self._open_sam7_when_listed and snap.devices:
            self.open_virtual_sam7()
        if self._reopen_pending and not snap.error:
            listed = {DeviceRef(snap.source, info.resource) for info in snap.devices}
            for ref in [r for r in self._reopen_pending if r in listed]:
                self._reopen_pending.remove(ref)
                if ref not in self._tabs:
                    self.open_device(ref)

    @staticmethod
    def _held_elsewhere(ref: DeviceRef, snap: Snapshot) -> bool:
        # Some platforms cannot read the strings of a device our own session holds open; it
        # is then listed with a problem and no serial. Do not call such a device gone.
        from app.usbtmc import parse_resource

        try:
            wanted = parse_resource(ref.resource)
        except ValueError:
            return False
        return any(info.problem and (info.vid, info.pid) == (wanted.vid, wanted.pid) for info in snap.devices)

    def rescan(self) -> None:
        self.discovery.rescan()
        self.statusBar().showMessage("Rescanning…", 2000)

    def _update_bus_label(self) -> None:
        parts = []
        for source, name in (("usb", "USB"), ("virtual", "Virtual"), ("lan", "LAN")):
            if source not in self.backends.sources:
                continue
            if not self.browser.is_source_visible(source) and source == "virtual":
                parts.append("Virtual: hidden")
                continue
            if not self.browser.has_scanned(source):
                parts.append(f"{name}: looking…")
            elif self.browser.source_error(source):
                parts.append(f"{name}: no access" if source == "usb" else f"{name}: unavailable")
            else:
                parts.append(f"{name}: {len(self.browser.devices(source))}")
        self.bus_label.setText("  ·  ".join(parts))

    # --- LAN instruments ------------------------------------------------------------------------

    def lan_directory(self, discover: bool = True):
        """The "lan" source: the instruments added by resource string, those discovery finds
        (``discover``), and, while the virtual instruments are shown, the virtual bus's SAM7,
        loopback and AWG served on 127.0.0.1."""
        from app.lan.directory import LanDirectory, discover_all

        def start_virtual():
            from app.sim.awg import VirtualAwg
            from app.sim.lan import serve
            from app.sim.sam7 import Sam7Counter
            from app.sim.scpi_device import VirtualLoopback

            bus = self._virtual_bus()
            kinds = (Sam7Counter, VirtualLoopback, VirtualAwg)
            # The same models as on the virtual bus: one instrument, two connections.
            devices = [d for d in bus.devices() if type(d) in kinds] if bus is not None else None
            return serve(devices or None)

        self._lan = LanDirectory(lambda: self.settings.lan_resources, start_virtual,
                                 lambda: self.settings.virtual_mode != "off", discover=discover_all if discover else None)
        return self._lan

    def add_lan_instrument(self, text: str | None = None) -> str | None:
        """Remember a LAN instrument by resource string (asked for when ``text`` is None); returns
        the canonical string, or None when the string is not a LAN resource (the status bar says why)."""
        if text is None:
            text, ok = QInputDialog.getText(self, "Add LAN instrument",
                                            "VISA resource string, e.g. TCPIP::192.168.1.5::5025::SOCKET,\n"
                                            "TCPIP::192.168.1.5::inst0::INSTR or TCPIP::192.168.1.5::hislip0::INSTR")
            if not ok or not text.strip():
                return None
        from app.lan import parse_lan_resource

        try:
            resource = str(parse_lan_resource(text.strip()))
        except ResourceError as exc:
            self.statusBar().showMessage(f"Not added: {exc}", 10000)
            return None
        self.settings.lan_resources = [*self.settings.lan_resources, resource]
        self.statusBar().showMessage(f"Added {resource}; it is listed under LAN instruments", 8000)
        self.rescan()
        return resource

    # --- virtual instruments and theme ---------------------------------------------------------

    def _apply_virtual_mode(self, initial: bool = False) -> None:
        mode = self.settings.virtual_mode
        on = mode != "off"
        self.virtual_action.setChecked(on)
        self.browser.set_source_visible("virtual", on)
        self.discovery.set_enabled("virtual", on)

    def _toggle_virtual(self, on: bool) -> None:
        self.settings.virtual_mode = "on" if on else "off"
        self._virtual_decided = True
        self.browser.set_source_visible("virtual", on)
        self.discovery.set_enabled("virtual", on)
        self._update_bus_label()

    def set_quirky_virtual(self, on: bool) -> None:
        """Plug the quirky virtual instruments into the virtual bus, or take them out again."""
        self.settings.virtual_quirky = on
        self.quirky_action.setChecked(on)
        try:
            bus = getattr(self.backends.get("virtual"), "bus", None)
        except BackendUnavailableError:
            bus = None
        if bus is None:
            return
        if on and self._quirky_defaults is None:
            import app.sim.quirky

            self._quirky_defaults = {id(device) for device in bus.devices()}
            app.sim.quirky.plug_quirky(bus)
        elif not on and self._quirky_defaults is not None:
            # Unplug everything that came with them, including instruments that re-enumerated.
            for device in bus.devices():
                if id(device) not in self._quirky_defaults:
                    bus.unplug(device)
            self._quirky_defaults = None
        self.rescan()

    def _virtual_bus(self):
        """The virtual bus the virtual instruments are on, or None when they are off."""
        try:
            return getattr(self.backends.get("virtual"), "bus", None)
        except BackendUnavailableError:
            return None

    def set_theme(self, theme: str) -> None:
        self.settings.theme = theme
        app = QApplication.instance()
        if app is not None:
            apply_theme(app, theme)
        if theme in self.theme_actions:
            self.theme_actions[theme].setChecked(True)

    def show_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.set_theme(self.settings.theme)
            mode = self.settings.virtual_mode
            if mode != "auto":
                self._toggle_virtual(mode == "on")
            if self.settings.virtual_quirky != (self._quirky_defaults is not None):
                self.set_quirky_virtual(self.settings.virtual_quirky)
                self.virtual_action.setChecked(mode == "on")

    def reset_layout(self) -> None:
        self.dock.setFloating(False)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        self.dock.show()
        self.resizeDocks([self.dock], [self.fontMetrics().averageCharWidth() * 48], Qt.Orientation.Horizontal)

    # --- actions state and status bar ------------------------------------------------------------

    def _update_actions(self) -> None:
        tab = self.current_tab()
        has_tab = tab is not None
        selected = self.browser.selected()
        self.open_action.setEnabled(selected is not None)
        self.identify_action.setEnabled(selected is not None)
        self.close_tab_action.setEnabled(has_tab)
        self.save_action.setEnabled(has_tab)
        self.search_action.setEnabled(has_tab)
        self.clear_view_action.setEnabled(has_tab)
        is_open = has_tab and tab.session.is_open
        self.run_file_action.setEnabled(is_open)
        self.abort_action.setEnabled(has_tab and tab.session.state == SessionState.BUSY)
        self.reconnect_action.setEnabled(has_tab and tab.session.state.is_ended)
        for name, action in self.device_actions.items():
            console_action = tab.console.actions_by_name.get(name) if has_tab else None
            action.setEnabled(bool(console_action and console_action.isEnabled()))
        if tab is None:
            hold_size(self.session_label, ["No instrument open"])
            self.session_label.setText("No instrument open")
        else:
            title, state = tab.title(), STATE_TEXT.get(tab.session.state, tab.session.state)
            # Sized for every state of this tab: a session's state changes relay nothing out.
            hold_size(self.session_label, [f"{title}: {t}" for t in (*STATE_TEXT.values(), state)])
            self.session_label.setText(f"{escape(title)}: {state}")

    # --- help --------------------------------------------------------------------------------

    def show_docs(self) -> None:
        from .docs_viewer import DocsViewer

        viewer = DocsViewer(self)
        viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        viewer.show()

    def show_about(self):
        """Versions of the app, Python, Qt, pyusb and libusb, and the backends in use, with a Copy button."""
        from .about import AboutDialog

        dialog = AboutDialog(self.backends, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def show_shortcuts(self) -> None:
        rows = [
            ("Enter", "send the line; read the reply when it is a query"),
            ("Shift+Enter / Ctrl+Enter", "send only / send and read"),
            ("Up / Down", "recall history"),
            ("Tab", "complete a command from the instrument's catalogue"),
            ("Ctrl+R", "search history"),
            ("Esc or Ctrl+.", "abort what the instrument is doing"),
            ("Ctrl+O / Ctrl+W", "open the selected instrument / close its tab"),
            ("Ctrl+L", "clear the transcript view"),
            ("F5", "rescan the buses"),
        ]
        html = "<table>" + "".join(f"<tr><td><b>{escape(k)}</b>&nbsp;&nbsp;</td><td>{escape(v)}</td></tr>" for k, v in rows)
        QMessageBox.information(self, "Keyboard shortcuts", html + "</table>")

    @Slot(object, str)
    def _on_alias(self, ref: DeviceRef, _alias: str) -> None:
        tab = self._tabs.get(ref)
        if tab is not None:
            tab.refresh_title()


def _trace_name(resource: str) -> str:
    """The name a session has in the I/O trace (its resource string, normalized as the core writes it)."""
    try:
        return str(parse_resource(resource))
    except ResourceError:
        return resource


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Run the event loop until ``predicate()`` holds or ``timeout_s`` passes (for the smoke test)."""
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        QTimer.singleShot(10, loop.quit)
        loop.exec()
    return True
