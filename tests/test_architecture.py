"""The layer rules of docs/architecture.md, enforced."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    # import-linter reads the contracts from pyproject.toml: app.usbtmc and app.sim
    # never import Qt, and the core never imports the virtual instruments.
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports; raise SystemExit(lint_imports())"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_device_models_import_only_the_standard_library():
    # The umockdev adapter serves app.sim's device models from the system Python,
    # which has nothing from PyPI; only the pyusb adapter may import pyusb.
    # The umockdev testbed runs under the system Python with its gi bindings.
    allowed_third_party = {"pyusb_backend.py": {"usb"}, "testbed.py": {"gi"}}
    stdlib = set(sys.stdlib_module_names) | {"app"}
    for path in sorted((ROOT / "app" / "sim").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = top in stdlib or top in allowed_third_party.get(path.name, set())
                if top == "app":
                    ok = name.startswith("app.sim")
                assert ok, f"{path.relative_to(ROOT)} imports {name}"


def test_nothing_is_evaluated():
    for path in sorted((ROOT / "app").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec"}, f"{path}: {node.func.id}() at line {node.lineno}"
