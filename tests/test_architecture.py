"""The layer rules of docs/architecture.md, enforced."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    # import-linter reads the contracts from pyproject.toml: the layers (ui above session,
    # session above the core, the virtual instruments and waveforms, all above the protocol
    # leaf; the core never imports the virtual instruments) and no Qt below app.ui.
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports; raise SystemExit(lint_imports())"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_part_of_the_application_has_its_layer():
    # A new package or top-level module must be placed in the layers contract, or
    # import-linter would not check what it imports.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = [c for c in contracts if c["type"] == "layers"]
    assert len(layers) == 1
    placed = {name.strip() for layer in layers[0]["layers"] for name in re.split(r"[|:]", layer)}
    parts = {f"app.{p.name}" for p in (ROOT / "app").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {f"app.{p.stem}" for p in (ROOT / "app").glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert parts - placed == set(), f"add these to the layers contract in pyproject.toml: {sorted(parts - placed)}"
    qt_free = next(c for c in contracts if c["type"] == "forbidden" and "PySide6" in c["forbidden_modules"]
                   and "app.session" in c["source_modules"])
    below_ui = placed - {"app.cli", "app.bench_lan", "app.bench", "app.ui"}
    assert set(qt_free["source_modules"]) == below_ui


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
                    ok = name.startswith(("app.sim", "app.protocol"))
                assert ok, f"{path.relative_to(ROOT)} imports {name}"


def test_nothing_is_evaluated():
    for path in sorted((ROOT / "app").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec"}, f"{path}: {node.func.id}() at line {node.lineno}"


def test_the_protocol_leaf_imports_only_the_standard_library():
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((ROOT / "app" / "protocol").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in stdlib or name.startswith("app.protocol"), \
                    f"{path.relative_to(ROOT)} imports {name}"


def test_the_spec_numbers_are_written_only_in_the_protocol_leaf():
    # The Bulk header layout, the MsgID/bRequest/status tables and libusb's error codes are
    # defined in app/protocol only; everything else imports them from there.
    patterns = {
        "the Bulk header layout": re.compile(r"[\"']<BBBBI"),
        "a MsgID table": re.compile(r"^\s*DEV_DEP_MSG_OUT\s*=\s*1\b", re.M),
        "a bRequest table": re.compile(r"^\s*INITIATE_ABORT_BULK_OUT\s*=\s*1\b", re.M),
        "a USBTMC_status table": re.compile(r"^\s*TRANSFER_NOT_IN_PROGRESS\s*=\s*0x81\b", re.M),
        "libusb's error codes": re.compile(r"^\s*\w*(IO|PIPE)\w*\s*=\s*-(1|9)\b", re.M),
        "the ESR error mask": re.compile(r"=\s*0x3[Cc]\b"),
    }
    for path in sorted((ROOT / "app").rglob("*.py")):
        if "protocol" in path.relative_to(ROOT / "app").parts:
            continue
        text = path.read_text()
        for what, pattern in patterns.items():
            assert not pattern.search(text), f"{path.relative_to(ROOT)} writes {what} again"
