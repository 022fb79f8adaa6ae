"""The message level of a virtual instrument, as its network stack sees it.

A LAN instrument has no USB framing: its servers hand program-message bytes to the same
parser and take replies from the same output queue. :class:`MessagePort` waits for replies
on the device's condition, so a delayed answer (``SYST:DELay``) arrives when it is due.

Standard library only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..usbtmc_device import UsbtmcDevice


class MessagePort:
    """Writes and reads of one virtual instrument's messages; shared by every LAN connection to it.

    Replies go to the connection that sent the last message (``owner``), as an instrument with
    several interfaces answers on the one a query came from; another connection's reader
    waiting meanwhile does not take them.
    """

    def __init__(self, device: UsbtmcDevice) -> None:
        self.device = device
        self.owner: object = None
        self._owner_mark = 0  # the device's input_chunks after the owner's last write
        self._open = False  # the owner's last message is unfinished
        self._retired: set = set()  # connections whose unfinished message another one cut off

    def listen_srq(self, listener: Callable) -> Callable[[], None]:
        """Call ``listener`` on each service request of the device; returns what stops it."""
        self.device.srq_listeners.append(listener)

        def stop() -> None:
            if listener in self.device.srq_listeners:
                self.device.srq_listeners.remove(listener)

        return stop

    def write(self, chunk: bytes | bytearray | memoryview, eom: bool, owner: object = None) -> None:
        with self.device.changed:
            if owner is not None and owner in self._retired:
                return  # the rest of a message another connection cut off: the parser has moved on
            if owner is not self.owner and self._open and self.device.input_chunks == self._owner_mark:
                # Another connection starts while the last one's message is unfinished (it went
                # away mid-message): that start is not this message's beginning, and whatever of
                # the old message its connection still hands over is dropped.
                self.device.message_abort()
                self._retired.add(self.owner)
            self.owner = owner
            self.device.message_in(chunk, eom)
            self._owner_mark = self.device.input_chunks
            self._open = not eom

    def read(self, max_bytes: int, timeout_s: float, *, term_char: int | None = None,
             stop: threading.Event | None = None, owner: object = None,
             taken: Callable[[bool], None] | None = None) -> tuple[bytes, bool] | None:
        """Up to ``max_bytes`` of the next reply and whether it ended (EOM); None when nothing
        came for ``owner`` within ``timeout_s`` seconds or ``stop`` was set. ``taken(eom)`` runs
        with the device lock still held, so a status read never sees the reply in neither place."""
        device = self.device
        deadline = time.monotonic() + timeout_s
        with device.changed:
            while True:
                mine = self.owner is owner and device.input_chunks == self._owner_mark  # no one spoke since
                reply = device.take_reply(max_bytes, term_char) if mine else None
                if reply is not None:
                    if taken is not None:
                        taken(reply[1])
                    return reply
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    return None
                due = device.next_deadline()
                if due is not None:
                    remaining = min(remaining, max(0.001, due - device.clock.now()))
                if stop is not None:
                    remaining = min(remaining, 0.05)  # the stop event does not notify the condition
                device.changed.wait(remaining)
                device.service()

    def release(self, owner: object) -> None:
        """A connection ended: its unfinished message and a reply still waiting for it are dropped,
        so the next connection starts clean (an instrument resets a closed session's I/O) -- unless
        another host (USB, another connection) has sent since, whose message and reply they are."""
        with self.device.changed:
            self._retired.discard(owner)
            if self.owner is owner and owner is not None and self.device.input_chunks == self._owner_mark:
                self.owner = None
                self.device.message_abort()  # its unfinished message is not the next one's start
                self.device.discard_output()

    def status_byte(self) -> int:
        """The status byte as a serial poll reads it (488.2 11.2.2.1: RQS, then cleared)."""
        with self.device.changed:
            return self.device.read_status_byte()

    def trigger(self) -> None:
        with self.device.changed:
            self.device.on_trigger()
            self.device.service()
            self.device.changed.notify_all()

    def clear(self) -> None:
        self.device.message_clear()
