"""libusb 1.0's numbers as they reach Python: error codes (libusb.h ``enum libusb_error``, which pyusb
reports in ``USBError.backend_error_code``) and transfer statuses (``enum libusb_transfer_status``)."""

from __future__ import annotations

from enum import IntEnum


class LibusbError(IntEnum):
    IO = -1
    INVALID_PARAM = -2
    ACCESS = -3
    NO_DEVICE = -4
    NOT_FOUND = -5
    BUSY = -6
    TIMEOUT = -7
    OVERFLOW = -8
    PIPE = -9
    INTERRUPTED = -10
    NO_MEM = -11
    NOT_SUPPORTED = -12
    OTHER = -99


class TransferStatus(IntEnum):
    COMPLETED = 0
    ERROR = 1
    TIMED_OUT = 2
    CANCELLED = 3
    STALL = 4
    NO_DEVICE = 5
    OVERFLOW = 6
