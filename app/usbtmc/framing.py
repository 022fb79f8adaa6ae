"""Pure USBTMC/USB488 framing: bytes in, bytes out, no I/O and no hidden state.

Packers take the bTag as an argument; choosing the next bTag is the session's job
(:func:`next_btag`), so building a frame never changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.protocol import usbtmc as spec
from app.protocol.usbtmc import MAX_TRANSFER_SIZE, next_btag, padding_bytes, unpack_header
from app.protocol.usbtmc import pack_header as _header

from .constants import CAPABILITIES_BYTES, HEADER_BYTES, MsgId, Status, TransferAttr
from .errors import ProtocolError


def dev_dep_msg_out_header(btag: int, size: int, *, eom: bool) -> bytes:
    """The 12-byte DEV_DEP_MSG_OUT header for a transfer of ``size`` bytes (USBTMC 1.0 Table 3)."""
    if size == 0:
        raise ValueError("a DEV_DEP_MSG_OUT transfer carries at least one byte")
    return _header(MsgId.DEV_DEP_MSG_OUT, btag, size, TransferAttr.EOM if eom else 0)


def pack_dev_dep_msg_out(btag: int, payload: bytes, *, eom: bool) -> bytes:
    """A whole DEV_DEP_MSG_OUT transfer: header, ``payload`` and alignment bytes."""
    return b"".join(
        (dev_dep_msg_out_header(btag, len(payload), eom=eom), payload, bytes(padding_bytes(len(payload))))
    )


def pack_request_dev_dep_msg_in(btag: int, max_bytes: int, term_char: int | None = None) -> bytes:
    """REQUEST_DEV_DEP_MSG_IN asking for at most ``max_bytes`` (USBTMC 1.0 Table 4).

    ``term_char`` enables the TermChar only when the device's capabilities allow it;
    the caller decides that.
    """
    if max_bytes <= 0:
        raise ValueError("a read must ask for at least one byte")
    if term_char is None:
        return _header(MsgId.REQUEST_DEV_DEP_MSG_IN, btag, max_bytes)
    if not 0 <= term_char <= 255:
        raise ValueError(f"TermChar must be a byte, got {term_char}")
    return _header(MsgId.REQUEST_DEV_DEP_MSG_IN, btag, max_bytes, TransferAttr.TERM_CHAR, term_char)


def pack_vendor_specific_out(btag: int, payload: bytes) -> bytes:
    """A VENDOR_SPECIFIC_OUT transfer (USBTMC 1.0 Table 5)."""
    if not payload:
        raise ValueError("a VENDOR_SPECIFIC_OUT transfer carries at least one byte")
    return b"".join(
        (_header(MsgId.VENDOR_SPECIFIC_OUT, btag, len(payload)), payload, bytes(padding_bytes(len(payload))))
    )


def pack_request_vendor_specific_in(btag: int, max_bytes: int) -> bytes:
    """REQUEST_VENDOR_SPECIFIC_IN asking for at most ``max_bytes`` (USBTMC 1.0 Table 6)."""
    if max_bytes <= 0:
        raise ValueError("a read must ask for at least one byte")
    return _header(MsgId.REQUEST_VENDOR_SPECIFIC_IN, btag, max_bytes)


def pack_trigger(btag: int) -> bytes:
    """The USB488 TRIGGER message: a header with the rest reserved (USB488 1.0 Table 2)."""
    return _header(MsgId.TRIGGER, btag, 0)


@dataclass(frozen=True)
class InHeader:
    """A decoded Bulk-IN header (USBTMC 1.0 Tables 8-10)."""

    msg_id: int
    btag: int
    transfer_size: int
    eom: bool
    ended_on_term_char: bool


def parse_in_header(
    data: bytes, *, expected_btag: int | None = None, expected_msg_id: int | None = MsgId.DEV_DEP_MSG_IN
) -> InHeader:
    """Decode the first 12 bytes of a Bulk-IN transfer, checking MsgID, bTag and bTagInverse.

    ``None`` for an expectation skips that check (for devices with known quirks).

    Raises :class:`ProtocolError` naming what was wrong; never anything else.
    """
    if len(data) < HEADER_BYTES:
        raise ProtocolError(
            f"Bulk-IN transfer of {len(data)} bytes is shorter than the {HEADER_BYTES}-byte USBTMC header"
        )
    raw = unpack_header(data)
    msg_id, btag, btag_inv, size, attrs = raw.msg_id, raw.btag, raw.btag_inverse, raw.transfer_size, raw.attributes
    if btag ^ 0xFF != btag_inv:
        raise ProtocolError(f"Bulk-IN header bTagInverse 0x{btag_inv:02X} does not invert bTag 0x{btag:02X}")
    if expected_msg_id is not None and msg_id != expected_msg_id:
        raise ProtocolError(f"Bulk-IN header has MsgID {msg_id}, expected {int(expected_msg_id)}")
    if expected_btag is not None and btag != expected_btag:
        raise ProtocolError(f"Bulk-IN header echoes bTag {btag}, the request used {expected_btag}")
    return InHeader(
        msg_id=msg_id,
        btag=btag,
        transfer_size=size,
        eom=bool(attrs & TransferAttr.EOM),
        ended_on_term_char=bool(attrs & TransferAttr.TERM_CHAR),
    )


def status_of(reply: bytes, request_name: str) -> Status | int:
    """The USBTMC_status byte of a control reply (USBTMC 1.0 Table 16)."""
    if not reply:
        raise ProtocolError(f"{request_name}: the device sent an empty control reply")
    try:
        return Status(reply[0])
    except ValueError:
        return reply[0]


@dataclass(frozen=True)
class Capabilities:
    """GET_CAPABILITIES decoded (USBTMC 1.0 Table 37, USB488 1.0 Table 8)."""

    bcd_usbtmc: int
    indicator_pulse: bool
    talk_only: bool
    listen_only: bool
    term_char: bool
    is_usb488: bool = False
    bcd_usb488: int = 0
    usb488_2: bool = False  # accepts the USB488.2 command set (*IDN? etc.)
    ren_control: bool = False  # accepts REN_CONTROL, GO_TO_LOCAL, LOCAL_LOCKOUT
    trigger: bool = False  # accepts the TRIGGER message
    scpi: bool = False
    sr1: bool = False  # service request capable (has an interrupt-IN endpoint)
    rl1: bool = False  # full remote/local capability
    dt1: bool = False  # device trigger capability

    def describe(self) -> list[tuple[str, bool]]:
        """Human labels and values, in the order the spec lists them."""
        rows = [
            ("TermChar", self.term_char),
            ("Indicator pulse", self.indicator_pulse),
            ("Talk-only", self.talk_only),
            ("Listen-only", self.listen_only),
        ]
        if self.is_usb488:
            rows += [
                ("USB488.2", self.usb488_2),
                ("TRIGGER", self.trigger),
                ("REN/GTL/LLO", self.ren_control),
                ("SCPI", self.scpi),
                ("SR1 (service request)", self.sr1),
                ("RL1 (remote/local)", self.rl1),
                ("DT1 (device trigger)", self.dt1),
            ]
        return rows

    @staticmethod
    def version(bcd: int) -> str:
        """A BCD version as text, e.g. 0x0100 -> '1.00'."""
        return f"{bcd >> 8:x}.{bcd & 0xFF:02x}"


def parse_capabilities(reply: bytes, *, usb488: bool) -> Capabilities:
    """Decode a GET_CAPABILITIES reply; ``usb488`` when the interface protocol is USB488."""
    status = status_of(reply, "GET_CAPABILITIES")
    if status != Status.SUCCESS:
        raise ProtocolError(f"GET_CAPABILITIES answered status 0x{int(status):02X}")
    if len(reply) < CAPABILITIES_BYTES if usb488 else len(reply) < 6:
        raise ProtocolError(f"GET_CAPABILITIES reply has {len(reply)} bytes, expected {CAPABILITIES_BYTES}")
    reply = bytes(reply) + bytes(max(0, CAPABILITIES_BYTES - len(reply)))
    intf, dev = reply[spec.CAP_INTERFACE], reply[spec.CAP_DEVICE]
    caps = dict(
        bcd_usbtmc=int.from_bytes(reply[spec.CAP_BCD_USBTMC:spec.CAP_BCD_USBTMC + 2], "little"),
        indicator_pulse=bool(intf & 0x04),
        talk_only=bool(intf & 0x02),
        listen_only=bool(intf & 0x01),
        term_char=bool(dev & 0x01),
    )
    if usb488:
        i488, d488 = reply[spec.CAP_USB488_INTERFACE], reply[spec.CAP_USB488_DEVICE]
        caps.update(
            is_usb488=True,
            bcd_usb488=int.from_bytes(reply[spec.CAP_BCD_USB488:spec.CAP_BCD_USB488 + 2], "little"),
            usb488_2=bool(i488 & 0x04),
            ren_control=bool(i488 & 0x02),
            trigger=bool(i488 & 0x01),
            scpi=bool(d488 & 0x08),
            sr1=bool(d488 & 0x04),
            rl1=bool(d488 & 0x02),
            dt1=bool(d488 & 0x01),
        )
    return Capabilities(**caps)

__all__ = ["MAX_TRANSFER_SIZE", "Capabilities", "InHeader", "dev_dep_msg_out_header", "next_btag", "pack_dev_dep_msg_out",
           "pack_request_dev_dep_msg_in", "pack_request_vendor_specific_in", "pack_trigger", "pack_vendor_specific_out",
           "padding_bytes", "parse_capabilities", "parse_in_header", "status_of"]
