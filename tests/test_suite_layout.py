"""The test suite itself: any set of test files runs in one command, in any order.

Helpers shared between test files are imported from the ``support`` package, never from a
conftest or from a sibling test file (either worked only by the order in which pytest
happened to import things: ``tests/ui/test_window.py`` with ``tests/sim/test_sim_scpi.py``
found the device-model conftest under the name ``conftest``)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SUPPORT = TESTS / "support"


def _python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _test_files() -> list[Path]:
    return [p for p in _python_files() if p.name.startswith("test_")]


def _imported_names(path: Path) -> set[str]:
    """The top-level module of every import in the file, at any depth (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _collect(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_no_test_file_imports_a_conftest_or_another_folders_module():
    # Module names that exist only inside tests/ (outside support): importing one by name
    # works only when pytest has put its folder on sys.path first.
    local = {p.stem for p in _python_files() if SUPPORT not in p.parents} | {p.name for p in TESTS.iterdir() if p.is_dir()}
    local -= {"support"}
    offenders = {}
    for path in _python_files():
        if SUPPORT in path.parents:
            continue
        bad = _imported_names(path) & local
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"import these from the support package instead: {offenders}"
    assert "conftest" in local  # the check above would have caught `from conftest import ...`


def test_the_pair_that_used_to_fail_collects_together():
    result = _collect("tests/ui/test_window.py", "tests/sim/test_sim_scpi.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tests/ui/test_window.py::" in result.stdout and "tests/sim/test_sim_scpi.py::" in result.stdout


def test_every_test_file_collects_in_one_command_in_reverse_order():
    files = [str(p.relative_to(ROOT)) for p in reversed(_test_files())]
    result = _collect(*files)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    collected = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
    empty = sorted(set(files) - collected)
    assert not empty, f"test files that gave no tests: {empty}"


def _bare_core_application_after(code: str) -> str:
    script = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n{code}\nfrom support.qt import bare_core_application\n" \
             "print(bare_core_application())"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120).stdout.strip()


def test_the_check_against_a_bare_qt_application_tells_the_two_apart():
    # In subprocesses: a bare QCoreApplication in this process would abort the widget tests after it.
    assert _bare_core_application_after("") == "False"  # Qt never imported
    assert _bare_core_application_after("from PySide6.QtCore import QCoreApplication; a = QCoreApplication([])") == "True"
    assert _bare_core_application_after("from PySide6.QtWidgets import QApplication; a = QApplication([])") == "False"
