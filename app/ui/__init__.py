"""The TMC Console desktop GUI (PySide6). Entry point: ``app.ui.main:main``."""
