"""Writing messages: DEV_DEP_MSG_OUT transfers, TRIGGER and vendor-specific messages.

A message is never left half-sent in the device: a transfer that stalls or times out
is cleared or aborted through :class:`~app.usbtmc.recovery.Recovery`, and whenever the
device may hold part of the message a device clear discards it, so the next command
is never appended to it (USBTMC 1.0 3.2.2.2).
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

from . import framing
from .constants import HEADER_BYTES
from .errors import AbortedError, ProtocolError, TmcError, TmcTimeoutError, UsageError
from .link import Link
from .recovery import Recovery
from .transport import Outcome, StallError

Progress = Callable[[int, int], None]

_REUSED_FRAME_BYTES = 64 * 1024  # Bulk-OUT frames this large are kept for the next transfer
_FIRST_PACED_TRANSFER_BYTES = 64 * 1024  # with abort_latency_ms: the first transfer, before a rate is known
# Bulk-OUT transfers of one message kept in flight at once where the transport can (libusb):
# the next frame is built and queued while the last one is on the bus. It pays where the
# host's turnaround is a sizeable part of a transfer: over umockdev +21 % at 4 KiB transfers,
# +7 % at 64 KiB, and nothing but a second frame's memory traffic at 1 MiB, so only below this.
OUT_TRANSFERS_IN_FLIGHT = 2
OVERLAP_BELOW_BYTES = 256 * 1024


def short_write_as_timeout(outcome: Outcome, length: int) -> Outcome:
    """A Bulk-OUT outcome that moved fewer than ``length`` bytes: some backends report a timeout that way."""
    if outcome.ok and outcome.count != length:
        return replace(outcome, error=TmcTimeoutError(f"the device took {outcome.count} of {length} bytes"))
    return outcome


class MessageWriter:
    """Writes messages for a session. ``session`` supplies ``quirks``, ``timeout_ms``,
    ``timeout_for(n)`` and ``pipelined``."""

    def __init__(self, link: Link, recovery: Recovery, session) -> None:
        self.link = link
        self.recovery = recovery
        self.session = session
        # Frames of full-size Bulk-OUT transfers, reused: one per transfer that can be in flight.
        self._out_frames: list[array | None] = [None] * OUT_TRANSFERS_IN_FLIGHT
        #: The rate the device last took a paced transfer at (bytes/s): the next paced upload
        #: starts from it instead of from 64 KiB (None: not measured yet in this session).
        self.paced_rate: float | None = None

    # --- one-transfer messages ---

    def write_raw(self, data, *, abort: threading.Event | None = None, progress: Progress | None = None) -> None:
        """``data`` as one message; see :meth:`Instrument.write_raw`."""
        view = memoryview(data).cast("B")
        size = len(view)
        if size == 0:
            raise UsageError("nothing to send: a USBTMC message carries at least one byte (USBTMC 1.0 Table 3)")
        if size <= self.session.quirks.max_out_transfer_bytes:
            # One transfer (every command and query): no regrouping needed.
            self.send_transfer((view,), size, True, abort)
            if progress is not None:
                progress(size, size)
            return
        self.write_stream((view,), size, abort=abort, progress=progress)

    def send_transfer(self, parts, size: int, last: bool, abort: threading.Event | None) -> None:
        if abort is not None and abort.is_set():
            raise AbortedError("the transfer was aborted by the user before it was sent")
        btag = self.link.next_btag()
        self.link.last_out_btag = btag
        frame = self.frame(parts, size, last, btag)
        try:
            written = self.link.transport.bulk_out(frame, self.session.timeout_for(size))
            if written != len(frame):  # a backend may report a timed-out transfer by its short count
                raise TmcTimeoutError(f"the device took {written} of {len(frame)} bytes")
        except (TmcTimeoutError, StallError) as exc:
            self.raise_out_failure(exc, btag, size, first_of_message=True, frame_bytes=len(frame))

    def send_small(self, frame: bytes, btag: int, what: str) -> None:
        """A one-packet message (TRIGGER, REQUEST_VENDOR_SPECIFIC_IN, VENDOR_SPECIFIC_OUT): on a STALL
        the halt is cleared, on a timeout the transfer is aborted; either way the error says so."""
        try:
            written = self.link.transport.bulk_out(frame, self.session.timeout_ms)
            if written != len(frame):  # a backend may report a timed-out transfer by its short count
                raise TmcTimeoutError(f"the device took {written} of {len(frame)} bytes")
        except StallError:
            report = self.recovery.after_out_failure(btag, stalled=True, partial_message=len(frame) > self.link.ep.bulk_out_packet_bytes)
            raise ProtocolError(f"the device halted its Bulk-OUT endpoint on {what}", report) from None
        except TmcTimeoutError:
            report = self.recovery.after_out_failure(btag, stalled=False, partial_message=False)
            raise TmcTimeoutError(f"the device did not accept {what} in time", report) from None

    # --- long messages ---

    def write_stream(self, pieces: Iterable, total_bytes: int | None = None, *, abort: threading.Event | None = None,
                     progress: Progress | None = None, abort_latency_ms: int | None = None) -> None:
        """The concatenation of ``pieces`` as one message; see :meth:`Instrument.write_stream`."""
        most = chunk = self.session.quirks.max_out_transfer_bytes
        pipelined = self.session.pipelined
        if abort_latency_ms is not None:
            chunk = self.paced_transfer_bytes(self.paced_rate, abort_latency_ms)
        if total_bytes and type(pieces) in (tuple, list) and len(pieces) == 1 \
                and total_bytes <= min(chunk + chunk // 4, most):
            # The whole message in hand, and one transfer by the rules below: sent as write_raw
            # sends a command, without the regrouping machinery (every cancellable upload
            # from the GUI of a waveform up to a paced transfer's size comes this way).
            view = memoryview(pieces[0]).cast("B")
            if len(view) == total_bytes:
                self._send_whole(view, abort, progress, abort_latency_ms)
                return
        transport = self.link.transport
        pending: list[memoryview] = []
        pending_bytes = 0
        done = 0
        sent = 0  # transfers begun
        in_flight: deque = deque()  # (token, btag, size, index, frame length, started at)
        last_done_at = [0.0]  # when the last transfer finished (paced: the rate is measured between finishes)

        def queued_bytes() -> int:
            return done + sum(item[2] for item in in_flight)

        def depth_for(n: int) -> int:
            # Where the transport overlaps transfers, small ones keep two in flight, and so do
            # paced ones (sized to last about abort_latency_ms, they would leave the bus idle
            # between them). A Cancel cancels what is still in flight once the transfer it
            # interrupted is done.
            if not pipelined:
                return 1
            return OUT_TRANSFERS_IN_FLIGHT if n < OVERLAP_BELOW_BYTES or abort_latency_ms is not None else 1

        def finish_oldest() -> None:
            nonlocal done, chunk
            token, btag, size, index, length, started = in_flight.popleft()
            outcome = short_write_as_timeout(transport.finish_bulk_out(token), length)
            if not outcome.ok:
                # Later transfers were cancelled with it; abort the newest one that reached the device.
                later = [transport.finish_bulk_out(item[0]) for item in in_flight]
                reached = [item for item, result in zip(in_flight, later) if result.started]
                in_flight.clear()
                failed_btag, failed_index = (reached[-1][1], reached[-1][3]) if reached else (btag, index)
                self.raise_out_failure(outcome.error or TmcTimeoutError("cancelled"), failed_btag, size,
                                       first_of_message=failed_index == 0 and not reached, frame_bytes=length)
            now = time.perf_counter()
            if abort_latency_ms is not None and size >= _FIRST_PACED_TRANSFER_BYTES:
                # A message's short last transfer is mostly turnaround: its rate would start the
                # next upload from 64 KiB again, so only full-size transfers measure the rate.
                rate = size / max(now - max(started, last_done_at[0]), 1e-6)
                chunk = min(2 * size, self.paced_transfer_bytes(rate, abort_latency_ms))
                self.paced_rate = rate
            last_done_at[0] = now
            done += size
            if progress is not None:
                progress(done, total_bytes if total_bytes is not None else done + pending_bytes)

        def stop_for_abort() -> None:
            nonlocal done
            # What is still in flight started after the abort was asked for: cancelled, so that
            # a Cancel waits for one transfer at most (the one it interrupted).
            for item in in_flight:
                transport.cancel_bulk_out(item[0])
            while in_flight:
                token, _btag, size, _index, length, _started = in_flight.popleft()
                outcome = transport.finish_bulk_out(token)
                if outcome.ok and outcome.count == length:
                    done += size
            self.raise_aborted(done, started_message=sent > 0)

        def send(n: int, last: bool) -> None:
            nonlocal pending_bytes, sent
            parts, take = [], n
            while take:
                head = pending[0]
                if len(head) <= take:
                    parts.append(head)
                    pending.pop(0)
                    take -= len(head)
                else:
                    parts.append(head[:take])
                    pending[0] = head[take:]
                    take = 0
            pending_bytes -= n
            if abort is not None and abort.is_set():
                stop_for_abort()
            depth = depth_for(n)
            while len(in_flight) >= depth:
                finish_oldest()  # its frame is the one to reuse
                if abort is not None and abort.is_set():
                    stop_for_abort()
            btag = self.link.next_btag()
            self.link.last_out_btag = btag
            frame = self.frame(parts, n, last, btag, slot=sent % OUT_TRANSFERS_IN_FLIGHT)
            started = time.perf_counter()
            # A transfer queued behind others waits for them on the bus first. Its longer limit
            # delays nothing: the one ahead times out sooner and cancels it.
            token = transport.start_bulk_out(frame, self.session.timeout_for(n) * (1 + len(in_flight)))
            in_flight.append((token, btag, n, sent, len(frame), started))
            sent += 1
            if depth == 1:
                finish_oldest()  # one by one: a failure is met before anything else is sent

        try:
            for piece in pieces:
                view = memoryview(piece).cast("B")
                if not len(view):
                    continue
                pending.append(view)
                pending_bytes += len(view)
                while pending_bytes > chunk:  # strictly more: what remains is not the last transfer
                    if total_bytes is not None and pending_bytes == total_bytes - queued_bytes() \
                            and pending_bytes <= chunk + chunk // 4 \
                            and pending_bytes <= self.session.quirks.max_out_transfer_bytes:
                        break  # the rest is a paced transfer and a sliver: one transfer, not two
                    send(chunk, last=False)
            if pending_bytes == 0 and sent == 0:
                raise UsageError("nothing to send: a USBTMC message carries at least one byte (USBTMC 1.0 Table 3)")
            if pending_bytes:
                send(pending_bytes, last=True)
            while in_flight:
                finish_oldest()
                if in_flight and abort is not None and abort.is_set():
                    stop_for_abort()
        finally:
            # An error from the caller's generator (or ours) must not leave transfers behind.
            for item in list(in_flight):
                transport.finish_bulk_out(item[0])

    def _send_whole(self, view: memoryview, abort, progress: Progress | None, abort_latency_ms: int | None) -> None:
        """A stream that is one transfer; paced, a full-size one measures the rate as in write_stream."""
        size = len(view)
        started = time.perf_counter()
        self.send_transfer((view,), size, True, abort)
        if abort_latency_ms is not None and size >= _FIRST_PACED_TRANSFER_BYTES:
            self.paced_rate = size / max(time.perf_counter() - started, 1e-6)
        if progress is not None:
            progress(size, size)

    def raise_aborted(self, done_bytes: int, *, started_message: bool):
        """The user aborted between transfers: the device holds a partial message unless
        nothing was sent yet, so it is cleared before the error is raised."""
        if not started_message:
            raise AbortedError("the transfer was aborted by the user before it was sent", 0)
        report = self.recovery.run(lambda: f"{self.recovery.resync()} to discard the partial message")
        raise AbortedError("the transfer was aborted by the user", done_bytes, report)

    def frame(self, parts, size: int, last: bool, btag: int, slot: int = 0) -> array:
        """The DEV_DEP_MSG_OUT transfer carrying ``parts`` (``size`` bytes in all), padded to 4 bytes."""
        # Built as an array('B'): pyusb hands an array to the backend as it is, so the
        # payload is copied once (into the frame), not again inside pyusb. Full-size
        # transfers reuse one frame, so a long upload allocates (and page-faults) no
        # memory per transfer.
        length = HEADER_BYTES + size + framing.padding_bytes(size)
        header = framing.dev_dep_msg_out_header(btag, size, eom=last)
        if length < _REUSED_FRAME_BYTES:
            frame = array("B", header)
            for part in parts:
                frame.frombytes(part)
            frame.frombytes(bytes(length - len(frame)))
            return frame
        frame = self._out_frames[slot]
        if frame is None or len(frame) != length:
            frame = self._out_frames[slot] = array("B", bytes(length))
        with memoryview(frame) as view:
            view[:HEADER_BYTES] = header
            at = HEADER_BYTES
            for part in parts:
                view[at:at + len(part)] = part
                at += len(part)
            view[at:] = bytes(length - at)
        return frame

    def raise_out_failure(self, exc: TmcError, btag: int, size: int, *, first_of_message: bool, frame_bytes: int,
                          then: Callable[[], str | None] | None = None):
        """Recover from a DEV_DEP_MSG_OUT transfer that timed out or stalled, and raise the error.

        ``first_of_message``: no earlier transfer of the message reached the device.
        ``then`` is a further recovery step (a read request that went out behind the failed message).
        """
        if isinstance(exc, StallError):
            # The device may have taken some packets of the transfer before halting.
            partial = not first_of_message or frame_bytes > self.link.ep.bulk_out_packet_bytes
            report = self.recovery.after_out_failure(btag, stalled=True, partial_message=partial, then=then)
            raise ProtocolError("the device halted its Bulk-OUT endpoint", report) from None
        if not isinstance(exc, TmcTimeoutError):
            raise exc
        report = self.recovery.after_out_failure(btag, stalled=False, partial_message=not first_of_message, then=then)
        raise TmcTimeoutError(f"the device did not accept a {size}-byte Bulk-OUT transfer in time", report) from None

    def paced_transfer_bytes(self, rate: float | None, latency_ms: int) -> int:
        """A transfer size that takes about ``latency_ms`` at ``rate`` bytes/s (None: not measured
        yet), in whole packets, between 64 KiB and ``quirks.max_out_transfer_bytes``. The caller
        lets sizes at most double per transfer: a device's input buffer swallows the first
        transfers at once, so early rates overstate what it sustains."""
        most = self.session.quirks.max_out_transfer_bytes
        packet = self.link.ep.bulk_out_packet_bytes
        if rate is None:
            wanted = min(most, _FIRST_PACED_TRANSFER_BYTES)
        else:
            wanted = min(most, max(_FIRST_PACED_TRANSFER_BYTES, int(rate * latency_ms / 1000)))
        return max(packet, wanted - wanted % packet) if wanted >= packet else wanted
