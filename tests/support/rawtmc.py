"""Hand-built USBTMC frames over pyusb, for the virtual instrument tests.

Packed here on purpose rather than with app.usbtmc: these tests check the device
models against the specifications independently of the host core.
"""

from __future__ import annotations

import struct

import usb.core
import usb.util

REQ_IN_CLASS_INTERFACE = 0xA1
REQ_IN_CLASS_ENDPOINT = 0xA2


def open_pyusb(backend, pid):
    dev = usb.core.find(backend=backend, idVendor=0x1209, idProduct=pid)
    assert dev is not None
    dev.set_configuration()
    usb.util.claim_interface(dev, 0)
    return dev


class RawTmc:
    """USBTMC by hand over a pyusb device: frames packed here, not by app.usbtmc."""

    def __init__(self, dev, bulk_out=0x01, bulk_in=0x82, interrupt_in=0x83, timeout_ms=200):
        self.dev = dev
        self.bulk_out = bulk_out
        self.bulk_in = bulk_in
        self.interrupt_in = interrupt_in
        self.timeout_ms = timeout_ms
        self.btag = 0

    def next_btag(self) -> int:
        self.btag = self.btag % 255 + 1
        return self.btag

    @staticmethod
    def out_frame(btag: int, payload: bytes, eom: bool = True, msg_id: int = 1) -> bytes:
        header = struct.pack("<BBBBIB3x", msg_id, btag, ~btag & 0xFF, 0, len(payload), int(eom))
        return header + payload + b"\x00" * (-len(payload) % 4)

    @staticmethod
    def request_frame(btag: int, max_bytes: int, term_char: int | None = None, msg_id: int = 2) -> bytes:
        attributes = 0x02 if term_char is not None else 0
        return struct.pack("<BBBBIBBxx", msg_id, btag, ~btag & 0xFF, 0, max_bytes, attributes, term_char or 0)

    def write(self, message: bytes | str, eom: bool = True) -> int:
        payload = message.encode() if isinstance(message, str) else message
        btag = self.next_btag()
        self.dev.write(self.bulk_out, self.out_frame(btag, payload, eom), timeout=self.timeout_ms)
        return btag

    def request(self, max_bytes: int = 1024, term_char: int | None = None) -> int:
        btag = self.next_btag()
        self.dev.write(self.bulk_out, self.request_frame(btag, max_bytes, term_char), timeout=self.timeout_ms)
        return btag

    def read_transfer(self, max_bytes: int = 1024, term_char: int | None = None, buffer_bytes: int | None = None):
        """One REQUEST_DEV_DEP_MSG_IN and its DEV_DEP_MSG_IN: (data, attributes, btag)."""
        btag = self.request(max_bytes, term_char)
        raw = self.dev.read(self.bulk_in, buffer_bytes or max_bytes + 16, timeout=self.timeout_ms).tobytes()
        msg_id, rtag, rinv, _, size, attributes = struct.unpack_from("<BBBBIB", raw)
        assert (msg_id, rtag, rinv) == (2, btag, ~btag & 0xFF)
        assert len(raw) % 4 == 0 and len(raw) >= 12 + size
        return raw[12:12 + size], attributes, btag

    def read(self, max_bytes: int = 1024) -> bytes:
        data = b""
        while True:
            chunk, attributes, _ = self.read_transfer(max_bytes)
            data += chunk
            if attributes & 0x01:
                return data

    def query(self, message: str) -> str:
        self.write(message + "\n")
        return self.read().decode()

    def control(self, request: int, value: int = 0, length: int = 1, *, endpoint: int | None = None) -> bytes:
        if endpoint is None:
            return self.dev.ctrl_transfer(REQ_IN_CLASS_INTERFACE, request, value, 0, length).tobytes()
        return self.dev.ctrl_transfer(REQ_IN_CLASS_ENDPOINT, request, value, endpoint, length).tobytes()

    def interrupt(self, length: int = 8, timeout_ms: int | None = None) -> bytes:
        return self.dev.read(self.interrupt_in, length, timeout=timeout_ms or self.timeout_ms).tobytes()

    def clear_halt(self, ep: int) -> None:
        self.dev.clear_halt(ep)
