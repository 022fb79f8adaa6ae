"""HiSLIP (IVI-6.1, High-Speed LAN Instrument Protocol, version 1.0): message types, the
16-byte header, and the fields of the messages this project sends. Pure functions on bytes."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

PORT = 4880  # IVI-6.1 section 2.2: the IANA-assigned HiSLIP port
PROTOCOL_VERSION = 0x0100  # 1.0: major in the high byte (IVI-6.1 section 6.2)
HEADER = struct.Struct(">2sBBIQ")  # IVI-6.1 section 3.1: "HS", type, control code, parameter, payload length
PROLOGUE = b"HS"
FIRST_MESSAGE_ID = 0xFFFF_FF00  # IVI-6.1 section 3.1.2: the client's first MessageID, then +2
UNKNOWN_MESSAGE_ID = 0xFFFF_FFFF  # a server's Data message that answers no known MessageID
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20


class MsgType(IntEnum):
    """IVI-6.1 Table 4: message types."""

    INITIALIZE = 0
    INITIALIZE_RESPONSE = 1
    FATAL_ERROR = 2
    ERROR = 3
    ASYNC_LOCK = 4
    ASYNC_LOCK_RESPONSE = 5
    DATA = 6
    DATA_END = 7
    DEVICE_CLEAR_COMPLETE = 8
    DEVICE_CLEAR_ACKNOWLEDGE = 9
    ASYNC_REMOTE_LOCAL_CONTROL = 10
    ASYNC_REMOTE_LOCAL_RESPONSE = 11
    TRIGGER = 12
    INTERRUPTED = 13
    ASYNC_INTERRUPTED = 14
    ASYNC_MAXIMUM_MESSAGE_SIZE = 15
    ASYNC_MAXIMUM_MESSAGE_SIZE_RESPONSE = 16
    ASYNC_INITIALIZE = 17
    ASYNC_INITIALIZE_RESPONSE = 18
    ASYNC_DEVICE_CLEAR = 19
    ASYNC_SERVICE_REQUEST = 20
    ASYNC_STATUS_QUERY = 21
    ASYNC_STATUS_RESPONSE = 22
    ASYNC_DEVICE_CLEAR_ACKNOWLEDGE = 23
    ASYNC_LOCK_INFO = 24
    ASYNC_LOCK_INFO_RESPONSE = 25


class LockControl(IntEnum):
    """IVI-6.1 AsyncLock: the control code says what the client asks. A request's message
    parameter is its timeout in ms and its payload the lock string (empty: the exclusive lock,
    else a shared lock under that string); a release's parameter is the MessageID of the last
    message the client sent on the synchronous channel."""

    RELEASE = 0
    REQUEST = 1


class LockResponse(IntEnum):
    """IVI-6.1 AsyncLockResponse: the control code answering an AsyncLock."""

    FAILURE = 0  # a request whose timeout passed with the lock held by another client
    SUCCESS = 1  # a request granted; a release of the exclusive lock
    SUCCESS_SHARED = 2  # a release of the shared lock
    ERROR = 3  # an invalid request: a lock the client holds already, a release of none


class FatalCode(IntEnum):
    """IVI-6.1 Table 14: FatalError codes."""

    UNIDENTIFIED = 0
    BAD_HEADER = 1
    CHANNELS_INACTIVE = 2
    INVALID_INIT_SEQUENCE = 3
    MAX_CLIENTS = 4
    SECURE_CONNECTION_FAILED = 5


class ErrorCode(IntEnum):
    """IVI-6.1 Table 15: Error (non-fatal) codes."""

    UNIDENTIFIED = 0
    UNRECOGNIZED_MESSAGE_TYPE = 1
    UNRECOGNIZED_CONTROL_CODE = 2
    UNRECOGNIZED_VENDOR_DEFINED = 3
    MESSAGE_TOO_LARGE = 4


class HeaderError(ValueError):
    """Sixteen bytes that are not a HiSLIP header."""


@dataclass(frozen=True)
class Header:
    msg_type: int
    control: int
    parameter: int
    payload_bytes: int


def pack(msg_type: int, control: int = 0, parameter: int = 0, payload_bytes: int = 0) -> bytes:
    """A header; the payload (``payload_bytes`` long) follows it on the wire."""
    return HEADER.pack(PROLOGUE, msg_type, control, parameter & 0xFFFF_FFFF, payload_bytes)


def message(msg_type: int, control: int = 0, parameter: int = 0, payload: bytes = b"") -> bytes:
    return pack(msg_type, control, parameter, len(payload)) + payload


def unpack(data: bytes | bytearray | memoryview) -> Header:
    """The header in ``data`` (16 bytes); :class:`HeaderError` without the "HS" prologue."""
    prologue, msg_type, control, parameter, size = HEADER.unpack(bytes(data[:HEADER.size]))
    if prologue != PROLOGUE:
        raise HeaderError(f"a HiSLIP header starts with 'HS', not {prologue!r} (IVI-6.1 3.1)")
    return Header(msg_type, control, parameter, size)


def initialize_parameter(vendor_id: bytes = b"TC", version: int = PROTOCOL_VERSION) -> int:
    """Initialize: the client's protocol version (high 16 bits) and vendor ID (low 16, IVI-6.1 6.2)."""
    return version << 16 | int.from_bytes(vendor_id[:2].ljust(2, b" "), "big")


def session_of(initialize_response_parameter: int) -> tuple[int, int]:
    """(server protocol version, session ID) from an InitializeResponse's parameter."""
    return initialize_response_parameter >> 16, initialize_response_parameter & 0xFFFF
