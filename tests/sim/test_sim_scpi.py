"""The SCPI instrument base and the virtual loopback."""

import time

import pytest
import usb.core
from support.rawtmc import RawTmc, open_pyusb

from app.sim import MonotonicClock
from app.sim.scpi_device import (
    Param,
    ScpiError,
    ScpiInstrument,
    VirtualLoopback,
    command,
    definite_block,
    parse_program_message,
)


def errors(scpi) -> list[str]:
    found = []
    while True:
        reply = scpi.query("SYST:ERR?").strip()
        if reply.startswith("0,"):
            assert reply == '0,"No error"'
            return found
        found.append(reply)


def test_idn_and_the_common_queries(scpi):
    assert scpi.query("*IDN?") == "TMC Console,Virtual Loopback,LOOP-0001,1.0\n"
    assert scpi.query("*ESR?") == "128\n"  # PON
    assert scpi.query("*OPC?;*TST?") == "1;0\n"
    scpi.write("*OPC\n")
    assert scpi.query("*ESR?") == "1\n"
    scpi.write("*ESE #H20;*SRE 48\n")
    assert scpi.query("*ESE?;*SRE?") == "32;48\n"


def test_short_and_long_forms_and_optional_nodes(scpi):
    scpi.write("memory:data #15hello\n")
    assert scpi.query("MEM:DATA:LEN?") == "5\n"
    assert scpi.query("MEMory:DATA:LENgth?") == "5\n"
    assert scpi.query("SYSTEM:ERROR:NEXT?") == '0,"No error"\n'
    scpi.write("MEMO:DATA?\n")  # neither the short nor the long form
    assert errors(scpi) == ['-113,"Undefined header;MEMO:DATA?"']


def test_compound_messages_keep_the_header_path(scpi):
    # After MEM:DATA:LEN? the path is MEM:DATA:, and common commands leave it alone.
    assert scpi.query("MEM:DATA #13abc;DATA:LEN?;*IDN?;LEN?") == (
        "3;TMC Console,Virtual Loopback,LOOP-0001,1.0;3\n")
    assert scpi.query("MEM:DATA #11x;DATA?") == "#11x\n"
    assert scpi.query(":MEM:DATA #12yz;:MEM:DATA?") == "#12yz\n"


def test_blocks_may_hold_any_byte(scpi, loopback):
    payload = b"a;b,c\nd#0\x00\xff"
    scpi.write(b"MEM:DATA " + definite_block(payload) + b"\n")
    assert loopback.memory == payload
    scpi.write(b"MEM:DATA #0" + payload + b"\n")  # indefinite: to the end of the message
    assert loopback.memory == payload


def test_errors_go_to_the_queue_and_the_status_byte(scpi):
    scpi.query("*ESR?")
    scpi.write("BOGUS:CMD\n")
    scpi.write("*ESE 1.5\n")
    scpi.write("*ESE 300\n")
    scpi.write("MEM:DATA #5123\n")
    assert scpi.query("*STB?") == "4\n"  # EAV
    assert scpi.query("*ESR?") == str(0x20 | 0x10).join(["", "\n"])
    assert [e.split(",")[0] for e in errors(scpi)] == ["-113", "-104", "-222", "-161"]
    assert scpi.query("*STB?") == "0\n"


def test_a_command_error_abandons_the_rest_of_the_message(scpi, loopback):
    scpi.write("NOPE;MEM:DATA #11z\n")
    assert loopback.memory == b""
    assert errors(scpi)[0].startswith("-113")


def test_the_error_queue_overflows_into_350(scpi):
    for _ in range(25):
        scpi.write("X\n")
    found = errors(scpi)
    assert len(found) == 20 and found[-1] == '-350,"Queue overflow"'


def test_interrupted_and_unterminated_queries(scpi):
    scpi.write("*IDN?\n")
    scpi.write("MEM:DATA:LEN?\n")  # the IDN answer is discarded
    assert scpi.read() == b"0\n"
    scpi.timeout_ms = 50
    with pytest.raises(usb.core.USBTimeoutError):
        scpi.read_transfer()  # nothing was asked
    scpi.control(3, scpi.btag, 2, endpoint=0x82)
    scpi.dev.read(0x82, 512, timeout=100)
    scpi.timeout_ms = 2000
    assert [e.split(",")[0] for e in errors(scpi)] == ["-410", "-420"]


def test_rst_clears_the_memory(scpi, loopback):
    scpi.write("MEM:DATA #12ab;*RST\n")
    assert loopback.memory == b""


def test_a_multi_mebibyte_block_round_trip(scpi):
    payload = bytes(range(256)) * (4 * 4096)  # 4 MiB
    message = b"MEM:DATA " + definite_block(payload) + b"\n"
    chunk = 1024 * 1024
    start = time.perf_counter()
    for offset in range(0, len(message), chunk):
        scpi.write(message[offset:offset + chunk], eom=offset + chunk >= len(message))
    scpi.write("MEM:DATA?\n")
    reply = scpi.read(max_bytes=chunk)
    assert reply == definite_block(payload) + b"\n"
    assert time.perf_counter() - start < 5


def test_a_delayed_answer_times_out_and_the_abort_discards_it(scpi, clock):
    scpi.timeout_ms = 50
    scpi.write("SYST:DEL 1000;*IDN?\n")
    with pytest.raises(usb.core.USBTimeoutError):
        scpi.read_transfer()
    assert scpi.control(3, scpi.btag, 2, endpoint=0x82)[0] == 0x01
    assert scpi.dev.read(0x82, 512, timeout=100).tobytes() == b""  # the drain: a ZLP
    assert scpi.control(4, 0, 8, endpoint=0x82)[0] == 0x01
    clock.advance(2)
    assert scpi.query("MEM:DATA:LEN?") == "0\n"  # the next query works at once
    scpi.timeout_ms = 2000
    assert errors(scpi) == []


def test_a_delayed_answer_arrives_when_the_clock_gets_there(scpi, clock):
    scpi.write("SYST:DEL 300;*OPC?\n")
    scpi.timeout_ms = 30
    with pytest.raises(usb.core.USBTimeoutError):
        scpi.read_transfer()
    clock.advance(0.3)
    data = scpi.dev.read(0x82, 512, timeout=100).tobytes()  # the pending request is answered
    assert data[12:14] == b"1\n"


def test_a_delay_in_real_time_wakes_the_blocked_read(bus, backend):
    bus.plug(VirtualLoopback(clock=MonotonicClock(), pid=0x000D, serial="LOOP-RT"))
    tmc = RawTmc(open_pyusb(backend, 0x000D), timeout_ms=2000)
    tmc.write("SYST:DEL 40;*OPC?\n")
    start = time.monotonic()
    assert tmc.read() == b"1\n"
    assert 0.035 <= time.monotonic() - start < 1.0


def test_service_request_on_message_available(scpi):
    scpi.write("*SRE 16\n")
    scpi.write("*IDN?\n")
    assert scpi.interrupt() == bytes([0x81, 0x50])
    assert scpi.control(128, 2, 3) == bytes([1, 2, 0])
    assert scpi.interrupt() == bytes([0x82, 0x50])  # RQS set, then cleared by the poll
    scpi.control(128, 3, 3)
    assert scpi.interrupt() == bytes([0x83, 0x10])


def test_subclasses_add_commands_and_triggers():
    class Meter(ScpiInstrument):
        def __init__(self):
            self.triggered = 0
            super().__init__(vid=0x1209, pid=0x000E, manufacturer="T", model="M", serial="1", version="2")

        def trigger(self):
            self.triggered += 1

        @command("[SENSe]:VOLTage[:DC]:RANGe")
        def _range(self, params):
            self.range = self._one_param(params).as_float()

        @command("[SENSe]:VOLTage[:DC]:RANGe?")
        def _range_query(self, params):
            return f"{self.range:g}"

    from app.sim import VirtualBus

    meter = Meter()
    VirtualBus().plug(meter)
    frame = RawTmc.out_frame(1, b"VOLT:RANG 10;SENS:VOLT:DC:RANG?;*TRG\n")
    meter.bulk_out(0x01, frame)
    meter.bulk_out(0x01, RawTmc.request_frame(2, 64))
    assert meter.bulk_in(0x82, 512)[12:15] == b"10\n" and meter.triggered == 1


def test_program_message_parser_edges():
    assert parse_program_message(b"A 1, 'it''s' ,\"x\";B?;C #14a;\nb\n") == [
        ("A", [Param("1"), Param("it's", quoted=True), Param("x", quoted=True)]),
        ("B?", []),
        ("C", [Param("#14", b"a;\nb")]),
    ]
    for bad in [b"A 1,", b"A 'open", b"A #3", b"A #15abc", b"A\nB"]:
        with pytest.raises(ScpiError):
            parse_program_message(bad)
