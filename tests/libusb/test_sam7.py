"""The SAM7 command set through app.usbtmc and the real libusb (default backend).

The same script runs in-process on the virtual bus; over libusb it must give the
same replies, status bytes and SRQ, so the umockdev path adds nothing and loses nothing.
"""

from pathlib import Path

import pytest
from support import load_script

import app.sim

run_script = load_script(Path(__file__).with_name("libusb_host.py")).run_script

pytestmark = pytest.mark.libusb

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"

SCRIPT = [
    "*RST", "*CLS", "*IDN?", "*ESR?", "*STB?", "@read_stb",
    "*ESE 60", "*ESE?", "*ESE #H24", "*ESE?",
    "COUNT:RESET", "COUNT:READ?",
    "INDICATOR 1", "INDICATOR?", "INDICATOR 0", "INDICATOR?",
    "PARAM:SET 123,-4567", "PARAM:ENQ?", "PARAM:SET 20000,1", "*ESR?", "PARAM:ENQ?", "PARAM:SET 1", "*ESR?",
    "BUSY?", "NOPE", "*ESR?",
    "@indicator_pulse", "@remote", "@lockout", "@local",
    "*SRE 32", "*ESE 32", "NOPE", "@wait_srq", "*ESR?", "@read_stb",
    "@clear", "*STB?", "*IDN?",
]


def test_the_command_set_answers_over_libusb_exactly_as_in_process(bus, host):
    over_libusb = host.run(bus, "sam7", {"resource": SAM7, "script": SCRIPT})["replies"]
    in_process = run_script(SAM7, SCRIPT, backend=app.sim.backend())
    assert over_libusb == in_process
    assert over_libusb["02 *IDN?"].startswith("XYZ Company Ltd, SAM7-EK")
    assert over_libusb["33 @wait_srq"] & 0x40, "the SRQ arrived on interrupt-IN with RQS set"


def test_a_switch_pressed_on_the_bus_is_counted(bus, host):
    sam7 = next(d for d in bus.devices if d["kind"] == "sam7")
    bus.call(sam7["key"], "press_sw1")  # the glitch filter needs 30 ms; the host starts later than that
    replies = host.run(bus, "sam7", {"resource": SAM7, "script": ["COUNT:READ?"]})["replies"]
    assert replies["00 COUNT:READ?"] == "1"
