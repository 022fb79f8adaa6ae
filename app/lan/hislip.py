"""HiSLIP sessions (``TCPIP::host::hislipN[,port]::INSTR``, IVI-6.1) in synchronized mode.

Two connections: the synchronous channel carries Data/DataEnd messages and Trigger, each
with a MessageID (IVI-6.1 3.1.2); the asynchronous one carries status queries, device clear,
locks and the instrument's AsyncServiceRequest, which this session keeps for :meth:`poll_srq`
whenever it meets one.
"""

from __future__ import annotations

import select
import struct
import time
from dataclasses import dataclass

from app.protocol import hislip
from app.protocol.hislip import LockControl, LockResponse, MsgType
from app.usbtmc import trace as tr
from app.usbtmc.errors import DeviceNotFoundError, ProtocolError, TmcError, TmcTimeoutError, UsageError

from .errors import ConnectionLostError, LanProtocolError, LanRecovery
from .session import LanSession
from .stream import Stream

CLIENT_MAX_MESSAGE_BYTES = 64 << 20  # what this session accepts per Data message
VENDOR_ID = b"TC"
DATA_MESSAGE_BYTES = 1 << 20
MAX_LOCK_TIMEOUT_MS = 0xFFFF_FFFF  # the request's 32-bit message parameter


class LockTimeoutError(TmcTimeoutError):
    """The lock was not granted within the request's timeout: another client holds it."""


class LockRefusedError(ProtocolError):
    """The instrument refused a lock request or release as invalid (IVI-6.1 AsyncLockResponse
    "error"): the session holds that lock already, or holds none to release."""


@dataclass(frozen=True)
class LockInfo:
    """IVI-6.1 AsyncLockInfoResponse: whether any client holds the exclusive lock, and how many
    clients hold a lock (shared or exclusive)."""

    exclusive: bool
    holders: int


class HislipSession(LanSession):
    protocol = "HiSLIP"
    has_interrupt_in = True  # AsyncServiceRequest (IVI-6.1 6.17)

    def _connect(self) -> None:
        host, port, name = self.address.host, self.address.port, self.address.device
        self._sync = Stream.open(host, port, self.open_timeout_ms, self.resource).traced(self._trace, tr.LAN_HISLIP_SYNC)
        self._async: Stream | None = None
        try:
            deadline = time.monotonic() + self.open_timeout_ms / 1000
            # IVI-6.1 6.1: Initialize names the sub-address; the response gives the session ID.
            self._sync.send_all(hislip.message(MsgType.INITIALIZE, 0, hislip.initialize_parameter(VENDOR_ID),
                                               name.encode("ascii")), self.open_timeout_ms)
            header, payload = self._read(self._sync, deadline)
            if header.msg_type == MsgType.FATAL_ERROR:
                raise DeviceNotFoundError(f"{self.resource}: the instrument refused the session: "
                                          f"{payload.decode('ascii', 'replace') or header.control}")
            if header.msg_type != MsgType.INITIALIZE_RESPONSE:
                raise LanProtocolError(f"{self.resource}: Initialize was answered with message type {header.msg_type}")
            self._overlapped = bool(header.control & 1)
            _version, session_id = hislip.session_of(header.parameter)
            self._async = Stream.open(host, port, self.open_timeout_ms, f"{self.resource} (async)").traced(
                self._trace, tr.LAN_HISLIP_ASYNC)
            self._async.send_all(hislip.message(MsgType.ASYNC_INITIALIZE, 0, session_id), self.open_timeout_ms)
            self._expect_async(MsgType.ASYNC_INITIALIZE_RESPONSE, deadline)
            self._async.send_all(hislip.message(MsgType.ASYNC_MAXIMUM_MESSAGE_SIZE, 0, 0,
                                                struct.pack(">Q", CLIENT_MAX_MESSAGE_BYTES)), self.open_timeout_ms)
            _h, payload = self._expect_async(MsgType.ASYNC_MAXIMUM_MESSAGE_SIZE_RESPONSE, deadline)
            server_max = struct.unpack(">Q", payload)[0] if len(payload) == 8 else hislip.DEFAULT_MAX_MESSAGE_BYTES
            # Data messages of at most 1 MiB even when the server takes more: it can work on one
            # while the next arrives (one 64 MiB message ran at half the rate on loopback).
            self._max_payload = max(256, min(server_max - hislip.HEADER.size, DATA_MESSAGE_BYTES))
        except BaseException:
            self._disconnect()
            raise
        self._message_id = hislip.FIRST_MESSAGE_ID
        self._last_id = hislip.UNKNOWN_MESSAGE_ID  # of the last Data/DataEnd/Trigger sent
        self._rmt = 0  # IVI-6.1 3.1.3: RMT-delivered, sent once after a whole reply was read
        self._left = 0  # payload bytes of the current Data message not yet read
        self._left_end = False

    def _disconnect(self) -> None:
        self._sync.close()
        if self._async is not None:
            self._async.close()

    # --- framing ---

    def _read(self, stream: Stream, deadline: float, abort=None) -> tuple[hislip.Header, bytes]:
        try:
            header = hislip.unpack(stream.recv_exact(hislip.HEADER.size, deadline, abort=abort, what="a HiSLIP header"))
        except hislip.HeaderError as exc:
            raise LanProtocolError(f"{stream.name}: {exc}") from None
        if header.msg_type in (MsgType.DATA, MsgType.DATA_END):
            return header, b""  # the payload is read by the caller, in pieces
        if header.payload_bytes > 1 << 20:
            raise LanProtocolError(f"{stream.name}: a {header.msg_type} message of {header.payload_bytes} bytes")
        payload = stream.recv_exact(header.payload_bytes, deadline, what="a HiSLIP message") if header.payload_bytes else b""
        if header.msg_type == MsgType.FATAL_ERROR:
            raise ConnectionLostError(f"{stream.name}: the instrument ended the session (FatalError "
                                      f"{header.control}: {payload.decode('ascii', 'replace')})")
        return header, payload

    def _expect_async(self, kind: int, deadline: float) -> tuple[hislip.Header, bytes]:
        """The next async message of ``kind``; service requests met on the way are kept."""
        while True:
            header, payload = self._read(self._async, deadline)
            if header.msg_type == MsgType.ASYNC_SERVICE_REQUEST:
                self._srq.append(header.control)
                continue
            if header.msg_type == kind:
                return header, payload
            if header.msg_type == MsgType.ERROR:
                raise LanProtocolError(f"{self.resource}: the instrument answered Error {header.control}: "
                                       f"{payload.decode('ascii', 'replace')}")
            raise LanProtocolError(f"{self.resource}: expected HiSLIP message {kind}, got {header.msg_type}")

    def _next_id(self) -> int:
        self._last_id = self._message_id
        self._message_id = (self._message_id + 2) & 0xFFFF_FFFF
        return self._last_id

    # --- the session interface ---

    def _send(self, views, total, abort, progress) -> None:
        message_id = self._next_id()
        done = 0
        try:
            pieces = []
            for view in views:
                for offset in range(0, len(view), self._max_payload):
                    pieces.append(view[offset:offset + self._max_payload])
            # Regroup so that each Data message carries up to the maximum payload.
            batch: list = []
            size = 0
            for i, piece in enumerate(pieces):
                while len(piece):
                    take = min(len(piece), self._max_payload - size)
                    batch.append(piece[:take])
                    size += take
                    piece = piece[take:]
                    last = i == len(pieces) - 1 and not len(piece)
                    if size == self._max_payload or last:
                        kind = MsgType.DATA_END if last else MsgType.DATA
                        self._sync.send_all(hislip.pack(kind, self._rmt, message_id, size), self.timeout_ms,
                                            abort=abort, done_before=done, total=total)
                        self._rmt = 0
                        for part in batch:
                            self._sync.send_all(part, self.timeout_ms, abort=abort, progress=progress,
                                                done_before=done, total=total)
                            done += len(part)
                        batch, size = [], 0
        except TmcError as exc:
            raise self._recovered(exc, "the instrument may hold part of the message") from None

    def _receive(self, max_bytes, abort, progress) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + self.timeout_ms / 1000
        try:
            while True:
                if not self._left and not self._left_end:
                    header, _ = self._read(self._sync, deadline, abort)
                    if header.msg_type not in (MsgType.DATA, MsgType.DATA_END):
                        self._skip(header, deadline)
                        continue
                    if header.parameter not in (self._last_id, hislip.UNKNOWN_MESSAGE_ID):
                        # IVI-6.1 3.1.2: data answering an earlier message (before a clear): discard it.
                        self._sync.recv_exact(header.payload_bytes, deadline, what="a stale reply")
                        continue
                    self._left = header.payload_bytes
                    self._left_end = header.msg_type == MsgType.DATA_END
                take = self._left if max_bytes is None else min(self._left, max_bytes - len(out))
                if take:
                    out += self._sync.recv_exact(take, deadline, abort=abort, what="the reply")
                    self._left -= take
                    deadline = time.monotonic() + self.timeout_ms / 1000
                    if progress is not None:
                        progress(len(out), 0)
                if not self._left and self._left_end:
                    self._left_end = False
                    self._rmt = 1
                    return bytes(out)
                if max_bytes is not None and len(out) >= max_bytes:
                    return bytes(out)
        except TmcError as exc:
            exc.received = bytes(out)
            raise self._recovered(exc, "a late reply would be taken for the next one's") from None

    def _skip(self, header: hislip.Header, deadline: float) -> None:
        if header.msg_type == MsgType.ERROR:
            self.note(f"{self.resource}: the instrument reported HiSLIP Error {header.control}")

    def _recovered(self, exc: TmcError, what: str) -> TmcError:
        """Device clear when both channels still work (it resynchronises the MessageIDs), else reconnect."""
        if isinstance(exc, (ConnectionLostError, LanProtocolError)):
            return self._fail(exc, what)
        return self._cleared(exc, what, "device clear (AsyncDeviceClear)", self._clear)

    def _read_stb(self) -> int:
        """AsyncStatusQuery (IVI-6.1 6.14): the status byte, MAV as the server keeps it."""
        deadline = time.monotonic() + self.timeout_ms / 1000
        try:
            self._async.send_all(hislip.message(MsgType.ASYNC_STATUS_QUERY, self._rmt, self._last_id),
                                 self.timeout_ms)
            self._rmt = 0
            header, _ = self._expect_async(MsgType.ASYNC_STATUS_RESPONSE, deadline)
        except TmcError as exc:
            raise self._fail(exc, "the status query failed") from None
        return header.control & 0xFF

    def _collect_srq(self, wait_s: float = 0.0) -> None:
        deadline = time.monotonic() + wait_s
        try:
            while self._async.pending() or (wait_s and time.monotonic() < deadline and self._wait_async(deadline)):
                header, _ = self._read(self._async, time.monotonic() + 1)
                if header.msg_type == MsgType.ASYNC_SERVICE_REQUEST:
                    self._srq.append(header.control)  # IVI-6.1 6.17: the status byte in the control code
                wait_s = 0
        except TmcError as exc:
            raise self._fail(exc, "the asynchronous channel failed") from None

    def _wait_async(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        r, _, _ = select.select([self._async.sock], [], [], remaining)
        return bool(r)

    def _clear(self) -> None:
        """IVI-6.1 6.12: AsyncDeviceClear, then DeviceClearComplete on the synchronous channel,
        skipping whatever it still carried, until DeviceClearAcknowledge."""
        deadline = time.monotonic() + self.timeout_ms / 1000
        self._async.send_all(hislip.message(MsgType.ASYNC_DEVICE_CLEAR), self.timeout_ms)
        header, _ = self._expect_async(MsgType.ASYNC_DEVICE_CLEAR_ACKNOWLEDGE, deadline)
        if self._left:
            self._sync.recv_exact(self._left, deadline, what="the rest of a reply")
        self._left, self._left_end = 0, False
        self._sync.send_all(hislip.message(MsgType.DEVICE_CLEAR_COMPLETE, header.control & 1), self.timeout_ms)
        while True:
            header, _ = self._read(self._sync, deadline)
            if header.msg_type in (MsgType.DATA, MsgType.DATA_END):
                self._sync.recv_exact(header.payload_bytes, deadline, what="a discarded reply")
                continue
            if header.msg_type == MsgType.DEVICE_CLEAR_ACKNOWLEDGE:
                break
        self._message_id = hislip.FIRST_MESSAGE_ID
        self._last_id = hislip.UNKNOWN_MESSAGE_ID
        self._rmt = 0

    # --- locks (IVI-6.1 AsyncLock, AsyncLockInfo) ---

    def lock(self, timeout_ms: int = 0, shared_key: str = "") -> str:
        """Take the instrument's exclusive lock (``shared_key`` ""), or a shared lock under
        ``shared_key`` (other sessions with the same key share it), waiting at most ``timeout_ms``
        for another client to release it. Returns "exclusive" or "shared".

        Raises :class:`LockTimeoutError` when it is not granted in time and
        :class:`LockRefusedError` when this session holds that lock already; the session stays
        usable after either. A session holding the shared lock may also take the exclusive one.
        """
        self._check_open()
        if not 0 <= timeout_ms <= MAX_LOCK_TIMEOUT_MS:
            raise UsageError(f"a lock timeout is 0 to {MAX_LOCK_TIMEOUT_MS} ms, not {timeout_ms}")
        try:
            key = shared_key.encode("ascii")
        except UnicodeEncodeError:
            raise UsageError(f"a shared lock key is ASCII text, not {shared_key!r}") from None
        kind = "shared" if key else "exclusive"

        def request() -> str:
            # The answer comes when the lock is granted or the timeout has passed: allow both.
            response = self._lock_exchange(LockControl.REQUEST, timeout_ms, key, (timeout_ms + self.timeout_ms) / 1000)
            if response == LockResponse.SUCCESS:
                return kind
            usable = LanRecovery("nothing to recover: the request was answered", usable=True)
            if response == LockResponse.FAILURE:
                raise LockTimeoutError(f"{self.resource}: the {kind} lock was not granted within {timeout_ms} ms: "
                                       "another client holds it", usable)
            raise LockRefusedError(f"{self.resource}: the instrument refused the {kind} lock request "
                                   f"(AsyncLockResponse {response}): this session holds it already", usable)

        return self._traced("lock", key, request)

    def unlock(self) -> str:
        """Release this session's exclusive lock, else its shared one, once the instrument has
        handled the messages sent before; returns "exclusive" or "shared". Raises
        :class:`LockRefusedError` when the session holds no lock."""
        self._check_open()

        def release() -> str:
            response = self._lock_exchange(LockControl.RELEASE, self._last_id, b"", self.timeout_ms / 1000)
            if response == LockResponse.SUCCESS:
                return "exclusive"
            if response == LockResponse.SUCCESS_SHARED:
                return "shared"
            raise LockRefusedError(f"{self.resource}: the instrument refused the lock release (AsyncLockResponse "
                                   f"{response}): this session holds no lock",
                                   LanRecovery("nothing to recover: the release was answered", usable=True))

        return self._traced("unlock", b"", release)

    def lock_info(self) -> LockInfo:
        """Who holds the instrument's locks (IVI-6.1 AsyncLockInfo)."""
        self._check_open()
        deadline = time.monotonic() + self.timeout_ms / 1000
        try:
            self._async.send_all(hislip.message(MsgType.ASYNC_LOCK_INFO), self.timeout_ms)
            header, _ = self._expect_async(MsgType.ASYNC_LOCK_INFO_RESPONSE, deadline)
        except TmcError as exc:
            raise self._fail(exc, "the lock information request failed") from None
        return LockInfo(bool(header.control & 1), header.parameter)

    def _lock_exchange(self, control: int, parameter: int, payload: bytes, wait_s: float) -> int:
        deadline = time.monotonic() + wait_s
        try:
            self._async.send_all(hislip.message(MsgType.ASYNC_LOCK, control, parameter, payload), self.timeout_ms)
            header, _ = self._expect_async(MsgType.ASYNC_LOCK_RESPONSE, deadline)
        except TmcError as exc:
            # No answer: the asynchronous channel is out of step, and only a new connection (which
            # holds no locks) puts it right.
            raise self._fail(exc, "the lock request went unanswered; the locks this session held are released "
                                  "with its connection") from None
        return header.control

    def _trigger(self) -> None:
        """Trigger (IVI-6.1 6.10), the equivalent of GET, with its own MessageID."""
        self._sync.send_all(hislip.message(MsgType.TRIGGER, self._rmt, self._next_id()), self.timeout_ms)
        self._rmt = 0
