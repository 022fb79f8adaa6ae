"""The bench drives the console's session on a Qt event loop. In the test process that loop
must belong to a full QApplication (pytest-qt's ``qapp``): a bare QCoreApplication made by the
bench would be the process's only application, and every widget test after it would abort."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _widgets_application(qapp):
    return qapp
