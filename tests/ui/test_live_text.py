"""LiveText: a text that changes at progress rate repaints itself and relays nothing out."""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from app.ui.live_text import LiveText, hold_size


class LayoutRequests(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.LayoutRequest:
            self.count += 1
        return False


def relayouts(qtbot, make, texts) -> int:
    """LayoutRequests the parent gets while ``texts`` are set one after another."""
    parent = QWidget()
    qtbot.addWidget(parent)
    row = QHBoxLayout(parent)
    widget = make(parent)
    row.addWidget(widget, 1)
    parent.resize(400, 40)
    parent.show()
    widget.setText(texts[0])
    QCoreApplication.processEvents()
    seen = LayoutRequests()
    parent.installEventFilter(seen)
    for text in texts[1:]:
        widget.setText(text)
        QCoreApplication.processEvents()
    return seen.count


def test_a_changing_text_relays_nothing_out_where_a_label_would(qtbot):
    rates = [f"{r:.1f} MB/s · ETA 00:{s:04.1f}" for r, s in zip((1.5, 48.25, 102.0, 7.75, 31.0), (9.5, 3.25, 1.0, 0.5, 0.0))]
    assert relayouts(qtbot, QLabel, rates) >= len(rates) - 1  # the control: each new text asks again
    assert relayouts(qtbot, lambda p: LiveText(p, sample=max(rates, key=len)), rates) == 0


def test_the_width_hint_grows_in_steps_and_a_cut_text_has_a_tooltip(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    text = LiveText(parent, sample="12 shown of 12")
    parent.show()
    hint = text.sizeHint().width()
    text.setText("9 shown of 9")
    assert text.sizeHint().width() == hint and text.text() == "9 shown of 9"
    text.setText("100,000 shown of 100,000 · 4,000 oldest dropped")
    grown = text.sizeHint().width()
    assert grown >= text.fontMetrics().horizontalAdvance(text.text())
    text.setText("8 shown of 8")
    assert text.sizeHint().width() == grown  # it never shrinks back: no relayout on the way down
    text.resize(text.fontMetrics().horizontalAdvance("8 shown"), text.sizeHint().height())
    assert text.toolTip() == "8 shown of 8"
    text.resize(grown, text.sizeHint().height())
    assert text.toolTip() == ""


def test_a_label_held_at_its_widest_state_relays_nothing_out_when_the_state_changes(qtbot):
    states = ["connected", "connected, busy", "device gone", "connected"]

    def held(parent):
        label = QLabel(parent)
        hold_size(label, states)
        return label

    assert relayouts(qtbot, QLabel, states) >= 2  # the control: a plain label asks on each change
    assert relayouts(qtbot, held, states) == 0
    parent = QWidget()
    qtbot.addWidget(parent)
    label = held(parent)
    assert label.width() >= label.fontMetrics().horizontalAdvance("connected, busy")
