"""Workarounds for defects of the Qt bindings, each applied only when its own check shows it is needed.

**The singletons' reference counts under PySide6 6.12 on Python 3.11.** There, every call
of a Qt method that returns nothing (``setText``, ``setVisible``, ``QTimer.start``, a Python
``paintEvent`` called by Qt...) gives Python a ``None`` without the reference that goes with
it, so ``None``'s reference count falls by one per call; ``True`` loses references the same
way (about ten per repaint of a pyqtgraph plot). Python 3.12 made these objects immortal
(PEP 683), which hides the mistake; on 3.11 a count reaches zero after some thousands of
calls and the interpreter aborts ("none_dealloc: deallocating None", "bool_dealloc"). A GUI
that repaints a plot 25 times a second gets there within minutes. PySide6 6.11.3 does not
have the defect.

:func:`keep_none_alive` measures whether void calls lose references to ``None`` and, only
then, gives ``None``, ``True`` and ``False`` a reserve of references large enough never to
run out, which is what PEP 683 does for good. Remove it once the bindings are fixed or
pinned below 6.12.
"""

from __future__ import annotations

import sys

_PROBE_CALLS = 64
_RESERVE = 1 << 40  # references: at a million lost per second, enough for more than twelve days


def void_calls_lose_none_references() -> bool:
    """Whether calling a void Qt method makes ``None``'s reference count fall (CPython before 3.12 only)."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(_PROBE_CALLS):
        probe.setObjectName("probe")
    return sys.getrefcount(None) <= before - _PROBE_CALLS // 2


def keep_none_alive() -> bool:
    """Give ``None``, ``True`` and ``False`` a reserve of references when the bindings lose them;
    True when that was needed."""
    if not void_calls_lose_none_references():
        return False
    import ctypes

    for singleton in (None, True, False):
        # CPython object header: the reference count is the first field, at the object's address.
        count = ctypes.c_ssize_t.from_address(id(singleton))
        before = sys.getrefcount(singleton)
        count.value += _RESERVE
        if sys.getrefcount(singleton) - before != _RESERVE:  # not the layout we expect: undo, change nothing
            count.value -= _RESERVE
            return False
    return True
