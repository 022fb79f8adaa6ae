"""The packet model of IN endpoints: short packets, ZLPs, babble and partial host transfers."""

import threading
import time

import pytest

from app.sim.device import BulkInPipe, NoData, Overflow, Stall


def test_a_transfer_is_cut_into_packets_and_ends_with_a_short_packet():
    pipe = BulkInPipe(0x82, 64)
    pipe.send(bytes(range(100)))
    assert pipe.take(512) == bytes(range(100))  # 64 + 36: the short packet ends the host transfer
    with pytest.raises(NoData):
        pipe.take(512)


def test_a_transfer_of_whole_packets_ends_with_a_zlp():
    pipe = BulkInPipe(0x82, 64)
    pipe.send(b"a" * 128)
    pipe.send(b"b" * 10)
    assert pipe.take(1024) == b"a" * 128  # the ZLP ends it; the next transfer is separate
    assert pipe.take(1024) == b"b" * 10


def test_a_full_host_buffer_completes_and_leaves_the_zlp_for_the_next_read():
    pipe = BulkInPipe(0x82, 64)
    pipe.send(b"x" * 128)
    assert pipe.take(128) == b"x" * 128
    assert pipe.take(64) == b""  # the ZLP, as a real bus delivers it
    assert not pipe.has_data


def test_a_device_without_zlps_runs_transfers_together():
    pipe = BulkInPipe(0x82, 64, zlp=False)
    pipe.send(b"x" * 64)
    pipe.send(b"y" * 3)
    assert pipe.take(1024) == b"x" * 64 + b"y" * 3


def test_a_packet_bigger_than_the_room_left_is_babble():
    pipe = BulkInPipe(0x82, 64)
    pipe.send(b"z" * 100)
    with pytest.raises(Overflow) as babble:
        pipe.take(50)  # the first packet is 64 bytes
    assert babble.value.received == b"z" * 50
    assert pipe.take(64) == b"z" * 36  # the babbling packet is gone; the transfer goes on
    pipe.send(b"y" * 100)
    assert pipe.take(64) == b"y" * 64
    with pytest.raises(Overflow) as short_babble:
        pipe.take(30)  # the 36-byte short packet does not fit either
    assert short_babble.value.received == b"y" * 30
    assert not pipe.has_data


def test_partial_host_transfers_continue_and_can_be_cancelled():
    pipe = BulkInPipe(0x82, 8)
    pipe.send(b"12345678" + b"abc", end=False)  # one full packet ready, the rest still filling
    with pytest.raises(NoData):
        pipe.take(64)
    assert pipe.transfer_in_progress == 8
    pipe.send(b"de")
    assert pipe.take(64) == b"12345678abcde"
    pipe.send(b"12345678", end=False)
    with pytest.raises(NoData):
        pipe.take(64)
    assert pipe.cancel() == b"12345678"  # what libusb reports along with its timeout
    pipe.send(b"9")
    assert pipe.take(64) == b"9"


def test_send_short_packet_ends_a_transfer_even_without_zlps():
    pipe = BulkInPipe(0x82, 4, zlp=False)
    pipe.send(b"abcd", end=False)
    pipe.send_short_packet()
    assert pipe.take(64) == b"abcd"
    pipe.send_short_packet()
    assert pipe.take(64) == b""
    assert not pipe.has_data


def test_a_halted_pipe_stalls():
    pipe = BulkInPipe(0x82, 64)
    pipe.send(b"x")
    pipe.halted = True
    with pytest.raises(Stall):
        pipe.take(64)


def test_multi_mebibyte_transfers_are_cheap():
    pipe = BulkInPipe(0x82, 512)
    payload = bytes(range(256)) * (32 * 1024)  # 8 MiB
    start = time.perf_counter()
    pipe.send(payload)
    received = b"".join(pipe.take(1024 * 1024) for _ in range(8))
    received += pipe.take(1024)  # the closing ZLP
    assert received == payload
    assert time.perf_counter() - start < 1.0
    assert pipe.delivered_bytes == len(payload)


def test_take_blocking_waits_for_data_on_the_condition():
    pipe = BulkInPipe(0x82, 64)
    cond = threading.Condition()
    result = []
    thread = threading.Thread(target=lambda: result.append(pipe.take_blocking(64, 5.0, cond)))
    thread.start()
    with cond:
        pipe.send(b"late")
        cond.notify_all()
    thread.join(5)
    assert result == [b"late"]
    with pytest.raises(NoData):
        pipe.take_blocking(64, 0.01, cond)
