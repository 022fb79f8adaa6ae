"""VXI-11 (VXIbus Consortium, TCP/IP Instrument Protocol, rev 1.0): the RPC programs, procedures,
error codes, flags and argument layouts. Pure packers and parsers on XDR (:mod:`.oncrpc`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

from .oncrpc import Packer, Unpacker

# VXI-11 B.6: the three RPC programs (core, abort, interrupt), all version 1.
DEVICE_CORE_PROG = 0x0607AF
DEVICE_ASYNC_PROG = 0x0607B0
DEVICE_INTR_PROG = 0x0607B1
DEVICE_VERS = 1


class CoreProc(IntEnum):
    """VXI-11 B.6: procedures of DEVICE_CORE (and device_abort on DEVICE_ASYNC, intr on DEVICE_INTR)."""

    DEVICE_ABORT = 1  # on DEVICE_ASYNC
    CREATE_LINK = 10
    DEVICE_WRITE = 11
    DEVICE_READ = 12
    DEVICE_READSTB = 13
    DEVICE_TRIGGER = 14
    DEVICE_CLEAR = 15
    DEVICE_REMOTE = 16
    DEVICE_LOCAL = 17
    DEVICE_LOCK = 18
    DEVICE_UNLOCK = 19
    DEVICE_ENABLE_SRQ = 20
    DEVICE_DOCMD = 22
    DESTROY_LINK = 23
    CREATE_INTR_CHAN = 25
    DESTROY_INTR_CHAN = 26
    DEVICE_INTR_SRQ = 30  # on DEVICE_INTR


class Error(IntEnum):
    """VXI-11 B.5.2 Table B.2: Device_ErrorCode."""

    NO_ERROR = 0
    SYNTAX_ERROR = 1
    DEVICE_NOT_ACCESSIBLE = 3
    INVALID_LINK_IDENTIFIER = 4
    PARAMETER_ERROR = 5
    CHANNEL_NOT_ESTABLISHED = 6
    OPERATION_NOT_SUPPORTED = 8
    OUT_OF_RESOURCES = 9
    DEVICE_LOCKED_BY_ANOTHER_LINK = 11
    NO_LOCK_HELD_BY_THIS_LINK = 12
    IO_TIMEOUT = 15
    IO_ERROR = 17
    INVALID_ADDRESS = 21
    ABORT = 23
    CHANNEL_ALREADY_ESTABLISHED = 29


ERROR_TEXT = {
    Error.SYNTAX_ERROR: "syntax error",
    Error.DEVICE_NOT_ACCESSIBLE: "device not accessible",
    Error.INVALID_LINK_IDENTIFIER: "invalid link identifier",
    Error.PARAMETER_ERROR: "parameter error",
    Error.CHANNEL_NOT_ESTABLISHED: "channel not established",
    Error.OPERATION_NOT_SUPPORTED: "operation not supported",
    Error.OUT_OF_RESOURCES: "out of resources",
    Error.DEVICE_LOCKED_BY_ANOTHER_LINK: "device locked by another link",
    Error.NO_LOCK_HELD_BY_THIS_LINK: "no lock held by this link",
    Error.IO_TIMEOUT: "I/O timeout",
    Error.IO_ERROR: "I/O error",
    Error.INVALID_ADDRESS: "invalid address",
    Error.ABORT: "abort",
    Error.CHANNEL_ALREADY_ESTABLISHED: "channel already established",
}


class Flags(IntFlag):
    """VXI-11 B.5.3: Device_Flags."""

    WAITLOCK = 0x01
    END = 0x08
    TERMCHRSET = 0x80


class Reason(IntFlag):
    """VXI-11 B.6.4 device_read: why the read ended."""

    REQCNT = 0x01
    CHR = 0x02
    END = 0x04


@dataclass(frozen=True)
class CreateLinkParms:
    client_id: int
    lock_device: bool
    lock_timeout_ms: int
    device: str


def pack_create_link(p: CreateLinkParms) -> bytes:
    return (Packer().int(p.client_id).uint(int(p.lock_device)).uint(p.lock_timeout_ms)
            .opaque(p.device.encode("ascii")).bytes())


def parse_create_link(u: Unpacker) -> CreateLinkParms:
    return CreateLinkParms(u.int(), bool(u.uint()), u.uint(), u.opaque().decode("ascii", "replace"))


@dataclass(frozen=True)
class CreateLinkResp:
    error: int
    link_id: int
    abort_port: int
    max_recv_size: int


def pack_create_link_resp(r: CreateLinkResp) -> bytes:
    return Packer().uint(r.error).int(r.link_id).uint(r.abort_port).uint(r.max_recv_size).bytes()


def parse_create_link_resp(u: Unpacker) -> CreateLinkResp:
    return CreateLinkResp(u.uint(), u.int(), u.uint(), u.uint())


def pack_write(link_id: int, io_timeout_ms: int, lock_timeout_ms: int, flags: int, data) -> bytes:
    return Packer().int(link_id).uint(io_timeout_ms).uint(lock_timeout_ms).uint(flags).opaque(data).bytes()


@dataclass(frozen=True)
class WriteParms:
    link_id: int
    io_timeout_ms: int
    lock_timeout_ms: int
    flags: int
    data: bytes


def parse_write(u: Unpacker) -> WriteParms:
    return WriteParms(u.int(), u.uint(), u.uint(), u.uint(), u.opaque())


@dataclass(frozen=True)
class ReadParms:
    link_id: int
    request_size: int
    io_timeout_ms: int
    lock_timeout_ms: int
    flags: int
    term_char: int


def pack_read(p: ReadParms) -> bytes:
    return (Packer().int(p.link_id).uint(p.request_size).uint(p.io_timeout_ms).uint(p.lock_timeout_ms)
            .uint(p.flags).uint(p.term_char).bytes())


def parse_read(u: Unpacker) -> ReadParms:
    return ReadParms(u.int(), u.uint(), u.uint(), u.uint(), u.uint(), u.uint() & 0xFF)


def pack_read_resp(error: int, reason: int, data) -> bytes:
    return Packer().uint(error).uint(reason).opaque(data).bytes()


def pack_generic(link_id: int, flags: int, lock_timeout_ms: int, io_timeout_ms: int) -> bytes:
    """Device_GenericParms (readstb, trigger, clear, remote, local)."""
    return Packer().int(link_id).uint(flags).uint(lock_timeout_ms).uint(io_timeout_ms).bytes()


def pack_enable_srq(link_id: int, enable: bool, handle: bytes) -> bytes:
    return Packer().int(link_id).uint(int(enable)).opaque(handle).bytes()


def pack_create_intr_chan(host_addr: int, host_port: int, prog: int = DEVICE_INTR_PROG,
                          vers: int = DEVICE_VERS, family: int = 0) -> bytes:
    """Device_RemoteFunc: where the device calls device_intr_srq back (family 0: TCP)."""
    return Packer().uint(host_addr).uint(host_port).uint(prog).uint(vers).uint(family).bytes()
