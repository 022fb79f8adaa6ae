"""Raw SCPI over a TCP socket (``TCPIP::host::port::SOCKET``; port 5025 on most instruments).

There is no framing: a message ends at a newline outside quoted strings and arbitrary blocks
(:class:`~app.protocol.raw_socket.MessageSplitter`), there is no device clear, no status
byte read of its own (``*STB?`` is sent) and no service request signal. A stream left out of
step by a timeout or a broken transfer is recovered by reconnecting.
"""

from __future__ import annotations

import time
from collections import deque

from app.protocol.raw_socket import MessageSplitter
from app.usbtmc import trace as tr
from app.usbtmc.errors import AbortedError, NotSupportedError, TmcError

from .session import LanSession, after
from .stream import Stream

RECV_BYTES = 1 << 20


class RawSocketSession(LanSession):
    protocol = "SOCKET"
    has_interrupt_in = False

    def _connect(self) -> None:
        self._stream = Stream.open(self.address.host, self.address.port, self.open_timeout_ms,
                                   self.resource).traced(self._trace, tr.LAN_RAW)
        self._splitter = MessageSplitter()
        self._chunks: deque[tuple[bytes, bool]] = deque()  # received, not yet read

    def _disconnect(self) -> None:
        self._stream.close()

    def _send(self, views, total, abort, progress) -> None:
        done = 0
        # The newline is the message's end (488.2 7.5): add one unless the message already ends.
        ends = False
        scan = MessageSplitter()
        for view in views:
            for _chunk, eom in scan.feed(view):
                ends = eom
        try:
            for view in views:
                self._stream.send_all(view, self.timeout_ms, abort=abort, progress=progress, done_before=done,
                                      total=total)
                done += len(view)
            if not ends:
                self._stream.send_all(b"\n", self.timeout_ms, abort=abort)
        except AbortedError as exc:
            recovery = self._reconnect("the instrument may hold part of the message", f"reconnect, {after(exc)}")
            raise AbortedError(str(exc.args[0]), exc.transferred_bytes, recovery) from None
        except TmcError as exc:
            raise self._fail(exc, "the instrument may hold part of the message") from None

    def _receive(self, max_bytes, abort, progress) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + self.timeout_ms / 1000
        try:
            while True:
                while self._chunks:
                    chunk, eom = self._chunks.popleft()
                    if max_bytes is not None and len(out) + len(chunk) > max_bytes:
                        keep = max_bytes - len(out)
                        self._chunks.appendleft((chunk[keep:], eom))
                        out += chunk[:keep]
                        return bytes(out)
                    out += chunk
                    if progress is not None:
                        progress(len(out), 0)
                    if eom:
                        return bytes(out)
                data = self._stream.recv_some(RECV_BYTES, deadline, abort=abort, what="the read", done=len(out))
                deadline = time.monotonic() + self.timeout_ms / 1000  # the timeout runs from the last byte
                self._chunks.extend(self._splitter.feed(data))
        except AbortedError as exc:
            recovery = self._reconnect("the rest of the reply may still come", f"reconnect, {after(exc)}")
            raise AbortedError(str(exc.args[0]), len(out), recovery) from None
        except TmcError as exc:
            err = self._fail(exc, "a late reply would be taken for the next one's")
            err.received = bytes(out)
            raise err from None

    def _clear(self) -> None:
        recovery = self._reconnect("a raw socket has no device clear: unread reply bytes were dropped",
                                   "reconnect, in place of a device clear (a raw socket has none)")
        raise NotSupportedError("a raw SCPI socket has no device clear (VXI-11 and HiSLIP have one)", recovery)

    def _collect_srq(self, wait_s: float = 0.0) -> None:
        return  # no SRQ signal on a raw socket: has_interrupt_in is False


