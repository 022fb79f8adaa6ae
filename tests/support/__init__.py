"""Helpers shared by the tests, importable from any test file (pyproject puts ``tests`` on the path).

Fixtures live in conftest files; anything a test imports by name lives here, so any set of
test files can run in one command whatever the order (``from conftest import ...`` could
only reach whichever conftest happened to be imported last).

- :mod:`support.ui`: the GUI tests' steps (open a device from the browser, wait, unplug).
- :mod:`support.rawtmc`: hand-built USBTMC frames over pyusb, for the device-model tests.
- :mod:`support.qt`: whether the process's Qt application is one widgets can use.
- :func:`load_script`: a script that also runs on its own (``tests/libusb/benchmark.py``), as a module.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(path: Path) -> ModuleType:
    """The script at ``path`` imported as a module, once per run, under a name no other file has."""
    name = "script_" + "_".join(Path(path).resolve().with_suffix("").parts[-2:])
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: dataclasses look their module up by name
        spec.loader.exec_module(module)
    return sys.modules[name]
