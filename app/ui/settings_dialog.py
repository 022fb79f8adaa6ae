"""The Settings dialog: virtual instruments, theme, defaults for new sessions."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QSpinBox, QWidget

from .settings import Settings


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.virtual_combo = QComboBox(self)
        for value, label in (("auto", "When no hardware is found"), ("on", "Always"), ("off", "Never")):
            self.virtual_combo.addItem(label, value)
        self.virtual_combo.setCurrentIndex(self.virtual_combo.findData(settings.virtual_mode))
        self.quirky_check = QCheckBox("Also the quirky instruments (each misbehaves like a reported device)", self)
        self.quirky_check.setChecked(settings.virtual_quirky)
        self.reopen_check = QCheckBox("Reopen the instruments that were open when the window closed", self)
        self.reopen_check.setChecked(settings.reopen_sessions)
        self.theme_combo = QComboBox(self)
        for value, label in (("system", "Follow the system"), ("light", "Light"), ("dark", "Dark")):
            self.theme_combo.addItem(label, value)
        self.theme_combo.setCurrentIndex(self.theme_combo.findData(settings.theme))
        self.timeout_spin = QSpinBox(self)
        self.timeout_spin.setRange(10, 600_000)
        self.timeout_spin.setSingleStep(500)
        self.timeout_spin.setSuffix(" ms")
        self.timeout_spin.setValue(settings.default_timeout_ms)
        self.check_combo = QComboBox(self)
        for value, label in (
            ("auto", "Auto: SYST:ERR? for SCPI instruments, *ESR? otherwise"),
            ("syst_err", "SYST:ERR? (drain the error queue)"),
            ("esr", "*ESR? (decode the event status register)"),
            ("off", "Off"),
        ):
            self.check_combo.addItem(label, value)
        self.check_combo.setCurrentIndex(self.check_combo.findData(settings.error_check))
        form = QFormLayout(self)
        form.addRow("Show virtual instruments", self.virtual_combo)
        form.addRow("", self.quirky_check)
        form.addRow("At start", self.reopen_check)
        form.addRow("Colours", self.theme_combo)
        form.addRow("Timeout for new sessions", self.timeout_spin)
        form.addRow("Error check after each command", self.check_combo)
        note = QLabel("Timeout, termination and error check can also be set per instrument in its console.", self)
        note.setWordWrap(True)
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def accept(self) -> None:
        self.settings.virtual_mode = self.virtual_combo.currentData()
        self.settings.virtual_quirky = self.quirky_check.isChecked()
        self.settings.reopen_sessions = self.reopen_check.isChecked()
        self.settings.theme = self.theme_combo.currentData()
        self.settings.default_timeout_ms = self.timeout_spin.value()
        self.settings.error_check = self.check_combo.currentData()
        super().accept()
