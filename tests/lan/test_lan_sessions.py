"""LAN sessions on the virtual LAN instruments: the session interface the console and the CLI use."""

from __future__ import annotations

import threading

import pytest

from app.lan import open_session
from app.lan.hislip import HislipSession
from app.lan.raw import RawSocketSession
from app.lan.vxi11 import Vxi11Session
from app.usbtmc.errors import AbortedError, NotSupportedError, TmcTimeoutError

PROTOCOLS = ["SOCKET", "VXI-11", "HiSLIP"]


def resource(lan, protocol: str, label: str = "Loopback") -> str:
    """The resource string ``lan`` (app.sim.lan.serve()) printed for one instrument and protocol."""
    return next(e.resource for e in lan.resources if e.protocol == protocol and label in e.label)
SESSION_TYPES = {"SOCKET": RawSocketSession, "VXI-11": Vxi11Session, "HiSLIP": HislipSession}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_open_session_picks_the_protocol_and_gets_the_sam7_idn(lan, protocol):
    with open_session(resource(lan, protocol, "SAM7"), timeout_ms=3000) as session:
        assert type(session) is SESSION_TYPES[protocol]
        assert session.query("*IDN?").startswith("XYZ Company Ltd, SAM7-EK")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_multi_mib_block_with_every_byte_value_round_trips(lan, protocol):
    payload = bytes(range(256)) * 16384 + b"\n\n"  # 4 MiB and two newlines at the end
    done = []
    with open_session(resource(lan, protocol), timeout_ms=10000) as session:
        session.write_block("MEM:DATA ", payload, progress=lambda d, t: done.append((d, t)))
        assert session.query_block("MEM:DATA?") == payload
    assert done[-1] == (len(payload) + len("MEM:DATA ") + 9 + 1,) * 2  # #7<len>, the payload, "\n"


@pytest.mark.parametrize("protocol", ["VXI-11", "HiSLIP"])
def test_the_protocols_own_status_read_sees_mav_and_device_clear_drops_the_reply(lan, protocol):
    with open_session(resource(lan, protocol), timeout_ms=3000) as session:
        session.write("*IDN?")
        assert session.read_stb() & 0x10  # MAV, read without touching the output queue
        session.clear()
        assert not session.read_stb() & 0x10
        assert "Loopback" in session.query("*IDN?")  # the answer to this query, not the cleared one


def test_a_raw_socket_reads_the_status_byte_with_stb_query_and_has_no_clear_or_srq(lan):
    with open_session(resource(lan, "SOCKET"), timeout_ms=3000) as session:
        session.write("*ESE 1;*OPC")
        assert session.read_stb() & 0x20  # *STB? answered: ESB
        assert not session.has_interrupt_in
        assert session.poll_srq() == []
        with pytest.raises(NotSupportedError, match="no service request"):
            session.wait_srq(100)
        with pytest.raises(NotSupportedError, match="no device clear") as info:
            session.clear()
        assert "reopened" in info.value.recovery
        assert "Loopback" in session.query("*IDN?")  # still usable after the reconnect


@pytest.mark.parametrize("protocol", ["VXI-11", "HiSLIP"])
def test_service_requests_arrive_with_their_status_byte(lan, protocol):
    with open_session(resource(lan, protocol), timeout_ms=3000) as session:
        assert session.has_interrupt_in
        assert session.poll_srq() == []
        session.write("*CLS;*ESE 1;*SRE 32;*OPC")  # OPC -> ESB -> SRQ (488.2 11.3.2)
        stb = session.wait_srq(3000)
        assert stb & 0x60 == 0x60  # RQS and ESB


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_delayed_answer_times_out_with_a_recovery_that_keeps_the_session(lan, protocol):
    with open_session(resource(lan, protocol), timeout_ms=300) as session:
        session.write("SYST:DEL 2000")
        session.write("*IDN?")
        with pytest.raises(TmcTimeoutError) as info:
            session.read_raw()
        assert info.value.usable is True, info.value.recovery
        session.timeout_ms = 3000
        session.write("SYST:DEL 0")
        assert "Loopback" in session.query("*IDN?")  # not the late answer of the timed-out query


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_abort_stops_an_upload_between_slices(lan, protocol):
    abort = threading.Event()

    def progress(done, total):
        if done >= 1 << 20:
            abort.set()

    payload = bytes(64 << 20)
    with open_session(resource(lan, protocol), timeout_ms=10000) as session:
        with pytest.raises(AbortedError) as info:
            session.write_block("MEM:DATA ", payload, abort=abort, progress=progress)
        assert info.value.transferred_bytes < len(payload)
        assert info.value.usable is True, info.value.recovery
        assert "Loopback" in session.query("*IDN?")


@pytest.mark.parametrize("protocol", ["VXI-11", "HiSLIP"])
def test_trigger_reaches_the_instrument(lan, protocol):
    device = next(e.device for e in lan.resources if "Loopback" in e.label)
    with open_session(resource(lan, protocol), timeout_ms=3000) as session:
        before = len(device.executed)
        session.trigger()
        assert "Loopback" in session.query("*IDN?")
    assert len(device.executed) == before + 1  # the *IDN? only: a trigger is not a message
