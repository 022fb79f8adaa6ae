"""One open instrument: a header saying what it is and how it is, and its panels.

When the instrument is stuck (its open failed, or a command timed out), the tab's banner
offers the way back the compliance probe offers: a USB port reset (a replug on the virtual
bus) through :mod:`app.ui.recovery`, after which the session opens again.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.session import FailureKind, Origin, SessionState
from app.session.events import Closed, Disconnect, Failed

from .browser import DeviceRef, device_title
from .console import ConsolePanel
from .live_text import hold_size
from .recovery import Recovered, start_recovery
from .settings import Settings
from .theme import colors
from .waveform import attach_waveform_panel
from .worker import Session, WorkerThread

STATE_TEXT = {
    SessionState.NEW: "not open",
    SessionState.OPENING: "opening…",
    SessionState.IDLE: "connected",
    SessionState.BUSY: "connected, busy",
    SessionState.GONE: "device gone",
    SessionState.FAILED: "could not open",
    SessionState.CLOSING: "closing…",
    SessionState.CLOSED: "disconnected",
}


def state_color(state: str) -> str:
    c = colors()
    colours = {SessionState.IDLE: c.ok, SessionState.BUSY: c.warning, SessionState.GONE: c.error,
               SessionState.FAILED: c.error}
    return colours.get(state, c.muted)


def dot_icon(color: str, size: int = 12) -> QIcon:
    """A filled circle, for tab and status indicators (drawn at 2x for high-DPI screens)."""
    pixmap = QPixmap(QSize(size * 2, size * 2))
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(color))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(4, 4, size * 2 - 8, size * 2 - 8)
    painter.end()
    pixmap.setDevicePixelRatio(2.0)
    return QIcon(pixmap)


class InstrumentTab(QWidget):
    """The tab of one instrument session.

    Panels plug in with :meth:`add_panel`; the SCPI console is the first. Every
    panel talks to the instrument through ``self.session`` (commands in, events out).
    """

    title_changed = Signal()
    state_changed = Signal(str)
    reconnect_requested = Signal()
    port_reset = Signal(object)  # Recovered, after "Reset USB port"

    RESET_LINK = "reset-port"

    def __init__(self, ref: DeviceRef, session: Session, settings: Settings, info=None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("instrumentTab")
        self.ref = ref
        self.session = session
        self.settings = settings
        self.info = info
        self.idn: str | None = None
        self.missing = False
        self._recovery: WorkerThread | None = None  # a USB port reset under way
        self._reset_waits_for: int = 0  # the Disconnect the reset waits for before it resets
        self._timeout_offer = False  # the banner offers the reset after a timeout

        self.header = QFrame(self)
        self.header.setObjectName("instrumentHeader")
        self.title_label = QLabel(self.header)
        self.title_label.setObjectName("instrumentTitle")
        font = self.title_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        self.title_label.setFont(font)
        self.subtitle_label = QLabel(self.header)
        self.subtitle_label.setObjectName("instrumentSubtitle")
        self.subtitle_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.subtitle_label.setWordWrap(True)
        self.state_label = QLabel(self.header)
        self.state_label.setObjectName("instrumentState")
        # Held at the widest state's size (see _on_state), its text keeps to the right.
        self.state_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.reconnect_button = QPushButton("Reconnect", self.header)
        self.reconnect_button.setToolTip("Open the session again")
        self.reconnect_button.clicked.connect(self.reconnect)
        text_box = QVBoxLayout()
        text_box.setSpacing(2)
        text_box.addWidget(self.title_label)
        text_box.addWidget(self.subtitle_label)
        header_layout = QHBoxLayout(self.header)
        header_layout.setContentsMargins(8, 6, 8, 6)
        header_layout.addLayout(text_box, 1)
        header_layout.addWidget(self.state_label, 0, Qt.AlignmentFlag.AlignTop)
        header_layout.addWidget(self.reconnect_button, 0, Qt.AlignmentFlag.AlignTop)

        self.banner = QLabel(self)
        self.banner.setObjectName("instrumentBanner")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.setMargin(8)
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.linkActivated.connect(self._on_banner_link)
        self.banner.hide()

        self.panels = QTabWidget(self)
        self.panels.setObjectName("instrumentPanels")
        self.panels.setDocumentMode(True)
        self.panels.setTabBarAutoHide(True)  # one panel: no tab bar; more panels: tabs appear
        self.console = ConsolePanel(session, settings, self)
        self.console.identified.connect(self._on_identified)
        self.add_panel(self.console, "Console")
        self.waveform = attach_waveform_panel(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(self.banner)
        layout.addWidget(self.panels, 1)

        session.state_changed.connect(self._on_state)
        session.listen(self._on_event)
        self._on_state(session.state)

    # --- panels ---

    def add_panel(self, widget: QWidget, title: str, icon: QIcon | None = None) -> int:
        """Add a panel (status view, demo panel, waveform upload...) as a tab inside this instrument."""
        if icon is not None:
            return self.panels.addTab(widget, icon, title)
        return self.panels.addTab(widget, title)

    def panel(self, object_name: str) -> QWidget | None:
        for i in range(self.panels.count()):
            if self.panels.widget(i).objectName() == object_name:
                return self.panels.widget(i)
        return None

    # --- identity ---

    def title(self) -> str:
        alias = self.settings.alias(self.ref.resource)
        if alias:
            return alias
        if self.info is not None:
            return device_title(self.info)
        if self.idn:
            fields = [f.strip() for f in self.idn.split(",")]
            if len(fields) > 1 and fields[1]:
                return fields[1]
        return self.ref.resource

    def refresh_title(self) -> None:
        self.title_label.setText(escape(self.title()))
        parts = [self.ref.resource]
        if self.idn:
            parts.insert(0, self.idn)
        if self.ref.source == "virtual":
            parts.append("virtual instrument")
        self.subtitle_label.setText("  ·  ".join(escape(p) for p in parts))
        self.title_changed.emit()

    @Slot(str)
    def _on_identified(self, idn: str) -> None:
        self.idn = idn
        self.refresh_title()

    # --- state ---

    @Slot(str)
    def _on_state(self, state: str) -> None:
        color = state_color(state)
        text = STATE_TEXT.get(state, state)
        # Sized for every state: the start and the end of an upload then repaint only this label.
        hold_size(self.state_label, [f"● {t}" for t in (*STATE_TEXT.values(), text)])
        self.state_label.setText(f"<span style='color:{color}'>●</span> {escape(text)}")
        self.reconnect_button.setVisible(SessionState(state).is_ended and not self.session.closing)
        if self.info is None and self.session.info is not None:
            self.info = self.session.info
        if self.resetting:
            pass  # the reset says what happens until it is done
        elif state == SessionState.GONE:
            self._show_banner("The device is gone. The transcript stays here; press Reconnect when it is back.",
                              self.session.last_problem)
        elif state == SessionState.FAILED:
            self._show_banner(f"The session could not be opened: {self.session.last_problem}", reset=True)
        elif SessionState(state).is_open:
            self.missing = False
            # A timeout's offer stays up when its command ends; the next command takes it down.
            if not (self._timeout_offer and state == SessionState.IDLE):
                self._timeout_offer = False
                self.banner.hide()
        self.refresh_title()
        self.state_changed.emit(state)

    def _show_banner(self, text: str, detail: str = "", *, good: bool = False, reset: bool = False) -> None:
        """``reset``: end with the link that resets the USB port (for an instrument that is stuck)."""
        self._timeout_offer = False
        c = colors(self.palette())
        html = f"<span style='color:{c.ok if good else c.error}'>{escape(text)}</span>"
        if reset:
            html += (f" <a href='{self.RESET_LINK}' style='color:{c.link}'>Reset USB port</a> "
                     f"<span style='color:{c.muted}'>({escape(self._reset_what())}, then open it again)</span>")
        self.banner.setText(html)
        self.banner.setToolTip(detail)
        self.banner.show()

    def _reset_what(self) -> str:
        if getattr(self.session.backend, "bus", None) is not None:
            return "unplugs the virtual instrument and plugs it in again"
        return "the instrument enumerates again as after a replug"

    @Slot(object)
    def _on_event(self, event) -> None:
        if isinstance(event, Closed) and event.command_id == self._reset_waits_for:
            self._reset_waits_for = 0
            self._start_reset()
        elif (isinstance(event, Failed) and event.kind == FailureKind.TIMEOUT and self.session.is_open
              and not self.resetting):
            # A stuck instrument shows itself as timeouts; the way back is one click away.
            self._show_banner(f"The instrument did not answer in time ({event.message}). "
                              "If it keeps timing out, it may be stuck:", event.recovery, reset=True)
            self._timeout_offer = True

    @Slot(str)
    def _on_banner_link(self, link: str) -> None:
        if link == self.RESET_LINK:
            self.reset_port()

    def state_icon(self) -> QIcon:
        return dot_icon(state_color(self.session.state))

    def device_missing(self) -> None:
        """Discovery no longer sees the device: release the session's handle and say so."""
        if self.missing:
            return
        self.missing = True
        if self.session.is_open or self.session.state == SessionState.OPENING:
            self.session.submit(Disconnect("the device left the bus", gone=True), origin=Origin.DISCOVERY)
        elif self.session.state != SessionState.GONE and not self.resetting:  # a replug passes through here
            self._show_banner("The device is no longer on the bus.")

    def device_present(self, info) -> None:
        """Discovery sees the device (again)."""
        self.info = info
        if self.missing and self.session.state.is_ended and not self.resetting:
            self._show_banner("The device is back on the bus. Press Reconnect to open it again.", good=True)
        self.missing = False

    # --- the way back for a stuck instrument ---

    @property
    def resetting(self) -> bool:
        return self._recovery is not None or bool(self._reset_waits_for)

    @Slot()
    def reset_port(self) -> bool:
        """Close the instrument, reset its USB port (replug a virtual one), then open the session again.

        Asynchronous: :attr:`port_reset` reports the :class:`~app.ui.recovery.Recovered`. False
        when a reset is already under way or the tab is closing.
        """
        if self.resetting or self.session.closing:
            return False
        self.banner.setToolTip("")
        self._show_banner("Resetting the USB port…", good=True)
        if self.session.thread.isRunning() and self.session.state not in (SessionState.CLOSED, SessionState.GONE):
            # The worker lets go of the interface first; the reset starts when it says Closed.
            self.session.abort()
            self._reset_waits_for = self.session.submit(Disconnect("closed for a USB port reset"), origin=Origin.RESET)
            if self._reset_waits_for:
                return True
        self._start_reset()
        return True

    def _start_reset(self) -> None:
        self.console.transcript.add("info", f"resetting the USB port of {self.ref.resource}")
        self._recovery = start_recovery(self.ref.resource, self.session.backend, self, self._on_reset)

    def _on_reset(self, result: Recovered) -> None:
        self._recovery = None
        self.console.transcript.add("info" if result.answers else "error", result.message)
        if result.answers:
            self._show_banner(result.message, good=True)
            self.missing = False
            self.reconnect()
        else:
            self._show_banner(result.message, reset=True)
        self.port_reset.emit(result)

    @Slot()
    def reconnect(self) -> None:
        self.session.timeout_ms = self.console.timeout_spin.value()
        self.session.open()
        self.reconnect_requested.emit()

    def close_session(self, reason: str = "the tab was closed") -> None:
        self.console.save_state()
        if self._recovery is not None:
            self._recovery.wait(5000)  # a reset is short (one *IDN? of 1 s at most); it is a child thread
        self.session.close(reason)
