"""A compliance probe: how does this instrument do against USBTMC 1.0 and USB488 1.0?

:func:`probe` opens the interface itself and runs a sequence of safe checks, each with
hand-built transfers so it sees exactly what the device does: descriptors and endpoints,
GET_CAPABILITIES, the Bulk-IN header (MsgID, bTag and bTagInverse, TransferSize against
the bytes sent, alignment, EOM), short packets at packet boundaries, reply sizes, a reply
split across requests, TermChar, READ_STATUS_BYTE, REN/GTL/LLO, INDICATOR_PULSE,
ABORT_BULK_OUT, ABORT_BULK_IN, recovery after a deliberate timeout, a new session, and
INITIATE_CLEAR (last: some instruments stop answering after it).

Only queries are sent: ``*IDN?`` (several joined with ``;`` on USB488.2 interfaces, to
make a reply long enough), and ``*ESR?`` at the end to leave the event register clean;
the aborted Bulk-OUT transfer carries the start of ``*IDN?`` and is never executed. No
setting of the instrument changes.

Each :class:`Finding` says what the specification requires (with its section), what the
device did, and which quirk flags work around it. A :class:`ProbeReport` renders as
text or JSON and as a quirk entry for the user's quirks file (:func:`save_quirk_entry`).

No Qt here, and nothing from the virtual instruments: the probe sees a device only
through the pyusb backend it is given.

The package: :mod:`.spec` (what each check holds the device to, the table of steps with
the labels the user sees, :class:`Finding`), :mod:`.checks` (the checks, over one raw
session), :mod:`.report` (text, JSON, the quirk entry and its save); :func:`probe` here runs
the steps in the table's order.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable

from ..constants import InterfaceProtocol
from ..discovery import describe_interface, find_device
from ..errors import DeviceGoneError, TmcError
from ..quirks import QuirkDatabase, default_database
from ..resource import parse_resource
from ..transport import UsbTransport, default_backend, find_endpoints
from .checks import _Prober, _descriptor_findings
from .report import ProbeReport, QuirkSave, prepare_quirk_entry, save_quirk_entry, write_quirk_save
from .spec import FAIL, INFO, PASS, SKIP, STEP_BY_NAME, STEPS, WARN, Finding, PlannedStep, Step, plan


def probe(resource: str, backend=None, *, timeout_ms: int = 1000, db: QuirkDatabase | None = None,
          progress: Callable[[str], None] | None = None, cancel: threading.Event | None = None,
          include_clear: bool = True, safe: bool = False,
          on_step: Callable[[Step, tuple[Finding, ...]], None] | None = None, trace=None) -> ProbeReport:
    """Run the compliance checks against the instrument ``resource`` names.

    ``timeout_ms`` bounds each transfer (failures cost one timeout each). ``db`` is used
    only to find the device (a non-USBTMC interface the database lists, an instrument in
    firmware-update mode, and with ``safe`` which steps are risky); the checks themselves
    apply no quirk. ``progress`` is called with each step's label (:data:`STEPS`) before it
    runs, ``on_step`` with the step and its findings once it has run (or was skipped), so a
    caller can show results as they come; ``cancel`` is checked between steps (the report
    then says so). ``include_clear`` runs INITIATE_CLEAR last; ``safe`` skips the steps the
    device's quirk flags mark as risky (:func:`plan`), with a SKIP finding saying why.
    ``trace`` (an I/O trace :class:`~app.usbtmc.trace.Recorder`) records every transfer of the checks.

    Raises :class:`TmcError` only when the device cannot be opened at all.
    """
    parsed = parse_resource(resource)
    backend = backend if backend is not None else default_backend()
    db = db if db is not None else default_database()
    started = time.monotonic()
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    device, cfg, intf = find_device(parsed, backend, db)
    info = describe_interface(device, cfg, intf, probe=False, db=db)
    endpoints = find_endpoints(intf)
    findings: list[Finding] = []
    findings.extend(_descriptor_findings(intf, endpoints, info))
    if on_step is not None:
        on_step(STEP_BY_NAME["descriptors"], tuple(findings))
    prober = None
    cancelled = False
    if endpoints is not None:
        session_trace = None if trace is None else trace.open_session(
            f"probe {parsed}", bus=int(getattr(device, "bus", 1) or 1), address=int(getattr(device, "address", 1) or 1),
            interface_number=intf.bInterfaceNumber, bulk_in_packet_bytes=endpoints.bulk_in_packet_bytes,
            timeout_ms=timeout_ms)

        def open_transport(first: bool = False) -> UsbTransport:
            opened = UsbTransport.open(device, cfg.bConfigurationValue, intf.bInterfaceNumber, endpoints)
            if session_trace is not None:
                if first:
                    opened.start_trace(session_trace)
                else:
                    opened.trace = session_trace  # a reopened session: the descriptors are known
            return opened

        transport = open_transport(first=True)
        prober = _Prober(transport, endpoints, timeout_ms, intf.bInterfaceProtocol == InterfaceProtocol.USB488,
                         open_transport)
        try:
            # The table of steps gives the order and the words the user sees; "descriptors" ran above.
            for meta in STEPS[1:]:
                if meta.name == "initiate_clear" and not include_clear:
                    continue
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                name = meta.name
                if safe:
                    quirks = db.lookup(info.vid, info.pid, info.product, prober.idn or None)
                    (planned,) = [p for p in plan(quirks, safe=True) if p.step is meta]
                    if not planned.runs:
                        skipped = (Finding(name, SKIP, planned.skip_reason),)
                        findings.extend(skipped)
                        if on_step is not None:
                            on_step(meta, skipped)
                        continue
                if progress is not None:
                    progress(meta.label)
                before = len(findings)
                try:
                    findings.extend(prober.check(name)())
                except DeviceGoneError:
                    raise
                except TmcError as exc:
                    findings.append(Finding(name, FAIL, f"the check could not complete: {exc}"))
                    prober.resync()
                if on_step is not None:
                    on_step(meta, tuple(findings[before:]))
                if prober.dead:
                    break
        finally:
            prober.finish()
    caps = prober.caps if prober is not None and prober.caps is not None else None
    # A check that failed in a later step no longer passes.
    failed = {f.check for f in findings if f.verdict == FAIL}
    findings = [f for f in findings if not (f.check in failed and f.verdict in (PASS, SKIP))]
    return ProbeReport(
        resource=info.resource, vid=info.vid, pid=info.pid, manufacturer=info.manufacturer, product=info.product,
        serial=info.serial, protocol=info.protocol, speed=info.speed, idn=prober.idn if prober else "",
        capabilities={label: value for label, value in caps.describe()} if caps else {},
        findings=tuple(findings), started=stamp, duration_s=time.monotonic() - started, cancelled=cancelled,
        safe=safe, stopped_answering=prober.dead if prober is not None else False,
    )


__all__ = ["FAIL", "INFO", "PASS", "SKIP", "STEPS", "WARN", "Finding", "PlannedStep", "ProbeReport", "QuirkSave",
           "Step", "plan", "prepare_quirk_entry", "probe", "save_quirk_entry", "write_quirk_save"]
