"""Every injected fault against every operation of a session, on the in-process virtual bus.

Each case arms one fault on the virtual loopback, runs one operation and asserts what a
user of the console must be able to rely on:

- the operation ends in bounded time, either as it should or with a typed :class:`TmcError`;
- the error's recovery text says "the session is usable" only when its recovery said so;
- the next ``*IDN?`` is answered correctly on the same session, without reopening it
  (after an unplug: once the device is back and the session reopened);
- the device saw no framing violation from the host, and executed only messages the host
  meant to send, whole: nothing was merged with or appended to another message.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from app.sim.faults import DESCRIPTIONS, Fault, FaultInjector, FaultKind
from app.sim.scpi_device import VirtualLoopback
from app.usbtmc import Instrument
from app.usbtmc.transport import UsbTransport
from app.usbtmc.errors import DeviceGoneError, NotSupportedError, TmcError

LOOPBACK = "USB0::0x1209::0x0002::LOOP-0001::INSTR"
TIMEOUT_MS = 300
#: A case ends within this: one transfer timeout, an abort's drain and its PENDING polls, a clear.
BOUND_S = 8.0
UPLOAD = b"MEM:DATA #520000" + bytes(range(256)) * 78 + bytes(20000 - 256 * 78) + b"\n"
WRITE = b"*ESE 32\n"
IDN_QUERY = b"*IDN?\n"
#: Messages the host sends in these cases: anything else the device executed was merged or cut.
INTENDED = {IDN_QUERY, WRITE, UPLOAD, b"*ESR?\n", b"SYST:ERR?\n"}


def _read(inst):
    inst.write_raw(IDN_QUERY)
    return inst.read_raw()


def _write(inst):
    inst.write_raw(WRITE)


def _query(inst):
    return inst.query_raw(IDN_QUERY)


def _status_byte(inst):
    return inst.read_stb()


def _trigger(inst):
    inst.trigger()


def _clear(inst):
    inst.clear()


def _upload(inst):
    inst.write_raw(UPLOAD)


OPERATIONS = {"read": _read, "write": _write, "query": _query, "status byte": _status_byte, "trigger": _trigger,
              "clear": _clear, "upload": _upload}

#: The fault as armed for a case; STALL_BULK_OUT and UNPLUG act mid-message where a message is long.
FAULTS = {
    kind: Fault(kind) for kind in FaultKind if kind not in (FaultKind.MODEL_CRASH, FaultKind.TOGGLE_MISMATCH)
}
FAULTS[FaultKind.STALL_BULK_OUT] = Fault(FaultKind.STALL_BULK_OUT, after_bytes=4)
FAULTS[FaultKind.UNPLUG] = Fault(FaultKind.UNPLUG, after_bytes=4)
FAULTS[FaultKind.STATUS_PENDING] = Fault(FaultKind.STATUS_PENDING, polls=5)
FAULTS[FaultKind.MODEL_CRASH] = Fault(FaultKind.MODEL_CRASH)
FAULTS[FaultKind.TOGGLE_MISMATCH] = Fault(FaultKind.TOGGLE_MISMATCH)

#: Faults a compliant host must ride through without an error (they are legal, or recovered inside).
MUST_SUCCEED = {FaultKind.SPLIT_REPLY, FaultKind.NO_ZLP, FaultKind.STATUS_PENDING, FaultKind.LEFTOVER_DATA,
                FaultKind.STALE_INTERRUPT_TAG, FaultKind.SRQ_DURING_QUERY}


@pytest.fixture
def session(sim):
    """An open session on the loopback, with message transfers small enough that an upload spans several."""
    device = sim.bus.find(kind=VirtualLoopback)
    inst = Instrument(LOOPBACK, backend=sim, timeout_ms=TIMEOUT_MS)
    inst.quirks = replace(inst.quirks, max_out_transfer_bytes=4096)
    injector = FaultInjector.attach(device, sim.bus)
    device.violations.clear()
    device.executed.clear()
    yield sim, device, injector, inst
    injector.clear()
    inst.close()


def test_the_matrix_covers_every_fault_kind():
    assert set(FAULTS) == set(FaultKind) == set(DESCRIPTIONS)


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("kind", list(FaultKind), ids=lambda k: k.value)
def test_a_fault_leaves_the_session_truthful_and_usable(session, kind, operation):
    sim, device, injector, inst = session
    injector.add(FAULTS[kind])
    started = time.monotonic()
    error: TmcError | None = None
    try:
        result = OPERATIONS[operation](inst)
    except TmcError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - the assertion names what leaked
        pytest.fail(f"{kind.value} during {operation} raised {type(exc).__name__}, not a TmcError: {exc}")
    elapsed = time.monotonic() - started
    fired = [k for k, _ in injector.fired]
    assert elapsed < BOUND_S, f"{kind.value} during {operation} took {elapsed:.1f} s"

    if error is not None:
        said_usable = "the session is usable" in error.recovery
        assert said_usable == (error.usable is True), (kind, operation, error.recovery)
        if not isinstance(error, (NotSupportedError, DeviceGoneError)):
            assert error.recovery, f"{kind.value} during {operation}: {error} names no recovery"
    elif operation in ("read", "query"):
        assert result.rstrip(b"\n") == device.idn.encode(), (kind, operation, result)
    if kind in MUST_SUCCEED and kind in fired:
        assert error is None, f"{kind.value} is legal or recoverable, yet {operation} failed: {error}"

    injector.clear()
    if isinstance(error, DeviceGoneError):
        injector.replug()
        inst.close()
        inst = Instrument(LOOPBACK, backend=sim, timeout_ms=TIMEOUT_MS)
        session_reopened = True
    else:
        session_reopened = False
    try:
        assert inst.query("*IDN?") == device.idn, f"the next *IDN? after {kind.value} during {operation}"
    finally:
        if session_reopened:
            inst.close()

    # A forced toggle mismatch corrupts the device's view of the wire itself; every other
    # violation would be the host's.
    host_violations = [v for v in device.violations if "fault" not in v and kind != FaultKind.TOGGLE_MISMATCH]
    assert host_violations == [], f"{kind.value} during {operation}: the device saw {host_violations}"
    for message in device.executed:
        assert message in INTENDED or message.startswith(UPLOAD[:16]) and message.endswith(UPLOAD[-8:]) \
            and b"..." in message, f"{kind.value} during {operation}: the device executed {message[:60]!r}"
    assert device.executed[-1] == IDN_QUERY


@pytest.mark.parametrize("kind", [FaultKind.STALL_BULK_OUT, FaultKind.PARTIAL_OUT_TIMEOUT])
def test_a_message_cut_short_is_discarded_and_the_next_command_arrives_alone(session, kind):
    sim, device, injector, inst = session
    injector.add(Fault(kind, after_bytes=6000))
    with pytest.raises(TmcError) as caught:
        inst.write_raw(UPLOAD)
    assert "discard the partial message" in caught.value.recovery and caught.value.usable
    injector.clear()
    assert inst.query("*IDN?") == device.idn
    assert device.executed == [IDN_QUERY]  # neither the cut upload nor "DATA...*IDN?"


def test_status_pending_longer_than_a_second_is_waited_for(session):
    sim, device, injector, inst = session
    injector.add(Fault(FaultKind.STATUS_PENDING, polls=40))  # about 1.5 s of polls with the growing pause
    started = time.monotonic()
    inst.clear()
    assert time.monotonic() - started > 1.0
    assert inst.query("*IDN?") == device.idn


def test_transfer_size_zero_ends_the_read_instead_of_asking_forever(session, transfer_log):
    sim, device, injector, inst = session
    injector.add(Fault(FaultKind.SIZE_ZERO))
    transfer_log.writes.clear()
    with pytest.raises(TmcError, match="TransferSize 0"):
        inst.query_raw(IDN_QUERY)
    requests = [w for w in transfer_log.writes if w[0] == 2]
    assert len(requests) == 1  # one read request, not an endless loop of them
    injector.clear()
    assert inst.query("*IDN?") == device.idn


def test_an_early_short_packet_ends_at_once_and_keeps_what_arrived(session):
    sim, device, injector, inst = session
    inst.timeout_ms = 5000
    injector.add(Fault(FaultKind.EARLY_SHORT_PACKET))
    started = time.monotonic()
    with pytest.raises(TmcError, match="short packet") as caught:
        inst.query_raw(IDN_QUERY)
    assert time.monotonic() - started < 2.5  # ended by the short packet, not by the 5 s timeout
    assert caught.value.received and device.idn.encode().startswith(caught.value.received[:8])
    assert "aborted Bulk-IN" in caught.value.recovery or "no Bulk-IN" in caught.value.recovery
    injector.clear()
    assert inst.query("*IDN?") == device.idn


def test_stalls_on_trigger_request_and_vendor_messages_are_cleared(session):
    sim, device, injector, inst = session
    for kind, operation in ((FaultKind.STALL_TRIGGER, inst.trigger), (FaultKind.STALL_REQUEST_IN, inst.read),
                            (FaultKind.STALL_VENDOR, lambda: inst.write_vendor(b"x"))):
        injector.add(Fault(kind))
        with pytest.raises(TmcError, match="halted its Bulk-OUT") as caught:
            operation()
        assert "Bulk-OUT halt cleared" in caught.value.recovery and caught.value.usable, kind
        assert not device.is_halted(device.bulk_out_ep)
        injector.clear()
        assert inst.query("*IDN?") == device.idn, kind


def test_an_abort_that_answers_failed_clears_no_halt(session, monkeypatch):
    sim, device, injector, inst = session
    clears = []
    monkeypatch.setattr(UsbTransport, "clear_halt", lambda transport, ep: clears.append(ep))
    outcome = inst._recovery.abort_bulk_out(inst._link.next_btag())  # nothing in progress: FAILED
    assert outcome.not_in_progress and not outcome.halt_cleared
    assert clears == []
