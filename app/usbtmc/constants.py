"""Protocol constants named after the tables of USBTMC 1.0 and USB488 1.0.

They are written once, in the protocol leaf (:mod:`app.protocol.usbtmc`), which the device
models share; this module keeps the core's names for them.
"""

from __future__ import annotations

from app.protocol.usbtmc import (
    ALIGNMENT_BYTES,
    CAPABILITIES_BYTES,
    FEATURE_ENDPOINT_HALT,
    HEADER_BYTES,
    NOTIFY_READ_STATUS_BYTE_FLAG,
    NOTIFY_SRQ,
    REQ_IN_CLASS_ENDPOINT,
    REQ_IN_CLASS_INTERFACE,
    REQ_OUT_STANDARD_ENDPOINT,
    STD_CLEAR_FEATURE,
    USBTMC_CLASS,
    USBTMC_SUBCLASS,
    InterfaceProtocol,
    MsgId,
    Request,
    Status,
    TransferAttr,
)

__all__ = ["ALIGNMENT_BYTES", "CAPABILITIES_BYTES", "FEATURE_ENDPOINT_HALT", "HEADER_BYTES", "NOTIFY_READ_STATUS_BYTE_FLAG",
           "NOTIFY_SRQ", "REQ_IN_CLASS_ENDPOINT", "REQ_IN_CLASS_INTERFACE", "REQ_OUT_STANDARD_ENDPOINT",
           "STD_CLEAR_FEATURE", "USBTMC_CLASS", "USBTMC_SUBCLASS", "InterfaceProtocol", "MsgId", "Request", "Status",
           "TransferAttr"]
