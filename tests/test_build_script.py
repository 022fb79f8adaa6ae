"""packaging/build.py's pieces that run without PyInstaller: version info, icon, zip."""

import importlib.util
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("packaging_build", ROOT / "packaging" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_version_numbers_fill_four_fields(build):
    assert build.version_tuple("0.1.0") == (0, 1, 0, 0)
    assert build.version_tuple("1.2.3rc4") == (1, 2, 3, 0)


def test_the_windows_version_information_parses(build, tmp_path):
    import ast

    text = build.version_file_text("tmc", "TMC Console command line")
    call = ast.parse(text, mode="eval").body
    assert call.func.id == "VSVersionInfo" and "'OriginalFilename', 'tmc.exe'" in text
    # PyInstaller's own reader needs pefile, which it installs only on Windows.
    versioninfo = pytest.importorskip("PyInstaller.utils.win32.versioninfo")
    path = tmp_path / "version.txt"
    path.write_text(text)
    assert "TMC Console command line" in str(versioninfo.load_version_info_from_text_file(str(path)))


def test_the_icon_holds_every_size(build, tmp_path):
    image = pytest.importorskip("PIL.Image")
    ico = build.make_icon(tmp_path)
    with image.open(ico) as opened:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(opened.info["sizes"])


def test_the_zip_has_the_folder_at_its_top_and_no_partial_is_left(build, tmp_path):
    folder = tmp_path / "tmc-console"
    (folder / "_internal").mkdir(parents=True)
    (folder / "tmc").write_bytes(b"exe")
    (folder / "_internal" / "libusb-1.0.so").write_bytes(b"lib")
    archive = build.zip_folder(folder, tmp_path / "out.zip")
    assert sorted(zipfile.ZipFile(archive).namelist()) == ["tmc-console/_internal/libusb-1.0.so", "tmc-console/tmc"]
    assert not list(tmp_path.glob("*.partial"))


def test_the_spec_packs_files_that_exist():
    text = (ROOT / "packaging" / "tmc-console.spec").read_text()
    assert "upx=False" in text and 'console=False' in text and 'console=True' in text
    for folder in ("resources", "docs"):
        assert (ROOT / folder).is_dir()
    assert (ROOT / "app" / "instruments" / "instruments.toml").is_file() and "instruments.toml" in text
