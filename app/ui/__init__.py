"""The TMC Console desktop GUI (PySide6). Entry point: ``app.ui.main:main``."""

from .qtcompat import keep_none_alive

keep_none_alive()  # PySide6 6.12 on Python 3.11 loses a reference to None per void call (see qtcompat)
