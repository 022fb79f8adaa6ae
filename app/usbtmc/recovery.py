"""Recovery sequences, written once: the aborts, the device clear, halts and the drain.

The session (:class:`~app.usbtmc.instrument.Instrument`, through its reader and writer)
and the compliance probe both recover through a :class:`Recovery`. Each low-level step
returns what the device answered; the ``after_*`` sequences return a
:class:`RecoveryReport` that says what was done and whether the session is now in a
known state. "The session is usable" is said only when every step that state depends
on succeeded.

Where USBTMC 1.0 is silent this follows the Linux usbtmc driver: halts are cleared with
``usb_clear_halt()`` semantics (both data toggles reset, :meth:`UsbTransport.clear_halt`),
CLEAR_FEATURE follows an abort only when the device answered SUCCESS, and PENDING is
polled for up to five seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .constants import Request, Status
from .errors import DeviceGoneError, NotSupportedError, ProtocolError, TmcError, TmcTimeoutError
from .link import Link
from .transport import StallError

#: Shortest time PENDING answers are polled for, whatever the session's timeout (the
#: Linux usbtmc driver allows five seconds for a clear or an abort to finish).
MIN_STATUS_WAIT_MS = 5000
_FIRST_POLL_S = 0.002
_LONGEST_POLL_S = 0.05
#: A drain reads this many packets per Bulk-IN request.
_DRAIN_PACKETS = 64
#: Bulk-IN requests one drain makes at most (with the per-read timeout, bounds it in time).
_DRAIN_READS = 1 << 14


@dataclass(frozen=True)
class RecoveryReport:
    """What a recovery did, step by step, and whether the session is in a known state.

    ``usable`` is True only when every step the session's state depends on succeeded;
    ``problem`` says what is left wrong otherwise.
    """

    steps: tuple[str, ...] = ()
    usable: bool = True
    problem: str = ""

    def what_ran(self) -> str:
        """The steps, without the verdict on the session (for a command that ends with the error)."""
        return "; ".join(self.steps)

    def __str__(self) -> str:
        parts = list(self.steps)
        if self.usable:
            parts.append("the session is usable")
        else:
            parts.append(f"the session may be out of step ({self.problem}); "
                         "send a device clear or reopen the session")
        return "; ".join(parts)


@dataclass(frozen=True)
class AbortOutcome:
    """The device's answers to an ABORT_BULK_IN or ABORT_BULK_OUT sequence (USBTMC 1.0 4.2.1.2-5)."""

    direction: str  # "Bulk-IN" or "Bulk-OUT"
    btag: int
    initiate_status: int
    check_status: int | None = None
    drained_bytes: int = 0
    #: NBYTES_RXD of CHECK_ABORT_BULK_OUT_STATUS, or NBYTES_TXD of CHECK_ABORT_BULK_IN_STATUS.
    count_bytes: int | None = None
    halt_cleared: bool = False

    @property
    def aborted(self) -> bool:
        """The device aborted a transfer in progress and confirmed it."""
        return self.initiate_status == Status.SUCCESS and self.check_status == Status.SUCCESS

    @property
    def not_in_progress(self) -> bool:
        return self.initiate_status in (Status.FAILED, Status.TRANSFER_NOT_IN_PROGRESS)

    def describe(self) -> str:
        if self.aborted:
            text = f"aborted {self.direction} transfer bTag {self.btag}"
            if self.direction == "Bulk-OUT" and self.count_bytes is not None:
                text += f" after the device took {self.count_bytes} bytes"
            if self.drained_bytes:
                text += f" ({self.drained_bytes} bytes drained)"
            return text
        if self.not_in_progress:
            return (f"no {self.direction} transfer bTag {self.btag} was in progress "
                    f"(INITIATE_ABORT answered {_status(self.initiate_status)})")
        return f"ABORT {self.direction} answered {_status(self.initiate_status)}"


@dataclass(frozen=True)
class ClearOutcome:
    """The device's answers to a device clear (USBTMC 1.0 4.2.1.6-7)."""

    initiate_status: int
    check_status: int | None = None
    drain_asks: int = 0
    drained_bytes: int = 0

    @property
    def finished(self) -> bool:
        return self.initiate_status == Status.SUCCESS and self.check_status == Status.SUCCESS


def _status(value: int | None) -> str:
    if value is None:
        return "nothing"
    try:
        return Status(value).name
    except ValueError:
        return f"0x{value:02X}"


class Recovery:
    """Aborts, device clear, halts and drain on one :class:`Link`.

    ``no_initiate_clear``, ``no_drain_on_clear``, ``abort_in_drain`` and
    ``clear_halts_bulk_in`` are the quirk flags of the device; ``timeout_ms`` bounds
    each transfer of the session, and with :data:`MIN_STATUS_WAIT_MS` how long PENDING
    is polled.
    """

    def __init__(self, link: Link, *, timeout_ms: int, no_initiate_clear: bool = False,
                 no_drain_on_clear: bool = False, abort_in_drain: bool = True,
                 clear_halts_bulk_in: bool = False, status_wait_ms: int | None = None) -> None:
        self.link = link
        self.timeout_ms = timeout_ms
        self.no_initiate_clear = no_initiate_clear
        self.no_drain_on_clear = no_drain_on_clear
        self.abort_in_drain = abort_in_drain
        self.clear_halts_bulk_in = clear_halts_bulk_in
        self.status_wait_ms = status_wait_ms if status_wait_ms is not None else max(timeout_ms, MIN_STATUS_WAIT_MS)

    @classmethod
    def for_quirks(cls, link: Link, quirks, timeout_ms: int) -> Recovery:
        return cls(link, timeout_ms=timeout_ms, no_initiate_clear=quirks.no_initiate_clear,
                   no_drain_on_clear=quirks.no_drain_on_clear, abort_in_drain=quirks.abort_in_drain,
                   clear_halts_bulk_in=quirks.clear_halts_bulk_in)

    # --- single steps: each returns what the device answered ---

    def _polls(self):
        """Sleep between PENDING answers, growing from 2 to 50 ms, until the status deadline."""
        deadline = time.monotonic() + self.status_wait_ms / 1000
        pause = _FIRST_POLL_S
        while True:
            yield
            if time.monotonic() >= deadline:
                return
            time.sleep(pause)
            pause = min(_LONGEST_POLL_S, pause * 1.5)

    def drain_bulk_in(self, timeout_ms: int = 300) -> int:
        """Read Bulk-IN until a short packet ends the transfer or nothing comes (USBTMC 1.0 4.2.1.4).

        Returns the bytes read. Bounded by :data:`_DRAIN_READS` reads of ``timeout_ms`` each.
        A halted Bulk-IN has nothing to give: its halt is cleared and the drain ends.
        """
        packet = self.link.ep.bulk_in_packet_bytes
        drained = 0
        for _ in range(_DRAIN_READS):
            try:
                data = self.link.transport.bulk_in(packet * _DRAIN_PACKETS, timeout_ms)
            except TmcTimeoutError:
                return drained
            except StallError:
                self.clear_halt(self.link.ep.bulk_in)
                return drained
            drained += len(data)
            if len(data) % packet or not data:
                return drained
        return drained

    def clear_halt(self, endpoint: int) -> str:
        """Clear a halt on both sides of the pipe (libusb's clear_halt: USB 2.0 9.4.5, toggles reset)."""
        self.link.transport.clear_halt(endpoint)
        return f"{'Bulk-IN' if endpoint & 0x80 else 'Bulk-OUT'} halt cleared"

    def abort_bulk_in(self, btag: int) -> AbortOutcome:
        """INITIATE_ABORT_BULK_IN, the drain, CHECK_ABORT_BULK_IN_STATUS (USBTMC 1.0 4.2.1.4-5)."""
        ep = self.link.ep.bulk_in
        status = self.link.control(Request.INITIATE_ABORT_BULK_IN, btag, 2, endpoint=ep)[0]
        if status != Status.SUCCESS:
            return AbortOutcome("Bulk-IN", btag, status)
        drained = self.drain_bulk_in() if self.abort_in_drain else 0
        check = None
        for _ in self._polls():
            check = self.link.control(Request.CHECK_ABORT_BULK_IN_STATUS, 0, 8, endpoint=ep)
            if check[0] != Status.PENDING:
                break
            if len(check) > 1 and check[1] & 0x01 and self.abort_in_drain:
                drained += self.drain_bulk_in()  # bmAbortBulkIn.D0: data still queued
        sent = int.from_bytes(check[4:8], "little") if check is not None and len(check) >= 8 else None
        return AbortOutcome("Bulk-IN", btag, status, check[0] if check else None, drained, sent)

    def abort_bulk_out(self, btag: int) -> AbortOutcome:
        """INITIATE_ABORT_BULK_OUT, CHECK_ABORT_BULK_OUT_STATUS, then the halt is cleared
        (USBTMC 1.0 4.2.1.2-3). Like the Linux driver, the halt is cleared only after SUCCESS:
        a device that answered FAILED or TRANSFER_NOT_IN_PROGRESS did not halt."""
        ep = self.link.ep.bulk_out
        status = self.link.control(Request.INITIATE_ABORT_BULK_OUT, btag, 2, endpoint=ep)[0]
        if status != Status.SUCCESS:
            return AbortOutcome("Bulk-OUT", btag, status)
        check = None
        for _ in self._polls():
            check = self.link.control(Request.CHECK_ABORT_BULK_OUT_STATUS, 0, 8, endpoint=ep)
            if check[0] != Status.PENDING:
                break
        received = int.from_bytes(check[4:8], "little") if check is not None and len(check) >= 8 else None
        done = check is not None and check[0] == Status.SUCCESS
        if done:
            self.clear_halt(ep)
        return AbortOutcome("Bulk-OUT", btag, status, check[0] if check else None, 0, received, done)

    def device_clear(self, *, drain_after_asks: int = 0) -> ClearOutcome:
        """INITIATE_CLEAR, CHECK_CLEAR_STATUS until it is no longer PENDING, then the
        Bulk-OUT halt is cleared (USBTMC 1.0 4.2.1.6-7).

        When CHECK_CLEAR_STATUS sets bmClear.D0 the device wants its Bulk-IN FIFO read:
        that happens after it asked more than ``drain_after_asks`` times in a row (and never
        with ``no_drain_on_clear``). Raises :class:`TmcTimeoutError` when INITIATE_CLEAR
        is not answered.
        """
        status = self.link.control(Request.INITIATE_CLEAR, 0, 1)[0]
        if status != Status.SUCCESS:
            return ClearOutcome(status)
        asks = drained = 0
        reply = b""
        for _ in self._polls():
            reply = self.link.control(Request.CHECK_CLEAR_STATUS, 0, 2)
            if reply[0] != Status.PENDING:
                break
            if len(reply) > 1 and reply[1] & 0x01 and not self.no_drain_on_clear:
                asks += 1
                if asks > drain_after_asks:
                    drained += self.drain_bulk_in()
                    asks = 0
        check = reply[0] if reply else None
        if check != Status.SUCCESS:
            return ClearOutcome(status, check, asks, drained)
        self.clear_halt(self.link.ep.bulk_out)
        if self.clear_halts_bulk_in:
            self.clear_halt(self.link.ep.bulk_in)
        return ClearOutcome(status, check, asks, drained)

    # --- the session's recovery sequences ---

    def clear(self) -> str:
        """A device clear that raises unless it finished; returns what was done."""
        if self.no_initiate_clear:
            raise NotSupportedError(
                "this device hangs on INITIATE_CLEAR (quirk no_initiate_clear), so no device clear is sent")
        outcome = self.device_clear()
        if outcome.initiate_status != Status.SUCCESS:
            raise ProtocolError(f"INITIATE_CLEAR answered {_status(outcome.initiate_status)}")
        if outcome.check_status == Status.PENDING:
            raise TmcTimeoutError("the device clear did not finish",
                                  f"the device kept answering PENDING for {self.status_wait_ms} ms")
        if not outcome.finished:
            raise ProtocolError(f"CHECK_CLEAR_STATUS answered {_status(outcome.check_status)}")
        return "device clear sent" + (f" ({outcome.drained_bytes} bytes drained)" if outcome.drained_bytes else "")

    def resync(self) -> str:
        """Bring both pipes and the device's message state back to the start: a device
        clear, or for devices that hang on INITIATE_CLEAR a drain and both halts cleared."""
        if not self.no_initiate_clear:
            return self.clear()
        drained = self.drain_bulk_in()
        self.clear_halt(self.link.ep.bulk_out)
        self.clear_halt(self.link.ep.bulk_in)
        return f"device clear skipped (quirk no_initiate_clear); {drained} bytes drained and both halts cleared"

    def run(self, *steps: Callable[[], str | None], why: str = "after a failed transfer") -> RecoveryReport:
        """Run recovery steps in order and report. A step that raises ends the recovery:
        the report then says the session may be out of step. A gone device raises.

        ``why`` names the cause in the I/O trace, where the steps' transfers are marked
        as this recovery's and the report is its outcome."""
        trace = self.link.transport.trace
        if trace is None:
            return self._run(steps)
        with trace.recovery(why) as entry:
            report = self._run(steps)
            if entry is not None:
                entry.detail = str(report)
                entry.status = "ok" if report.usable else "error"
        return report

    def _run(self, steps) -> RecoveryReport:
        done: list[str] = []
        for step in steps:
            try:
                text = step()
            except DeviceGoneError:
                raise
            except TmcError as exc:
                return RecoveryReport(tuple(done), False, f"recovery failed: {exc}")
            if text:
                done.append(text)
        return RecoveryReport(tuple(done), True)

    def after_in_failure(self, btag: int) -> RecoveryReport:
        """After a Bulk-IN transfer failed (timeout, bad header, wrong size): abort it.
        When the device says nothing was in progress, it may still hold a reply
        (it answered to an older request): a resync discards it."""
        def abort() -> str:
            outcome = self.abort_bulk_in(btag)
            if outcome.initiate_status == Status.SUCCESS and outcome.check_status != Status.SUCCESS:
                raise ProtocolError(f"CHECK_ABORT_BULK_IN_STATUS answered {_status(outcome.check_status)}")
            if outcome.initiate_status == Status.TRANSFER_NOT_IN_PROGRESS:
                return f"{outcome.describe()}; {self.resync()}"
            if outcome.initiate_status not in (Status.SUCCESS, Status.FAILED):
                raise ProtocolError(f"INITIATE_ABORT_BULK_IN answered {_status(outcome.initiate_status)}")
            return outcome.describe()
        return self.run(abort, why=f"ABORT_BULK_IN bTag {btag}, after the Bulk-IN transfer failed")

    def after_in_stall(self) -> RecoveryReport:
        """The device halted Bulk-IN: clear the halt, then resync (the reply's rest is unknown)."""
        return self.run(lambda: self.clear_halt(self.link.ep.bulk_in), self.resync,
                        why="clear the Bulk-IN halt and resync, after the device halted Bulk-IN")

    def after_out_failure(self, btag: int, *, stalled: bool, partial_message: bool,
                          then: Callable[[], str | None] | None = None) -> RecoveryReport:
        """After a DEV_DEP_MSG_OUT (or TRIGGER, vendor, request) transfer timed out or stalled.

        A STALL is cleared on both sides; a timeout runs ABORT_BULK_OUT. Then, whenever the
        device may hold part of a message (``partial_message``: earlier transfers of it were
        taken; or after a timeout NBYTES_RXD > 0, or the device says no transfer was in
        progress and so cannot say what it kept), a device clear discards it, so the next
        command is never appended to it (USBTMC 1.0 3.2.2.2, Table 22).
        """
        kept = {"partial": partial_message}

        def first() -> str:
            if stalled:
                return self.clear_halt(self.link.ep.bulk_out)
            outcome = self.abort_bulk_out(btag)
            if outcome.initiate_status == Status.SUCCESS and outcome.check_status != Status.SUCCESS:
                raise ProtocolError(f"CHECK_ABORT_BULK_OUT_STATUS answered {_status(outcome.check_status)}")
            if not outcome.aborted and not outcome.not_in_progress:
                raise ProtocolError(f"INITIATE_ABORT_BULK_OUT answered {_status(outcome.initiate_status)}")
            if outcome.not_in_progress or outcome.count_bytes is None or outcome.count_bytes > 0:
                # The device kept message bytes, or cannot say: it may hold the start of a
                # transfer whose header it never completed. Either way, discard it.
                kept["partial"] = True
            return outcome.describe()

        def discard() -> str | None:
            if not kept["partial"]:
                return None
            return f"{self.resync()} to discard the partial message"

        steps = [first, discard] + ([then] if then is not None else [])
        why = (f"clear the Bulk-OUT halt, after the device stalled bTag {btag}" if stalled
               else f"ABORT_BULK_OUT bTag {btag}, after the Bulk-OUT transfer failed")
        return self.run(*steps, why=why)
