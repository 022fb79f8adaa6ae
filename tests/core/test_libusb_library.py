"""Which libusb the app loads: the bundled one, named explicitly (pyusb #549), and what it is."""

import sys
from pathlib import Path

import pytest

from app.usbtmc import libusb_library
from app.usbtmc.libusb_library import LoadedLibrary, bundled_library_path, library_file_name


def test_library_file_names_follow_libusb_package():
    assert library_file_name("win32") == "libusb-1.0.dll"
    assert library_file_name("darwin") == "libusb-1.0.dylib"
    assert library_file_name("linux") == "libusb-1.0.so"


def test_a_frozen_bundle_uses_the_library_at_its_top(tmp_path, monkeypatch):
    # libusb-package's PyInstaller hook puts the library at the top of the bundle, where
    # libusb_package.get_library_path() does not look.
    (tmp_path / library_file_name()).write_bytes(b"not really a library")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert bundled_library_path() == tmp_path / library_file_name()


def test_unfrozen_it_is_libusb_packages_copy():
    libusb_package = pytest.importorskip("libusb_package")
    assert bundled_library_path() == Path(libusb_package.get_library_path())


def test_the_backend_runs_on_the_bundled_library_named_explicitly(monkeypatch):
    pytest.importorskip("libusb_package")
    monkeypatch.delenv("TMC_LIBUSB", raising=False)
    from app.usbtmc import default_backend

    loaded = libusb_library.describe(default_backend().lib)
    if Path(loaded.path).resolve() != bundled_library_path().resolve():
        pytest.skip(f"this process loaded {loaded.path} first (pyusb keeps the first libusb)")
    major, minor = (int(x) for x in loaded.version.split(".")[:2])
    assert (major, minor) >= (1, 0)


def test_inside_tells_a_bundle_file_from_a_system_one(tmp_path):
    inner = tmp_path / "bundle" / "libusb-1.0.so"
    inner.parent.mkdir()
    inner.write_bytes(b"")
    assert LoadedLibrary(str(inner), "1.0.29").inside(tmp_path / "bundle")
    assert not LoadedLibrary("/usr/lib/x86_64-linux-gnu/libusb-1.0.so.0", "1.0.26").inside(tmp_path / "bundle")


def test_usbdk_is_asked_for_by_environment(monkeypatch):
    monkeypatch.setenv(libusb_library.USBDK_ENV, "1")
    assert libusb_library.usbdk_requested()
    monkeypatch.setenv(libusb_library.USBDK_ENV, "0")
    assert not libusb_library.usbdk_requested()
