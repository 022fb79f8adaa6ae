"""Build the TMC Console bundle: one folder, two executables, zipped.

    python packaging/build.py              # for the running platform: dist/tmc-console/ and its zip
    python packaging/build.py --windows    # Linux: the Windows bundle under Wine, dist/windows/tmc-console/

Needs ``pip install -e ".[packaging]"`` (PyInstaller and Pillow). The icon (.ico) and the
Windows version information are written into the work folder at build time from
resources/ and ``app.__version__``; nothing built is kept in the repository.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import __version__  # noqa: E402

NAME = "tmc-console"
SPEC = ROOT / "packaging" / "tmc-console.spec"
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def make_icon(work: Path) -> Path:
    """A multi-size .ico from the PNGs rendered from resources/tmc-console.svg."""
    from PIL import Image

    largest = Image.open(ROOT / "resources" / f"{NAME}-256.png").convert("RGBA")
    out = work / f"{NAME}.ico"
    largest.save(out, format="ICO", sizes=[(s, s) for s in ICO_SIZES])
    return out


def version_tuple(version: str) -> tuple[int, int, int, int]:
    """Windows wants four numbers: the leading digits of each dotted part ("3rc4" -> 3)."""
    numbers = [int(re.match(r"\d*", part).group() or 0) for part in version.split(".")[:4]]
    return tuple((numbers + [0, 0, 0, 0])[:4])


def version_file_text(exe_name: str, description: str) -> str:
    """The VSVersionInfo PyInstaller embeds in a Windows executable (shown in Properties > Details)."""
    v = version_tuple(__version__)
    strings = {
        "CompanyName": "TMC Console developers",
        "FileDescription": description,
        "FileVersion": __version__,
        "InternalName": exe_name,
        "LegalCopyright": "MIT licence",
        "OriginalFilename": f"{exe_name}.exe",
        "ProductName": "TMC Console",
        "ProductVersion": __version__,
    }
    entries = ",\n          ".join(f"StringStruct({k!r}, {val!r})" for k, val in strings.items())
    return f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={v}, prodvers={v}, mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
          {entries}])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""


def write_build_inputs(work: Path) -> dict[str, str]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "version-tmc-console.txt").write_text(version_file_text("tmc-console", "TMC Console"))
    (work / "version-tmc.txt").write_text(version_file_text("tmc", "TMC Console command line"))
    return {"TMC_BUILD_WORK": str(work), "TMC_BUILD_ICON": str(make_icon(work))}


def platform_tag() -> str:
    system = {"win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
    return f"{system}-{platform.machine().lower()}"


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` with its name as the top entry; written beside and renamed, so a failed
    run never leaves a half-written archive under the final name."""
    partial = archive.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(folder.rglob("*")):
            info_name = path.relative_to(folder.parent).as_posix()
            if path.is_symlink() or path.is_file():
                zf.write(path, info_name)
    os.replace(partial, archive)
    return archive


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def run_pyinstaller(python: list[str], dist: Path, work: Path, env_extra: dict[str, str], env=None) -> None:
    env = dict(os.environ if env is None else env)
    env.update(env_extra)
    cmd = [*python, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work / "pyinstaller"), str(SPEC)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def build_native(args) -> int:
    dist = ROOT / "dist"
    work = ROOT / "build" / "packaging"
    started = time.monotonic()
    run_pyinstaller([sys.executable], dist, work, write_build_inputs(work))
    folder = dist / NAME
    archive = zip_folder(folder, dist / f"{NAME}-{__version__}-{platform_tag()}.zip")
    print(f"built {folder} ({folder_bytes(folder) / 1e6:.1f} MB) and {archive.name} "
          f"({archive.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", action="store_true",
                        help="build the Windows bundle (tmc-console.exe with mingw-w64, tmc.exe) on Linux under Wine "
                             "into dist/windows/ "
                             "(see packaging/windows.py and docs/packaging.md)")
    args = parser.parse_args(argv)
    if args.windows:
        from windows import build_windows  # packaging/windows.py, beside this file

        return build_windows(args, ROOT, write_build_inputs, zip_folder, folder_bytes)
    return build_native(args)


if __name__ == "__main__":
    raise SystemExit(main())
