"""USBTMC 1.0 and USB488 1.0: constants named after the spec's tables, and the 12-byte Bulk header
packed and unpacked for both directions (bytes in, bytes out, nothing else)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

# USBTMC 1.0 section 4.1 / Table 42: the interface class triple of a USBTMC function.
USBTMC_CLASS = 0xFE
USBTMC_SUBCLASS = 0x03


class InterfaceProtocol(IntEnum):
    """bInterfaceProtocol of a USBTMC interface (USBTMC 1.0 Table 43)."""

    USBTMC = 0x00
    USB488 = 0x01


class MsgId(IntEnum):
    """Bulk-OUT and Bulk-IN MsgID values (USBTMC 1.0 Table 2, USB488 1.0 Table 1)."""

    DEV_DEP_MSG_OUT = 1
    REQUEST_DEV_DEP_MSG_IN = 2
    DEV_DEP_MSG_IN = 2
    VENDOR_SPECIFIC_OUT = 126
    REQUEST_VENDOR_SPECIFIC_IN = 127
    VENDOR_SPECIFIC_IN = 127
    TRIGGER = 128  # USB488 1.0 Table 1


class Request(IntEnum):
    """bRequest values of class-specific control requests (USBTMC Table 15, USB488 Table 9)."""

    INITIATE_ABORT_BULK_OUT = 1
    CHECK_ABORT_BULK_OUT_STATUS = 2
    INITIATE_ABORT_BULK_IN = 3
    CHECK_ABORT_BULK_IN_STATUS = 4
    INITIATE_CLEAR = 5
    CHECK_CLEAR_STATUS = 6
    GET_CAPABILITIES = 7
    INDICATOR_PULSE = 64
    READ_STATUS_BYTE = 128
    REN_CONTROL = 160
    GO_TO_LOCAL = 161
    LOCAL_LOCKOUT = 162


class Status(IntEnum):
    """USBTMC_status values in control replies (USBTMC Table 16, USB488 Table 10)."""

    SUCCESS = 0x01
    PENDING = 0x02
    INTERRUPT_IN_BUSY = 0x20
    FAILED = 0x80
    TRANSFER_NOT_IN_PROGRESS = 0x81
    SPLIT_NOT_IN_PROGRESS = 0x82
    SPLIT_IN_PROGRESS = 0x83


class TransferAttr(IntFlag):
    """bmTransferAttributes bits (USBTMC 1.0 Tables 3, 4 and 9)."""

    EOM = 0x01
    TERM_CHAR = 0x02  # REQUEST_DEV_DEP_MSG_IN: TermChar enabled; DEV_DEP_MSG_IN: ended on it


# bmRequestType of class requests (USB 2.0 Table 9-2): IN, class, to interface or endpoint.
REQ_IN_CLASS_INTERFACE = 0xA1
REQ_IN_CLASS_ENDPOINT = 0xA2
# Standard CLEAR_FEATURE(ENDPOINT_HALT) to an endpoint (USB 2.0 section 9.4.1).
REQ_OUT_STANDARD_ENDPOINT = 0x02
STD_CLEAR_FEATURE = 0x01
FEATURE_ENDPOINT_HALT = 0x00

HEADER_BYTES = 12  # USBTMC 1.0 section 3.2: every Bulk-OUT/Bulk-IN header is 12 bytes
ALIGNMENT_BYTES = 4  # USBTMC 1.0 section 3.2: transfers are padded to a 4-byte boundary
CAPABILITIES_BYTES = 0x18  # USBTMC 1.0 Table 37 / USB488 1.0 Table 8
MAX_TRANSFER_SIZE = 0xFFFFFFFF  # TransferSize is a 32-bit field (USBTMC 1.0 Table 3)

# USB488 1.0 section 3.4.2, Table 6: interrupt-IN notifications.
NOTIFY_READ_STATUS_BYTE_FLAG = 0x80  # bNotify1 = 0x80 | bTag for a READ_STATUS_BYTE reply
NOTIFY_SRQ = 0x81  # bNotify1 for a service request

# GET_CAPABILITIES reply layout (USBTMC 1.0 Table 37, USB488 1.0 Table 8): byte offsets and bits.
CAP_BCD_USBTMC = 2  # 2 bytes, little-endian
CAP_INTERFACE = 4  # D2 indicator pulse, D1 talk-only, D0 listen-only
CAP_DEVICE = 5  # D0 TermChar
CAP_BCD_USB488 = 12  # 2 bytes, little-endian
CAP_USB488_INTERFACE = 14  # D2 USB488.2, D1 REN_CONTROL etc., D0 TRIGGER
CAP_USB488_DEVICE = 15  # D3 SCPI, D2 SR1, D1 RL1, D0 DT1

_HEADER = struct.Struct("<BBBBIBBH")  # MsgID, bTag, bTagInverse, reserved, TransferSize, attrs, byte 9, reserved


@dataclass(frozen=True)
class BulkHeader:
    """The 12 bytes before every Bulk transfer's payload, as they are (USBTMC 1.0 Tables 1-10).

    ``byte9`` is TermChar in REQUEST_DEV_DEP_MSG_IN and reserved elsewhere.
    """

    msg_id: int
    btag: int
    btag_inverse: int
    transfer_size: int
    attributes: int
    byte9: int = 0

    @property
    def btag_ok(self) -> bool:
        """bTagInverse is the one's complement of bTag, and bTag is not 0 (USBTMC 1.0 Table 1)."""
        return self.btag != 0 and self.btag ^ 0xFF == self.btag_inverse

    @property
    def eom(self) -> bool:
        return bool(self.attributes & TransferAttr.EOM)

    @property
    def term_char_flag(self) -> bool:
        return bool(self.attributes & TransferAttr.TERM_CHAR)


def next_btag(btag: int) -> int:
    """The bTag after ``btag``: 1..255, wrapping to 1, never 0 (USBTMC 1.0 Table 1)."""
    return btag % 255 + 1


def padding_bytes(size: int) -> int:
    """Alignment bytes that follow ``size`` message bytes (USBTMC 1.0 section 3.2)."""
    return -(HEADER_BYTES + size) % ALIGNMENT_BYTES


def pack_header(msg_id: int, btag: int, size: int, attributes: int = 0, byte9: int = 0) -> bytes:
    """Any Bulk header, in either direction; ``btag`` 1..255 and ``size`` 32-bit are checked."""
    if not 1 <= btag <= 255:
        raise ValueError(f"bTag must be 1..255, got {btag}")
    if not 0 <= size <= MAX_TRANSFER_SIZE:
        raise ValueError(f"TransferSize out of range: {size}")
    return _HEADER.pack(msg_id, btag, btag ^ 0xFF, 0, size, attributes, byte9, 0)


def unpack_header(data: bytes | bytearray | memoryview) -> BulkHeader:
    """The first 12 bytes of a Bulk transfer as they are, without judging them.

    Raises ValueError when fewer than 12 bytes are given.
    """
    if len(data) < HEADER_BYTES:
        raise ValueError(f"a Bulk header has {HEADER_BYTES} bytes, got {len(data)}")
    msg_id, btag, btag_inv, _reserved, size, attrs, byte9, _res = _HEADER.unpack_from(data)
    return BulkHeader(msg_id, btag, btag_inv, size, attrs, byte9)


def pack_dev_dep_msg_in(btag: int, payload: bytes, *, eom: bool, term_char_ended: bool = False) -> bytes:
    """A whole DEV_DEP_MSG_IN transfer as a device sends it: header, payload, alignment (USBTMC 1.0 Table 9)."""
    attributes = (TransferAttr.EOM if eom else 0) | (TransferAttr.TERM_CHAR if term_char_ended else 0)
    return pack_header(MsgId.DEV_DEP_MSG_IN, btag, len(payload), attributes) + payload + bytes(padding_bytes(len(payload)))
