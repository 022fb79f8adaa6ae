"""Checks on the process's Qt application, safe to call where Qt was never imported."""

from __future__ import annotations

import sys


def bare_core_application() -> bool:
    """True when the process's application is a QCoreApplication rather than a QApplication.

    Qt allows one application per process: after a bare one, the first widget aborts the
    interpreter. False where PySide6 was never imported (nothing to check, nothing loaded)."""
    core = sys.modules.get("PySide6.QtCore")
    if core is None or core.QCoreApplication.instance() is None:
        return False
    from PySide6.QtWidgets import QApplication

    return not isinstance(core.QCoreApplication.instance(), QApplication)
