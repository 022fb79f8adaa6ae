"""Fixtures and checks for every test, whichever files a run collects.

Directory conftests add what only their tests use (the GUI's window, the virtual bus of the
device-model tests, the umockdev processes). Helpers imported by name are in ``support``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

# Before any QApplication exists: no display needed. A run may still choose another
# platform (QT_QPA_PLATFORM=xcb under Xvfb, for screenshots).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from support.qt import bare_core_application  # noqa: E402

TESTS = Path(__file__).resolve().parent
_GUI_FOLDERS = ("ui", "bench")  # the bench drives the console's session on a Qt event loop


def pytest_collection_modifyitems(items) -> None:
    """Mark the tests that need Qt ``gui``, so ``-m "not gui"`` runs the rest without PySide6."""
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        if parts and parts[0] in _GUI_FOLDERS:
            item.add_marker(pytest.mark.gui)


@pytest.fixture(autouse=True)
def only_a_full_qt_application():
    """Fail the test that leaves a bare QCoreApplication as the process's application.

    Qt allows one application object per process. A QCoreApplication made by code under test
    (the bench makes one when none exists) would outlive its test, and the next test that
    builds a widget would abort the whole run instead of failing; this names the culprit.
    Costs nothing where Qt was never imported."""
    yield
    if bare_core_application():
        pytest.fail("a bare QCoreApplication was made during this test; widget tests after it would abort "
                    "(request pytest-qt's qapp fixture first, as tests/bench/conftest.py does)")


@pytest.fixture
def sim_backend():
    """A fresh virtual bus with the default instruments, as a pyusb backend (``.bus`` reaches the devices)."""
    import app.sim

    return app.sim.backend()


@pytest.fixture
def no_thread_left_behind():
    """Fail a test that leaves a Python thread running (each has 2 s to end after the test)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in left:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    left = [t for t in left if t.is_alive()]
    assert not left, f"threads left running: {left}"
