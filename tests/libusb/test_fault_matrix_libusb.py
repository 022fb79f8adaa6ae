"""A representative part of the fault matrix over the real libusb through umockdev.

The faults are armed in the bus process (the device side) while the host, the console's
core on libusb, runs one operation; queries take the asynchronous batch path there (the
command, the read request and the first read submitted together), which the in-process
matrix (tests/core/test_fault_matrix.py) cannot reach. Data toggles are modelled, so a
clear or an abort that left the host's toggle out of step would lose the next command.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.libusb

LOOPBACK = "USB0::0x1209::0x0002::LOOP-0001::INSTR"
IDN = "TMC Console,Virtual Loopback,LOOP-0001,1.0"
INTENDED = {"*IDN?\n", "*ESE 32\n", "MEM:DATA?\n"}
#: A stored block whose reply transfer fills whole 512-byte packets: 12 + len("#3494") + 494 + 1 = 512.
BOUNDARY_BLOCK_BYTES = 494

CASES = [
    ("wrong-btag", "query"),
    ("garbage-header", "query"),
    ("size-zero", "query"),
    ("size-too-large", "query"),
    ("early-short-packet", "query"),
    ("no-zlp", "memory query"),
    ("split-reply", "query"),
    ("no-answer", "query"),
    ("stall-bulk-in", "query"),
    ("stall-request-in", "read"),
    ("stall-bulk-out:after_bytes=4", "write"),
    ("stall-bulk-out:after_bytes=6000", "upload"),
    ("partial-out-timeout:after_bytes=6000", "upload"),
    ("partial-out-timeout", "write"),
    ("status-pending:polls=5", "clear"),
    ("leftover-data", "clear"),
    ("stale-interrupt-tag", "status byte"),
    ("srq-during-query", "query"),
    ("stall-trigger", "trigger"),
]
MUST_SUCCEED = {"no-zlp", "split-reply", "status-pending", "leftover-data", "stale-interrupt-tag", "srq-during-query"}


@pytest.fixture(scope="module")
def loopback_bus(request):
    from app.sim.umockdev import launcher

    problem = launcher.check()
    if problem:
        pytest.skip(f"umockdev cannot serve the virtual instruments here: {problem}")
    bus = launcher.UmockdevBus(["loopback"])
    request.addfinalizer(bus.close)
    return bus


@pytest.mark.parametrize("spec, op", CASES, ids=[f"{s.split(':')[0]}-{o}" for s, o in CASES])
def test_a_fault_over_libusb_leaves_the_session_truthful_and_usable(loopback_bus, host, spec, op):
    bus = loopback_bus
    key = next(d["key"] for d in bus.devices if d["product"] == "Virtual Loopback")
    fired_before = len(bus.fault(key, "clear"))
    args = {"resource": LOOPBACK, "op": op, "transfer_bytes": 4096}
    if op == "memory query":
        args["memory_bytes"] = BOUNDARY_BLOCK_BYTES
    proc = host.start(bus, "fault_case", args)
    opened = proc.step()
    assert opened["step"] == "open" and opened["pipelined"], opened  # the libusb batch path
    before_executed = len(bus.call(key, "executed"))
    before_violations = len(bus.call(key, "violations"))
    bus.fault(key, spec)
    proc.go()
    done = proc.step()
    fired = bus.fault(key, "clear")[fired_before:]
    proc.go()
    result = proc.result()

    kind = spec.split(":")[0]
    assert any(k == kind for k, _ in fired), f"{spec} never fired during {op}: {fired}"
    assert done["elapsed_s"] < 8, done
    if done["raised"]:
        assert ("the session is usable" in done["recovery"]) == (done["usable"] is True), done
        assert kind not in MUST_SUCCEED, done
    elif op == "query":
        assert done["result"].rstrip("\n") == IDN
    elif op == "memory query":
        assert done["result"] == len("#3494") + BOUNDARY_BLOCK_BYTES + 1
    assert result["next"] == IDN
    violations = bus.call(key, "violations")[before_violations:]
    assert [v for v in violations if "fault" not in v] == [], violations
    executed = [bytes.fromhex(m) for m in bus.call(key, "executed")[before_executed:]]
    for message in executed:
        text = message.decode("latin-1")
        assert text in INTENDED or (text.startswith("MEM:DATA #520000") and "..." in text), text[:60]
    assert executed[-1] == b"*IDN?\n"
