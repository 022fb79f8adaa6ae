"""Raw USBTMC over the real libusb (pyusb on the system libusb-1.0), for the fault tests.

    python tests/libusb/raw_fault_host.py SCENARIO

Run under the umockdev preload (tests/libusb/test_faults_libusb.py starts it). Frames are
packed by hand, not by app.usbtmc: these scenarios check the device side and its adapter.
Prints one JSON object with what happened.
"""

from __future__ import annotations

import ctypes.util
import json
import struct
import sys

import usb.backend.libusb1
import usb.core
import usb.util

BULK_OUT, BULK_IN = 0x01, 0x82


class Raw:
    def __init__(self) -> None:
        backend = usb.backend.libusb1.get_backend(find_library=lambda _name: ctypes.util.find_library("usb-1.0"))
        self.dev = usb.core.find(backend=backend, idVendor=0x1209, idProduct=0x0002)
        assert self.dev is not None, "no virtual loopback on the bus"
        usb.util.claim_interface(self.dev, 0)
        self.btag = 0

    def next_btag(self) -> int:
        self.btag = self.btag % 127 + 1
        return self.btag

    def write(self, payload: bytes) -> None:
        btag = self.next_btag()
        frame = struct.pack("<BBBBIB3x", 1, btag, ~btag & 0xFF, 0, len(payload), 1) + payload
        self.dev.write(BULK_OUT, frame + bytes(-len(payload) % 4), timeout=500)

    def read(self, timeout_ms: int = 500) -> tuple[int, int, bytes]:
        btag = self.next_btag()
        self.dev.write(BULK_OUT, struct.pack("<BBBBIB3x", 2, btag, ~btag & 0xFF, 0, 1024, 0), timeout=500)
        raw = self.dev.read(BULK_IN, 2048, timeout=timeout_ms).tobytes()
        size = struct.unpack_from("<I", raw, 4)[0]
        return btag, raw[1], raw[12:12 + size]

    def query(self, text: str) -> str:
        self.write(text.encode())
        return self.read()[2].decode()


def model_crash() -> dict:
    raw = Raw()
    result = {}
    try:
        raw.write(b"*IDN?\n")
        result["first"] = "ok"
    except usb.core.USBError as exc:
        result["first"] = exc.errno
    raw.dev.clear_halt(BULK_OUT)
    result["after_clear"] = raw.query("*IDN?\n")
    return result


def toggles() -> dict:
    raw = Raw()
    result = {}
    raw.write(b"*CLS\n")  # one packet: the host's next Bulk-OUT toggle is DATA1
    # CLEAR_FEATURE(ENDPOINT_HALT) built by hand: only the device goes back to DATA0.
    raw.dev.ctrl_transfer(0x02, 0x01, 0, BULK_OUT, None)
    try:
        result["after_hand_built_clear"] = raw.query("*IDN?\n")
    except usb.core.USBTimeoutError:
        result["after_hand_built_clear"] = "timeout"
    raw.write(b"*CLS\n")
    raw.dev.clear_halt(BULK_OUT)  # libusb's clear halt (USBDEVFS_CLEAR_HALT) resets both sides
    result["after_libusb_clear"] = raw.query("*IDN?\n")
    return result


def wrong_btag() -> dict:
    raw = Raw()
    raw.write(b"*IDN?\n")
    sent, echoed, data = raw.read()
    return {"sent": sent, "echoed": echoed, "data": data.decode()}


def unplug() -> dict:
    raw = Raw()
    try:
        raw.write(b"*IDN?\n")
        return {"write": "ok"}
    except usb.core.USBError as exc:
        return {"write": exc.errno}


if __name__ == "__main__":
    scenarios = {"model_crash": model_crash, "toggles": toggles, "wrong_btag": wrong_btag, "unplug": unplug}
    print(json.dumps(scenarios[sys.argv[1]]()))
