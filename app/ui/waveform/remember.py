"""Waveform settings remembered per instrument: each named control is restored when the panel
is built and saved whenever it changes (QSettings ``instrument/<resource>/waveform_<name>``).

A stored value that no longer fits the control (an option that is gone, text where a number
belongs) is ignored: the control keeps its default.
"""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractSpinBox, QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

PREFIX = "waveform_"


def remember(settings, resource: str, controls: dict[str, QWidget]) -> None:
    """Restore ``controls`` (name -> widget) from ``settings`` for ``resource``, then save each on change."""
    for name, widget in controls.items():
        key = PREFIX + name
        stored = settings.instrument_value(resource, key, None, lambda v: v)
        if stored is not None:
            _restore(widget, stored)
        _watch(widget, lambda value, key=key: settings.set_instrument_value(resource, key, value))


def _restore(widget: QWidget, stored) -> None:
    try:
        if isinstance(widget, QComboBox):
            index = widget.findText(str(stored))
            if index >= 0:
                widget.setCurrentIndex(index)
        elif isinstance(widget, QDoubleSpinBox):
            widget.setValue(float(stored))
        elif isinstance(widget, QSpinBox):
            widget.setValue(int(stored))
        elif isinstance(widget, QCheckBox):
            widget.setChecked(str(stored).lower() in ("true", "1"))
        elif isinstance(widget, QLineEdit):
            widget.setText(str(stored))
    except (TypeError, ValueError):
        pass  # not a value for this control: keep its default


def _watch(widget: QWidget, save) -> None:
    if isinstance(widget, QComboBox):
        widget.currentTextChanged.connect(save)
    elif isinstance(widget, QAbstractSpinBox):
        widget.valueChanged.connect(save)
    elif isinstance(widget, QCheckBox):
        widget.toggled.connect(save)
    elif isinstance(widget, QLineEdit):
        widget.textChanged.connect(save)
