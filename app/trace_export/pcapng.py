"""The trace as pcapng with link type 220, LINKTYPE_USB_LINUX_MMAPPED, which Wireshark and tshark open.

Each transfer becomes two packets, as Linux usbmon records them: a submission ('S') at
its start and a completion ('C') at its end, each behind the 64-byte usbmon header
(``struct usbmon_packet``, Linux Documentation/usb/usbmon.rst, "binary interface").
Every session's descriptor exchange (GET_DESCRIPTOR device and configuration) comes
first, so Wireshark learns the interface class (FE/03) and hands the bulk, control and
interrupt transfers to the USBTMC dissector shipped with the app (docs/trace.md).

The data is what the trace kept (at most its cap per transfer); a packet's length
fields still say how many bytes moved, so a truncated transfer shows as such.

A LAN session's socket sends and receives go on a second interface with link type 101,
LINKTYPE_RAW (raw IPv4): each is one TCP segment behind IPv4 and TCP headers written here,
with the connection's real addresses and ports and running sequence numbers, so that
Wireshark's own dissectors (hislip, rpc and vxi11; raw SCPI as TCP data) and its TCP
reassembly read them as a capture of the connection would have them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import BinaryIO

from app.usbtmc import trace as tr

LINKTYPE_USB_LINUX_MMAPPED = 220
LINKTYPE_RAW = 101  # raw IPv4 (or IPv6): the packet begins with the IP header
IPV4_HEADER = struct.Struct(">BBHHHBBH4s4s")  # RFC 791 3.1, without options
TCP_HEADER = struct.Struct(">HHIIBBHHH")  # RFC 9293 3.1, without options
_TCP_PSH_ACK = 0x18
_FIRST_SEQ = {"out": 1_000_000, "in": 2_000_000}  # arbitrary initial sequence numbers, one per direction
_MAX_SEGMENT_BYTES = 0xFFFF - 40  # what one IPv4 packet holds after the two headers
USBMON_HEADER = struct.Struct("<QBBBBHbbqiiII8siiII")  # 64 bytes, struct usbmon_packet
assert USBMON_HEADER.size == 64

# usbmon's transfer types (xfer_type) and the statuses (negative errno) a completion carries.
_XFER_TYPE = {tr.INTERRUPT: 1, tr.CONTROL: 2, tr.BULK: 3}
_EINPROGRESS = -115
_STATUS_ERRNO = {tr.OK: 0, tr.TIMEOUT: -110, tr.STALL: -32, tr.GONE: -19, tr.CANCELLED: -2,
                 tr.OVERFLOW: -75, tr.ERROR: -71}
_URB_DIR_IN = 0x0200  # xfer_flags: the transfer is IN (linux/usb.h URB_DIR_IN)
_NO_SETUP, _NO_DATA_IN, _NO_DATA_OUT = ord("-"), ord("<"), ord(">")

_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_SHB_USERAPPL, _OPT_IF_TSRESOL, _OPT_END = 4, 9, 0
SNAPLEN = 0x40000


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(kind: int, body: bytes) -> bytes:
    body = _pad(body)
    total = len(body) + 12
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


def section_header(application: str = "TMC Console") -> bytes:
    options = _option(_OPT_SHB_USERAPPL, application.encode()) + _option(_OPT_END, b"")
    return _block(_SHB, struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + options)


def interface_description(link_type: int = LINKTYPE_USB_LINUX_MMAPPED) -> bytes:
    options = _option(_OPT_IF_TSRESOL, bytes([6])) + _option(_OPT_END, b"")  # 10^-6 s
    return _block(_IDB, struct.pack("<HHI", link_type, 0, SNAPLEN) + options)


def _packet(t_us: int, packet: bytes, interface: int = 0, original_bytes: int | None = None) -> bytes:
    original = len(packet) if original_bytes is None else original_bytes
    body = struct.pack("<IIIII", interface, (t_us >> 32) & 0xFFFFFFFF, t_us & 0xFFFFFFFF, len(packet), original)
    return _block(_EPB, body + packet)


def _checksum(header: bytes) -> int:
    """The Internet checksum (RFC 1071) of an even-length header."""
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class _TcpStreams:
    """Sequence numbers of each direction of each recorded connection, so that consecutive
    segments follow each other as TCP's own would (Wireshark reassembles PDUs across them)."""

    def __init__(self) -> None:
        self._next: dict[tuple, int] = {}
        self._ip_id = 0

    def segments(self, entry: tr.Entry, connection: tr.Connection) -> list[tuple[bytes, int]]:
        """IPv4 + TCP headers and the kept bytes of one send or receive, each with its length on
        the wire: one segment, or several when more moved than one IPv4 packet holds."""
        out = entry.direction == "out"
        src, dst = (connection.local, connection.remote) if out else (connection.remote, connection.local)
        key, back = (id(connection), entry.direction), (id(connection), "in" if out else "out")
        ack = self._next.get(back, _FIRST_SEQ["in" if out else "out"])
        result = []
        for offset in range(0, entry.actual, _MAX_SEGMENT_BYTES):
            size = min(_MAX_SEGMENT_BYTES, entry.actual - offset)
            seq = self._next.get(key, _FIRST_SEQ[entry.direction])
            self._next[key] = (seq + size) & 0xFFFF_FFFF
            tcp = TCP_HEADER.pack(src[1], dst[1], seq, ack, 5 << 4, _TCP_PSH_ACK, 65535, 0, 0)
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            length = IPV4_HEADER.size + len(tcp) + size
            ip = IPV4_HEADER.pack(0x45, 0, length, self._ip_id, 0x4000, 64, 6, 0, _address(src[0]), _address(dst[0]))
            ip = ip[:10] + struct.pack(">H", _checksum(ip)) + ip[12:]
            result.append((ip + tcp + bytes(entry.data[offset:offset + size]), length))
        return result


def _address(host: str) -> bytes:
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
        return bytes(int(p) for p in parts)
    return bytes([127, 0, 0, 1])  # an IPv6 peer: its bytes still decode, on a loopback-looking address


def _connection_of(entry: tr.Entry, info: tr.SessionInfo) -> tr.Connection | None:
    """The connection ``entry`` went over: the channel's latest one opened before it."""
    found = None
    for connection in info.connections:
        if connection.endpoint == entry.endpoint and (found is None or connection.since_ns <= entry.t_ns):
            found = connection
    return found


def usbmon_records(entry: tr.Entry, urb_id: int, info: tr.SessionInfo) -> list[tuple[int, bytes]]:
    """The submission and completion of one transfer: ``(time in µs, usbmon header + data)`` each."""
    xfer = _XFER_TYPE[entry.kind]
    is_in = entry.direction == "in"
    endpoint = (0x80 if is_in else 0x00) if entry.kind == tr.CONTROL else entry.endpoint
    flags = _URB_DIR_IN if is_in else 0
    start_us = entry.t_ns // 1000
    end_us = (entry.t_ns + max(0, entry.duration_ns)) // 1000
    setup = entry.setup if entry.kind == tr.CONTROL and len(entry.setup) == 8 else bytes(8)
    has_setup = entry.kind == tr.CONTROL and len(entry.setup) == 8
    interval = 1 if entry.kind == tr.INTERRUPT else 0
    out_data = b"" if is_in else entry.data
    submit = USBMON_HEADER.pack(
        urb_id, ord("S"), xfer, endpoint, info.address & 0x7F, info.bus, 0 if has_setup else _NO_SETUP,
        0 if out_data else (_NO_DATA_IN if is_in else _NO_DATA_OUT), start_us // 1_000_000, start_us % 1_000_000,
        _EINPROGRESS, entry.requested, len(out_data), setup, interval, 0, flags, 0) + out_data
    in_data = entry.data if is_in else b""
    complete = USBMON_HEADER.pack(
        urb_id, ord("C"), xfer, endpoint, info.address & 0x7F, info.bus, _NO_SETUP,
        0 if in_data else (_NO_DATA_IN if is_in else _NO_DATA_OUT), end_us // 1_000_000, end_us % 1_000_000,
        _STATUS_ERRNO.get(entry.status, -71), entry.actual, len(in_data), bytes(8), interval, 0, flags, 0) + in_data
    return [(start_us, submit), (end_us, complete)]


def write_pcapng(out: BinaryIO, entries: Iterable[tr.Entry], sessions: dict[int, tr.SessionInfo]) -> int:
    """Write ``entries`` (transfers and LAN sends and receives; other kinds are skipped) after
    each USB session's descriptor exchange. Interface 0 carries the USB transfers (link type
    220), interface 1 the LAN segments (link type 101), present only when there are some.
    Returns the packets written."""
    entries = [e for e in entries if e.is_transfer and e.session in sessions]
    segments = [e for e in entries if e.kind == tr.TCP and e.actual > 0]  # a failed send put nothing on the wire
    entries = [e for e in entries if e.kind != tr.TCP]
    out.write(section_header())
    out.write(interface_description())
    if segments:
        out.write(interface_description(LINKTYPE_RAW))
    count = 0
    urb_id = 0xFFFF_8800_0000_0000  # a kernel-looking URB address; only its uniqueness matters
    packets: list[tuple[int, int, bytes]] = []
    first: dict[int, int] = {}
    for entry in entries:
        first.setdefault(entry.session, entry.t_ns)
    written = set()
    for number, info in sessions.items():
        if number not in first:
            continue
        for entry in info.descriptors:
            written.add(entry.seq)
            urb_id += 0x100
            for t_us, packet in usbmon_records(entry, urb_id, info):
                packets.append((min(t_us, first[number] // 1000), len(packets), packet))
    for entry in entries:
        if entry.seq in written:
            continue
        urb_id += 0x100
        for t_us, packet in usbmon_records(entry, urb_id, sessions[entry.session]):
            packets.append((t_us, len(packets), packet))
    descriptor_count = sum(2 * len(sessions[n].descriptors) for n in first)
    streams = _TcpStreams()
    for entry in segments:
        connection = _connection_of(entry, sessions[entry.session])
        if connection is None:
            continue  # recorded without its connection's addresses: nothing to put in the headers
        # At its end: when the bytes were taken by (or came from) the socket.
        t_us = (entry.t_ns + max(0, entry.duration_ns)) // 1000
        for segment in streams.segments(entry, connection):
            packets.append((t_us, len(packets), segment))
    # Descriptors first, the rest in time order (a completion never before its submission).
    ordered = packets[:descriptor_count] + sorted(packets[descriptor_count:], key=lambda p: (p[0], p[1]))
    for t_us, _order, packet in ordered:
        if isinstance(packet, tuple):
            out.write(_packet(t_us, packet[0], interface=1, original_bytes=packet[1]))
        else:
            out.write(_packet(t_us, packet))
        count += 1
    return count
