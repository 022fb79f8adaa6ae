"""The I/O trace: every transfer of a session, recorded at the transport, decoded on demand.

A :class:`Recorder` holds one ring of :class:`Entry` objects shared by any number of
sessions (all sessions of the GUI, or the one session of a ``tmc`` command). Each
session records through its own :class:`SessionTrace`, which the transport calls once
per transfer (a ``None`` check when tracing is off) and which knows the SCPI message
and the recovery step the transfer serves.

Recording stays cheap: a transfer costs two clock reads, a slice of at most
``transfer_cap_bytes`` of its data and one append under a lock. Decoding (USBTMC
headers, class requests, USB488 notifications) happens only when an entry is shown or
exported (:func:`decode`). The ring is bounded by bytes (``total_cap_bytes``): the
oldest entries go first. The descriptor exchange of each session is kept apart from
the ring, so an export can always start with it (Wireshark learns the interface class
from it).

Nothing here touches pyusb or Qt; a LAN transport can record through the same
:class:`SessionTrace` with its own ``kind``.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import struct
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from .constants import (
    HEADER_BYTES,
    NOTIFY_READ_STATUS_BYTE_FLAG,
    NOTIFY_SRQ,
    MsgId,
    Request,
    Status,
    TransferAttr,
)
from app.protocol import hislip as hislip_proto
from app.protocol import oncrpc
from app.protocol import vxi11 as vxi11_proto

from .framing import unpack_header
from .ieee488 import STB_BITS, set_bit_names

_perf_counter_ns = time.perf_counter_ns

# Entry kinds: USB transfers, a LAN session's socket sends and receives, then the layers above them.
CONTROL, BULK, INTERRUPT, TCP = "control", "bulk", "interrupt", "tcp"
MESSAGE, RECOVERY, MARKER = "message", "recovery", "marker"
USB_KINDS = (CONTROL, BULK, INTERRUPT)
TRANSFER_KINDS = (CONTROL, BULK, INTERRUPT, TCP)

# The channels of LAN sessions, kept in a TCP record's ``endpoint``: the high nibble names the
# protocol (1 raw SCPI, 2 ONC RPC/VXI-11, 3 HiSLIP), so a decoder needs nothing else.
LAN_RAW = 0x10
LAN_VXI11_CORE, LAN_VXI11_ABORT, LAN_VXI11_INTR, LAN_PORTMAP = 0x20, 0x21, 0x22, 0x23
LAN_HISLIP_SYNC, LAN_HISLIP_ASYNC = 0x30, 0x31
LAN_CHANNELS = {LAN_RAW: "raw SCPI", LAN_VXI11_CORE: "VXI-11 core", LAN_VXI11_ABORT: "VXI-11 abort",
                LAN_VXI11_INTR: "VXI-11 interrupt", LAN_PORTMAP: "portmapper", LAN_HISLIP_SYNC: "HiSLIP sync",
                LAN_HISLIP_ASYNC: "HiSLIP async"}

# Transfer statuses.
OK, TIMEOUT, STALL, GONE, CANCELLED, OVERFLOW, ERROR = (
    "ok", "timeout", "stall", "device gone", "cancelled", "overflow", "error")
STATUSES = (OK, TIMEOUT, STALL, GONE, CANCELLED, OVERFLOW, ERROR)

#: Bytes of each transfer's data kept by default: every USBTMC header and a useful part
#: of each message; a 64 MiB upload is kept as its first kilobyte per transfer.
DEFAULT_TRANSFER_CAP_BYTES = 1024
#: The ring's default size, counted in kept data bytes plus :data:`ENTRY_OVERHEAD_BYTES` each.
DEFAULT_TOTAL_CAP_BYTES = 32 * 1024 * 1024
#: What one entry costs besides its data, for the ring's bound: the heap a record really takes
#: (measured with tracemalloc: a transfer's tuple, its timestamps and the header of its bytes
#: object come to about 290 bytes, a message's Entry about 330), so that the cap bounds memory.
ENTRY_OVERHEAD_BYTES = 300
#: The bytes of a message (sent and reply) kept for a script export, per message: SCPI commands
#: and replies whole; a waveform upload only in part (a script then says it cannot repeat it),
#: since copying every upload whole would cost the upload a measurable share of its speed.
MESSAGE_CAP_BYTES = 4096
#: What is kept of a sent message longer than :data:`MESSAGE_CAP_BYTES` (a waveform upload,
#: which no script repeats): its header and the first points, enough for the trace's line and
#: detail pane. The first transfer under it keeps more of the same bytes. Keeping 4 KiB of every
#: upload took fresh memory for each one and cost a 64 KiB upload about 5 % (docs/benchmarks.md).
MESSAGE_PREVIEW_BYTES = 256


def _sent_kept_bytes(size: int) -> int:
    """How many bytes of a sent message of ``size`` bytes are kept: all up to the cap, else a preview."""
    return MESSAGE_CAP_BYTES if size <= MESSAGE_CAP_BYTES else MESSAGE_PREVIEW_BYTES


#: Ends the text of a message the session sent by itself while opening (a quirk's clear, *IDN?).
ON_OPEN = " (while opening the session)"
#: Marks a ring item that holds a query's three transfers (message, read request, reply) in one
#: tuple: written with the query's end, expanded into its entries when read.
_QUERY = "query transfers"
#: A pending single transfer is a ring tuple without its seq (a pending query has fewer fields).
_TRANSFER_PENDING_FIELDS = 15


class Entry:
    """One line of the trace: a transfer, a message, a recovery, or a user marker.

    Times are in nanoseconds: ``t_ns`` since the Unix epoch (µs resolution is what
    exports show), ``duration_ns`` from start to completion. For transfers,
    ``requested`` and ``actual`` are byte counts, ``data`` at most the recorder's cap
    of them and ``setup`` the control request's 8-byte setup packet. ``group`` is the
    ``seq`` of the message the transfer serves (0: none) and ``step`` the ``seq`` of the
    recovery it belongs to (0: none). Messages and recoveries are updated when they end.
    """

    __slots__ = ("seq", "session", "kind", "t_ns", "duration_ns", "endpoint", "direction", "requested",
                 "actual", "status", "data", "setup", "group", "step", "text", "reply", "detail", "op", "cost",
                 "command")

    def __init__(self, seq: int, session: int, kind: str, t_ns: int, duration_ns: int = 0, endpoint: int = 0,
                 direction: str = "", requested: int = 0, actual: int = 0, status: str = OK,
                 data: bytes = b"", setup: bytes = b"", group: int = 0, step: int = 0, text: str = "",
                 reply: bytes = b"", detail: str = "", op: str = "") -> None:
        self.seq = seq
        self.session = session
        self.kind = kind
        self.t_ns = t_ns
        self.duration_ns = duration_ns
        self.endpoint = endpoint
        self.direction = direction
        self.requested = requested
        self.actual = actual
        self.status = status
        self.data = data
        self.setup = setup
        self.group = group
        self.step = step
        self.text = text
        self.reply = reply
        self.detail = detail
        self.op = op
        self.cost = 0  # bytes it counts for in the ring
        self.command = 0  # the caller's id of the command it belongs to (SessionTrace.command_id)

    @property
    def is_transfer(self) -> bool:
        return self.kind in TRANSFER_KINDS

    @property
    def truncated(self) -> bool:
        """True when fewer bytes were kept than moved."""
        moved = self.requested if self.direction == "out" and self.kind != CONTROL else self.actual
        return len(self.data) < moved

    def __repr__(self) -> str:
        return (f"<Entry {self.seq} s{self.session} {self.kind} {self.direction} ep=0x{self.endpoint:02X} "
                f"{self.actual}/{self.requested} {self.status} {self.op or ''}{self.text!r}>")


@dataclass(frozen=True)
class Connection:
    """One TCP connection of a LAN session's channel: the addresses a pcapng export puts in the
    IPv4 and TCP headers it writes around the recorded bytes. A channel that reconnects (the
    recovery of a raw socket) has one per connection, told apart by ``since_ns``."""

    endpoint: int  # the channel (LAN_RAW, LAN_HISLIP_SYNC, ...)
    local: tuple[str, int]  # the host's address and port
    remote: tuple[str, int]  # the instrument's
    since_ns: int  # wall time (ns since the epoch) it was opened


@dataclass
class SessionInfo:
    """What an export needs to know about one session's device."""

    number: int
    name: str
    bus: int = 1
    address: int = 1
    interface_number: int = 0
    #: The GET_DESCRIPTOR exchanges (device, configuration) made when tracing began, oldest first.
    descriptors: list[Entry] = field(default_factory=list)
    #: bulk-in max packet size, which a decoder needs to tell a short packet.
    bulk_in_packet_bytes: int = 512
    #: the session's transfer timeout (a script export repeats it).
    timeout_ms: int = 5000
    #: A LAN session's TCP connections, oldest first (none for USB).
    connections: list[Connection] = field(default_factory=list)
    #: The VISA resource string a script export opens again ("": the same as ``name``).
    resource: str = ""


class Recorder:
    """The trace ring of any number of sessions; thread-safe.

    ``transfer_cap_bytes`` bounds the data kept per transfer, ``total_cap_bytes`` the
    whole ring (oldest entries are dropped first; :attr:`dropped` counts them). A reader
    on another thread (the GUI's timer) calls :meth:`since` with the last ``seq`` it saw.
    """

    # Slots keep the fields the hot paths read on a cache line or two (a session's thread
    # touches them between device I/O that has evicted everything else).
    __slots__ = ("transfer_cap_bytes", "total_cap_bytes", "_lock", "_ring", "_bytes", "_packed_extra", "_seq",
                 "_session_numbers", "sessions", "dropped", "cleared_before", "_epoch_offset_ns")

    def __init__(self, *, transfer_cap_bytes: int = DEFAULT_TRANSFER_CAP_BYTES,
                 total_cap_bytes: int = DEFAULT_TOTAL_CAP_BYTES) -> None:
        if transfer_cap_bytes < 0 or total_cap_bytes < ENTRY_OVERHEAD_BYTES:
            raise ValueError("trace caps must be positive (total at least one entry)")
        self.transfer_cap_bytes = transfer_cap_bytes
        self.total_cap_bytes = total_cap_bytes
        self._lock = threading.Lock()
        self._ring: deque[Entry] = deque()
        self._bytes = 0
        # Entries the ring holds beyond one per item: a query's transfers are one item (_QUERY).
        self._packed_extra = 0
        self._seq = itertools.count(1)
        self._session_numbers = itertools.count(1)
        self.sessions: dict[int, SessionInfo] = {}
        self.dropped = 0
        self.cleared_before = 0  # entries with a lower seq were cleared by the user
        # Wall time of perf_counter_ns() == 0, so one cheap clock read gives both.
        self._epoch_offset_ns = time.time_ns() - time.perf_counter_ns()

    # --- recording ---

    def open_session(self, name: str, *, bus: int = 1, address: int = 1, interface_number: int = 0,
                     bulk_in_packet_bytes: int = 512, timeout_ms: int = 5000) -> SessionTrace:
        """A new session's handle; its transfers are recorded through it."""
        number = next(self._session_numbers)
        info = SessionInfo(number, name, bus, address, interface_number, bulk_in_packet_bytes=bulk_in_packet_bytes,
                           timeout_ms=timeout_ms)
        with self._lock:
            self.sessions[number] = info
        return SessionTrace(self, info)

    def wall_ns(self, perf_ns: int) -> int:
        return perf_ns + self._epoch_offset_ns

    def _append(self, entry: Entry) -> Entry:
        cost = entry.cost = len(entry.data) + len(entry.reply) + ENTRY_OVERHEAD_BYTES
        with self._lock:
            entry.seq = next(self._seq)
            self._ring.append(entry)
            self._bytes += cost
            if self._bytes > self.total_cap_bytes:
                self._evict()
        return entry

    def _add_transfer(self, session: int, kind: str, t_ns: int, duration_ns: int, endpoint: int, direction: str,
                      requested: int, actual: int, status: str, data: bytes, setup: bytes, group: int, step: int,
                      command: int) -> None:
        # A transfer is kept as a tuple (in the order of _TRANSFER_FIELDS) and becomes an Entry only
        # when read: a tuple costs a fraction of an object's attribute stores on the session's thread.
        cost = len(data) + ENTRY_OVERHEAD_BYTES
        with self._lock:
            self._ring.append((next(self._seq), session, kind, t_ns, duration_ns, endpoint, direction, requested,
                               actual, status, data, setup, group, step, command, cost))
            self._bytes += cost
            if self._bytes > self.total_cap_bytes:
                self._evict()

    def _evict(self) -> None:
        # Under the lock: drop the oldest until the ring fits (the newest always stays).
        ring = self._ring
        while self._bytes > self.total_cap_bytes and len(ring) > 1:
            old = ring.popleft()
            if type(old) is tuple:
                self._bytes -= old[-1]
                if old[2] is _QUERY:
                    self._packed_extra -= 2
                    self.dropped += 2
            elif type(old) is list:
                self._bytes -= old[19]
                old[19] = -1  # gone from the ring
                if old[20] is not None:
                    old[20].cost = -1
            else:
                self._bytes -= old.cost
                old.cost = -1  # gone from the ring
            self.dropped += 1

    def _grew(self, entry: Entry, extra: int) -> None:
        """``entry`` (still in the ring, or not) now holds ``extra`` more bytes (a message's reply)."""
        with self._lock:
            if entry.cost >= 0:
                entry.cost += extra
                self._bytes += extra

    def marker(self, text: str, session: int = 0) -> Entry:
        """A user's marker on the timeline."""
        return self._append(Entry(0, session, MARKER, self.wall_ns(time.perf_counter_ns()), text=text))

    # --- reading ---

    def since(self, seq: int, limit: int | None = None) -> list[Entry]:
        """Entries with a ``seq`` above ``seq``, oldest first (at most ``limit``)."""
        with self._lock:
            ring = self._ring
            if not ring or _last_seq_of(ring[-1]) <= seq:
                return []
            # Items are in seq order: the first that starts above seq, or the packed query before it
            # when that one ends above seq.
            start = bisect.bisect_right(ring, seq, key=_seq_of)
            if start and _last_seq_of(ring[start - 1]) > seq:
                start -= 1
            items = [_listed(item) if type(item) is list else item
                     for item in itertools.islice(ring, start, None if limit is None else start + limit)]
        entries = _expanded(items)
        if entries[0].seq <= seq:
            entries = [entry for entry in entries if entry.seq > seq]
        return entries if limit is None else entries[:limit]

    def entries(self) -> list[Entry]:
        with self._lock:
            items = [_listed(item) if type(item) is list else item for item in self._ring]
        return _expanded(items)

    @property
    def first_seq(self) -> int:
        """The ``seq`` of the oldest entry still in the ring (0: empty)."""
        with self._lock:
            return _seq_of(self._ring[0]) if self._ring else 0

    @property
    def last_seq(self) -> int:
        with self._lock:
            return _last_seq_of(self._ring[-1]) if self._ring else 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._ring) + self._packed_extra

    def clear(self) -> None:
        """Forget every entry (the sessions and their descriptors stay)."""
        with self._lock:
            if self._ring:
                self.cleared_before = _last_seq_of(self._ring[-1]) + 1
            for entry in self._ring:
                if type(entry) is list:
                    entry[19] = -1
                    if entry[20] is not None:
                        entry[20].cost = -1
                elif type(entry) is not tuple:
                    entry.cost = -1
            self._ring.clear()
            self._bytes = 0
            self._packed_extra = 0


class SessionTrace:
    """One session's side of a :class:`Recorder`: transfers, messages and recovery steps.

    Belongs to the thread that owns the session (as the transport does); the message
    and recovery it is inside of are that thread's state.
    """

    __slots__ = ("recorder", "info", "number", "_cap", "_group", "_step", "_group_seq", "_step_seq", "_last_failure",
                 "_pending", "_offset_ns", "idle_polls", "opening", "command_id")

    def __init__(self, recorder: Recorder, info: SessionInfo) -> None:
        self.recorder = recorder
        self.info = info
        self.number = info.number
        self._cap = recorder.transfer_cap_bytes
        self._group: Entry | list | None = None  # the message being recorded (a list: open_message)
        self._step: Entry | None = None
        # The seqs of _group and _step (0: none), kept beside them so recording a transfer
        # reads two ints instead of two attribute chains.
        self._group_seq = 0
        self._step_seq = 0
        self._last_failure: tuple | None = None  # (seq, kind, direction, setup, status) of the last failed transfer
        # Transfers waiting for their message's end, to be written under the lock that ends it:
        # a query's batch (batch(), the packed item's fields, see _unpacked) or a write's
        # transfer (bulk(), a ring tuple without its seq).
        self._pending: tuple | None = None
        self._offset_ns = recorder._epoch_offset_ns
        #: Interrupt-IN reads that timed out with nothing (idle SRQ polls) are counted, not recorded.
        self.idle_polls = 0
        #: True while the session opens: its messages are then the session's own, not the user's.
        self.opening = False
        #: The caller's id of the command being run (the GUI's command id): entries carry it, so a
        #: transcript line can find its transfers and a transfer its transcript line. 0: none.
        self.command_id = 0

    now = staticmethod(time.perf_counter_ns)

    def transfer(self, kind: str, endpoint: int, direction: str, requested: int, actual: int, status: str,
                 data, start_ns: int, end_ns: int, setup: bytes = b"") -> None:
        """Record one finished transfer. ``data`` is what was written (OUT) or read (IN);
        ``start_ns`` and ``end_ns`` are :meth:`now` readings."""
        if kind == INTERRUPT and status == TIMEOUT and actual == 0:
            self.idle_polls += 1
            return
        if self._pending is not None:
            self._flush()
        kept = bytes(data[: self._cap]) if data else b""
        cost = len(kept) + ENTRY_OVERHEAD_BYTES
        recorder = self.recorder
        # Recorder._add_transfer inlined: this runs on the session's thread for every transfer.
        with recorder._lock:
            seq = next(recorder._seq)
            recorder._ring.append((seq, self.number, kind, start_ns + self._offset_ns, end_ns - start_ns, endpoint,
                                   direction, requested, actual, status, kept, setup, self._group_seq,
                                   self._step_seq, self.command_id, cost))
            recorder._bytes += cost
            if recorder._bytes > recorder.total_cap_bytes:
                recorder._evict()
        if status != OK:
            self._last_failure = (seq, kind, direction, setup, status)

    def bulk(self, endpoint: int, direction: str, requested: int, actual: int, data, start_ns: int) -> None:
        """Record one Bulk transfer that ended well just now (it began at ``start_ns``, a
        :meth:`now` reading): :meth:`transfer` for the hot path of every query and upload,
        with the fewest operations (the end time is read here; status ok, no setup)."""
        end_ns = _perf_counter_ns()
        if self._pending is not None:
            self._flush()
        kind = type(data)
        # An upload's frame is an array('B'): its slice's own copy, without a second one.
        kept = data[: self._cap] if kind is bytes else data[: self._cap].tobytes() if kind is array else bytes(
            memoryview(data).cast("B")[: self._cap])
        cost = len(kept) + ENTRY_OVERHEAD_BYTES
        if type(self._group) is list and self._step is None:
            # Inside open_message() (a write): kept until the message ends or anything else is
            # recorded, then written under that lock (a write of one transfer takes one lock less).
            self._pending = (self.number, BULK, start_ns + self._offset_ns, end_ns - start_ns, endpoint, direction,
                             requested, actual, OK, kept, b"", self._group_seq, 0, self.command_id, cost)
            return
        recorder = self.recorder
        with recorder._lock:
            recorder._ring.append((next(recorder._seq), self.number, BULK, start_ns + self._offset_ns,
                                   end_ns - start_ns, endpoint, direction, requested, actual, OK, kept, b"",
                                   self._group_seq, self._step_seq, self.command_id, cost))
            recorder._bytes += cost
            if recorder._bytes > recorder.total_cap_bytes:
                recorder._evict()

    def bulks(self, records: list) -> None:
        """Record Bulk transfers that ran one after the other (a query's message, read request
        and first read): ``records`` holds ``(endpoint, direction, requested, actual, status,
        data, start_ns, end_ns)`` tuples. One call and one lock for all of them, which is what
        keeps a traced query within a few per cent of an untraced one."""
        if self._pending is not None:
            self._flush()
        cap, offset, group, step, command, number = (self._cap, self._offset_ns, self._group_seq, self._step_seq,
                                                     self.command_id, self.number)
        recorder = self.recorder
        failure = None
        with recorder._lock:
            ring, seqs, added = recorder._ring, recorder._seq, 0
            for endpoint, direction, requested, actual, status, data, start_ns, end_ns in records:
                kept = (data if type(data) is bytes and len(data) <= cap else bytes(data[:cap])) if data else b""
                cost = len(kept) + ENTRY_OVERHEAD_BYTES
                seq = next(seqs)
                ring.append((seq, number, BULK, start_ns + offset, end_ns - start_ns, endpoint, direction, requested,
                             actual, status, kept, b"", group, step, command, cost))
                added += cost
                if status != OK:
                    failure = (seq, BULK, direction, b"", status)
            recorder._bytes += added
            if recorder._bytes > recorder.total_cap_bytes:
                recorder._evict()
        if failure is not None:
            self._last_failure = failure

    def batch(self, out_endpoint: int, outs, counts: list[int], in_endpoint: int, in_length: int, reply: bytes,
              times: list[int]) -> None:
        """Record Bulk-OUT transfers ``outs`` (``(data, timeout_ms)``; ``counts`` bytes taken) and
        the Bulk-IN read of ``in_length`` that brought ``reply``, all ended well: a query's
        message, read request and first read, in one call (the hot path of every query).
        ``times`` holds :meth:`now` readings: each transfer's start, then the last end.

        Inside a message from :meth:`open_message`, the three are kept as one ring item and
        written by :meth:`close_message` under the lock that ends the message (or earlier, when
        anything else of the session is recorded first); a reader gets them as three entries."""
        if self._pending is not None:
            self._flush()
        cap = self._cap
        kept = reply if len(reply) <= cap else reply[:cap]
        if len(outs) == 2 and type(self._group) is list and self._step is None:
            # A query's message and read request inside open_message() (outside any recovery): kept
            # as they are and written as one ring item with the query's end (close_message).
            (message, _), (request, _) = outs
            self._pending = (self._offset_ns, times, self._group_seq, self.command_id, out_endpoint,
                             bytes(message) if len(message) <= cap else bytes(message[:cap]), len(message),
                             request if type(request) is bytes and len(request) <= cap else bytes(request[:cap]),
                             len(request), counts, in_endpoint, in_length, kept, len(reply))
            return
        offset, group, step, command, number = (self._offset_ns, self._group_seq, self._step_seq, self.command_id,
                                                self.number)
        recorder = self.recorder
        with recorder._lock:
            ring, seqs, added = recorder._ring, recorder._seq, 0
            for i, (data, _timeout_ms) in enumerate(outs):
                out = bytes(data) if len(data) <= cap else bytes(data[:cap])  # whole: one copy, not two
                cost = len(out) + ENTRY_OVERHEAD_BYTES
                ring.append((next(seqs), number, BULK, times[i] + offset, times[i + 1] - times[i], out_endpoint,
                             "out", len(data), counts[i], OK, out, b"", group, step, command, cost))
                added += cost
            cost = len(kept) + ENTRY_OVERHEAD_BYTES
            ring.append((next(seqs), number, BULK, times[-2] + offset, times[-1] - times[-2], in_endpoint, "in",
                         in_length, len(reply), OK, kept, b"", group, step, command, cost))
            recorder._bytes += added + cost
            if recorder._bytes > recorder.total_cap_bytes:
                recorder._evict()

    def connection(self, endpoint: int, sock) -> None:
        """A LAN channel (``endpoint``: LAN_RAW, ...) opened a TCP connection on ``sock``."""
        try:
            local, remote = sock.getsockname()[:2], sock.getpeername()[:2]
        except OSError:
            return  # not connected after all: nothing will be recorded on it
        self.info.connections.append(Connection(endpoint, local, remote, self.recorder.wall_ns(_perf_counter_ns())))

    def packet(self, endpoint: int, direction: str, requested: int, actual: int, status: str, data,
               start_ns: int) -> None:
        """Record one socket send (``direction`` "out", ``requested`` bytes offered) or receive
        ("in", ``requested`` bytes asked for) of a LAN channel that ended just now; ``start_ns``
        is a :meth:`now` reading taken before it waited."""
        self.transfer(TCP, endpoint, direction, requested, actual, status, data, start_ns, _perf_counter_ns())

    def descriptor(self, entry: Entry | None) -> None:
        """Keep a GET_DESCRIPTOR exchange for exports (outside the ring)."""
        if entry is not None:
            self.info.descriptors.append(entry)

    def message(self, op: str, sent=b"") -> _MessageScope:
        """The SCPI-level operation (write, query, read, clear, trigger, ...) the transfers inside serve.

        A context manager yielding the message's :class:`Entry` (None when nested: nested
        calls join the outermost message). The caller sets its ``reply``; when the block
        raises, its status becomes the error's kind and ``detail`` the error's text.
        """
        return _MessageScope(self, op, sent)

    def begin(self, op: str, sent=b"") -> Entry | None:
        """:meth:`message` without a context manager, for the hot path of a query: the
        message's entry (None when nested), to be passed to :meth:`end` however it ends."""
        if self._group is not None:
            return None
        if self._pending is not None:
            self._flush()
        if type(sent) is memoryview and (sent.format != "B" or sent.ndim != 1):
            sent = sent.cast("B")
        t_ns = _perf_counter_ns() + self._offset_ns
        size = len(sent) if sent else 0
        kept = bytes(sent[:_sent_kept_bytes(size)]) if sent else b""
        entry = Entry(0, self.number, MESSAGE, t_ns, 0, 0, "", size, 0, OK, kept, b"", 0, 0, "", b"", "", op)
        entry.command = self.command_id
        if self.opening:
            entry.text = message_text(entry) + ON_OPEN
        # Recorder._append() inlined (the hot path of every query).
        cost = entry.cost = len(entry.data) + ENTRY_OVERHEAD_BYTES
        recorder = self.recorder
        with recorder._lock:
            seq = entry.seq = next(recorder._seq)
            recorder._ring.append(entry)
            recorder._bytes += cost
            if recorder._bytes > recorder.total_cap_bytes:
                recorder._evict()
        self._group, self._group_seq = entry, seq
        return entry

    def end(self, entry: Entry, reply: bytes | None = None, exc: BaseException | None = None) -> None:
        """The message begun by :meth:`begin` ended, with ``reply`` (kept up to
        :data:`MESSAGE_CAP_BYTES`; None: the caller set ``entry.reply`` itself, or none) or ``exc``."""
        self._group, self._group_seq = None, 0
        entry.duration_ns = _perf_counter_ns() + self._offset_ns - entry.t_ns
        if reply is not None:
            entry.reply, entry.actual = reply[:MESSAGE_CAP_BYTES], len(reply)
        if entry.reply:
            recorder = self.recorder
            with recorder._lock:  # Recorder._grew() inlined
                if entry.cost >= 0:
                    entry.cost += len(entry.reply)
                    recorder._bytes += len(entry.reply)
        if exc is not None:
            entry.status = _error_status(exc)
            entry.detail = str(exc)

    def open_message(self, op: str, sent) -> list | None:
        """:meth:`begin` for the hot paths (a query, a write): the message is kept as a list in
        :class:`Entry`'s field order (building one costs a fifth of an :class:`Entry`) and
        becomes an :class:`Entry` only when read. Returns the token for :meth:`close_message`
        (None when nested, or while opening: then use :meth:`begin`)."""
        if self._group is not None or self.opening:
            return None
        if type(sent) is bytes:
            size = len(sent)
            if size > MESSAGE_CAP_BYTES:
                sent = sent[:_sent_kept_bytes(size)]
        else:
            view = memoryview(sent).cast("B")
            size = len(view)
            sent = bytes(view[:_sent_kept_bytes(size)])
        cost = len(sent) + ENTRY_OVERHEAD_BYTES
        recorder = self.recorder
        with recorder._lock:
            seq = next(recorder._seq)
            item = [seq, self.number, MESSAGE, _perf_counter_ns() + self._offset_ns, 0, 0, "", size, 0, OK,
                    sent, b"", 0, 0, "", b"", "", op, self.command_id, cost, None]
            recorder._ring.append(item)
            recorder._bytes += cost
            if recorder._bytes > recorder.total_cap_bytes:
                recorder._evict()
        self._group, self._group_seq = item, seq
        return item

    def close_message(self, item: list, reply: bytes | None, exc: BaseException | None = None) -> None:
        """The message begun by :meth:`open_message` ended, with ``reply`` (None: none) or ``exc``."""
        self._group, self._group_seq = None, 0
        duration_ns = _perf_counter_ns() + self._offset_ns - item[3]
        if reply is not None and len(reply) > MESSAGE_CAP_BYTES:
            kept, actual = reply[:MESSAGE_CAP_BYTES], len(reply)
        else:
            kept, actual = reply or b"", len(reply) if reply is not None else 0
        status, detail = (OK, "") if exc is None else (_error_status(exc), str(exc))
        recorder = self.recorder
        pending, self._pending = self._pending, None
        with recorder._lock:
            if pending is not None:
                self._write_pending(pending, recorder)
            # Under the lock: a reader may be turning the list into its Entry right now.
            item[4], item[8], item[9], item[15], item[16] = duration_ns or 1, actual, status, kept, detail
            if item[19] >= 0:
                item[19] += len(kept)
                recorder._bytes += len(kept)
            entry = item[20]
            if entry is not None:
                entry.actual, entry.status, entry.reply, entry.detail = actual, status, kept, detail
                entry.cost = item[19]
                entry.duration_ns = item[4]  # last: a duration says the message has ended

    def _flush(self) -> None:
        """Write the pending transfers (a query's batch, a write's transfer) now: something else
        of the session is recorded before the message's end."""
        pending, self._pending = self._pending, None
        with self.recorder._lock:
            self._write_pending(pending, self.recorder)

    def _write_pending(self, pending: tuple, recorder: Recorder) -> None:
        # Under the recorder's lock.
        seqs = recorder._seq
        if len(pending) == _TRANSFER_PENDING_FIELDS:  # one transfer (bulk()): its fields but the seq
            item, cost = (next(seqs), *pending), pending[-1]
        else:  # a query's three transfers as one ring item, three seqs
            seq = next(seqs)
            next(seqs)
            next(seqs)
            cost = len(pending[5]) + len(pending[7]) + len(pending[12]) + 3 * ENTRY_OVERHEAD_BYTES
            item = (seq, self.number, _QUERY, pending, cost)
            recorder._packed_extra += 2
        recorder._ring.append(item)
        recorder._bytes += cost
        if recorder._bytes > recorder.total_cap_bytes:
            recorder._evict()

    @contextlib.contextmanager
    def recovery(self, why: str) -> Iterator[Entry | None]:
        """A recovery sequence (abort, clear, halts, drain); ``why`` says what it answers.

        The caller sets the entry's ``detail`` to what was done when it ends.
        """
        if self._step is not None:
            yield None
            return
        failure = self._last_failure
        if failure is not None and failure[0] < self._group_seq:
            failure = None  # an earlier message's: this recovery answers no failed transfer of its own
        if failure is not None and why and "after" in why:
            _seq, kind, direction, setup, status = failure
            why = f"{why} ({_transfer_name(kind, direction, setup)} {status})"
        if self._pending is not None:
            self._flush()
        start = time.perf_counter_ns()
        entry = Entry(0, self.number, RECOVERY, self.recorder.wall_ns(start), text=why,
                      group=self._group_seq)
        entry.command = self.command_id
        self.recorder._append(entry)
        self._step, self._step_seq = entry, entry.seq
        try:
            yield entry
        except BaseException as exc:
            entry.status = _error_status(exc)
            entry.detail = entry.detail or str(exc)
            raise
        finally:
            self._step, self._step_seq = None, 0
            entry.duration_ns = time.perf_counter_ns() - start

    def marker(self, text: str) -> Entry:
        return self.recorder.marker(text, self.number)


class _MessageScope:
    """:meth:`SessionTrace.message` as a plain context manager (cheaper than a generator's)."""

    __slots__ = ("trace", "op", "sent", "entry")

    def __init__(self, trace: SessionTrace, op: str, sent) -> None:
        self.trace, self.op, self.sent, self.entry = trace, op, sent, None

    def __enter__(self) -> Entry | None:
        self.entry = self.trace.begin(self.op, self.sent)
        return self.entry

    def __exit__(self, kind, exc, tb) -> None:
        if self.entry is not None:
            self.trace.end(self.entry, None, exc)


def message_text(entry: Entry) -> str:
    """A message entry as one line: the operation and what was sent (escaped, shortened)."""
    if entry.text:
        return entry.text
    if not entry.data:
        return entry.op
    return f"{entry.op} {escape(entry.data[:80])}" + ("…" if entry.requested > 80 else "")


def status_of(exc: BaseException) -> str:
    """The trace status for an error (``timeout``, ``device gone``, ...)."""
    return _error_status(exc)


def _error_status(exc: BaseException) -> str:
    # By kind, subclasses included (the LAN sessions' ReplyTimeoutError is a TmcTimeoutError).
    kinds = {"TmcTimeoutError": TIMEOUT, "StallError": STALL, "DeviceGoneError": GONE, "AbortedError": CANCELLED}
    return next((kinds[c.__name__] for c in type(exc).__mro__ if c.__name__ in kinds), ERROR)


def escape(data: bytes) -> str:
    """Bytes as printable text: \\n, \\r, \\t, \\\\ and \\xNN for the rest."""
    out = []
    for b in data:
        if 32 <= b < 127 and b != 92:
            out.append(chr(b))
        else:
            out.append({10: "\\n", 13: "\\r", 9: "\\t", 92: "\\\\"}.get(b, f"\\x{b:02x}"))
    return "".join(out)


def _transfer_name(kind: str, direction: str, setup: bytes) -> str:
    if kind == CONTROL:
        return f"control {_request_name(setup)}"
    if kind == TCP:
        return "socket send" if direction == "out" else "socket receive"
    return f"{'Bulk' if kind == BULK else 'Interrupt'}-{direction.upper()}"


def _seq_of(item) -> int:
    return item.seq if type(item) is Entry else item[0]


def _last_seq_of(item) -> int:
    return item[0] + 2 if type(item) is tuple and item[2] is _QUERY else _seq_of(item)


def _expanded(items: list) -> list[Entry]:
    """Ring items (transfer tuples, packed queries, entries) as the entries they hold, in seq order."""
    out: list[Entry] = []
    for item in items:
        if type(item) is not tuple:
            out.append(item)
        elif item[2] is _QUERY:
            out.extend(_unpacked(item))
        else:
            out.append(_entry(item))
    return out


def _unpacked(t: tuple) -> list[Entry]:
    """A query's three transfers kept as one tuple (:meth:`SessionTrace.close_message`) as their entries."""
    seq, session, _, pending, _cost = t
    (offset, times, group, command, out_endpoint, message, message_bytes, request, request_bytes, counts,
     in_endpoint, in_length, reply, reply_bytes) = pending
    # Never inside a recovery (SessionTrace.batch), so step is 0.
    entries = [Entry(seq, session, BULK, times[0] + offset, times[1] - times[0], out_endpoint, "out", message_bytes,
                     counts[0], OK, message, b"", group),
               Entry(seq + 1, session, BULK, times[1] + offset, times[2] - times[1], out_endpoint, "out",
                     request_bytes, counts[1], OK, request, b"", group),
               Entry(seq + 2, session, BULK, times[2] + offset, times[3] - times[2], in_endpoint, "in", in_length,
                     reply_bytes, OK, reply, b"", group)]
    for entry in entries:
        entry.command, entry.cost = command, len(entry.data) + ENTRY_OVERHEAD_BYTES
    return entries


def _listed(item: list) -> Entry:
    """A message kept as a list (:meth:`SessionTrace.open_message`) as its :class:`Entry`, made
    once (under the recorder's lock) and updated by :meth:`SessionTrace.close_message` from then on."""
    entry = item[20]
    if entry is None:
        entry = item[20] = Entry(*item[:18])
        entry.command, entry.cost = item[18], item[19]
    return entry


def _entry(t: tuple) -> Entry:
    """A transfer kept as a tuple (:meth:`Recorder._add_transfer`) as an :class:`Entry`."""
    entry = Entry(*t[:14])
    entry.command, entry.cost = t[14], t[15]
    return entry


# --- decoding ---------------------------------------------------------------------------

_STD_REQUESTS = {0: "GET_STATUS", 1: "CLEAR_FEATURE", 3: "SET_FEATURE", 5: "SET_ADDRESS", 6: "GET_DESCRIPTOR",
                 8: "GET_CONFIGURATION", 9: "SET_CONFIGURATION", 10: "GET_INTERFACE", 11: "SET_INTERFACE"}
_DESCRIPTOR_TYPES = {1: "DEVICE", 2: "CONFIGURATION", 3: "STRING"}
# MsgID names by direction (IN and OUT share values, so the enum's aliases cannot name them).
_OUT_MSG = {MsgId[name].value: name for name in ("DEV_DEP_MSG_OUT", "REQUEST_DEV_DEP_MSG_IN", "VENDOR_SPECIFIC_OUT",
                                                 "REQUEST_VENDOR_SPECIFIC_IN", "TRIGGER")}
_IN_MSG = {MsgId[name].value: name for name in ("DEV_DEP_MSG_IN", "VENDOR_SPECIFIC_IN")}


def _request_name(setup: bytes) -> str:
    if len(setup) < 8:
        return "?"
    rtype, request = setup[0], setup[1]
    if (rtype >> 5) & 3 == 1:  # class request (USB 2.0 Table 9-2)
        try:
            return Request(request).name
        except ValueError:
            return f"class request {request}"
    if (rtype >> 5) & 3 == 0:
        return _STD_REQUESTS.get(request, f"standard request {request}")
    return f"vendor request 0x{request:02X}"


def status_name(value: int) -> str:
    try:
        return Status(value).name
    except ValueError:
        return f"0x{value:02X}"


def stb_text(stb: int) -> str:
    names = ", ".join(set_bit_names(stb, STB_BITS))
    return f"STB 0x{stb:02X}" + (f" ({names})" if names else "")


@dataclass(frozen=True)
class Decoded:
    """An entry's meaning in layers: ``usb`` (the transfer), ``usbtmc`` (header or request
    by name, with its fields in ``fields``), and a one-line ``summary``."""

    usb: str
    usbtmc: str = ""
    fields: dict = field(default_factory=dict)
    payload_offset: int = 0  # where the message bytes start in ``data``

    @property
    def summary(self) -> str:
        return self.usbtmc or self.usb


def decode_header(data: bytes, direction: str) -> dict | None:
    """The fields of a USBTMC Bulk-OUT or Bulk-IN header (USBTMC 1.0 Tables 1-4, 8-9;
    USB488 Table 1), or None when ``data`` does not start with one."""
    if len(data) < HEADER_BYTES:
        return None
    header = unpack_header(data)
    msg_id, btag, inverse, size = header.msg_id, header.btag, header.btag_inverse, header.transfer_size
    attrs, byte9 = header.attributes, header.byte9
    names = _OUT_MSG if direction == "out" else _IN_MSG
    if msg_id not in names or btag ^ 0xFF != inverse:
        return None
    fields: dict = {"MsgID": names[msg_id], "bTag": btag}
    if msg_id == MsgId.TRIGGER:
        return fields
    fields["TransferSize"] = size
    if direction == "out" and msg_id == MsgId.DEV_DEP_MSG_OUT:
        fields["EOM"] = bool(attrs & TransferAttr.EOM)
    elif direction == "out" and msg_id == MsgId.REQUEST_DEV_DEP_MSG_IN:
        fields["TermCharEnabled"] = bool(attrs & TransferAttr.TERM_CHAR)
        if attrs & TransferAttr.TERM_CHAR:
            fields["TermChar"] = byte9
    elif direction == "in" and msg_id == MsgId.DEV_DEP_MSG_IN:
        fields["EOM"] = bool(attrs & TransferAttr.EOM)
        fields["TermCharMatched"] = bool(attrs & TransferAttr.TERM_CHAR)
    return fields


def _describe_header(fields: dict) -> str:
    parts = [fields["MsgID"], f"bTag {fields['bTag']}"]
    if "TransferSize" in fields:
        parts.append(f"TransferSize {fields['TransferSize']}")
    if fields.get("EOM"):
        parts.append("EOM")
    if "TermChar" in fields:
        parts.append(f"TermChar 0x{fields['TermChar']:02X}")
    if fields.get("TermCharMatched"):
        parts.append("ended on TermChar")
    return " ".join(parts)


def _decode_control(entry: Entry) -> Decoded:
    setup = entry.setup
    if len(setup) < 8:
        return Decoded(f"control {entry.status}")
    rtype, request, value, index, length = struct.unpack("<BBHHH", setup)
    name = _request_name(setup)
    usb = (f"control bmRequestType 0x{rtype:02X} bRequest {request} wValue 0x{value:04X} "
           f"wIndex {index} wLength {length} -> {entry.actual} bytes {entry.status}")
    fields: dict = {"request": name, "wValue": value, "wIndex": index}
    text = name
    if (rtype >> 5) & 3 == 0 and request == 6:  # GET_DESCRIPTOR
        text = f"GET_DESCRIPTOR {_DESCRIPTOR_TYPES.get(value >> 8, value >> 8)}"
    elif (rtype >> 5) & 3 == 0 and request == 1 and value == 0:
        text = f"CLEAR_FEATURE(ENDPOINT_HALT) endpoint 0x{index:02X}"
    elif (rtype >> 5) & 3 == 1:
        data = entry.data
        if request in (Request.INITIATE_ABORT_BULK_IN, Request.INITIATE_ABORT_BULK_OUT):
            text += f" bTag {value & 0xFF}"
        if data:
            fields["USBTMC_status"] = status_name(data[0])
            text += f": {fields['USBTMC_status']}"
        if request == Request.READ_STATUS_BYTE:
            fields["bTag"] = value & 0x7F
            text = f"READ_STATUS_BYTE bTag {value & 0x7F}" + (f": {status_name(data[0])}" if data else "")
            if len(data) >= 3:
                fields["STB"] = data[2]
                text += f", {stb_text(data[2])} in the reply"
        elif request in (Request.CHECK_ABORT_BULK_IN_STATUS, Request.CHECK_ABORT_BULK_OUT_STATUS) and len(data) >= 8:
            count = int.from_bytes(data[4:8], "little")
            key = "NBYTES_TXD" if request == Request.CHECK_ABORT_BULK_IN_STATUS else "NBYTES_RXD"
            fields[key] = count
            text += f", {key} {count}"
            if request == Request.CHECK_ABORT_BULK_IN_STATUS and data[1] & 1:
                text += ", more data queued"
        elif request == Request.CHECK_CLEAR_STATUS and len(data) >= 2 and data[1] & 1:
            text += ", Bulk-IN FIFO to be read"
        elif request == Request.REN_CONTROL:
            text = f"REN_CONTROL {'assert' if value else 'release'}" + (f": {status_name(data[0])}" if data else "")
    if entry.status != OK:
        text += f" [{entry.status}]"
    return Decoded(usb, text, fields)


def _decode_interrupt(entry: Entry) -> Decoded:
    usb = f"Interrupt-IN ep 0x{entry.endpoint:02X} {entry.actual}/{entry.requested} bytes {entry.status}"
    data = entry.data
    if len(data) < 2:
        return Decoded(usb)
    if data[0] == NOTIFY_SRQ:
        return Decoded(usb, f"SRQ notification: {stb_text(data[1])}", {"notify": "SRQ", "STB": data[1]})
    if data[0] & NOTIFY_READ_STATUS_BYTE_FLAG:
        tag = data[0] & 0x7F
        return Decoded(usb, f"READ_STATUS_BYTE reply bTag {tag}: {stb_text(data[1])}",
                       {"notify": "READ_STATUS_BYTE", "bTag": tag, "STB": data[1]})
    return Decoded(usb, f"vendor notification 0x{data[0]:02X}")


# --- LAN channels: a socket's bytes are a stream, so a decoder follows where its PDUs end ---

_HISLIP_TYPES = {t.value: t.name for t in hislip_proto.MsgType}
_HISLIP_DATA = (hislip_proto.MsgType.DATA, hislip_proto.MsgType.DATA_END)
_RPC_PROGRAMS = {vxi11_proto.DEVICE_CORE_PROG: "DEVICE_CORE", vxi11_proto.DEVICE_ASYNC_PROG: "DEVICE_ASYNC",
                 vxi11_proto.DEVICE_INTR_PROG: "DEVICE_INTR", oncrpc.PMAP_PROG: "PORTMAP"}


def _rpc_procedure(prog: int, proc: int) -> str:
    """VXI-11 B.6 procedure names as Wireshark's vxi11 dissector spells them (device_write, ...)."""
    if prog == oncrpc.PMAP_PROG:
        try:
            return oncrpc.PmapProc(proc).name
        except ValueError:
            return f"portmapper procedure {proc}"
    try:
        return vxi11_proto.CoreProc(proc).name.lower()
    except ValueError:
        return f"procedure {proc}"


class _StreamState:
    """Where one direction of one LAN channel stands: bytes left of the current PDU and, for
    RPC, whether the next byte starts a record's body (its record mark came alone)."""

    __slots__ = ("left", "name", "body_next")

    def __init__(self) -> None:
        self.left, self.name, self.body_next = 0, "", False


def _text_preview(data: bytes) -> str:
    return escape(data[:60]) + ("…" if len(data) > 60 else "")


class Decoder:
    """Decodes a session's entries in order: it tracks where each Bulk-IN transfer of the
    device ends, so a continuation read is not mistaken for a new header, and where each
    LAN channel's HiSLIP messages and RPC records end."""

    def __init__(self) -> None:
        self._in_left: dict[int, int] = {}  # session -> Bulk-IN bytes still to come of the device's transfer
        self._streams: dict[tuple, _StreamState] = {}  # (session, channel, direction) -> state
        self._rpc_calls: dict[tuple[int, int], str] = {}  # (session, xid) -> procedure, to name replies

    def decode(self, entry: Entry) -> Decoded:
        if entry.kind == TCP:
            return self._decode_tcp(entry)
        if entry.kind == CONTROL:
            return _decode_control(entry)
        if entry.kind == INTERRUPT:
            return _decode_interrupt(entry)
        if entry.kind == MESSAGE:
            text = message_text(entry)
            return Decoded(text, text)
        if entry.kind != BULK:
            return Decoded(entry.text, entry.text)
        arrow = "Bulk-OUT" if entry.direction == "out" else "Bulk-IN"
        usb = f"{arrow} ep 0x{entry.endpoint:02X} {entry.actual}/{entry.requested} bytes {entry.status}"
        if entry.direction == "out":
            fields = decode_header(entry.data, "out")
            if fields is None:
                return Decoded(usb, "")
            text = _describe_header(fields)
            if entry.status != OK:
                text += f" [{entry.status}]"
            return Decoded(usb, text, fields, HEADER_BYTES)
        if entry.step:  # a Bulk-IN read of a recovery: the drain (USBTMC 1.0 4.2.1.4)
            self._in_left[entry.session] = 0
            return Decoded(usb, f"drain: {entry.actual} bytes discarded" +
                           (f" [{entry.status}]" if entry.status != OK else ""), {"drained": entry.actual})
        left = self._in_left.get(entry.session, 0)
        if left > 0:
            self._in_left[entry.session] = max(0, left - entry.actual)
            if entry.actual == 0 or entry.status != OK:
                self._in_left[entry.session] = 0
            return Decoded(usb, f"DEV_DEP_MSG_IN continued, {entry.actual} bytes" +
                           (f" [{entry.status}]" if entry.status != OK else ""), {})
        fields = decode_header(entry.data, "in") if entry.actual >= HEADER_BYTES else None
        if fields is None:
            return Decoded(usb, f"Bulk-IN {entry.actual} bytes [{entry.status}]" if entry.status != OK else "")
        whole = HEADER_BYTES + fields.get("TransferSize", 0)
        whole += -whole % 4
        self._in_left[entry.session] = max(0, whole - entry.actual) if entry.status == OK else 0
        text = _describe_header(fields)
        if entry.status != OK:
            text += f" [{entry.status}]"
        return Decoded(usb, text, fields, HEADER_BYTES)


    def _decode_tcp(self, entry: Entry) -> Decoded:
        channel = LAN_CHANNELS.get(entry.endpoint, f"LAN channel 0x{entry.endpoint:02X}")
        way = "to the instrument" if entry.direction == "out" else "from the instrument"
        line = f"TCP {channel} {way}: {entry.actual}/{entry.requested} bytes {entry.status}"
        if entry.actual == 0:
            return Decoded(line, f"{channel}: {'send' if entry.direction == 'out' else 'receive'} [{entry.status}]")
        state = self._streams.setdefault((entry.session, entry.endpoint, entry.direction), _StreamState())
        protocol = entry.endpoint >> 4
        if protocol == 3:
            parts, fields = self._hislip(entry, state)
        elif protocol == 2:
            parts, fields = self._rpc(entry, state)
        else:
            parts, fields = [f"SCPI {_text_preview(entry.data)}"], {}
        text = "; ".join(parts[:3]) + (f"; +{len(parts) - 3} more" if len(parts) > 3 else "")
        if entry.status != OK:
            text += f" [{entry.status}]"
        return Decoded(line, text, fields)

    @staticmethod
    def _hislip(entry: Entry, state: _StreamState) -> tuple[list[str], dict]:
        """HiSLIP messages (IVI-6.1 3.1: 16-byte header, then the payload) in one socket chunk."""
        data, moved, pos = entry.data, entry.actual, 0
        parts: list[str] = []
        fields: dict = {}
        while pos < moved:
            if state.left:
                take = min(state.left, moved - pos)
                kept = data[pos:pos + take]
                text = f"{state.name} payload, {take} bytes"
                if state.name in ("DATA", "DATA_END") and kept:
                    text += f": {_text_preview(kept)}"
                parts.append(text)
                state.left -= take
                pos += take
                continue
            if pos + hislip_proto.HEADER.size > len(data) or data[pos:pos + 2] != hislip_proto.PROLOGUE:
                parts.append(f"{moved - pos} bytes, not a HiSLIP header" if pos + 2 <= len(data)
                             else f"{moved - pos} bytes not kept")
                break  # out of step (or beyond the kept bytes): the next chunk starts afresh
            _prologue, kind, control, parameter, size = hislip_proto.HEADER.unpack_from(data, pos)
            name = _HISLIP_TYPES.get(kind, f"message type {kind}")
            if not fields:
                fields = {"MessageType": name, "ControlCode": control, "MessageParameter": parameter,
                          "PayloadLength": size}
            text = f"HiSLIP {name}"
            if kind in _HISLIP_DATA:
                text += f" MessageID 0x{parameter:08X}"
            elif kind == hislip_proto.MsgType.ASYNC_SERVICE_REQUEST or kind == hislip_proto.MsgType.ASYNC_STATUS_RESPONSE:
                text += f": {stb_text(control)}"
            pos += hislip_proto.HEADER.size
            payload = data[pos:pos + min(size, moved - pos)]
            if size and kind in _HISLIP_DATA and payload:
                text += f", {size} bytes: {_text_preview(payload)}"
            elif size:
                text += f", {size} bytes"
            parts.append(text)
            take = min(size, moved - pos)
            state.left, state.name = size - take, name
            pos += take
        return parts, fields

    def _rpc(self, entry: Entry, state: _StreamState) -> tuple[list[str], dict]:
        """ONC RPC records over TCP (RFC 5531 section 11: a 4-byte record mark, then the
        fragment): calls by program and procedure, replies by the call they answer."""
        data, moved, pos = entry.data, entry.actual, 0
        parts: list[str] = []
        fields: dict = {}
        while pos < moved:
            if state.left and not state.body_next:
                take = min(state.left, moved - pos)
                text = f"{state.name} continued, {take} bytes"
                if state.name.endswith(("device_write", "device_read")) and data[pos:pos + take]:
                    text += f": {_text_preview(data[pos:pos + take])}"
                parts.append(text)
                state.left -= take
                pos += take
                continue
            if not state.body_next:
                if pos + 4 > len(data):
                    parts.append(f"{moved - pos} bytes not kept")
                    break
                mark = int.from_bytes(data[pos:pos + 4], "big")
                state.left, state.body_next, state.name = mark & 0x7FFF_FFFF, True, "RPC record"
                pos += 4
                if pos >= moved:
                    parts.append(f"RPC record mark: {state.left} bytes follow")
                    break
            state.body_next = False
            take = min(state.left, moved - pos)
            text, found = self._rpc_body(entry.session, data[pos:pos + take])
            if found and not fields:
                fields = found
            state.name = text.split(" xid")[0] if found else state.name
            parts.append(text)
            state.left -= take
            pos += take
        return parts, fields

    def _rpc_body(self, session: int, body: bytes) -> tuple[str, dict]:
        if len(body) < 8:
            return f"RPC fragment, {len(body)} bytes", {}
        xid, mtype = struct.unpack_from(">II", body)
        if mtype == oncrpc.MsgType.CALL and len(body) >= 24:
            _rpcvers, prog, _vers, proc = struct.unpack_from(">IIII", body, 8)
            name = _rpc_procedure(prog, proc)
            self._rpc_calls[(session, xid)] = name
            text = f"RPC call {name} xid 0x{xid:08X} ({_RPC_PROGRAMS.get(prog, f'program {prog}')})"
            # device_write's data, after AUTH_NONE credentials and link, timeouts and flags (VXI-11 B.6.3)
            if name == "device_write" and len(body) >= 64 and body[28:32] == bytes(4) and body[36:40] == bytes(4):
                size = int.from_bytes(body[56:60], "big")
                text += f": {_text_preview(body[60:60 + size])}"
            return text, {"xid": xid, "msg_type": "CALL", "program": prog, "procedure": name}
        if mtype == oncrpc.MsgType.REPLY:
            name = self._rpc_calls.pop((session, xid), "")
            text = f"RPC reply{' ' + name if name else ''} xid 0x{xid:08X}"
            # device_read's data, after an accepted AUTH_NONE header and error, reason (VXI-11 B.6.4)
            if name == "device_read" and len(body) >= 36 and body[8:12] == bytes(4):
                error, _reason, size = struct.unpack_from(">III", body, 24)
                text += f": {_text_preview(body[36:36 + size])}" if not error else f": error {error}"
            return text, {"xid": xid, "msg_type": "REPLY", "procedure": name}
        return f"RPC message xid 0x{xid:08X} type {mtype}", {}


def decode(entry: Entry) -> Decoded:
    """One entry decoded on its own (a Bulk-IN continuation may then look like a bare read;
    use a :class:`Decoder` over a session's entries in order to tell them apart)."""
    return Decoder().decode(entry)


def hex_dump(data: bytes, width: int = 16) -> str:
    """Offset, hex and ASCII columns, ``width`` bytes a line."""
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset: offset + width]
        hex_part = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hex_part:<{width * 3 - 1}}  {text}")
    return "\n".join(lines)
