"""Golden-byte tests of the pure framing functions (USBTMC 1.0 Tables 1-10)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.usbtmc import framing
from app.usbtmc.errors import ProtocolError


def test_dev_dep_msg_out_golden_bytes():
    frame = framing.pack_dev_dep_msg_out(1, b"*IDN?\n", eom=True)
    assert frame == bytes.fromhex("01 01 FE 00 06 00 00 00 01 00 00 00") + b"*IDN?\n" + b"\x00\x00"
    assert len(frame) % 4 == 0


def test_dev_dep_msg_out_without_eom_and_aligned_payload_has_no_padding():
    frame = framing.pack_dev_dep_msg_out(0x5B, b"ABCD", eom=False)
    assert frame == bytes.fromhex("01 5B A4 00 04 00 00 00 00 00 00 00") + b"ABCD"


def test_request_dev_dep_msg_in_golden_bytes_with_and_without_term_char():
    assert framing.pack_request_dev_dep_msg_in(2, 0x100000) == bytes.fromhex("02 02 FD 00 00 00 10 00 00 00 00 00")
    assert framing.pack_request_dev_dep_msg_in(255, 64, term_char=0x0A) == bytes.fromhex(
        "02 FF 00 00 40 00 00 00 02 0A 00 00"
    )


def test_vendor_specific_and_trigger_golden_bytes():
    assert framing.pack_vendor_specific_out(3, b"xyz") == bytes.fromhex("7E 03 FC 00 03 00 00 00 00 00 00 00") + b"xyz\x00"
    assert framing.pack_request_vendor_specific_in(4, 16) == bytes.fromhex("7F 04 FB 00 10 00 00 00 00 00 00 00")
    assert framing.pack_trigger(9) == bytes.fromhex("80 09 F6 00 00 00 00 00 00 00 00 00")


def test_btag_runs_1_to_255_and_never_0():
    tags = []
    tag = 0
    for _ in range(600):
        tag = framing.next_btag(tag)
        tags.append(tag)
    assert 0 not in tags
    assert min(tags) == 1 and max(tags) == 255
    assert tags[254] == 255 and tags[255] == 1


def test_packers_refuse_btag_0_and_empty_payload():
    with pytest.raises(ValueError):
        framing.pack_dev_dep_msg_out(0, b"x", eom=True)
    with pytest.raises(ValueError):
        framing.pack_dev_dep_msg_out(1, b"", eom=True)
    with pytest.raises(ValueError):
        framing.pack_request_dev_dep_msg_in(1, 0)


def test_parse_in_header_checks_btag_inverse_msgid_and_echo():
    good = bytes.fromhex("02 07 F8 00 05 00 00 00 01 00 00 00") + b"hello"
    header = framing.parse_in_header(good, expected_btag=7)
    assert (header.transfer_size, header.eom, header.ended_on_term_char) == (5, True, False)
    with pytest.raises(ProtocolError, match="bTagInverse"):
        framing.parse_in_header(bytes.fromhex("02 07 F7 00 05 00 00 00 01 00 00 00"))
    with pytest.raises(ProtocolError, match="MsgID 1"):
        framing.parse_in_header(bytes.fromhex("01 07 F8 00 05 00 00 00 01 00 00 00"))
    with pytest.raises(ProtocolError, match="echoes bTag 7"):
        framing.parse_in_header(good, expected_btag=8)
    with pytest.raises(ProtocolError, match="shorter"):
        framing.parse_in_header(b"\x02\x07")


def test_capabilities_decode_usb488():
    reply = bytearray(0x18)
    reply[0] = 1
    reply[2:4] = (0x0100).to_bytes(2, "little")
    reply[4] = 0x04  # indicator pulse
    reply[5] = 0x01  # TermChar
    reply[12:14] = (0x0100).to_bytes(2, "little")
    reply[14] = 0x07  # 488.2, REN/GTL/LLO, TRIGGER
    reply[15] = 0x0F  # SCPI, SR1, RL1, DT1
    caps = framing.parse_capabilities(bytes(reply), usb488=True)
    assert caps.indicator_pulse and caps.term_char and not caps.talk_only and not caps.listen_only
    assert caps.usb488_2 and caps.ren_control and caps.trigger
    assert caps.scpi and caps.sr1 and caps.rl1 and caps.dt1
    assert framing.Capabilities.version(caps.bcd_usb488) == "1.00"
    assert ("SR1 (service request)", True) in caps.describe()


def test_capabilities_decode_plain_usbtmc_ignores_usb488_bytes():
    reply = bytes([1, 0, 0, 1, 0x02, 0x00]) + bytes(6) + bytes([0, 1, 0xFF, 0xFF]) + bytes(8)
    caps = framing.parse_capabilities(reply, usb488=False)
    assert caps.talk_only and not caps.is_usb488 and not caps.scpi


def test_capabilities_with_failed_status_raise():
    with pytest.raises(ProtocolError):
        framing.parse_capabilities(bytes([0x80]) + bytes(0x17), usb488=True)


@given(st.binary(max_size=64))
def test_parse_in_header_never_crashes_on_garbage(data):
    try:
        framing.parse_in_header(data, expected_btag=1)
    except ProtocolError:
        pass


@given(st.binary(max_size=40), st.booleans())
def test_capabilities_parser_only_raises_protocol_error(data, usb488):
    try:
        framing.parse_capabilities(data, usb488=usb488)
    except ProtocolError:
        pass


@given(st.integers(1, 255), st.binary(min_size=1, max_size=300), st.booleans())
def test_out_frames_round_trip_through_the_header_parser(btag, payload, eom):
    frame = framing.pack_dev_dep_msg_out(btag, payload, eom=eom)
    assert len(frame) % 4 == 0
    header = framing.parse_in_header(frame, expected_btag=btag, expected_msg_id=1)
    assert header.transfer_size == len(payload) and header.eom == eom
    assert frame[12 : 12 + len(payload)] == payload
