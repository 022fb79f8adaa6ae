"""The waveform panel: sources, preview, target formats, upload with a live throughput graph.

:func:`attach_waveform_panel` adds it to an instrument tab. Qt-free waveform logic is in
:mod:`app.waveforms`; the upload runs in the session's worker (:mod:`app.session.upload`).
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.usbtmc import parse_resource

from .panel import WaveformPanel
from .throughput import ThroughputGraph

__all__ = ["ThroughputGraph", "WaveformPanel", "WaveformTab", "attach_waveform_panel"]


def virtual_awg(tab):
    """For a tab on the virtual AWG, a callable returning its device model (for the pacing controls); else None."""
    if tab.ref.source != "virtual":
        return None
    bus = getattr(getattr(tab.session, "backend", None), "bus", None)
    if bus is None:
        return None
    from app.sim.awg import VirtualAwg

    try:
        wanted = parse_resource(tab.ref.resource)
    except ValueError:
        return None

    def lookup():
        return bus.find(vid=wanted.vid, pid=wanted.pid, serial=wanted.serial, kind=VirtualAwg)

    return lookup if lookup() is not None else None


class WaveformTab(QWidget):
    """The "Waveform" tab of an instrument: builds its :class:`WaveformPanel` when first shown,
    so instruments nobody uploads to pay nothing for it."""

    def __init__(self, tab) -> None:
        super().__init__(tab)
        self.setObjectName("waveformTab")
        self._tab = tab
        self._panel: WaveformPanel | None = None
        QVBoxLayout(self).setContentsMargins(0, 0, 0, 0)
        # Shown instead of the panel when the instrument's profile says it takes no waveform.
        self.notice = QLabel(self)
        self.notice.setObjectName("waveformUnsupported")
        self.notice.setWordWrap(True)
        self.notice.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.notice.setMargin(self.fontMetrics().height())
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice.hide()
        self.layout().addWidget(self.notice)
        tab.console.identified.connect(self._on_identified)

    @property
    def unsupported(self) -> str:
        """Why this instrument takes no waveform upload, from its device profile ("" when it may)."""
        from app.session.device_profile import profile_for_idn

        idn = self._tab.console.idn
        return profile_for_idn(idn).no_waveform if idn else ""

    def _on_identified(self, _idn: str) -> None:
        if self.isVisible():
            self._show_what_fits()

    def _show_what_fits(self) -> None:
        reason = self.unsupported
        if reason:
            self.notice.setText(f"<b>No waveform upload for this instrument.</b><br>{escape(reason)}")
            self.notice.show()
            if self._panel is not None:
                self._panel.hide()
        else:
            self.notice.hide()
            self.panel().show()

    def panel(self) -> WaveformPanel:
        """The panel, built now if it was not yet."""
        if self._panel is None:
            tab = self._tab
            self._panel = WaveformPanel(tab.session, device_model=virtual_awg(tab), console=tab.console, parent=self)
            self.layout().addWidget(self._panel)
        return self._panel

    @property
    def built(self) -> bool:
        return self._panel is not None

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._show_what_fits()
        super().showEvent(event)


def attach_waveform_panel(tab) -> WaveformTab:
    """Add the "Waveform" tab to an ``InstrumentTab``."""
    host = WaveformTab(tab)
    tab.add_panel(host, "Waveform")
    return host
