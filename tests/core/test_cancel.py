"""Cancel during an overlapped upload: the queued transfer is cancelled, the one on the bus finishes,
the partial message is cleared, and the next command arrives alone."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from app.sim.scpi_device import VirtualLoopback
from app.usbtmc import AbortedError, Instrument, open_interface
from app.usbtmc.transport import Outcome, UsbTransport

LOOPBACK = "USB0::0x1209::0x0002::LOOP-0001::INSTR"
SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


class OverlappingTransport:
    """Stands in for libusb's asynchronous transfers on the virtual bus: a started transfer
    reaches the device only when it is finished (in order), and a cancelled one never does."""

    def __init__(self, real: UsbTransport) -> None:
        self.real = real
        self.started: list[bytes] = []
        self.cancelled: list[int] = []
        self.delivered: list[int] = []

    def start_bulk_out(self, data, timeout_ms: int):
        self.started.append(bytes(data))
        return len(self.started) - 1

    def cancel_bulk_out(self, token) -> None:
        self.cancelled.append(token)

    def finish_bulk_out(self, token) -> Outcome:
        if token in self.cancelled:
            return Outcome(started=False)
        self.delivered.append(token)
        return Outcome(count=self.real.bulk_out(self.started[token], 2000))


@pytest.fixture
def overlapped(sim, monkeypatch):
    device = sim.bus.find(kind=VirtualLoopback)
    interface = open_interface(LOOPBACK, sim)
    fake = OverlappingTransport(interface.transport)
    monkeypatch.setattr(UsbTransport, "pipelines", property(lambda self: True))
    for name in ("start_bulk_out", "cancel_bulk_out", "finish_bulk_out"):
        monkeypatch.setattr(interface.transport, name, getattr(fake, name))
    inst = Instrument(interface, timeout_ms=2000)
    inst.quirks = replace(inst.quirks, max_out_transfer_bytes=4096)
    yield device, inst, fake
    inst.close()


def test_a_cancel_stops_the_queued_transfer_and_waits_for_one_at_most(overlapped):
    device, inst, fake = overlapped
    abort = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if len(seen) == 3:
            abort.set()

    payload = bytes(100_000)
    with pytest.raises(AbortedError) as caught:
        inst.write_stream((b"MEM:DATA #6100000", payload, b"\n"), 17 + 100_000 + 1, abort=abort, progress=progress,
                          abort_latency_ms=50)
    # Two in flight: when the third transfer finished, the fourth was already queued behind it;
    # the cancel stopped it before it reached the device, and nothing after it was started.
    assert fake.cancelled and fake.cancelled[-1] not in fake.delivered
    assert len(fake.started) == len(fake.delivered) + len(fake.cancelled) <= 5
    assert caught.value.usable and "discard the partial message" in caught.value.recovery
    assert inst.query("*IDN?") == device.idn
    assert device.executed[-1] == b"*IDN?\n" and not any(m.startswith(b"MEM:DATA") for m in device.executed)


def test_an_uncancelled_overlapped_upload_arrives_whole(overlapped):
    device, inst, fake = overlapped
    payload = bytes(i % 251 for i in range(50_000))
    inst.write_stream((b"MEM:DATA #550000", payload, b"\n"), 16 + 50_000 + 1, abort=threading.Event(),
                      abort_latency_ms=50)
    assert len(fake.delivered) == len(fake.started) > 10 and not fake.cancelled
    assert device.memory == payload


def _stuck_query(inst: Instrument, message: bytes):
    """Run a query the device never answers on a thread of its own; returns (thread, what it raised,
    an event set once the query has gone out and its reply is awaited)."""
    sent, raised = threading.Event(), []

    def run() -> None:
        try:
            inst.query_raw(message, on_sent=sent.set)
        except Exception as exc:  # noqa: BLE001 - the test looks at what it was
            raised.append(exc)

    thread = threading.Thread(target=run, name="stuck query")
    thread.start()
    return thread, raised, sent


def test_cancel_ends_a_transfer_waiting_out_a_long_timeout_and_fails_later_ones_at_once(sim):
    """Another thread (the GUI closing a session) cancels the transfer the session's thread
    waits in: it fails as cancelled long before its 600 s timeout, and so does every later
    transfer; closing still releases the interface."""
    inst = Instrument(SAM7, backend=sim, timeout_ms=600_000)
    thread, raised, sent = _stuck_query(inst, b"NOSUCH:QUERY?\n")  # the SAM7 never answers it
    assert sent.wait(10)
    inst.cancel_transfers()
    thread.join(10)  # far below the 600 s the transfer would wait
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], AbortedError) and "cancelled" in str(raised[0])
    with pytest.raises(AbortedError, match="cancelled"):
        inst.query("*IDN?")
    inst.close()
    with Instrument(SAM7, backend=sim, timeout_ms=2000) as again:  # the interface was released
        assert again.query("*IDN?")


def test_a_cancelled_transfer_is_traced_as_cancelled(sim):
    from app.usbtmc.trace import CANCELLED, Recorder

    recorder = Recorder()
    inst = Instrument(SAM7, backend=sim, timeout_ms=600_000, trace=recorder)
    thread, raised, sent = _stuck_query(inst, b"NOSUCH:QUERY?\n")
    assert sent.wait(10)
    inst.cancel_transfers()
    thread.join(10)
    assert not thread.is_alive() and isinstance(raised[0], AbortedError)
    inst.close()
    query = next(e for e in recorder.entries() if e.op == "query" and e.status != "ok")
    assert query.status == CANCELLED
    stuck = [e for e in recorder.entries() if e.group == query.seq and e.direction == "in"]
    assert stuck and stuck[-1].status == CANCELLED
