"""ONC RPC version 2 (RFC 5531) over TCP, its XDR encoding (RFC 4506) and the portmapper (RFC 1833).

Only what VXI-11 needs: calls and replies with AUTH_NONE, the record marking of RFC 5531
section 11, and PMAPPROC_GETPORT. Pure functions on bytes; both the host sessions
(:mod:`app.lan`) and the virtual LAN instruments (:mod:`app.sim.lan`) use them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

RPC_VERSION = 2  # RFC 5531 section 9
LAST_FRAGMENT = 0x8000_0000  # RFC 5531 section 11: the high bit of the record mark
MAX_FRAGMENT_BYTES = 0x7FFF_FFFF

PMAP_PORT = 111  # RFC 1833 section 3
PMAP_PROG = 100000
PMAP_VERS = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17


class MsgType(IntEnum):
    CALL = 0
    REPLY = 1


class ReplyStat(IntEnum):
    MSG_ACCEPTED = 0
    MSG_DENIED = 1


class AcceptStat(IntEnum):
    """RFC 5531 section 9: accept_stat."""

    SUCCESS = 0
    PROG_UNAVAIL = 1
    PROG_MISMATCH = 2
    PROC_UNAVAIL = 3
    GARBAGE_ARGS = 4
    SYSTEM_ERR = 5


class PmapProc(IntEnum):
    """RFC 1833 section 3.2: portmapper version 2 procedures."""

    NULL = 0
    SET = 1
    UNSET = 2
    GETPORT = 3
    DUMP = 4
    CALLIT = 5


class XdrError(ValueError):
    """Bytes that are not the XDR the receiver expected (short, or a length past the end)."""


def pad4(size: int) -> int:
    """The zero bytes that follow ``size`` bytes of opaque data (RFC 4506 section 4.10)."""
    return -size % 4


class Packer:
    """Builds XDR (RFC 4506): big-endian 4-byte units, opaque data padded to 4 bytes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def uint(self, value: int) -> Packer:
        self._parts.append(struct.pack(">I", value & 0xFFFF_FFFF))
        return self

    def int(self, value: int) -> Packer:
        self._parts.append(struct.pack(">i", value))
        return self

    def opaque(self, data: bytes | bytearray | memoryview) -> Packer:
        """Variable-length opaque data: its length, the bytes, then padding."""
        self.uint(len(data))
        self._parts.append(bytes(data))
        self._parts.append(b"\0" * pad4(len(data)))
        return self

    def bytes(self) -> bytes:
        return b"".join(self._parts)


class Unpacker:
    """Reads XDR from a buffer; :class:`XdrError` when it ends early."""

    def __init__(self, data: bytes | bytearray | memoryview, offset: int = 0) -> None:
        self._data = memoryview(data)
        self.offset = offset

    def uint(self) -> int:
        end = self.offset + 4
        if end > len(self._data):
            raise XdrError(f"XDR ends after {len(self._data)} bytes; an integer was expected at {self.offset}")
        (value,) = struct.unpack_from(">I", self._data, self.offset)
        self.offset = end
        return value

    def int(self) -> int:
        value = self.uint()
        return value - (1 << 32) if value & 0x8000_0000 else value

    def opaque(self) -> bytes:
        size = self.uint()
        end = self.offset + size
        if end > len(self._data):
            raise XdrError(f"XDR opaque data of {size} bytes runs past the end ({len(self._data)} bytes)")
        data = bytes(self._data[self.offset:end])
        self.offset = end + pad4(size)
        return data

    def rest(self) -> memoryview:
        return self._data[self.offset:]


@dataclass(frozen=True)
class Call:
    """An RPC call header (RFC 5531 section 9) with AUTH_NONE credentials; ``args`` follow it."""

    xid: int
    prog: int
    vers: int
    proc: int
    args: bytes = b""


def pack_call(xid: int, prog: int, vers: int, proc: int, args: bytes = b"") -> bytes:
    """The body of a call record: header, AUTH_NONE credential and verifier, arguments."""
    return (Packer().uint(xid).uint(MsgType.CALL).uint(RPC_VERSION).uint(prog).uint(vers).uint(proc)
            .uint(0).uint(0).uint(0).uint(0).bytes() + args)


def parse_call(body: bytes | bytearray | memoryview) -> Call:
    """A call record's body; :class:`XdrError` for a reply, another RPC version or short data."""
    u = Unpacker(body)
    xid, mtype, rpcvers = u.uint(), u.uint(), u.uint()
    if mtype != MsgType.CALL:
        raise XdrError(f"RPC message {xid} is not a call (msg_type {mtype})")
    if rpcvers != RPC_VERSION:
        raise XdrError(f"RPC version {rpcvers} (only 2 is defined, RFC 5531 section 9)")
    prog, vers, proc = u.uint(), u.uint(), u.uint()
    for _ in range(2):  # credential and verifier: flavor, then opaque body
        u.uint()
        u.opaque()
    return Call(xid, prog, vers, proc, bytes(u.rest()))


def pack_accepted(xid: int, stat: AcceptStat = AcceptStat.SUCCESS, results: bytes = b"",
                  mismatch: tuple[int, int] | None = None) -> bytes:
    """The body of an accepted reply (RFC 5531 section 9) with an AUTH_NONE verifier."""
    p = Packer().uint(xid).uint(MsgType.REPLY).uint(ReplyStat.MSG_ACCEPTED).uint(0).uint(0).uint(stat)
    if stat == AcceptStat.PROG_MISMATCH and mismatch:
        p.uint(mismatch[0]).uint(mismatch[1])
    return p.bytes() + results


def parse_reply(body: bytes | bytearray | memoryview, xid: int) -> Unpacker:
    """The results of a reply to call ``xid``, positioned after the header.

    :class:`XdrError` names what is wrong: another xid, a denied or unaccepted call.
    """
    u = Unpacker(body)
    got, mtype = u.uint(), u.uint()
    if mtype != MsgType.REPLY:
        raise XdrError(f"RPC message {got} is not a reply (msg_type {mtype})")
    if got != xid:
        raise XdrError(f"RPC reply for call {got}, expected {xid}")
    if u.uint() != ReplyStat.MSG_ACCEPTED:
        raise XdrError(f"RPC call {xid} was denied (RFC 5531 reject_stat)")
    u.uint()
    u.opaque()  # verifier
    stat = u.uint()
    if stat != AcceptStat.SUCCESS:
        name = AcceptStat(stat).name if stat in AcceptStat._value2member_map_ else str(stat)
        raise XdrError(f"RPC call {xid} was not accepted: {name}")
    return u


def record_marks(body_size: int, fragment_bytes: int = MAX_FRAGMENT_BYTES) -> list[tuple[int, int]]:
    """(offset, size) of each fragment of a record, for the 4-byte marks of RFC 5531 section 11."""
    if body_size == 0:
        return [(0, 0)]
    return [(offset, min(fragment_bytes, body_size - offset)) for offset in range(0, body_size, fragment_bytes)]


def pack_mark(size: int, last: bool) -> bytes:
    return struct.pack(">I", (LAST_FRAGMENT if last else 0) | size)


def parse_mark(mark: bytes) -> tuple[int, bool]:
    """(fragment size, last fragment) of a 4-byte record mark."""
    (value,) = struct.unpack(">I", mark)
    return value & MAX_FRAGMENT_BYTES, bool(value & LAST_FRAGMENT)


def pack_mapping(prog: int, vers: int, prot: int, port: int) -> bytes:
    """RFC 1833 section 3: struct mapping, the GETPORT argument."""
    return Packer().uint(prog).uint(vers).uint(prot).uint(port).bytes()
