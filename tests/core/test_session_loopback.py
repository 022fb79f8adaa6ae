"""Large messages, transfer splitting, aborts and timeouts against the virtual loopback instrument."""

import threading

import pytest

from app.sim.device import NoData
from app.sim.scpi_device import VirtualLoopback
from app.usbtmc import AbortedError, Instrument, Quirks, TmcTimeoutError

MIB = 1 << 20


def pattern(n: int) -> bytes:
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(n)) if n < 4096 else (bytes(range(256)) * (n // 256 + 1))[:n]


@pytest.mark.parametrize(
    "size",
    [
        0, 1, 37,
        4096 - 12 - 6,  # reply (header + "#44078" + data + NL) fills the first 4096-byte read exactly
        4096 - 12 - 5,
        512 * 9 - 12 - 6,  # a whole number of 512-byte packets: the device ends it with a ZLP
        65536, 3 * MIB + 7,
    ],
)
def test_block_round_trip_byte_for_byte(loopback, size):
    data = pattern(size)
    loopback.write_block("MEM:DATA ", data)
    assert loopback.query("MEM:DATA:LEN?") == str(size)
    loopback.write("MEM:DATA?")
    assert loopback.read_block() == data
    assert loopback.query("SYST:ERR?").startswith("0,")


def test_long_write_is_split_into_large_transfers_with_eom_on_the_last(loopback, transfer_log):
    loopback.write_block("MEM:DATA ", bytes(3 * MIB))
    sizes = transfer_log.message_transfers()
    assert [eom for _, eom in sizes] == [False, False, False, True]
    assert [n for n, _ in sizes[:3]] == [MIB, MIB, MIB]
    assert sum(n for n, _ in sizes) == len("MEM:DATA #7") + 7 + 3 * MIB + 1


def test_transfer_size_follows_the_quirks(sim, transfer_log):
    resource = "USB0::0x1209::0x0002::LOOP-0001::INSTR"
    with Instrument(resource, backend=sim, quirks=Quirks(max_out_transfer_bytes=4096)) as inst:
        transfer_log.writes.clear()
        inst.write_block("MEM:DATA ", bytes(10_000))
        message = len("MEM:DATA #510000") + 10_000 + 1
        assert [n for n, _ in transfer_log.message_transfers()] == [4096, 4096, message - 8192]
        assert inst.query("MEM:DATA:LEN?") == "10000"


def test_big_reply_is_read_with_buffers_sized_from_transfer_size(loopback, transfer_log):
    loopback.write_block("MEM:DATA ", bytes(2 * MIB))
    transfer_log.read_sizes.clear()
    loopback.write("MEM:DATA?")
    assert len(loopback.read_block()) == 2 * MIB
    # Each transfer: a small first read, then one read for the rest of that transfer.
    assert transfer_log.read_sizes[0] <= 4096
    assert len(transfer_log.read_sizes) <= 8


def test_abort_between_transfers_leaves_the_session_usable(loopback):
    abort = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        abort.set()  # the user presses Cancel after the first transfer

    with pytest.raises(AbortedError, match="aborted by the user"):
        loopback.write_block("MEM:DATA ", bytes(4 * MIB), abort=abort, progress=progress)
    assert seen == [MIB]
    assert loopback.query("*IDN?").startswith("TMC Console,Virtual Loopback")
    assert loopback.query("MEM:DATA:LEN?") == "0"  # the partial message was discarded


def test_read_timeout_is_recovered_by_abort_bulk_in(loopback):
    loopback.timeout_ms = 150
    loopback.write("SYST:DEL 2000")
    loopback.write("*IDN?")
    with pytest.raises(TmcTimeoutError) as info:
        loopback.read()
    assert "aborted Bulk-IN" in info.value.recovery
    loopback.timeout_ms = 2000
    assert loopback.query("*IDN?").startswith("TMC Console")


def test_a_device_that_stops_accepting_data_times_out_with_a_clear_message(sim, loopback):
    device = sim.bus.find(kind=VirtualLoopback)

    def nak(direction, data):
        raise NoData("input buffer full")

    loopback.timeout_ms = 100
    device.faults[loopback._ep.bulk_out] = nak
    with pytest.raises(TmcTimeoutError) as info:
        loopback.write("*CLS")
    assert "did not accept" in str(info.value)
    del device.faults[loopback._ep.bulk_out]
    loopback.timeout_ms = 2000
    assert loopback.query("*IDN?").startswith("TMC Console")


def test_read_raw_stops_at_max_bytes(loopback):
    loopback.write_block("MEM:DATA ", b"x" * 100)
    loopback.write("MEM:DATA?")
    assert loopback.read_raw(10) == b"#3100xxxxx"
    loopback.clear()
    assert loopback.query("*IDN?").startswith("TMC Console")


def test_term_char_ends_a_read_when_the_device_supports_it(loopback):
    if not loopback.capabilities.term_char:
        pytest.skip("the loopback does not claim TermChar")
    loopback.term_char = ord(",")
    loopback.write("*IDN?")
    first = loopback.read_raw()
    assert first.endswith(b",") and first.startswith(b"TMC Console")
    loopback.term_char = None
    loopback.clear()


def test_srq_from_opc(loopback):
    loopback.write("*CLS;*ESE 1;*SRE 32")
    loopback.write("*OPC")
    stb = loopback.wait_srq(1000)
    assert stb & 0x40 and stb & 0x20


class VendorEcho(VirtualLoopback):
    """A loopback that also accepts vendor-specific messages and echoes them back."""

    vendor_specific = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.vendor_data = bytearray()

    def on_vendor_data(self, chunk, last):
        self.vendor_data += chunk

    def vendor_response(self, max_bytes):
        data, self.vendor_data = bytes(self.vendor_data[:max_bytes]), self.vendor_data[max_bytes:]
        return data or None


def test_vendor_specific_messages_round_trip(sim):
    sim.bus.plug(VendorEcho(serial="VENDOR-1"))
    with Instrument("USB0::0x1209::0x0002::VENDOR-1::INSTR", backend=sim, timeout_ms=500) as inst:
        inst.write_vendor(b"\x01\x02\x03 vendor bytes")
        assert inst.read_vendor(64) == b"\x01\x02\x03 vendor bytes"


class CountingTriggers(VirtualLoopback):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.triggers = 0

    def trigger(self):
        self.triggers += 1


def test_usb488_trigger_message_reaches_the_device(sim):
    device = CountingTriggers(serial="TRIG-1")
    sim.bus.plug(device)
    with Instrument("USB0::0x1209::0x0002::TRIG-1::INSTR", backend=sim, timeout_ms=500) as inst:
        assert inst.capabilities.trigger
        inst.trigger()
        inst.trigger()
        assert inst.query("*OPC?") == "1"  # the triggers were processed in order before this query
        assert device.triggers == 2
