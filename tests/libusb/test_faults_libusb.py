"""Faults over the real libusb: the umockdev adapter's data toggles, a crashing model, ``tmc sim run --fault``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAW_HOST = Path(__file__).with_name("raw_fault_host.py")
IDN = "TMC Console,Virtual Loopback,LOOP-0001,1.0\n"


def run_raw(bus, scenario: str) -> dict:
    """Run a raw_fault_host.py scenario under the bus's preload; its JSON result."""
    env = bus.environment()
    env.pop("TMC_LIBUSB", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, str(RAW_HOST), scenario], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"the host died (status {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _key(bus) -> str:
    return next(d["key"] for d in bus.devices if d["product"] == "Virtual Loopback")


def test_a_crashing_model_answers_with_a_stall_and_the_client_lives_on(make_bus):
    bus = make_bus(["loopback"])
    bus.fault(_key(bus), "model-crash")
    result = run_raw(bus, "model_crash")  # before: libusb aborted the client (SIGABRT) on its next transfer
    assert result == {"first": 32, "after_clear": IDN}  # EPIPE, then the device works again
    fired = bus.fault(_key(bus), "clear")
    assert fired == [("model-crash", "exception inside the model on a 20-byte Bulk-OUT transfer")]


def test_the_umockdev_bus_models_data_toggles(make_bus):
    bus = make_bus(["loopback"], data_toggles=True)
    result = run_raw(bus, "toggles")
    assert result == {"after_hand_built_clear": "timeout", "after_libusb_clear": IDN}
    assert bus.call(_key(bus), "toggle_drops") == 1


def test_tmc_sim_run_arms_faults_for_the_users_program(umockdev_available):
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "sim", "run", "--quiet", "--device", "loopback", "--fault", "wrong-btag",
         "--", sys.executable, str(RAW_HOST), "wrong_btag"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["echoed"] != result["sent"] and result["data"] == IDN


def test_tmc_sim_run_names_a_bad_fault_spec():
    proc = subprocess.run([sys.executable, "-m", "app.cli", "sim", "run", "--fault", "stall-bulk-out:after=3",
                           "--", "true"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown option 'after'" in proc.stderr and "after_bytes" in proc.stderr


def test_tmc_sim_run_lists_the_fault_kinds():
    proc = subprocess.run([sys.executable, "-m", "app.cli", "sim", "run", "--fault", "help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "partial-out-timeout" in proc.stdout and "USB 2.0 8.6" in proc.stdout


def test_an_unplug_fault_mid_transfer_is_enodev_and_the_device_comes_back(make_bus):
    bus = make_bus(["loopback"])
    key = _key(bus)
    bus.fault(key, "unplug")
    assert run_raw(bus, "unplug") == {"write": 19}  # ENODEV, as for a cable pulled mid-transfer
    assert bus.request("list")["devices"] == []
    assert bus.fault(key, "replug") == [("unplug", "unplugged after taking 0 bytes of a message")]
    assert [d["product"] for d in bus.request("list")["devices"]] == ["Virtual Loopback"]
    assert run_raw(bus, "wrong_btag")["data"] == IDN
