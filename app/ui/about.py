"""Help > About: the versions a bug report needs (app, Python, Qt, PySide6, pyusb, libusb with its
path and version, the USB backend in use), with a button that copies them as text."""

from __future__ import annotations

import ctypes
import platform
import sys
from html import escape

from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPushButton, QVBoxLayout, QWidget

from app import __version__

ABOUT = ("A console for USBTMC and USB488 test-and-measurement instruments: find them, talk to them, "
         "and see what they say, with virtual instruments built in.")


class _LibusbVersion(ctypes.Structure):
    # libusb.h: struct libusb_version (what libusb_get_version() returns, libusb 1.0.10 and later)
    _fields_ = [("major", ctypes.c_uint16), ("minor", ctypes.c_uint16), ("micro", ctypes.c_uint16),
                ("nano", ctypes.c_uint16), ("rc", ctypes.c_char_p), ("describe", ctypes.c_char_p)]


def libusb_description(backend) -> tuple[str, str]:
    """(path, version) of the libusb a pyusb libusb1 backend loaded; '' where it cannot be told."""
    lib = getattr(backend, "lib", None)
    if lib is None:
        return "", ""
    path = getattr(lib, "_name", "") or ""
    try:
        get_version = lib.libusb_get_version
        get_version.restype = ctypes.POINTER(_LibusbVersion)
        get_version.argtypes = []
        v = get_version().contents
        version = f"{v.major}.{v.minor}.{v.micro}.{v.nano}" + (v.rc.decode(errors="replace") if v.rc else "")
    except (AttributeError, OSError, ValueError):
        version = ""
    return path, version


def environment(backends) -> list[tuple[str, str]]:
    """The rows of the About dialog. ``backends`` is the window's BackendProvider (sources by name)."""
    import usb

    rows = [
        ("TMC Console", __version__),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("Qt", qVersion()),
        ("PySide6", _pyside_version()),
        ("pyqtgraph", _version("pyqtgraph")),
        ("pyusb", getattr(usb, "__version__", "") or _version("pyusb")),
        ("Platform", platform.platform()),
    ]
    for source in backends.sources:
        try:
            backend = backends.get(source)
        except Exception as exc:  # the provider's own error says why the source is unavailable
            rows.append((f"{source} backend", f"unavailable: {exc}"))
            continue
        kind = f"{type(backend).__module__}.{type(backend).__name__}"
        rows.append((f"{source} backend", kind))
        path, version = libusb_description(backend)
        if path or version:
            rows.append(("libusb", f"{version or 'version unknown'} ({path or 'path unknown'})"))
    return rows


def _pyside_version() -> str:
    import PySide6  # its wheel may be named PySide6-Essentials: ask the module, not the distribution

    return getattr(PySide6, "__version__", "") or _version("PySide6")


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def as_text(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows) + "\n"


class AboutDialog(QDialog):
    """The app's versions and its environment, copyable for a bug report."""

    def __init__(self, backends, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About TMC Console")
        self.rows = environment(backends)
        layout = QVBoxLayout(self)
        title = QLabel(f"<h3>TMC Console {escape(__version__)}</h3><p>{escape(ABOUT)}</p>", self)
        title.setWordWrap(True)
        layout.addWidget(title)
        table = "".join(f"<tr><td><b>{escape(name)}</b>&nbsp;&nbsp;</td><td>{escape(value)}</td></tr>"
                        for name, value in self.rows)
        self.details = QLabel(f"<table>{table}</table>", self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.details)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = QPushButton("Copy for a bug report", self)
        self.copy_button.clicked.connect(self.copy)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.setMinimumWidth(560)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(as_text(self.rows))
