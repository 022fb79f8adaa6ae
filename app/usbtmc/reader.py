"""Reading response messages: REQUEST_DEV_DEP_MSG_IN and the Bulk-IN transfers that answer it.

Every failure runs its recovery through :class:`~app.usbtmc.recovery.Recovery` before
the error is raised, and every loop is bounded by progress (each transfer must bring
bytes or end the message) and by the session's timeout (each transfer has one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NoReturn

from . import framing, ieee488
from .constants import HEADER_BYTES, MsgId
from .errors import AbortedError, ProtocolError, TmcError, TmcTimeoutError
from .link import Link
from .recovery import Recovery, RecoveryReport
from .transport import Outcome, StallError

Progress = Callable[[int, int], None]


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class ZlpKnowledge:
    """What a session has learned about the device's zero-length packets.

    USB 2.0 section 5.8.3: a transfer that ends on a packet boundary is ended by a ZLP.
    Some devices omit it (pyvisa-py #463); a read whose buffer is larger than such a
    transfer would then wait out its whole timeout. Until the device has shown that it
    sends ZLPs, reads are sized so that none waits for one: one packet first, then
    exactly the rest. The evidence comes for free: after a transfer that ended on a
    packet boundary, the next Bulk-IN read either meets the ZLP (it sends them) or the
    next header (it does not).
    """

    def __init__(self, omits: bool) -> None:
        #: True: sends ZLPs; False: omits them; None: not known yet.
        self.sends: bool | None = False if omits else None
        #: The last transfer ended on a packet boundary and was read without its ZLP.
        self.boundary_pending = False

    def learn(self, first_read: bytes) -> str | None:
        """Called with the first read of a transfer; returns a note the first time it learns the device omits ZLPs."""
        if not self.boundary_pending:
            return None
        self.boundary_pending = False
        if self.sends is not None:
            return None
        if not first_read:
            self.sends = True
            return None
        self.sends = False
        return ("this device omits the zero-length packet after a reply that ends on a packet boundary "
                "(USB 2.0 5.8.3); reads are now sized so that none waits for it")


class MessageReader:
    """Reads response messages for a session. ``session`` supplies ``quirks``,
    ``timeout_ms``, ``active_term_char()``, ``timeout_for(n)`` and ``note(text)``."""

    def __init__(self, link: Link, recovery: Recovery, session) -> None:
        self.link = link
        self.recovery = recovery
        self.session = session
        self.zlp = ZlpKnowledge(omits=session.quirks.no_zlp)

    # --- a message ---

    def request_size(self, max_bytes: int | None, already: int = 0) -> int:
        most = self.session.quirks.max_in_transfer_bytes
        return most if max_bytes is None else min(most, max_bytes - already)

    def read_message(self, max_bytes: int | None, abort: threading.Event | None, progress: Progress | None,
                     first: tuple[int, int, Outcome] | None = None) -> bytes:
        """One response message, transfer by transfer, until EOM (or the TermChar, or ``max_bytes``).

        ``first`` is a request already sent, with the outcome of its first read.
        """
        q = self.session.quirks
        out = bytearray()
        term_char = self.session.active_term_char()
        requested = False
        while True:
            if abort is not None and abort.is_set():
                report = self.recovery.run(self.recovery.resync)
                raise AbortedError("the read was aborted by the user", len(out), report)
            ask = self.request_size(max_bytes, len(out))
            read_done = None
            if first is not None:
                btag, ask, read_done = first
                first, requested = None, True
            elif not (requested and q.single_request_per_reply):
                btag = self.link.next_btag()
                try:
                    self.link.transport.bulk_out(framing.pack_request_dev_dep_msg_in(btag, ask, term_char),
                                                 self.session.timeout_ms)
                except TmcTimeoutError:
                    self.raise_request_timeout(btag)
                except StallError:
                    report = self.recovery.after_out_failure(btag, stalled=True, partial_message=False)
                    raise ProtocolError("the device halted its Bulk-OUT endpoint on the read request", report) from None
                requested = True
            header, payload = self.read_transfer(btag, ask, MsgId.DEV_DEP_MSG_IN, len(out), read_done)
            out += payload
            if progress is not None:
                progress(len(out), 0)
            if header.ended_on_term_char or q.no_eom or q.eom_unreliable or header.eom:
                break
            if max_bytes is not None and len(out) >= max_bytes:
                break
            if not payload:
                # USBTMC 1.0 Table 9: TransferSize > 0. A transfer that brings nothing and does not
                # end the message would have the host ask again forever; the device is out of step.
                report = self.recovery.run(self.recovery.resync)
                raise ProtocolError("the device answered with TransferSize 0 and no EOM (USBTMC 1.0 Table 9 "
                                    "requires at least one byte)", report, received=bytes(out))
        if q.strip_trailing_nuls:
            return bytes(out).rstrip(b"\x00")
        return bytes(out)

    def raise_request_timeout(self, btag: int) -> NoReturn:
        """Abort a REQUEST_DEV_DEP_MSG_IN the device did not take in time, and raise the timeout."""
        report = self.recovery.after_out_failure(btag, stalled=False, partial_message=False)
        raise TmcTimeoutError("the device did not take the read request in time", report) from None

    # --- a transfer ---

    def first_read_bytes(self, ask: int) -> int:
        """The buffer of a transfer's first Bulk-IN read for a request of ``ask`` bytes."""
        q = self.session.quirks
        packet = self.link.ep.bulk_in_packet_bytes
        if q.no_zlp or self.zlp.sends is not True:
            # Until the device is known to send ZLPs: one packet always completes, and the
            # rest is read with a buffer sized exactly (ZlpKnowledge).
            return packet
        return min(round_up(HEADER_BYTES + ask + 3, packet), max(packet, round_up(q.read_buffer_bytes, packet)))

    def _fail_in(self, btag: int, message: str, received: bytes, cls: type[TmcError] = ProtocolError) -> NoReturn:
        report = self.recovery.after_in_failure(btag)
        raise cls(message, report, received=received)

    def read_transfer(self, btag: int, ask: int, msg_id: int, already: int | None,
                      read_done: Outcome | None = None) -> tuple[framing.InHeader, bytes]:
        """One Bulk-IN transfer: header and payload (padding removed).

        The first read is small; the rest of the transfer is read with a buffer sized
        from the header's TransferSize. A transfer that ends early (a short packet before
        TransferSize is reached), announces more than was asked for, or times out is
        aborted with ABORT_BULK_IN before the error is raised; the bytes that did arrive
        travel with the error (``received``).
        """
        q = self.session.quirks
        transport = self.link.transport
        packet = self.link.ep.bulk_in_packet_bytes
        first_buffer = self.first_read_bytes(ask)
        first_of_reply = not already
        data = b""
        try:
            # ``read_done``: this first read already ran in a batch with the request.
            data = read_done.result() if read_done is not None else transport.bulk_in(first_buffer, self.session.timeout_ms)
            note = self.zlp.learn(data)
            if note:
                self.session.note(note)
            if not data:
                # A zero-length packet left over from the previous transfer (a device that
                # ended it on a packet boundary after the host had sized its read exactly).
                data = transport.bulk_in(first_buffer, self.session.timeout_ms)
            try:
                header = framing.parse_in_header(
                    data,
                    expected_btag=None if q.tolerate_stale_btag else btag,
                    expected_msg_id=None if (q.tolerate_bad_first_msgid and first_of_reply) else msg_id,
                )
            except ProtocolError as exc:
                self._fail_in(btag, str(exc), data)
            body = bytearray(data[HEADER_BYTES:])
            if q.transfer_size_unreliable:
                body = self._read_until_short_packet(body, len(data), first_buffer, ask)
                return header, _strip_padding(bytes(body))
            size = header.transfer_size
            if q.block_length_from_block_header and body[:1] == b"#" and first_of_reply:
                try:
                    block = ieee488.parse_block_header(bytes(body[:12]))
                except ProtocolError:
                    block = None
                if block is not None and block.payload_bytes is not None:
                    size = block.header_bytes + block.payload_bytes
            if q.transfer_size_cap and size == header.transfer_size >= q.transfer_size_cap:
                # The announced size is the device's cap, not the reply's.
                return header, bytes(self._read_capped(body, len(data) == first_buffer))
            if size > ask and not q.header_in_first_transfer_only:
                self._fail_in(btag, f"the device announced {size} bytes after {ask} were requested "
                                    "(USBTMC 1.0 3.3.1.1)", bytes(body))
            # With a header only in the first transfer, later transfers carry bare data (no padding).
            total = size if q.header_in_first_transfer_only else size + framing.padding_bytes(size)
            expect_zlp = self.zlp.sends is True and not q.no_zlp and not q.header_in_first_transfer_only
            last_read, last_buffer = len(data), first_buffer
            while len(body) < size:
                if last_read < last_buffer and not q.header_in_first_transfer_only:
                    # A short packet (or ZLP) ended the device's transfer before TransferSize
                    # was reached (USB 2.0 5.8.3, USBTMC 1.0 3.3).
                    self._fail_in(btag, f"the transfer ended with a short packet after {len(body)} of "
                                        f"{size} announced bytes", bytes(body))
                remaining = total - len(body)
                buffer = round_up(remaining, packet)
                if remaining % packet == 0 and expect_zlp:
                    buffer += packet  # room for the zero-length packet that ends the transfer
                more = transport.bulk_in(buffer, self.session.timeout_for(buffer))
                body += more
                last_read, last_buffer = len(more), buffer
                if not more and len(body) < size:
                    self._fail_in(btag, f"the transfer ended after {len(body)} of {size} announced bytes",
                                  bytes(body))
            if len(body) > total and size == header.transfer_size and not q.header_in_first_transfer_only \
                    and not q.transfer_size_includes_padding:
                # More bytes than TransferSize and its padding: the header undercounts the
                # transfer (USBTMC 1.0 Table 9), so the message cannot be trusted.
                self._fail_in(btag, f"the device sent {len(body)} bytes in a transfer whose TransferSize "
                                    f"announced {size}", bytes(body))
            ended_on_boundary = (HEADER_BYTES + len(body)) % packet == 0 and last_read == last_buffer
            if ended_on_boundary and not q.header_in_first_transfer_only:
                if expect_zlp:
                    # The transfer filled our buffer exactly, so it ended on a packet boundary and
                    # this device follows such a transfer with a zero-length packet: consume it.
                    transport.bulk_in(packet, self.session.timeout_ms)
                elif self.zlp.sends is None:
                    self.zlp.boundary_pending = True  # the next read tells whether a ZLP follows
        except TmcTimeoutError:
            report = self.recovery.after_in_failure(btag)
            raise TmcTimeoutError("the device did not answer in time", report, received=data) from None
        except StallError:
            report = self.recovery.after_in_stall()
            raise ProtocolError("the device halted its Bulk-IN endpoint", report, received=data) from None
        payload = bytes(body[:size])
        return header, _strip_padding(payload) if q.transfer_size_includes_padding else payload

    def _read_capped(self, body: bytearray, first_read_full: bool) -> bytearray:
        """Read a reply whose TransferSize is capped (quirk ``transfer_size_cap``).

        Such a device sends the reply as transfers of ``cap`` data bytes (only the first
        with a header) and ends it with a shorter one; a transfer that carries more than
        ``cap`` bytes is the whole reply. Each read uses a buffer larger than one transfer,
        so it returns exactly one transfer (ended by its short packet or ZLP).
        """
        cap = self.session.quirks.transfer_size_cap
        packet = self.link.ep.bulk_in_packet_bytes
        transport = self.link.transport
        buffer = round_up(HEADER_BYTES + cap + 1, packet)
        current = len(body)  # data bytes of the device transfer being read
        if first_read_full:  # the first read stopped at its buffer, inside the first transfer
            more = transport.bulk_in(buffer, self.session.timeout_ms)
            body += more
            current += len(more)
        zlps = 0
        while current == cap:
            more = transport.bulk_in(buffer, self.session.timeout_ms)
            if not more:
                if zlps:
                    break  # two empty reads: the device has nothing more, however it counted
                zlps = 1  # the ZLP after a transfer that filled whole packets
                continue
            body += more
            current, zlps = len(more), 0
        return body

    def _read_until_short_packet(self, body: bytearray, last_read: int, last_buffer: int, ask: int) -> bytearray:
        """Keep reading until a short packet ends the transfer (for devices whose TransferSize lies).

        Bounded: a device that keeps sending full packets past what was asked for is babbling.
        """
        packet = self.link.ep.bulk_in_packet_bytes
        most = round_up(ask + 3, packet) + packet
        while last_read == last_buffer:
            if len(body) > most:
                raise ProtocolError(f"the device kept sending after {len(body)} bytes, {ask} were requested")
            buffer = max(packet, round_up(self.session.quirks.read_buffer_bytes, packet))
            more = self.link.transport.bulk_in(buffer, self.session.timeout_ms)
            body += more
            last_read, last_buffer = len(more), buffer
        return body


def _strip_padding(payload: bytes) -> bytes:
    """Drop up to three NUL alignment bytes that a device counted as data."""
    trimmed = payload.rstrip(b"\x00")
    return trimmed if len(payload) - len(trimmed) <= 3 else payload[: len(payload) - 3]


__all__ = ["MessageReader", "Progress", "RecoveryReport", "ZlpKnowledge", "round_up"]
