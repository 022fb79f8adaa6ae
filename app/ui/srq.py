"""Service requests in the window: timeline entries, notifications, badges and follow-ups.

The session worker turns USB488 SRQ notifications (interrupt-IN) into ``Srq`` events. Here:

* :class:`SrqMonitor` (one per instrument tab) puts each SRQ on the instrument's transcript
  next to the command that caused it, optionally follows it up (``*ESR?``, which clears the
  register, and ``SYST:ERR?`` for SCPI instruments) to say what raised it, and rate-limits
  what it shows: a device flooding SRQs gets a "N more" summary entry, and every SRQ is counted.
* :class:`SrqCenter` (one per window) turns those into desktop notifications (the system
  tray where there is one, otherwise an in-window notice) and a badge on the device in the
  browser, cleared when the user looks at the instrument.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSystemTrayIcon,
    QToolButton,
    QWidget,
)

from app.session import Origin, is_users_command
from app.session.device_profile import UNUSED, profile_for_idn
from app.session.events import CheckErrors, ErrorReport, Failed, Finished, Opened, Srq, Started
from app.usbtmc import ieee488

from .console import ElidedLabel
from .theme import colors

TIMELINE_BURST = 3  # SRQ entries shown per TIMELINE_WINDOW_S; the rest are summarised
TIMELINE_WINDOW_S = 1.0
NOTICE_BURST = 1  # notifications per NOTICE_WINDOW_S and instrument
NOTICE_WINDOW_S = 3.0
NOTICE_SHOWN_MS = 8000
MAX_NOTICES = 2  # side by side in the status bar


class RateLimiter:
    """Lets ``burst`` events through per sliding ``window_s`` and counts the ones it holds back.

    Nothing is lost: :meth:`take_held` hands over how many were held since it was last called.
    """

    def __init__(self, burst: int, window_s: float) -> None:
        self.burst = burst
        self.window_s = window_s
        self._passed: deque[float] = deque()
        self.held = 0

    def offer(self, now_s: float) -> bool:
        """True: show this event now. False: it was counted in :attr:`held`."""
        self._prune(now_s)
        if len(self._passed) < self.burst:
            self._passed.append(now_s)
            return True
        self.held += 1
        return False

    def occupy(self, now_s: float) -> None:
        """Something shown outside :meth:`offer` (a summary) takes a place in the window."""
        self._prune(now_s)
        self._passed.append(now_s)

    def _prune(self, now_s: float) -> None:
        while self._passed and now_s - self._passed[0] >= self.window_s:
            self._passed.popleft()

    def next_free_s(self, now_s: float) -> float:
        """Seconds until an event would be let through again."""
        if len(self._passed) < self.burst:
            return 0.0
        return max(0.0, self._passed[0] + self.window_s - now_s)

    def take_held(self) -> int:
        held, self.held = self.held, 0
        return held


@dataclass(frozen=True)
class SrqNotice:
    """What a notification says about one instrument's service requests."""

    resource: str
    title: str
    status_byte: int
    bits: tuple[str, ...]
    cause: str  # the command that caused it ("" when nothing was sent before it)
    count: int  # SRQs this notice stands for: 1, or N for "N more"
    total: int  # SRQs from this instrument since its tab opened
    at: float  # wall-clock seconds
    follow_up: str = ""  # what raised it, once the follow-up has answered

    @property
    def summary(self) -> bool:
        return self.count > 1

    def text(self) -> str:
        status = f"status byte #H{self.status_byte:02X}" + (f" ({', '.join(self.bits)})" if self.bits else "")
        if self.summary:
            text = f"{self.count} more service requests, the last with {status}"
        else:
            text = f"Service request: {status}"
        if self.cause:
            text += f" after {self.cause}"
        if self.follow_up:
            text += f"\n{self.follow_up}"
        return text


@dataclass
class _Cause:
    command_id: int
    label: str
    at: float


@dataclass
class _FollowUp:
    note: SrqNotice
    ids: list[int]
    lines: list[str]


def stb_names(status_byte: int, stb_bits: dict[int, tuple[str, str]]) -> tuple[str, ...]:
    return tuple(n for n in ieee488.set_bit_names(status_byte, stb_bits) if n != UNUSED)


def describe_report(report: ErrorReport) -> str:
    """One line for what an error check found."""
    if report.problem:
        return f"{'*ESR?' if report.method == 'esr' else 'SYST:ERR?'} could not be read: {report.problem}"
    if report.method == "esr":
        value = f"*ESR? #H{report.esr:02X}" if report.esr is not None else "*ESR?"
        found = ", ".join(e.message for e in report.entries)
        return f"{value}: {found}" if found else f"{value}: no event bits set"
    errors = [f'{e.code},"{e.message}"' for e in report.entries if e.code]
    return "SYST:ERR?: " + ("; ".join(errors) if errors else "no errors queued")


class SrqMonitor(QObject):
    """Watches one instrument tab's session for SRQs. Parented to the tab."""

    notice = Signal(object)  # SrqNotice: an SRQ shown, or a "N more" summary
    follow_up_done = Signal(object)  # SrqNotice with follow_up filled in
    counted = Signal(int)  # the running total, after every SRQ

    def __init__(self, tab, settings=None) -> None:
        super().__init__(tab)
        self.tab = tab
        self.session = tab.session
        self.console = tab.console
        self.settings = settings if settings is not None else tab.settings
        self.console.srq_entries = False  # this monitor writes the (rate-limited) entries
        self.suspend_follow_up = False  # a panel that reads ESR itself (the SAM7 demo) holds follow-ups back
        self.total = 0
        self.shown = 0  # SRQs with an entry of their own
        self.summarised = 0  # SRQs counted in "N more" entries
        self.timeline = RateLimiter(TIMELINE_BURST, TIMELINE_WINDOW_S)
        self.notices = RateLimiter(NOTICE_BURST, NOTICE_WINDOW_S)
        self._last_stb = 0
        self._cause: _Cause | None = None
        self._reports: dict[int, ErrorReport] = {}  # by the id of the command they checked
        self._follow_up: _FollowUp | None = None
        self._held_note: SrqNotice | None = None  # at most one runs at a time, however many SRQs arrive
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self.flush)
        self.session.listen(self._on_event)

    # --- settings ---

    @property
    def follow_up(self) -> bool:
        return self.settings.instrument_value(self.session.resource, "srq_follow_up", "true") == "true"

    @follow_up.setter
    def follow_up(self, on: bool) -> None:
        self.settings.set_instrument_value(self.session.resource, "srq_follow_up", "true" if on else "false")

    def title(self) -> str:
        return self.tab.title()

    def _stb_bits(self) -> dict[int, tuple[str, str]]:
        return profile_for_idn(self.console.idn).stb_bits

    # --- events ---

    @Slot(object)
    def _on_event(self, event) -> None:
        if isinstance(event, Srq):
            self._on_srq(event)
            return
        record = self.session.record(event.command_id)
        origin = record.origin if record is not None else ""
        # Only a command of the user's can cause a service request; the app's own work and the
        # error check after a command cannot (the SRQ is put next to the command it follows).
        if isinstance(event, Started) and record is not None and is_users_command(origin):
            self._cause = _Cause(event.command_id, record.command.describe(), event.at)
        elif isinstance(event, ErrorReport):
            if self._in_follow_up(event.command_id):
                self._follow_up.lines.append(describe_report(event))
            else:
                self._reports[event.after] = event
                while len(self._reports) > 16:
                    self._reports.pop(next(iter(self._reports)))
        elif isinstance(event, Failed) and self._in_follow_up(event.command_id):
            self._follow_up.lines.append(f"the follow-up failed: {event.message}")
        elif isinstance(event, Finished) and self._in_follow_up(event.command_id):
            if event.command_id == self._follow_up.ids[-1]:
                done, self._follow_up = self._follow_up, None
                self._complete(done.note, done.lines)
        elif isinstance(event, Opened):
            self._cause = None

    def _on_srq(self, event: Srq) -> None:
        now = time.monotonic()
        self.total += 1
        self._last_stb = event.status_byte
        cause = self._cause
        bits = stb_names(event.status_byte, self._stb_bits())
        label = cause.label if cause is not None else ""
        note = SrqNotice(self.session.resource, self.title(), event.status_byte, bits, label, 1, self.total, event.at)
        # Every SRQ goes through both limits: each one either shows or is counted for a "N more".
        entry = self.timeline.offer(now)
        if entry:
            self.shown += 1
            text = f"service request: status byte #H{event.status_byte:02X} ({', '.join(bits) or 'no bits set'})"
            if cause is not None:
                text += f", {max(0.0, (event.at - cause.at) * 1000):.0f} ms after {cause.label} was sent"
            self.console.transcript.add("srq", text, at=event.at, command_id=cause.command_id if cause else 0,
                                        extra={"srq_count": 1})
        if self.notices.offer(now):
            self.notice.emit(note)
        else:
            self._held_note = note  # the latest held back: a "N more" notice says what it was
        if entry:
            self._start_follow_up(note, cause)
        self._schedule_flush(now)
        self.counted.emit(self.total)

    def _schedule_flush(self, now: float) -> None:
        waits = [limit.next_free_s(now) for limit in (self.timeline, self.notices) if limit.held]
        if waits and not self._flush_timer.isActive():
            self._flush_timer.start(int(max(min(waits), 0.05) * 1000))

    @Slot()
    def flush(self) -> None:
        """Write the "N more" entry and notice for what a rate limit held back, once that limit allows."""
        now = time.monotonic()
        bits = stb_names(self._last_stb, self._stb_bits())
        if self.timeline.held and self.timeline.next_free_s(now) <= 0.01:
            held = self.timeline.take_held()
            self.summarised += held
            self.console.transcript.add(
                "srq", f"{held} more service requests (the last with status byte #H{self._last_stb:02X}"
                f"{', ' + ', '.join(bits) if bits else ''}); {self.total} so far",
                extra={"srq_count": held})
            self.timeline.occupy(now)  # the summary takes a place in the window like an entry
        if self.notices.held and self.notices.next_free_s(now) <= 0.01:
            held = self.notices.take_held()
            self.notices.occupy(now)
            last = self._held_note
            self.notice.emit(replace(last, count=held, total=self.total) if last is not None else
                             SrqNotice(self.session.resource, self.title(), self._last_stb, bits, "", held,
                                       self.total, time.time()))
            self._held_note = None
        self._schedule_flush(now)

    # --- follow-up ---

    def _in_follow_up(self, command_id: int) -> bool:
        return self._follow_up is not None and command_id in self._follow_up.ids

    def _start_follow_up(self, note: SrqNotice, cause: _Cause | None) -> None:
        if not self.follow_up or self.suspend_follow_up or self._follow_up is not None or not self.session.is_open:
            return
        report = self._reports.get(cause.command_id) if cause is not None else None
        if report is not None:
            # The console's error check after that command already read (and cleared) ESR.
            self._complete(note, [f"{describe_report(report)} (read by the error check after {cause.label})"])
            return
        checks = [CheckErrors(after=0, method="esr", termination=self.console.termination() or b"\n")]
        if self._speaks_scpi():
            checks.append(CheckErrors(after=0, method="syst_err", termination=self.console.termination() or b"\n"))
        ids = [cid for cid in (self.session.submit(check, origin=Origin.SRQ) for check in checks) if cid]
        if ids:
            self._follow_up = _FollowUp(note, ids, [])

    def _speaks_scpi(self) -> bool:
        speaks = self.console.profile.speaks_scpi
        info = self.session.info
        if speaks is None and info is not None and info.capabilities is not None:
            speaks = info.capabilities.scpi
        return bool(speaks)

    def _complete(self, note: SrqNotice, lines: list[str]) -> None:
        text = "; ".join(lines) if lines else "nothing to report"
        self.console.transcript.add("info", f"SRQ follow-up: {text}", tag="SRQ")
        done = replace(note, follow_up=f"Raised by: {text}")
        self.follow_up_done.emit(done)


# --- notifications ---------------------------------------------------------------------


class NoticeCard(QFrame):
    """One in-window notification, one line: the instrument, what happened, and a way to go there."""

    show_requested = Signal(object)  # SrqNotice
    dismissed = Signal()

    def __init__(self, note: SrqNotice, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("srqNotice")
        self.note = note
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAutoFillBackground(True)
        self.setBackgroundRole(QPalette.ColorRole.ToolTipBase)
        self.setForegroundRole(QPalette.ColorRole.ToolTipText)
        self.title = QLabel(self)
        self.title.setTextFormat(Qt.TextFormat.PlainText)  # the device's product string: never markup
        self.title.setForegroundRole(QPalette.ColorRole.ToolTipText)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.body = ElidedLabel(self)
        self.body.setForegroundRole(QPalette.ColorRole.ToolTipText)
        self.body.setWordWrap(False)
        self.body.setTextFormat(Qt.TextFormat.PlainText)
        self.show_button = QPushButton("Show", self)
        self.show_button.setToolTip("Go to the instrument's transcript")
        self.show_button.clicked.connect(lambda: self.show_requested.emit(self.note))
        close = QToolButton(self)
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismissed)
        # One line in the status bar, where it covers nothing: the body is cut there and shown
        # whole in the tooltip (and on the transcript, where "Show" goes).
        self.body.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.show_button.setFlat(True)
        line_px = self.fontMetrics().height()  # no taller than a status bar label: the bar keeps its height
        for button in (self.show_button, close):
            button.setFixedHeight(line_px)
        self.show_button.setFixedWidth(self.show_button.fontMetrics().horizontalAdvance("Show") + line_px)
        self.flag = QLabel("⚑", self)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 2, 0)
        layout.setSpacing(4)
        layout.addWidget(self.flag)
        layout.addWidget(self.title)
        layout.addWidget(self.body, 1)
        layout.addWidget(self.show_button)
        layout.addWidget(close)
        self.set_note(note)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.dismissed)
        self.timer.start(NOTICE_SHOWN_MS)

    def set_note(self, note: SrqNotice) -> None:
        self.note = note
        self.title.setText(note.title)
        self.body.setText(note.text().replace("\n", " — "))
        self.setToolTip(f"{note.title}\n{note.text()}")
        self.flag.setText(f"<span style='color:{colors(self.palette()).warning}'>⚑</span>")


class NoticeArea(QWidget):
    """Notifications in the window's status bar, one line each beside the status messages.

    They never cover a control (a notice floating over the window hid Send, Query and Abort
    right when an error had happened), and the status bar keeps its height, so nothing moves.
    """

    show_requested = Signal(object)  # SrqNotice

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.setObjectName("srqNotices")
        self.window_ = window
        self.cards: list[NoticeCard] = []
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setFixedHeight(self.fontMetrics().height())
        status = getattr(window, "statusBar", None)
        if callable(status):
            # Left of the session's state; a permanent widget, so status tips do not hide it.
            status().insertPermanentWidget(0, self, 1)
        self.hide()

    def add(self, note: SrqNotice) -> NoticeCard:
        # A new notice about the same instrument replaces the one still showing.
        card = next((c for c in self.cards if c.note.resource == note.resource), None)
        if card is not None:
            card.set_note(note)
            card.timer.start(NOTICE_SHOWN_MS)
        else:
            card = NoticeCard(note, self)
            card.show_requested.connect(self.show_requested)
            card.dismissed.connect(lambda c=card: self.remove(c))
            self.cards.append(card)
            self._layout.addWidget(card, 1)
            while len(self.cards) > MAX_NOTICES:
                self.remove(self.cards[0])
        self.show()
        return card

    def update_note(self, note: SrqNotice) -> None:
        """Fill in a follow-up on the notice it belongs to, if that is still showing."""
        for card in self.cards:
            if card.note.resource == note.resource and card.note.at == note.at:
                card.set_note(note)

    def remove(self, card: NoticeCard) -> None:
        if card in self.cards:
            self.cards.remove(card)
            card.hide()
            card.deleteLater()
        if not self.cards:
            self.hide()


class SrqCenter(QObject):
    """Service requests of every open instrument in one window: badges and notifications.

    ``notified`` is emitted for every notice shown (tray or in-window).
    """

    notified = Signal(object)  # SrqNotice

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.monitors: dict[object, SrqMonitor] = {}  # InstrumentTab -> monitor
        self.unseen: dict[object, int] = {}  # DeviceRef -> SRQs the user has not looked at
        self.notices = NoticeArea(window)
        self.notices.show_requested.connect(self.go_to)
        self.tray: QSystemTrayIcon | None = None
        self._tray_note: SrqNotice | None = None
        self._shut_down = False
        window.tab_opened.connect(self.watch)
        window.tabs.currentChanged.connect(lambda _i: self._clear_if_looking())
        window.installEventFilter(self)

    # --- settings ---

    @property
    def notify(self) -> bool:
        return self.window.settings.value("srq/notify", "true") == "true"

    @notify.setter
    def notify(self, on: bool) -> None:
        self.window.settings.set_value("srq/notify", "true" if on else "false")

    # --- tabs ---

    @Slot(object)
    def watch(self, tab) -> SrqMonitor:
        monitor = self.monitors.get(tab)
        if monitor is not None:
            return monitor
        monitor = SrqMonitor(tab, self.window.settings)
        self.monitors[tab] = monitor
        monitor.notice.connect(lambda note, t=tab: self._on_notice(t, note))
        monitor.follow_up_done.connect(self._on_follow_up)
        monitor.counted.connect(lambda _n, t=tab: self._on_counted(t))
        ref = tab.ref
        tab.destroyed.connect(lambda _obj=None, t=tab, r=ref: self._forget(t, r))
        return monitor

    def monitor(self, tab) -> SrqMonitor | None:
        return self.monitors.get(tab)

    def _forget(self, tab, ref) -> None:
        self.monitors.pop(tab, None)
        if self.unseen.pop(ref, None) is not None and not self._shut_down:
            self.window.browser.set_badge(ref, "")  # the tab closed: nothing left to look at

    # --- badge ---

    def is_looking(self, tab) -> bool:
        window = self.window
        return window.isVisible() and window.isActiveWindow() and window.current_tab() is tab

    def _on_counted(self, tab) -> None:
        if self.is_looking(tab):
            return
        self.unseen[tab.ref] = self.unseen.get(tab.ref, 0) + 1
        self.window.browser.set_badge(tab.ref, f"⚑ {self.unseen[tab.ref]}")

    def mark_seen(self, tab) -> None:
        if self.unseen.pop(tab.ref, None) is not None:
            self.window.browser.set_badge(tab.ref, "")

    def _clear_if_looking(self) -> None:
        tab = self.window.current_tab()
        if tab is not None and self.is_looking(tab):
            self.mark_seen(tab)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.window and event.type() == QEvent.Type.ActivationChange:
            QTimer.singleShot(0, self._clear_if_looking)
        return False

    # --- notifications ---

    def _on_notice(self, tab, note: SrqNotice) -> None:
        if not self.notify:
            return
        if QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages():
            self._tray_message(note)
        else:
            self.notices.add(note)
        self.notified.emit(note)

    def _on_follow_up(self, note: SrqNotice) -> None:
        if self.notify:
            self.notices.update_note(note)

    def _tray_message(self, note: SrqNotice) -> None:
        if self.tray is None:
            self.tray = QSystemTrayIcon(self.window.windowIcon(), self)
            self.tray.setToolTip("TMC Console")
            self.tray.messageClicked.connect(lambda: self._tray_note and self.go_to(self._tray_note))
            self.tray.show()
        self._tray_note = note
        self.tray.showMessage(f"{note.title}: service request", note.text(), QSystemTrayIcon.MessageIcon.Information,
                              NOTICE_SHOWN_MS)

    @Slot(object)
    def go_to(self, note: SrqNotice) -> None:
        """Bring the instrument's transcript forward and clear its badge."""
        window = self.window
        tab = next((t for t in self.monitors if t.session.resource == note.resource), None)
        if tab is None:
            return
        if window.isMinimized():
            window.showNormal()
        window.raise_()
        window.activateWindow()
        window.tabs.setCurrentWidget(tab)
        tab.panels.setCurrentWidget(tab.console)
        self.mark_seen(tab)
        for card in list(self.notices.cards):
            if card.note.resource == note.resource:
                self.notices.remove(card)

    def shutdown(self) -> None:
        self._shut_down = True
        if self.tray is not None:
            self.tray.hide()
