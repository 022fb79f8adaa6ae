"""The virtual LAN instruments: raw SCPI sockets, VXI-11 and HiSLIP servers, checked from PyVISA (pyvisa-py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.sim.lan import serve
from app.protocol.raw_socket import MessageSplitter


def _bundled_libusb_first() -> None:
    """Importing pyvisa-py loads pyusb's default libusb, and pyusb keeps the first one it loads: load
    the one libusb-package ships before, so later tests (the smoke test checks) still see it."""
    from app.usbtmc import default_backend
    from app.usbtmc.errors import BackendUnavailableError

    try:
        default_backend()
    except BackendUnavailableError:
        pass  # no libusb here: these tests use TCP only


_bundled_libusb_first()
pyvisa = pytest.importorskip("pyvisa")
pytest.importorskip("pyvisa_py")


def resource_manager():
    return pyvisa.ResourceManager("@py")


def _messages(splitter: MessageSplitter, *feeds: bytes) -> list[bytes]:
    done, current = [], b""
    for feed in feeds:
        for chunk, eom in splitter.feed(feed):
            current += chunk
            if eom:
                done.append(current)
                current = b""
    assert current == b"", f"unterminated: {current!r}"
    return done


def test_a_newline_inside_a_definite_block_does_not_end_the_message():
    block = b"\n\n#12\n\"'"
    message = b"MEM:DATA #2%02d" % len(block) + block + b"\n"
    assert _messages(MessageSplitter(), message + b"*IDN?\n") == [message, b"*IDN?\n"]


def test_a_block_header_split_across_receives_is_still_recognised():
    message = b"MEM:DATA #3010" + b"\n" * 10 + b"\n"
    feeds = [message[i:i + 1] for i in range(len(message))]  # one byte per recv
    assert _messages(MessageSplitter(), *feeds) == [message]


def test_quoted_newlines_and_hex_numbers_are_text():
    messages = [b'DISP:TEXT "two\nlines"\n', b"*SRE #H20\n", b"SYST:ERR?\n"]
    assert _messages(MessageSplitter(), b"".join(messages)) == messages


@pytest.fixture
def lan():
    servers = serve()
    yield servers
    servers.close()


@pytest.fixture
def rm():
    manager = resource_manager()
    yield manager
    manager.close()


def _open(rm, entry, timeout_ms=3000):
    inst = rm.open_resource(entry.resource, timeout=timeout_ms)
    if entry.protocol == "SOCKET":
        inst.read_termination = "\n"
        inst.write_termination = "\n"
    return inst


def test_every_printed_resource_answers_pyvisa_with_its_instruments_idn(lan, rm):
    assert {e.protocol for e in lan.resources} == {"SOCKET", "VXI-11", "HiSLIP"}
    assert len(lan.resources) == 9  # three instruments, three protocols each
    for entry in lan.resources:
        inst = _open(rm, entry)
        try:
            idn = inst.query("*IDN?").strip()
        finally:
            inst.close()
        assert idn.split(",")[1].strip() in entry.label, (entry.resource, idn)


@pytest.mark.parametrize("protocol", ["SOCKET", "VXI-11", "HiSLIP"])
def test_a_binary_block_with_every_byte_value_round_trips(lan, rm, protocol):
    entry = next(e for e in lan.resources if e.protocol == protocol and "Loopback" in e.label)
    payload = bytes(range(256)) * 4096 + b"\n"  # 1 MiB and a byte, newlines throughout
    inst = _open(rm, entry, timeout_ms=10000)
    try:
        inst.write_binary_values("MEM:DATA ", payload, datatype="B")
        assert inst.query("MEM:DATA:LEN?").strip() == str(len(payload))
        inst.write("MEM:DATA?")
        assert bytes(inst.read_binary_values(datatype="B", container=bytes)) == payload
    finally:
        inst.close()


def test_vxi11_reads_the_status_byte_and_clears_the_device(lan, rm):
    entry = next(e for e in lan.resources if e.protocol == "VXI-11" and "Loopback" in e.label)
    inst = _open(rm, entry)
    try:
        inst.write("*IDN?")
        assert inst.read_stb() & 0x10  # MAV: the answer waits in the output queue (device_readstb)
        inst.clear()  # device_clear
        assert not inst.read_stb() & 0x10  # the clear threw it away (488.2 6.1.3)
        assert "Loopback" in inst.query("*IDN?")
    finally:
        inst.close()


def test_hislip_answers_status_queries_and_device_clear(lan, rm):
    # pyvisa-py's HiSLIP clear cannot skip a reply still on the synchronous channel, so the
    # reply is read first here; tests/lan checks MAV and clearing with an answer outstanding.
    entry = next(e for e in lan.resources if e.protocol == "HiSLIP" and "Loopback" in e.label)
    inst = _open(rm, entry)
    try:
        assert "Loopback" in inst.query("*IDN?")
        assert not inst.read_stb() & 0x10
        inst.write("*ESE 1;*OPC")
        assert inst.read_stb() & 0x20  # ESB: *OPC set OPC, enabled by *ESE
        inst.clear()
        assert "Loopback" in inst.query("*IDN?")
    finally:
        inst.close()


def test_tmc_sim_serve_lan_prints_resources_pyvisa_opens():
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "sim", "serve", "--lan", "--any-port", "--until-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(9)]
        resources = [line.split("\t") for line in lines]
        assert [r[1] for r in resources[:3]] == ["SOCKET", "VXI-11", "HiSLIP"]
        manager = resource_manager()
        try:
            for resource, protocol, label in resources:
                if "SAM7" not in label:
                    continue
                inst = manager.open_resource(resource, timeout=3000)
                if protocol == "SOCKET":
                    inst.read_termination = inst.write_termination = "\n"
                assert "SAM7" in inst.query("*IDN?")
                inst.close()
        finally:
            manager.close()
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
