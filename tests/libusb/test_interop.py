"""``sim run``: users' own programs against the virtual SAM7 through the real libusb, unchanged."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.libusb

ROOT = Path(__file__).resolve().parents[2]
SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


def sim_run(*command: str, devices=("sam7",), timeout_s: float = 60) -> subprocess.CompletedProcess:
    """``python -m app.sim.umockdev run`` (what ``tmc sim run`` does), from a clean environment."""
    args = [sys.executable, "-m", "app.sim.umockdev", "run", "--quiet"]
    for kind in devices:
        args += ["--device", kind]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*args, "--", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)


def test_sim_run_serves_lsusb(umockdev_available):
    result = sim_run("lsusb")
    if result.returncode == 127:
        pytest.skip("lsusb is not installed (usbutils)")
    assert result.returncode == 0, result.stderr
    assert "ID 1209:0001 XYZ Company Ltd SAM7-EK" in result.stdout


def test_sim_run_serves_a_script_using_the_core(umockdev_available):
    script = (
        "from app.usbtmc import Instrument, list_resources\n"
        "print([i.resource for i in list_resources()])\n"
        f"with Instrument({SAM7!r}) as inst: print(inst.query('*IDN?'))\n"
    )
    result = sim_run(sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    listed, idn = result.stdout.splitlines()
    assert listed == repr([SAM7]) and idn.startswith("XYZ Company Ltd, SAM7-EK")


def test_sim_run_serves_an_unchanged_python_usbtmc_script(umockdev_available):
    pytest.importorskip("usbtmc")
    script = (
        "import usbtmc\n"
        "inst = usbtmc.Instrument(0x1209, 0x0001, 'SAM7-0001')\n"
        "print(inst.ask('*IDN?')); print(inst.ask('PARAM:SET 7,-8;PARAM:ENQ?')); inst.close()\n"
    )
    result = sim_run(sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    idn, params = result.stdout.splitlines()
    assert idn.startswith("XYZ Company Ltd, SAM7-EK") and params == "7,-8"


def test_sim_run_serves_a_pyvisa_py_script(umockdev_available):
    pytest.importorskip("pyvisa_py")
    script = (
        "import json, pyvisa\n"
        "rm = pyvisa.ResourceManager('@py')\n"
        "found = list(rm.list_resources('USB?*::INSTR'))\n"
        f"inst = rm.open_resource({SAM7!r}); inst.timeout = 2000\n"
        "print(json.dumps({'found': found, 'idn': inst.query('*IDN?').strip()})); inst.close(); rm.close()\n"
    )
    result = sim_run(sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    # pyvisa-py spells the IDs in decimal and names the interface: USB0::4617::1::SAM7-0001::0::INSTR
    assert any("::SAM7-0001::" in found for found in answer["found"])
    assert answer["idn"].startswith("XYZ Company Ltd, SAM7-EK")


def test_sim_run_passes_the_exit_status_through(umockdev_available):
    assert sim_run(sys.executable, "-c", "raise SystemExit(7)").returncode == 7
    missing = sim_run("tmc-no-such-program")
    assert missing.returncode == 127 and "command not found" in missing.stderr
