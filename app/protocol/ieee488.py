"""IEEE 488.2-1992: the status byte and standard event status register bits, with their names."""

from __future__ import annotations

from enum import IntFlag


class StbBit(IntFlag):
    """Status Byte Register bits (488.2 section 11.2; bits 2 and 3 as SCPI-1999 uses them)."""

    DEV0 = 0x01
    DEV1 = 0x02
    EAV = 0x04  # SCPI: error/event queue not empty
    QSB = 0x08  # SCPI: questionable status summary
    MAV = 0x10  # message available
    ESB = 0x20  # event status summary
    MSS = 0x40  # master summary status; RQS in a serial poll
    OSB = 0x80  # operation status summary (the SAM7 design calls it OPR)


class EsrBit(IntFlag):
    """Standard Event Status Register bits (488.2 section 11.5.1.1)."""

    OPC = 0x01
    RQC = 0x02  # the SAM7 design redefines this bit as RTL (returned to local)
    QYE = 0x04
    DDE = 0x08
    EXE = 0x10
    CME = 0x20
    URQ = 0x40
    PON = 0x80


#: The ESR bits that report an error (488.2 11.5.1.1): command, execution, device-dependent, query.
ESR_ERROR_MASK = EsrBit.CME | EsrBit.EXE | EsrBit.DDE | EsrBit.QYE

# 488.2-1992 section 11.2, Figure 11-2: the Status Byte Register, bit number -> (name, meaning).
STB_BITS: dict[int, tuple[str, str]] = {
    7: ("OPR", "Operation status summary"),
    6: ("RQS/MSS", "Request service / master summary status"),
    5: ("ESB", "Event status summary (ESR & ESE)"),
    4: ("MAV", "Message available in the output queue"),
    3: ("QUES", "Questionable status summary (device-specific)"),
    2: ("EAV", "Error/event queue not empty (device-specific)"),
    1: ("DEV1", "Device-specific"),
    0: ("DEV0", "Device-specific"),
}

# 488.2-1992 section 11.5.1, Figure 11-5: the Standard Event Status Register.
ESR_BITS: dict[int, tuple[str, str]] = {
    7: ("PON", "Power on"),
    6: ("URQ", "User request"),
    5: ("CME", "Command error"),
    4: ("EXE", "Execution error"),
    3: ("DDE", "Device-dependent error"),
    2: ("QYE", "Query error"),
    1: ("RQC/RTL", "Request control / returned to local"),
    0: ("OPC", "Operation complete"),
}


def set_bit_names(value: int, bits: dict[int, tuple[str, str]]) -> list[str]:
    """Names of the bits set in ``value``, most significant first."""
    return [bits[bit][0] for bit in sorted(bits, reverse=True) if value >> bit & 1]
