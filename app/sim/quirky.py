"""Virtual instruments that break USBTMC the way real ones were reported to.

Each model impersonates the real VID:PID (and ``*IDN?``) so the shipped quirk entry for it
matches, and misbehaves as the public report describes. With the quirks the host core
works; with ``use_quirks=False`` the failure users reported appears. They are plugged on a
virtual bus with :func:`plug_quirky` (``app.sim.default_bus(quirky=True)`` does it), and
:data:`CATALOGUE` describes them for a user interface.

:class:`QuirkyInstrument` holds the seams: a :class:`~app.sim.scpi_device.ScpiInstrument`
whose USBTMC function can break the specification in each reported way, every
misbehaviour a class attribute (or constructor keyword) that is off by default. Where a
report shows a symptom but not its cause, the model picks the simplest device behaviour
that produces that symptom; docs/quirks.md says which.

The reports behind the models:

- Rigol DS1000 (1AB1:0588) and DS2000 (1AB1:04B0): one Bulk-IN header per reply, the whole
  reply streamed in transfers of 500 bytes whatever was asked for, EOM always set, a repeated
  REQUEST_DEV_DEP_MSG_IN restarts the reply (python-usbtmc PR #18, the Linux usbtmc driver's
  RIGOL quirk list); RL1 advertised but REN/GTL/LLO not implemented (libsigrok, also for the
  rebadged Agilent DSO1000, 0957:0588); string descriptors padded with NULs
  (sidneycadot/python-usbtmc).
- Rigol DS1000Z (1AB1:04CE): INITIATE_CLEAR hangs it (python-usbtmc PR #62); firmware before
  00.04.03 streams like the DS1000 with TransferSize the size of the first 500-byte transfer
  only (python-usbtmc PR #18, issue #23); the DS1102Z-E sends no zero-length packet when a
  transfer ends on a packet boundary (pyvisa-py #463).
- Rigol DHO800/DHO900 (1AB1:044D): replies echo a stale bTag (libsigrok PR #246).
- Rigol DP800 (1AB1:0E11): the next session gets "Pipe error" unless the last one cleared the
  bulk halts (pyvisa-py #371).
- Siglent SDS1000X-E (F4EC:EE38): INITIATE_CLEAR never finishes, TransferSize counts the
  alignment bytes (sidneycadot/python-usbtmc), requests for more than 48 bytes are never
  answered (ngscopeclient/scopehal PR #749).
- Siglent SDG1000X (F4EC:1103): TransferSize covers only what fits the first 64-byte packet
  and EOM is never set (pyvisa-py #465); a clone on VID F4ED (F4ED:EE3A) has an empty serial
  number (pyvisa-py #280).
- Thorlabs PM100D (1313:8078): a device clear resets Bulk-IN; PM101U (1313:8076): the same, it
  must not be read during the clear (sidneycadot/python-usbtmc), and it ignores messages until
  REN is asserted (pyvisa-py PR #241).
- Tektronix FCA3000 (0699:3000): after a read timeout only the exact ABORT_BULK_IN sequence
  with its drain brings it back (python-usbtmc #49, pyvisa-py #177).
- Agilent/Keysight U27xx (0957): power up in a firmware-update mode under another PID and
  switch to USBTMC after a vendor control sequence (python-usbtmc, gotmc/usbtmc); the U2741A
  cannot give its serial number in that mode (python-usbtmc PR #61).
- B&K Precision 8600 (2EC7:8800): ignores everything until put in remote (python-usbtmc PR #53).
- ADCMT (1334): not class FE/03, reads of at most 63 bytes, EOM never set, and commands run
  only while the vendor lock request holds (python-usbtmc PR #5).

Their VIDs and PIDs are real vendors' IDs, so a real instrument of the same model looks the
same to a host: they live on virtual buses only.

Standard library only.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .clock import Clock
from .device import ConfigDesc, DeviceDesc, InterfaceDesc, NoData, Speed, Stall, VirtualDevice
from .scpi_device import ScpiInstrument, command, definite_block
from app.protocol.usbtmc import HEADER_BYTES, pack_header

from .usbtmc_device import MsgId, Request, Status, TmcCapabilities


# --- the seams -------------------------------------------------------------------------------

EOM = 0x01


class QuirkyInstrument(ScpiInstrument):
    """A SCPI instrument with switchable, reported USBTMC misbehaviours.

    Every attribute below describes a compliant device by default; a subclass or a
    constructor keyword of the same name turns a misbehaviour on.
    """

    #: REQUEST_DEV_DEP_MSG_IN asking for more than this many bytes is never answered (0: no limit).
    max_request_bytes = 0
    #: TransferSize counts the alignment bytes too.
    transfer_size_includes_padding = False
    #: TransferSize announces at most this many bytes although the whole reply follows in the
    #: same transfer (0: correct TransferSize).
    transfer_size_first_packet_only = False
    #: EOM is never set.
    never_eom = False
    #: Every reply echoes the bTag of the first REQUEST_DEV_DEP_MSG_IN after configuration.
    sticky_btag = False
    #: Rigol's stream: one header, then the whole reply in transfers of ``stream_chunk_bytes``
    #: whatever was asked for, EOM always set; a repeated REQUEST restarts the reply.
    rigol_stream = False
    stream_chunk_bytes = 500
    #: With ``rigol_stream``: TransferSize is the size of the first transfer only, not the reply's.
    stream_size_first_chunk = False
    #: INITIATE_CLEAR is never answered and the device stops answering until it is unplugged.
    clear_wedges = False
    #: INITIATE_CLEAR is answered, but CHECK_CLEAR_STATUS stays PENDING for ever.
    clear_never_finishes = False
    #: A device clear resets the Bulk-IN data toggle: the host drops the next packet unless it
    #: clears the Bulk-IN halt (which resynchronises both toggles).
    clear_desyncs_bulk_in = False
    #: CHECK_CLEAR_STATUS asks for the drain (bmClear.D0) once, but a Bulk-IN read during the
    #: clear wedges the clear; without the read the next CHECK_CLEAR_STATUS answers SUCCESS.
    clear_hangs_on_drain = False
    #: Device-dependent messages are ignored unless REN is asserted (the device is remote).
    needs_remote = False
    #: REN_CONTROL, GO_TO_LOCAL and LOCAL_LOCKOUT STALL although RL1 is advertised.
    ren_requests_stall = False
    #: The ABORT_BULK_IN sequence works only in its exact order: INITIATE, the Bulk-IN read
    #: of the short packet, CHECK (USBTMC 1.0 4.2.1.4-5). A CHECK before that read answers
    #: SUCCESS, but the device never answers a request again (until a device clear or a replug).
    abort_needs_drain = False
    #: A new session (GET_CAPABILITIES after bulk traffic) finds Bulk-OUT halted unless the
    #: previous session cleared both bulk halts.
    halts_between_sessions = False

    _FLAGS = (
        "max_request_bytes", "transfer_size_includes_padding", "transfer_size_first_packet_only", "never_eom",
        "sticky_btag", "rigol_stream", "stream_chunk_bytes", "stream_size_first_chunk", "clear_wedges",
        "clear_never_finishes", "clear_desyncs_bulk_in", "clear_hangs_on_drain", "needs_remote",
        "ren_requests_stall", "abort_needs_drain", "halts_between_sessions",
    )

    def __init__(self, *, vid: int, pid: int, manufacturer: str, model: str, serial: str, version: str,
                 product: str | None = None, clock: Clock | None = None,
                 capabilities: TmcCapabilities | None = None, speed: Speed = Speed.HIGH,
                 zlp: bool = True, idn: str | None = None, **misbehaviours) -> None:
        for name, value in misbehaviours.items():
            if name not in self._FLAGS:
                raise TypeError(f"unknown misbehaviour {name!r}")
            setattr(self, name, value)
        self.waveform = bytes(range(256)) * 4
        super().__init__(vid=vid, pid=pid, manufacturer=manufacturer, model=model, serial=serial,
                         version=version, product=product, clock=clock, capabilities=capabilities, speed=speed)
        if idn is not None:
            self.idn = idn
        self.in_pipes[self.bulk_in_ep].zlp = zlp
        self.messages_ignored = 0
        self._power_on_quirks()

    # --- state that lives as long as the power ---

    def on_power_on(self) -> None:
        super().on_power_on()
        self._power_on_quirks()

    def _power_on_quirks(self) -> None:
        self._wedged = False
        self._sticky: int | None = None
        self._stream: bytes | None = None
        self._toggle_stale = False
        self._clear_state: str | None = None  # None, "asked-drain", "wedged"
        self._bulk_used = False
        self._halts_cleared: set[int] = set()
        self._drain_asked = False
        self._abort_unread = False
        self._stuck = False

    def on_configured(self, value: int) -> None:
        super().on_configured(value)
        self._sticky = None
        self._stream = None

    # --- a waveform, so replies can be long ---

    @command("WAVeform:DATA?")
    def _waveform_data(self, params):
        self._no_params(params)
        return definite_block(self.waveform)

    # --- Bulk-OUT ---

    def handle_bulk_out(self, ep, data) -> int:
        if self._wedged:
            raise NoData("the device no longer answers")
        self._bulk_used = True
        return super().handle_bulk_out(ep, data)

    def on_message(self, data: bytes) -> None:
        self._stream = None  # a new message: whatever is left of a Rigol stream stays in the FIFO
        if self.needs_remote and not self.ren:
            self.messages_ignored += 1
            return
        super().on_message(data)

    def _request_in(self, request) -> None:
        if self.sticky_btag and not request.vendor:
            if self._sticky is None:
                self._sticky = request.btag
        if self.max_request_bytes and request.max_bytes > self.max_request_bytes and not request.vendor:
            return  # never answered: the host's read times out
        pipe = self.in_pipes[self.bulk_in_ep]
        if self.rigol_stream and self._stream is not None and pipe.has_data and not request.vendor:
            # python-usbtmc PR #18: a repeated REQUEST_DEV_DEP_MSG_IN restarts the reply.
            pipe.clear()
            self._in_btag = request.btag
            self._send_stream(request.btag)
            return
        super()._request_in(request)

    # --- Bulk-IN ---

    def bulk_in(self, ep: int, length: int, toggles=None) -> bytes:
        with self.changed:
            if self._wedged:
                self._check_attached()
                raise NoData("the device no longer answers")
            if ep == self.bulk_in_ep:
                if self._clear_state == "asked-drain" and self.clear_hangs_on_drain:
                    self._clear_state = "wedged"
                    raise NoData("a Bulk-IN read during the clear hangs the device's clear")
                self._bulk_used = True
            return super().bulk_in(ep, length, toggles)

    def on_in_taken(self, ep: int) -> None:
        super().on_in_taken(ep)
        if ep == self.bulk_in_ep and not self.in_pipes[ep].has_data:
            self._stream = None
            self._abort_unread = False

    def _serve(self) -> None:
        request = self._in_request
        if request is not None and not request.vendor:
            pipe = self.in_pipes[self.bulk_in_ep]
            if self._stuck or (self._abort_unread and pipe.has_data):
                return  # stuck after a bad abort, or the aborted transfer's short packet is unread
            if self.rigol_stream:
                self._serve_stream(request)
                return
        super()._serve()

    def _serve_stream(self, request) -> None:
        if not self._output:
            return
        response = self._output[0]
        if response.ready_at_s > self.clock.now() or not response.closed:
            return
        self._output.popleft()
        self._stream = bytes(response.data)
        self._send_stream(request.btag)
        self._in_request = None
        self.status.update()

    def _send_stream(self, btag: int) -> None:
        message, chunk = self._stream or b"", self.stream_chunk_bytes
        size = min(len(message), chunk) if self.stream_size_first_chunk else len(message)
        pipe = self.in_pipes[self.bulk_in_ep]
        self._in_active = (btag, pipe.delivered_bytes + pipe.queued_bytes)
        header = pack_header(MsgId.DEV_DEP_MSG_IN, btag, size, EOM)
        pipe.send(header + message[:chunk], end=True)
        for start in range(chunk, len(message), chunk):
            pipe.send(message[start:start + chunk], end=True)
        self.changed.notify_all()

    def _send_in(self, msg_id: int, btag: int, data: bytes, attributes: int) -> None:
        pad = -len(data) % 4
        size = len(data)
        if self.transfer_size_includes_padding:
            size += pad
        if self.transfer_size_first_packet_only:
            size = min(size, self.in_pipes[self.bulk_in_ep].max_packet - HEADER_BYTES)
        if self.never_eom:
            attributes &= ~EOM
        echo = self._sticky if (self.sticky_btag and self._sticky is not None) else btag
        frame = pack_header(msg_id, echo, size, attributes) + data + bytes(pad)
        pipe = self.in_pipes[self.bulk_in_ep]
        self._in_active = (btag, pipe.delivered_bytes + pipe.queued_bytes)
        if self._toggle_stale:
            # The host still expects the other data toggle: it takes the first packet for a
            # retransmission and drops it; the toggles agree again after that.
            self._toggle_stale = False
            ends_on_boundary = len(frame) % pipe.max_packet == 0
            frame = frame[pipe.max_packet:]
            if not frame and ends_on_boundary and pipe.zlp:
                pipe.send(b"", end=True)  # the zero-length packet still arrives
        if frame:
            pipe.send(frame, end=True)
        self._in_request = None
        self.changed.notify_all()

    # --- control requests ---

    def class_request(self, bm_request_type, b_request, w_value, w_index, data_or_length) -> bytes:
        if self._wedged:
            raise NoData("the device no longer answers")
        if (bm_request_type >> 5) & 0x03 == 1:
            if b_request == Request.GET_CAPABILITIES and self.halts_between_sessions:
                if self._bulk_used and not {self.bulk_out_ep, self.bulk_in_ep} <= self._halts_cleared:
                    # pyvisa-py #371: the next session gets "Pipe error" until the halts are cleared.
                    self.halt(self.bulk_out_ep)
                    self.halt(self.bulk_in_ep)
                self._bulk_used = False
                self._halts_cleared = set()
            if b_request == Request.INITIATE_CLEAR:
                if self.clear_wedges:
                    self._wedged = True
                    raise NoData("INITIATE_CLEAR hangs the device")
                reply = super().class_request(bm_request_type, b_request, w_value, w_index, data_or_length)
                if self.clear_desyncs_bulk_in:
                    self._toggle_stale = True
                if self.clear_never_finishes or self.clear_hangs_on_drain:
                    self._clear_state = "asked-drain" if self.clear_hangs_on_drain else "wedged"
                return reply
            if b_request == Request.CHECK_CLEAR_STATUS and self._clear_state is not None:
                if self._clear_state == "wedged":
                    return bytes([Status.PENDING, 0])
                # Asked once for the drain; a host that does not read is told the clear is done.
                if self._drain_asked:
                    self._clear_state = None
                    self._drain_asked = False
                    return bytes([Status.SUCCESS, 0])
                self._drain_asked = True
                return bytes([Status.PENDING, 1])
            if b_request == Request.INITIATE_ABORT_BULK_IN and self.abort_needs_drain:
                reply = super().class_request(bm_request_type, b_request, w_value, w_index, data_or_length)
                self._abort_unread = reply[0] == Status.SUCCESS
                return reply
            if b_request == Request.CHECK_ABORT_BULK_IN_STATUS and self.abort_needs_drain and self._abort_unread:
                self._abort_in_nbytes = None
                self._abort_unread = False
                self._stuck = True
                self.in_pipes[self.bulk_in_ep].clear()
                return bytes([Status.SUCCESS, 0, 0, 0, 0, 0, 0, 0])
            if self.ren_requests_stall and b_request in (Request.REN_CONTROL, Request.GO_TO_LOCAL,
                                                          Request.LOCAL_LOCKOUT):
                raise Stall("REN_CONTROL, GO_TO_LOCAL and LOCAL_LOCKOUT are not implemented")
        return super().class_request(bm_request_type, b_request, w_value, w_index, data_or_length)

    def on_device_clear(self) -> None:
        super().on_device_clear()
        self._stuck = False

    def on_clear_halt(self, ep: int) -> None:
        super().on_clear_halt(ep)
        self._halts_cleared.add(ep)
        if ep == self.bulk_in_ep:
            self._toggle_stale = False  # CLEAR_FEATURE(HALT) resets both data toggles (USB 2.0 9.4.5)


# --- Rigol -----------------------------------------------------------------------------------

RIGOL = 0x1AB1
SCOPE_CAPS = TmcCapabilities(indicator_pulse=False, term_char=False, usb488=True, usb4882=True,
                             remote_local=True, trigger=False, scpi=True, service_request=True)


def _nul_padded(text: str, length: int = 32) -> str:
    return text + "\x00" * max(0, length - len(text))


class RigolDs1000(QuirkyInstrument):
    """A Rigol DS1102D (1AB1:0588), full speed, with the reported DS1000 misbehaviours."""

    rigol_stream = True
    ren_requests_stall = True

    def __init__(self, *, serial: str = "DS1EA000000001", clock: Clock | None = None, pid: int = 0x0588,
                 model: str = "DS1102D", **misbehaviours) -> None:
        super().__init__(vid=RIGOL, pid=pid, manufacturer="Rigol Technologies", model=model, serial=serial,
                         version="00.04.02.01.00", clock=clock, capabilities=SCOPE_CAPS, speed=Speed.FULL,
                         **misbehaviours)
        # sidneycadot/python-usbtmc: the DS1102D pads its string descriptors with NULs.
        self.strings = {index: _nul_padded(text) for index, text in self.strings.items()}


class AgilentDso1000(QuirkyInstrument):
    """An Agilent DSO1002A (0957:0588), a rebadged Rigol DS1000: RL1 advertised, REN/GTL/LLO STALL."""

    ren_requests_stall = True

    def __init__(self, *, serial: str = "CN00000001", clock: Clock | None = None, **misbehaviours) -> None:
        super().__init__(vid=0x0957, pid=0x0588, manufacturer="Agilent Technologies", model="DSO1002A",
                         serial=serial, version="00.04.02.01.00", clock=clock, capabilities=SCOPE_CAPS,
                         speed=Speed.FULL, **misbehaviours)


class RigolDs1000z(QuirkyInstrument):
    """A Rigol DS1000Z (1AB1:04CE), full speed; ``firmware`` before 00.04.03 streams its replies."""

    clear_wedges = True

    def __init__(self, *, firmware: str = "00.04.04.SP4", serial: str = "DS1ZA000000001", model: str = "DS1104Z",
                 clock: Clock | None = None, **misbehaviours) -> None:
        self.firmware = firmware
        old = tuple(int(part) for part in firmware.split(".")[:3]) < (0, 4, 3)
        if old:
            misbehaviours.setdefault("rigol_stream", True)
            misbehaviours.setdefault("stream_size_first_chunk", True)
        super().__init__(vid=RIGOL, pid=0x04CE, manufacturer="Rigol Technologies", model=model, serial=serial,
                         version=firmware, clock=clock, capabilities=SCOPE_CAPS, speed=Speed.FULL,
                         idn=f"RIGOL TECHNOLOGIES,{model},{serial},{firmware}", **misbehaviours)


class RigolDs1102ze(RigolDs1000z):
    """A Rigol DS1102Z-E: current DS1000Z firmware, and no zero-length packets (pyvisa-py #463).

    Its *IDN? transfer is exactly one 64-byte packet, as in the report."""

    def __init__(self, *, serial: str = "DS1ZE0000001", clock: Clock | None = None, **misbehaviours) -> None:
        misbehaviours.setdefault("zlp", False)
        super().__init__(firmware="00.06.02", serial=serial, model="DS1102Z-E", clock=clock, **misbehaviours)


class RigolDho800(QuirkyInstrument):
    """A Rigol DHO804 (1AB1:044D): every reply echoes the bTag of the first request it saw."""

    sticky_btag = True

    def __init__(self, *, serial: str = "DHO8A000000001", clock: Clock | None = None, **misbehaviours) -> None:
        super().__init__(vid=RIGOL, pid=0x044D, manufacturer="Rigol Technologies", model="DHO804", serial=serial,
                         version="00.01.04", clock=clock, capabilities=SCOPE_CAPS, speed=Speed.HIGH,
                         idn=f"RIGOL TECHNOLOGIES,DHO804,{serial},00.01.04", **misbehaviours)


class RigolDp800(QuirkyInstrument):
    """A Rigol DP832A power supply (1AB1:0E11): a new session finds both bulk endpoints halted
    unless the previous one cleared them (the symptom of pyvisa-py #371)."""

    halts_between_sessions = True

    def __init__(self, *, serial: str = "DP8B000000001", clock: Clock | None = None, **misbehaviours) -> None:
        super().__init__(vid=RIGOL, pid=0x0E11, manufacturer="Rigol Technologies", model="DP832A", serial=serial,
                         version="00.01.16", clock=clock, speed=Speed.FULL,
                         capabilities=TmcCapabilities(indicator_pulse=False, term_char=False, trigger=False),
                         idn=f"RIGOL TECHNOLOGIES,DP832A,{serial},00.01.16", **misbehaviours)


# --- Siglent, Thorlabs, Tektronix, B&K Precision, ADCMT -----------------------------------------

PLAIN_CAPS = TmcCapabilities(indicator_pulse=False, term_char=False, trigger=False)


class SiglentSds1000xe(QuirkyInstrument):
    """A Siglent SDS1204X-E oscilloscope (F4EC:EE38), firmware 8.2.6.1.37R9."""

    max_request_bytes = 48
    transfer_size_includes_padding = True
    clear_never_finishes = True

    def __init__(self, *, serial: str = "SDSMMEBX000001", clock: Clock | None = None, **misbehaviours) -> None:
        super().__init__(vid=0xF4EC, pid=0xEE38, manufacturer="Siglent Technologies", model="SDS1204X-E",
                         serial=serial, version="8.2.6.1.37R9", clock=clock, capabilities=PLAIN_CAPS,
                         speed=Speed.FULL, idn=f"Siglent Technologies,SDS1204X-E,{serial},8.2.6.1.37R9",
                         **misbehaviours)


class SiglentSdg1000x(QuirkyInstrument):
    """A Siglent SDG1032X waveform generator (F4EC:1103)."""

    transfer_size_first_packet_only = True
    never_eom = True

    def __init__(self, *, serial: str = "SDG1XDCX000001", clock: Clock | None = None, **misbehaviours) -> None:
        super().__init__(vid=0xF4EC, pid=0x1103, manufacturer="Siglent Technologies", model="SDG1032X",
                         serial=serial, version="1.01.01.33R", clock=clock, capabilities=PLAIN_CAPS,
                         speed=Speed.FULL, idn=f"Siglent Technologies,SDG1032X,{serial},1.01.01.33R",
                         **misbehaviours)


class SiglentCloneNoSerial(QuirkyInstrument):
    """An SDG1032X clone (F4ED:EE3A) whose serial number string is empty; otherwise compliant."""

    def __init__(self, *, clock: Clock | None = None, **misbehaviours) -> None:
        super().__init__(vid=0xF4ED, pid=0xEE3A, manufacturer="Siglent Technologies", model="SDG1032X",
                         serial="", version="1.01.01.30R", clock=clock, capabilities=PLAIN_CAPS,
                         speed=Speed.FULL, **misbehaviours)


class ThorlabsPm100d(QuirkyInstrument):
    """A Thorlabs PM100D power meter (1313:8078): a device clear resets Bulk-IN."""

    clear_desyncs_bulk_in = True

    def __init__(self, *, serial: str = "P0000001", clock: Clock | None = None, pid: int = 0x8078,
                 model: str = "PM100D", **misbehaviours) -> None:
        super().__init__(vid=0x1313, pid=pid, manufacturer="Thorlabs", model=model, serial=serial,
                         version="2.4.0", clock=clock, speed=Speed.FULL,
                         capabilities=dataclasses.replace(PLAIN_CAPS, remote_local=True), **misbehaviours)

    @command("MEASure[:SCALar][:POWer]?")
    def _measure_power(self, params):
        self._no_params(params)
        return "1.234000E-03"


class ThorlabsPm101u(ThorlabsPm100d):
    """A Thorlabs PM101U (1313:8076): clear resets Bulk-IN, no Bulk-IN read during the clear,
    and nothing happens until REN is asserted."""

    clear_hangs_on_drain = True
    needs_remote = True

    def __init__(self, *, serial: str = "M00000001", clock: Clock | None = None, **misbehaviours) -> None:
        super().__init__(serial=serial, clock=clock, pid=0x8076, model="PM101U", **misbehaviours)


class TektronixFca3000(QuirkyInstrument):
    """A Tektronix FCA3000 counter (0699:3000). ``MEASure:FREQuency?`` takes ``gate_s`` seconds,
    longer than a short host timeout, as in the report."""

    abort_needs_drain = True

    def __init__(self, *, serial: str = "379751", clock: Clock | None = None, gate_s: float = 1.0,
                 **misbehaviours) -> None:
        self.gate_s = gate_s
        super().__init__(vid=0x0699, pid=0x3000, manufacturer="Tektronix", model="FCA3000", serial=serial,
                         version="V1.28", clock=clock, capabilities=PLAIN_CAPS, speed=Speed.HIGH,
                         idn=f"TEKTRONIX, FCA3000, {serial}, V1.28 25 Aug 2010 11:52", **misbehaviours)

    @command("MEASure:FREQuency?")
    def _measure_frequency(self, params):
        self._no_params(params)
        self.response_delay_s = self.gate_s
        return "1.00000000E+07"


class BkPrecision8600(QuirkyInstrument):
    """A B&K Precision 8600 DC load (2EC7:8800): ignores every message until it is remote."""

    needs_remote = True

    def __init__(self, *, serial: str = "602197010727420008", clock: Clock | None = None, **misbehaviours) -> None:
        super().__init__(vid=0x2EC7, pid=0x8800, manufacturer="B&K Precision", model="8600", serial=serial,
                         version="1.36-1.41", clock=clock, speed=Speed.FULL,
                         capabilities=dataclasses.replace(PLAIN_CAPS, remote_local=True),
                         idn=f"B&K Precision, 8600, {serial}, 1.36-1.41", **misbehaviours)


VENDOR_LOCK_REQUEST = 0xA0  # python-usbtmc: class-interface IN 0xA0, wValue 1 locks, 0 unlocks


class AdcmtInstrument(QuirkyInstrument):
    """An ADCMT instrument (1334:xxxx) with Advantest's customised USBTMC: a vendor-class
    interface (not FE/03), reads of at most 63 bytes, EOM never set, and commands run only
    while locked; unlocked, every query returns the latest measurement."""

    max_request_bytes = 63
    never_eom = True

    def __init__(self, *, serial: str = "000000001", clock: Clock | None = None, pid: int = 0x0201,
                 **misbehaviours) -> None:
        super().__init__(vid=0x1334, pid=pid, manufacturer="ADCMT", model="7351E", serial=serial,
                         version="A01", clock=clock, speed=Speed.FULL,
                         capabilities=TmcCapabilities(indicator_pulse=False, term_char=False, usb488=False,
                                                      usb4882=False, remote_local=False, trigger=False,
                                                      scpi=False, service_request=False), **misbehaviours)
        # Advantest's interface is vendor-specific: class 0xFF, not the USBTMC triple.
        self.configs = tuple(
            dataclasses.replace(config, interfaces=tuple(
                dataclasses.replace(interface, cls=0xFF, subclass=0x00, protocol=0x00)
                for interface in config.interfaces))
            for config in self.configs)
        self.locked = False
        self.latest_measurement = "+1.234567E+00"

    def class_request(self, bm_request_type, b_request, w_value, w_index, data_or_length) -> bytes:
        if b_request == VENDOR_LOCK_REQUEST and bm_request_type == 0xA1:
            if data_or_length != 1:
                raise Stall("the lock request answers one byte")
            self.locked = bool(w_value & 0xFF)
            return b"\x01"
        return super().class_request(bm_request_type, b_request, w_value, w_index, data_or_length)

    def on_message(self, data: bytes) -> None:
        if self.locked:
            super().on_message(data)
            return
        # Not locked: nothing is executed, and a query gets the latest measurement.
        self.messages_ignored += 1
        self.discard_output()
        if b"?" in data:
            self.respond(self.latest_measurement.encode() + b"\n")

    @command("READ?")
    def _read(self, params):
        self._no_params(params)
        return self.latest_measurement


# --- Agilent/Keysight U27xx in firmware-update mode ----------------------------------------------

AGILENT = 0x0957
SWITCH_REQUEST = 0x0C
SWITCH_INDEX = 0x0475
SWITCH_DATA = bytes([0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x08, 0x01])


class FirmwareModeDevice(VirtualDevice):
    """A U27xx instrument in its firmware-update mode (vendor interface, no endpoints).

    When it has seen the switching sequence it leaves the bus and, ``reenumerate_s`` later,
    :attr:`usbtmc_mode` (the instrument in USBTMC mode) is plugged in its place, on
    :attr:`bus` when one is set (``app.sim.quirky.plug_quirky`` sets it).
    """

    def __init__(self, *, pid: int, target_pid: int, model: str, serial: str, third_index: int | None,
                 serial_readable: bool = True, version: str = "V1.00", clock: Clock | None = None,
                 reenumerate_s: float = 0.05) -> None:
        interface = InterfaceDesc(0, 0, 0xFF, 0x00, 0x00, ())
        device_desc = DeviceDesc(0x0200, 0, 0, 0, 64, AGILENT, pid, 0x0100, 1, 2, 3, 1)
        strings = {1: "Agilent Technologies", 2: model}
        if serial_readable:
            strings[3] = serial
        super().__init__(device_desc=device_desc, configs=[ConfigDesc(1, (interface,), 0x80, 500)],
                         strings=strings, speed=Speed.HIGH, serial=serial, clock=clock)
        self.target_pid = target_pid
        self.expected = None if third_index is None else [0x047E, 0x047D, third_index, 0x0472, 0x047A]
        self.reenumerate_s = reenumerate_s
        self.bus = None
        self.switched = False
        self._seen: list[int] = []
        self.usbtmc_mode = ScpiInstrument(
            vid=AGILENT, pid=target_pid, manufacturer="Agilent Technologies", model=model, serial=serial,
            version=version, clock=clock,
            capabilities=TmcCapabilities(indicator_pulse=True, term_char=False, trigger=True))

    def on_power_on(self) -> None:
        self._seen = []

    def class_request(self, bm_request_type, b_request, w_value, w_index, data_or_length) -> bytes:
        if (bm_request_type >> 5) & 0x03 != 2 or b_request != SWITCH_REQUEST:
            raise Stall(f"request 0x{b_request:02X} not supported in firmware-update mode")
        if self.switched:
            raise NoData("re-enumerating")
        if bm_request_type & 0x80:
            self._seen.append(w_index)
            return bytes(int(data_or_length))
        if w_index == SWITCH_INDEX and bytes(data_or_length) == SWITCH_DATA:
            if self.expected is None or self._seen[-5:] == self.expected:
                self.switched = True
                timer = threading.Timer(self.reenumerate_s, self._reenumerate)
                timer.daemon = True
                timer.start()
        self._seen = []
        return b""

    def _reenumerate(self) -> None:
        bus = self.bus
        if bus is None or not self.attached:
            return
        try:
            bus.unplug(self)
            bus.plug(self.usbtmc_mode)
        except (ValueError, RuntimeError):
            pass  # unplugged or replugged meanwhile by someone else: nothing to re-enumerate


def u2702a(clock: Clock | None = None) -> FirmwareModeDevice:
    """U2702A oscilloscope: 0957:2818 in firmware-update mode, 0957:2918 as USBTMC (python-usbtmc #31)."""
    return FirmwareModeDevice(pid=0x2818, target_pid=0x2918, model="U2702A", serial="MY48212052",
                              third_index=0x0484, version="V2.47-2.05-1.05", clock=clock)


def u2722a(clock: Clock | None = None) -> FirmwareModeDevice:
    """U2722A source/measure unit: 0957:4218 -> 0957:4118 (python-usbtmc #38)."""
    return FirmwareModeDevice(pid=0x4218, target_pid=0x4118, model="U2722A", serial="MY00000022",
                              third_index=0x0487, clock=clock)


def u2723a(clock: Clock | None = None) -> FirmwareModeDevice:
    """U2723A source/measure unit: 0957:4418 -> 0957:4318."""
    return FirmwareModeDevice(pid=0x4418, target_pid=0x4318, model="U2723A", serial="MY00000023",
                              third_index=0x0487, clock=clock)


def u2741a(clock: Clock | None = None) -> FirmwareModeDevice:
    """U2741A multimeter: 0957:4818 -> 0957:4918; its serial string is unreadable in firmware mode."""
    return FirmwareModeDevice(pid=0x4818, target_pid=0x4918, model="U2741A", serial="MY57029021",
                              third_index=None, serial_readable=False, clock=clock)


def u2751a(clock: Clock | None = None) -> FirmwareModeDevice:
    """U2751A switch matrix: 0957:3E18 -> 0957:3D18 (gotmc/usbtmc)."""
    return FirmwareModeDevice(pid=0x3E18, target_pid=0x3D18, model="U2751A", serial="MY00000051",
                              third_index=0x0484, clock=clock)


# --- the catalogue ------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuirkyModel:
    """One quirky virtual instrument: how to build it and what it does wrong."""

    key: str
    title: str
    vid: int
    pid: int
    misbehaviour: str
    sources: str
    factory: Callable[[Clock | None], VirtualDevice]

    @property
    def vid_pid(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}"


CATALOGUE: tuple[QuirkyModel, ...] = (
    QuirkyModel("rigol-ds1000", "Rigol DS1102D", 0x1AB1, 0x0588,
                "one header per reply, streamed in 500-byte transfers whatever was asked for, EOM always set, "
                "a repeated read request restarts the reply; RL1 advertised but REN/GTL/LLO STALL; NUL-padded strings",
                "python-usbtmc PR #18, Linux usbtmc, libsigrok, sidneycadot/python-usbtmc",
                lambda clock: RigolDs1000(clock=clock)),
    QuirkyModel("agilent-dso1000", "Agilent DSO1002A (a rebadged Rigol DS1000)", 0x0957, 0x0588,
                "RL1 advertised but REN/GTL/LLO STALL", "libsigrok scpi_usbtmc_libusb.c",
                lambda clock: AgilentDso1000(clock=clock)),
    QuirkyModel("rigol-ds1000z-old", "Rigol DS1104Z, firmware 00.04.02", 0x1AB1, 0x04CE,
                "streams replies like the DS1000 with TransferSize capped at the first 500 bytes; "
                "INITIATE_CLEAR hangs it until it is replugged",
                "python-usbtmc PR #18, issue #23, PR #62",
                lambda clock: RigolDs1000z(firmware="00.04.02.SP4", clock=clock)),
    QuirkyModel("rigol-ds1000z", "Rigol DS1104Z, firmware 00.04.04", 0x1AB1, 0x04CE,
                "INITIATE_CLEAR hangs it until it is replugged", "python-usbtmc PR #62",
                lambda clock: RigolDs1000z(clock=clock)),
    QuirkyModel("rigol-ds1102z-e", "Rigol DS1102Z-E", 0x1AB1, 0x04CE,
                "no zero-length packet after a transfer that fills whole packets (its *IDN? transfer is "
                "exactly 64 bytes); INITIATE_CLEAR hangs it", "pyvisa-py #463, python-usbtmc PR #62",
                lambda clock: RigolDs1102ze(clock=clock)),
    QuirkyModel("rigol-dho800", "Rigol DHO804", 0x1AB1, 0x044D,
                "every reply echoes the bTag of the first request it saw", "libsigrok PR #246",
                lambda clock: RigolDho800(clock=clock)),
    QuirkyModel("rigol-dp800", "Rigol DP832A", 0x1AB1, 0x0E11,
                "the next session gets 'Pipe error' unless the last one cleared the bulk halts", "pyvisa-py #371",
                lambda clock: RigolDp800(clock=clock)),
    QuirkyModel("siglent-sds1000x-e", "Siglent SDS1204X-E", 0xF4EC, 0xEE38,
                "INITIATE_CLEAR never finishes; TransferSize counts the padding; requests for more than "
                "48 bytes are never answered",
                "sidneycadot/python-usbtmc, ngscopeclient/scopehal PR #749",
                lambda clock: SiglentSds1000xe(clock=clock)),
    QuirkyModel("siglent-sdg1000x", "Siglent SDG1032X", 0xF4EC, 0x1103,
                "TransferSize covers only the first packet and EOM is never set", "pyvisa-py #465",
                lambda clock: SiglentSdg1000x(clock=clock)),
    QuirkyModel("siglent-clone", "SDG1032X clone without a serial number", 0xF4ED, 0xEE3A,
                "the serial number string is empty", "pyvisa-py #280",
                lambda clock: SiglentCloneNoSerial(clock=clock)),
    QuirkyModel("thorlabs-pm100d", "Thorlabs PM100D", 0x1313, 0x8078,
                "a device clear resets Bulk-IN: the next reply is lost unless its halt is cleared too",
                "sidneycadot/python-usbtmc", lambda clock: ThorlabsPm100d(clock=clock)),
    QuirkyModel("thorlabs-pm101u", "Thorlabs PM101U", 0x1313, 0x8076,
                "as the PM100D, and a Bulk-IN read during the clear hangs the clear; ignores messages until "
                "REN is asserted", "sidneycadot/python-usbtmc, pyvisa-py PR #241",
                lambda clock: ThorlabsPm101u(clock=clock)),
    QuirkyModel("tektronix-fca3000", "Tektronix FCA3000", 0x0699, 0x3000,
                "after a read timeout it answers nothing until the host drains the aborted transfer "
                "(MEAS:FREQ? takes 1 s)", "python-usbtmc #49, pyvisa-py #177",
                lambda clock: TektronixFca3000(clock=clock)),
    QuirkyModel("keysight-u2702a", "Agilent U2702A in firmware-update mode", 0x0957, 0x2818,
                "boots as 0957:2818 without USBTMC; a vendor sequence makes it 0957:2918",
                "python-usbtmc Instrument.open, issue #31", lambda clock: u2702a(clock)),
    QuirkyModel("keysight-u2722a", "Agilent U2722A in firmware-update mode", 0x0957, 0x4218,
                "boots as 0957:4218; a vendor sequence makes it 0957:4118", "python-usbtmc #38",
                lambda clock: u2722a(clock)),
    QuirkyModel("keysight-u2723a", "Agilent U2723A in firmware-update mode", 0x0957, 0x4418,
                "boots as 0957:4418; a vendor sequence makes it 0957:4318", "python-usbtmc Instrument.open",
                lambda clock: u2723a(clock)),
    QuirkyModel("keysight-u2741a", "Agilent U2741A in firmware-update mode", 0x0957, 0x4818,
                "boots as 0957:4818 with an unreadable serial number; switches to 0957:4918",
                "python-usbtmc PR #61", lambda clock: u2741a(clock)),
    QuirkyModel("keysight-u2751a", "Agilent U2751A in firmware-update mode", 0x0957, 0x3E18,
                "boots as 0957:3E18; a vendor sequence makes it 0957:3D18", "gotmc/usbtmc, python-usbtmc PR #54",
                lambda clock: u2751a(clock)),
    QuirkyModel("adcmt", "ADCMT 7351E", 0x1334, 0x0201,
                "vendor-class interface, reads of at most 63 bytes, EOM never set, commands run only while "
                "locked by its vendor request", "python-usbtmc PR #5",
                lambda clock: AdcmtInstrument(clock=clock)),
    QuirkyModel("bk-8600", "B&K Precision 8600", 0x2EC7, 0x8800,
                "ignores every message until it is put in remote", "python-usbtmc PR #53",
                lambda clock: BkPrecision8600(clock=clock)),
)

# Two models share 1AB1:04CE; by default the bus carries the DS1102Z-E and the old firmware.
DEFAULT_KEYS = tuple(m.key for m in CATALOGUE if m.key != "rigol-ds1000z")


def model(key: str) -> QuirkyModel:
    """The catalogue entry named ``key``."""
    for entry in CATALOGUE:
        if entry.key == key:
            return entry
    raise KeyError(f"no quirky instrument {key!r}; known: {', '.join(m.key for m in CATALOGUE)}")


def quirky_devices(clock: Clock | None = None, keys=DEFAULT_KEYS) -> list[VirtualDevice]:
    """New instances of the quirky instruments named by ``keys`` (default: one of each behaviour)."""
    return [model(key).factory(clock) for key in keys]


def plug_quirky(bus, clock: Clock | None = None, keys=DEFAULT_KEYS) -> list[VirtualDevice]:
    """Plug the quirky instruments into ``bus``; instruments that re-enumerate learn the bus."""
    devices = quirky_devices(clock, keys)
    for device in devices:
        if isinstance(device, FirmwareModeDevice):
            device.bus = bus
        bus.plug(device)
    return devices


__all__ = ["CATALOGUE", "DEFAULT_KEYS", "QuirkyModel", "model", "plug_quirky", "quirky_devices"]
