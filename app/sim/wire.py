"""Pacing of Bulk-OUT data: a USB wire model and an instrument's ingest rate.

A virtual device is otherwise as fast as the host's memory. These two models make it
take data at the pace a real bus and a real instrument would, without blocking
(adapters must never block in a device call): the device takes what the pace allows
by now and NAKs the rest (:class:`~app.sim.device.NoData`); :meth:`OutPacer.next_due`
tells a waiting adapter when to try again.

- :class:`WireModel`: the bus. A host transfer of P packets needs ceil(P / N) frames
  after it starts (N packets per frame), so even a one-packet transfer costs a whole
  (micro)frame, as a synchronous transfer does on real hardware; time the host spends
  between transfers is lost to it, because the bus idles while no transfer is queued.
  USB 2.0 section 5.8.4 (Tables 5-9 and 5-10) gives the most bulk packets a frame
  can carry: 19 x 64 bytes per 1 ms frame at full speed (1.216 MB/s), 13 x 512 bytes
  per 125 us microframe at high speed (53.248 MB/s).
- The ingest rate: the instrument moves data out of a FIFO into waveform memory at a
  fixed rate (the Keysight 33622A takes arbitrary waveforms at about 1.8 MB/s over
  USBTMC, as the python-usbtmc README reports); the FIFO takes bytes while it has room.

Both act on the bytes of Bulk-OUT host transfers only (not on control or Bulk-IN).
Not locked: the owning device's lock guards a pacer. Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WireModel:
    """How many bulk packets of ``packet_bytes`` fit in a frame of ``frame_s`` seconds."""

    name: str
    packet_bytes: int
    packets_per_frame: int
    frame_s: float

    @property
    def bytes_per_s(self) -> float:
        """The most payload the bus carries, in bytes per second."""
        return self.packet_bytes * self.packets_per_frame / self.frame_s

    def transfer_s(self, nbytes: int) -> float:
        """Seconds a host transfer of ``nbytes`` occupies the bus (whole frames; a short last packet is a packet)."""
        packets = max(1, math.ceil(nbytes / self.packet_bytes))
        return math.ceil(packets / self.packets_per_frame) * self.frame_s


# USB 2.0 section 5.8.4, Table 5-9: at most 19 bulk transactions of 64 bytes per 1 ms frame.
FULL_SPEED = WireModel("full-speed", 64, 19, 1e-3)
# USB 2.0 section 5.8.4, Table 5-10: at most 13 bulk transactions of 512 bytes per 125 us microframe.
HIGH_SPEED = WireModel("high-speed", 512, 13, 125e-6)
WIRE_MODELS = {"full": FULL_SPEED, "high": HIGH_SPEED}

# An instrument's input FIFO: what it takes at once before its ingest rate shows.
DEFAULT_FIFO_BYTES = 64 * 1024
# How much a NAKed transfer waits to be able to move at once: fewer, larger steps
# cost the adapters fewer wake-ups; the timeline keeps the pace exact regardless.
_STEP_BYTES = 64 * 1024
_FIFO_STEP_BYTES = 4096  # the least an instrument's FIFO takes at a time


class OutPacer:
    """Decides how much of a Bulk-OUT host transfer a device takes now.

    ``wire`` (None: no bus limit) and ``ingest_bytes_per_s`` (None: no instrument
    limit) may be changed at any time through :meth:`configure`. Times are the
    device clock's seconds.
    """

    def __init__(self, wire: WireModel | None = None, ingest_bytes_per_s: float | None = None,
                 fifo_bytes: int = DEFAULT_FIFO_BYTES) -> None:
        self.wire = wire
        self.ingest_bytes_per_s = ingest_bytes_per_s
        self.fifo_bytes = fifo_bytes
        self.reset()

    def configure(self, wire: WireModel | None, ingest_bytes_per_s: float | None) -> None:
        if ingest_bytes_per_s is not None and ingest_bytes_per_s <= 0:
            raise ValueError("the ingest rate must be positive (None turns it off)")
        self.wire = wire
        self.ingest_bytes_per_s = ingest_bytes_per_s
        self.reset()

    @property
    def active(self) -> bool:
        return self.wire is not None or self.ingest_bytes_per_s is not None

    def reset(self) -> None:
        """Forget the transfer in progress (halt cleared, device clear, bus reset)."""
        self._busy = False  # a host transfer is part-way: the next offer continues it
        self._start_s = 0.0  # when the transfer in progress got the bus
        self._moved = 0  # bytes of the transfer in progress taken so far
        self._fifo_level = 0.0  # bytes waiting in the instrument's FIFO
        self._fifo_at_s: float | None = None  # when _fifo_level was computed
        self._due_s: float | None = None

    def offer(self, now_s: float, nbytes: int) -> int:
        """The host offers the ``nbytes`` left of its transfer; returns how many the device takes now.

        0 means NAK. Less than ``nbytes`` leaves the transfer in progress: the host offers
        the rest again, at :meth:`next_due` at the earliest.
        """
        if not self.active or nbytes <= 0:
            self._busy = False
            return nbytes
        if not self._busy:
            self._busy = True
            self._start_s = now_s
            self._moved = 0
        allowed = nbytes
        wire = self.wire
        if wire is not None:
            frames = math.floor((now_s - self._start_s) / wire.frame_s + 1e-9)
            allowed = min(allowed, max(0, frames * wire.packets_per_frame * wire.packet_bytes - self._moved))
        if self.ingest_bytes_per_s is not None:
            self._drain_fifo(now_s)
            room = max(0, int(self.fifo_bytes - self._fifo_level))
            # The FIFO takes data in steps, not the few bytes drained since the last call:
            # a host that retried at once would otherwise never wait.
            allowed = min(allowed, room if room >= min(nbytes, _FIFO_STEP_BYTES) else 0)
        if allowed < nbytes and wire is not None:
            allowed -= allowed % wire.packet_bytes  # only whole packets arrive before the last one
        self._moved += allowed
        if self.ingest_bytes_per_s is not None:
            self._fifo_level += allowed
        if allowed >= nbytes:
            self._busy = False
            self._due_s = None
        else:
            self._due_s = self._when_more(nbytes - allowed)
        return allowed

    def next_due(self) -> float | None:
        """When a NAKed transfer can move on (device clock, s); None when none waits."""
        return self._due_s if self._busy else None

    def _drain_fifo(self, now_s: float) -> None:
        if self._fifo_at_s is not None:
            self._fifo_level = max(0.0, self._fifo_level - (now_s - self._fifo_at_s) * self.ingest_bytes_per_s)
        self._fifo_at_s = now_s

    def _when_more(self, left: int) -> float:
        step = min(left, _STEP_BYTES)
        due = self._start_s
        wire = self.wire
        if wire is not None:
            packets = math.ceil((self._moved + step) / wire.packet_bytes)
            due = self._start_s + math.ceil(packets / wire.packets_per_frame) * wire.frame_s
        if self.ingest_bytes_per_s is not None and self._fifo_at_s is not None:
            need = max(min(step, self.fifo_bytes // 2), min(left, _FIFO_STEP_BYTES))
            room = self.fifo_bytes - self._fifo_level
            due = max(due, self._fifo_at_s + max(0.0, need - room) / self.ingest_bytes_per_s)
        return due
