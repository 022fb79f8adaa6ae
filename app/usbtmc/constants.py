"""Protocol constants named after the tables of USBTMC 1.0 and USB488 1.0."""

from __future__ import annotations

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


# bmRequestType of class requests (USB 2.0 Table 9-2): IN, class, to interface or endpoint.
REQ_IN_CLASS_INTERFACE = 0xA1
REQ_IN_CLASS_ENDPOINT = 0xA2
# Standard CLEAR_FEATURE(ENDPOINT_HALT) to an endpoint (USB 2.0 section 9.4.1).
REQ_OUT_STANDARD_ENDPOINT = 0x02
STD_CLEAR_FEATURE = 0x01
FEATURE_ENDPOINT_HALT = 0x00


class TransferAttr(IntFlag):
    """bmTransferAttributes bits (USBTMC 1.0 Tables 3, 4 and 9)."""

    EOM = 0x01
    TERM_CHAR = 0x02  # REQUEST_DEV_DEP_MSG_IN: TermChar enabled; DEV_DEP_MSG_IN: ended on it


HEADER_BYTES = 12  # USBTMC 1.0 section 3.2: every Bulk-OUT/Bulk-IN header is 12 bytes
ALIGNMENT_BYTES = 4  # USBTMC 1.0 section 3.2: transfers are padded to a 4-byte boundary
CAPABILITIES_BYTES = 0x18  # USBTMC 1.0 Table 37 / USB488 1.0 Table 8

# USB488 1.0 section 3.4.2, Table 6: interrupt-IN notifications.
NOTIFY_READ_STATUS_BYTE_FLAG = 0x80  # bNotify1 = 0x80 | bTag for a READ_STATUS_BYTE reply
NOTIFY_SRQ = 0x81  # bNotify1 for a service request
