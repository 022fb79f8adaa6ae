"""A guard for one broken binding: PySide6 6.12.0 on CPython 3.11.

That pair drops a reference to ``None`` each time Qt calls a Python override of a virtual
method (``paintEvent``, ``changeEvent``, pyqtgraph's item methods...) and to ``True``/``False``
on each Python-side ``Signal.emit()``. CPython 3.12 made those objects immortal and PySide6
6.11 does not drop the references, so only this pair is affected; on it, any window that keeps
repainting aborts the interpreter with "deallocating None" within minutes (the console with one
idle instrument open: about two minutes). The dependency should exclude PySide6 6.12.0.

Until it does, GUI tests that keep panels painting use :func:`restore_singleton_refcounts`:
after each test it puts back the references the binding took during it, so one test's painting
cannot abort the tests that run after it. Elsewhere it does nothing.
"""

import ctypes
import sys

import pytest
from PySide6 import __version__ as PYSIDE_VERSION

AFFECTED = sys.version_info < (3, 12) and PYSIDE_VERSION == "6.12.0"

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


@pytest.fixture(autouse=True)
def restore_singleton_refcounts():
    if not AFFECTED:
        yield
        return
    before = [(obj, sys.getrefcount(obj)) for obj in (None, True, False)]
    yield
    for obj, count in before:
        for _ in range(max(0, count - sys.getrefcount(obj))):
            _incref(obj)
