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
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import framing
from .constants import (
    CAPABILITIES_BYTES,
    HEADER_BYTES,
    NOTIFY_READ_STATUS_BYTE_FLAG,
    USBTMC_CLASS,
    USBTMC_SUBCLASS,
    InterfaceProtocol,
    MsgId,
    Request,
    Status,
)
from .discovery import DeviceInfo, describe_interface, find_device
from .errors import DeviceGoneError, ProtocolError, TmcError, TmcTimeoutError
from .files import save_text
from .framing import Capabilities
from .quirks import QuirkDatabase, default_database, parse_database, shipped_entries, user_quirks_path
from .resource import parse_resource
from .link import Link
from .recovery import Recovery
from .transport import Endpoints, StallError, TransferError, UsbTransport, default_backend, find_endpoints

PASS, FAIL, WARN, SKIP, INFO = "pass", "fail", "warn", "skip", "info"
_LADDER = (512, 64, 63, 48)  # request sizes tried when a 1 MiB request gets no answer
_BIG_REQUEST = 1 << 20  # what a compliant host asks for (the core's default)

# What each check holds the device to. Sections: USBTMC 1.0 (2003), USB488 1.0 (2003), USB 2.0.
SPEC = {
    "descriptors": "USBTMC 1.0 §4.1 (Table 42): the interface is class 0xFE, subclass 0x03, protocol 0 (USBTMC) "
                   "or 1 (USB488), with one Bulk-OUT and one Bulk-IN endpoint; USB488 1.0 §4.2.2: an "
                   "Interrupt-IN endpoint for SR1. USB 2.0 §5.8.3: bulk packets are 8-64 bytes at full speed, "
                   "512 at high speed.",
    "strings": "USB 2.0 §9.6.7: string descriptors hold text without terminators. A VISA resource string "
               "(VPP-4.3 §4.3.1.3) names a USB instrument by its serial number.",
    "capabilities": "USBTMC 1.0 §4.2.1.8 (Table 37) and USB488 1.0 §4.2.2 (Table 8): GET_CAPABILITIES answers "
                    "SUCCESS with 0x18 bytes.",
    "request_size": "USBTMC 1.0 §3.2.1.2 (Table 4): a REQUEST_DEV_DEP_MSG_IN may ask for up to 2^32-1 bytes; "
                    "the device sends what it has, at most that many.",
    "remote": "USBTMC 1.0 §3.2 and USB488 1.0 §4.3.2: device-dependent messages are answered whether or not "
              "REN is asserted; REN only selects remote or local control.",
    "msgid": "USBTMC 1.0 §3.3.1 (Tables 8-9): every Bulk-IN transfer starts with a DEV_DEP_MSG_IN header, MsgID 2.",
    "btag": "USBTMC 1.0 §3.3.1 (Table 8): the header echoes the bTag of the REQUEST_DEV_DEP_MSG_IN it answers, "
            "with bTagInverse its one's complement.",
    "transfer_size": "USBTMC 1.0 §3.3.1 (Table 9): TransferSize is the number of message bytes in this "
                     "transfer, alignment bytes excluded, and never more than was requested.",
    "padding": "USBTMC 1.0 §3.3.1: the transfer ends with 0-3 alignment bytes so its length is a multiple of 4.",
    "eom": "USBTMC 1.0 §3.3.1 (Table 9): bmTransferAttributes.D0 (EOM) is set on the transfer that holds the "
           "last byte of the message, and only there.",
    "zlp": "USBTMC 1.0 §3.3: the device always ends a Bulk-IN transfer with a short packet; when the transfer "
           "fills whole packets, that is a zero-length packet.",
    "split": "USBTMC 1.0 §3.3.1: a reply longer than the request comes in several transfers, one per "
             "REQUEST_DEV_DEP_MSG_IN, each with its own header; EOM only on the last.",
    "termchar": "USBTMC 1.0 §3.2.1.2 (Table 4) and §3.3.1 (Table 9): with TermChar enabled (and claimed in "
                "GET_CAPABILITIES) the device ends the transfer after that character and sets "
                "bmTransferAttributes.D1.",
    "reopen": "USB 2.0 §9.4.5: an endpoint halts only when the device reports an error; a new session finds "
              "both bulk endpoints working.",
    "read_status_byte": "USB488 1.0 §4.3.1 (Tables 11-12) and §3.4.2: READ_STATUS_BYTE with 2 ≤ bTag ≤ 127 "
                        "answers SUCCESS echoing bTag; with an Interrupt-IN endpoint the status byte arrives "
                        "there as [0x80|bTag, STB], otherwise in the control reply.",
    "remote_local": "USB488 1.0 §4.3.2-4.3.4: an interface claiming REN_CONTROL/GO_TO_LOCAL/LOCAL_LOCKOUT "
                    "(USB488 interface capability D1) answers each with SUCCESS.",
    "indicator_pulse": "USBTMC 1.0 §4.2.1.9: INDICATOR_PULSE answers SUCCESS when the capability is claimed.",
    "abort_bulk_out": "USBTMC 1.0 §4.2.1.2-4.2.1.3: INITIATE_ABORT_BULK_OUT for the transfer in progress "
                      "answers SUCCESS; CHECK_ABORT_BULK_OUT_STATUS then SUCCESS with NBYTES_RXD; the host "
                      "clears the Bulk-OUT halt and the next message works.",
    "abort_bulk_in": "USBTMC 1.0 §4.2.1.4-4.2.1.5: INITIATE_ABORT_BULK_IN for the transfer in progress answers "
                     "SUCCESS; the device ends the transfer with a short packet, the host reads it, and "
                     "CHECK_ABORT_BULK_IN_STATUS answers SUCCESS; the next message works.",
    "timeout_recovery": "USBTMC 1.0 §4.2.1.4: after a Bulk-IN timeout the ABORT_BULK_IN sequence leaves the "
                        "device ready for the next message.",
    "initiate_clear": "USBTMC 1.0 §4.2.1.6-4.2.1.7: INITIATE_CLEAR answers SUCCESS; CHECK_CLEAR_STATUS answers "
                      "PENDING (bmClear.D0 = 1 asks the host to read Bulk-IN to a short packet) and then "
                      "SUCCESS; the host clears the Bulk-OUT halt and the next message works.",
}

TITLES = {
    "descriptors": "Descriptors and endpoints", "strings": "String descriptors",
    "capabilities": "GET_CAPABILITIES", "request_size": "Request size", "remote": "Answers without REN",
    "msgid": "Bulk-IN MsgID", "btag": "bTag echo and bTagInverse", "transfer_size": "TransferSize",
    "padding": "Alignment bytes", "eom": "EOM", "zlp": "Short packet at a packet boundary",
    "split": "Reply split across requests", "termchar": "TermChar", "reopen": "A new session",
    "read_status_byte": "READ_STATUS_BYTE", "remote_local": "REN_CONTROL / GO_TO_LOCAL / LOCAL_LOCKOUT",
    "indicator_pulse": "INDICATOR_PULSE", "abort_bulk_out": "ABORT_BULK_OUT", "abort_bulk_in": "ABORT_BULK_IN",
    "timeout_recovery": "Recovery after a timeout", "initiate_clear": "INITIATE_CLEAR",
}


@dataclass(frozen=True)
class Step:
    """One step of the probe as the user sees it before and while it runs.

    ``risk`` says what the step can do to an instrument that mishandles it ('' for a step
    that only asks); ``risky_when`` lists the quirk flag values under which the step is
    risky for a given device: a safe run skips it there (:func:`plan`).
    """

    name: str
    label: str
    risk: str = ""
    risky_when: tuple[tuple[str, Any], ...] = ()

    def risky_flags(self, quirks) -> list[tuple[str, Any, str]]:
        """``(flag, value, reason)`` for each flag in force on ``quirks`` that makes this step risky."""
        reasons = {a.flag: a.reason for a in getattr(quirks, "applied", ())}
        return [(flag, value, reasons.get(flag, "")) for flag, value in self.risky_when
                if getattr(quirks, flag, None) == value and flag in reasons]


_STUCK = "an instrument that mishandles it may stop answering until its USB port is reset or it is replugged"
STEPS: tuple[Step, ...] = (
    Step("descriptors", "Descriptors and string descriptors"),
    Step("capabilities", "Capabilities (GET_CAPABILITIES)"),
    Step("query", "Reply framing: MsgID, bTag, TransferSize, alignment, EOM"),
    Step("zlp", "Short packet at a packet boundary"),
    Step("split", "Reply split across requests"),
    Step("termchar", "Termination character (TermChar)"),
    Step("reopen_session", "A new session on the same interface"),
    Step("read_status_byte", "Status byte (READ_STATUS_BYTE)"),
    Step("remote_local", "Remote and local (REN_CONTROL, GO_TO_LOCAL, LOCAL_LOCKOUT)",
         "asserts REN for a moment: the front panel may lock until the step releases it"),
    Step("indicator_pulse", "Indicator pulse (INDICATOR_PULSE)"),
    Step("abort_bulk_out", "Aborting a command (ABORT_BULK_OUT)",
         "leaves a half-sent command on the instrument, then aborts it"),
    Step("abort_bulk_in", "Aborting a reply (ABORT_BULK_IN)", _STUCK, (("abort_in_drain", False),)),
    Step("timeout_recovery", "Recovery after a deliberate timeout", _STUCK, (("abort_in_drain", False),)),
    Step("initiate_clear", "Device clear (INITIATE_CLEAR)", _STUCK,
         (("no_initiate_clear", True), ("no_drain_on_clear", True))),
)
STEP_BY_NAME = {step.name: step for step in STEPS}


@dataclass(frozen=True)
class PlannedStep:
    """A step and whether this run will take it (a safe run skips what the device's quirks call risky)."""

    step: Step
    runs: bool
    risky_because: tuple[tuple[str, Any, str], ...] = ()  # (flag, value, reason) in force for this device

    @property
    def skip_reason(self) -> str:
        flags = ", ".join(f"{flag} = {_toml_value(value)}" for flag, value, _ in self.risky_because)
        return f"not run in safe mode: this device's quirk entry sets {flags}"


def plan(quirks, *, safe: bool = True, include_clear: bool = True) -> tuple[PlannedStep, ...]:
    """The steps a probe of a device with ``quirks`` (a :class:`~app.usbtmc.quirks.Quirks`) takes.

    With ``safe`` a step the device's quirk flags mark as risky (:attr:`Step.risky_when`) is
    skipped; otherwise every step runs (``include_clear=False`` leaves INITIATE_CLEAR out).
    """
    planned = []
    for step in STEPS:
        risky = tuple(step.risky_flags(quirks))
        runs = not (safe and risky) and (include_clear or step.name != "initiate_clear")
        planned.append(PlannedStep(step, runs, risky))
    return tuple(planned)


@dataclass(frozen=True)
class Finding:
    """One check: what the spec requires, what the device did, which quirk flags cure it."""

    check: str
    verdict: str  # pass, fail, warn, skip, info
    observed: str
    flags: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        step = STEP_BY_NAME.get(self.check)
        return TITLES.get(self.check) or (step.label if step is not None else self.check)

    @property
    def spec(self) -> str:
        return SPEC.get(self.check, "")


@dataclass(frozen=True)
class ProbeReport:
    """The result of :func:`probe`, for text, JSON and a quirk entry."""

    resource: str
    vid: int
    pid: int
    manufacturer: str
    product: str
    serial: str
    protocol: str
    speed: str
    idn: str
    capabilities: dict[str, bool]
    findings: tuple[Finding, ...]
    started: str  # ISO 8601, UTC
    duration_s: float
    cancelled: bool = False
    safe: bool = False  # risky steps were skipped where the device's quirks say so
    stopped_answering: bool = False  # a step left the instrument unable to answer (reset its port)

    def count(self, verdict: str) -> int:
        return sum(1 for f in self.findings if f.verdict == verdict)

    @property
    def compliant(self) -> bool:
        """No check failed (warnings are allowed)."""
        return self.count(FAIL) == 0

    def suggested_flags(self) -> dict[str, Any]:
        """Every flag the findings suggest, merged in check order."""
        flags: dict[str, Any] = {}
        for finding in self.findings:
            flags.update(finding.flags)
        return flags

    def new_flags(self, db: QuirkDatabase) -> dict[str, Any]:
        """The suggested flags the entries of ``db`` do not already set for this device."""
        quirks = db.lookup(self.vid, self.pid, self.product, self.idn or None)
        return {flag: value for flag, value in self.suggested_flags().items() if getattr(quirks, flag) != value}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vid"], data["pid"] = f"0x{self.vid:04X}", f"0x{self.pid:04X}"
        data["findings"] = [
            {"check": f.check, "title": f.title, "verdict": f.verdict, "spec": f.spec, "observed": f.observed,
             "flags": f.flags} for f in self.findings
        ]
        data["summary"] = {v: self.count(v) for v in (PASS, FAIL, WARN, INFO, SKIP)}
        data["suggested_flags"] = self.suggested_flags()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def text(self, *, width: int = 100) -> str:
        """A plain-text report, worst findings first within the probe's order."""
        lines = [
            f"Compliance probe of {self.resource}",
            f"{self.manufacturer} {self.product} ({self.vid:04X}:{self.pid:04X}), serial {self.serial or '(empty)'}, "
            f"{self.protocol}, {self.speed}",
        ]
        if self.idn:
            lines.append(f"*IDN? {self.idn}")
        summary = ", ".join(f"{self.count(v)} {v}" for v in (PASS, FAIL, WARN, INFO, SKIP) if self.count(v))
        lines.append(f"{len(self.findings)} checks in {self.duration_s:.1f} s: {summary}"
                     + (" (cancelled)" if self.cancelled else ""))
        for finding in self.findings:
            lines.append("")
            lines.append(f"{finding.verdict.upper():5} {finding.title}")
            lines += _wrap("Spec:   ", finding.spec, width)
            lines += _wrap("Device: ", finding.observed, width)
            if finding.flags:
                lines += _wrap("Quirk:  ", ", ".join(f"{k} = {_toml_value(v)}" for k, v in finding.flags.items()), width)
        entry = self.quirk_entry()
        if entry:
            lines += ["", "Suggested entry for your quirks file:", "", entry.rstrip()]
        return "\n".join(lines) + "\n"

    def quirk_entry(self, name: str | None = None, flags: dict[str, Any] | None = None) -> str:
        """The findings as a ``[[quirk]]`` entry (TOML), or '' when no flag is suggested.

        ``flags`` narrows the entry (e.g. to :meth:`new_flags`); by default it holds every suggested flag.
        """
        flags = self.suggested_flags() if flags is None else flags
        if not flags:
            return ""
        failing = [f.title for f in self.findings if set(f.flags) & set(flags)]
        title = name or f"{self.manufacturer} {self.product}".strip() or f"{self.vid:04X}:{self.pid:04X}"
        reason = "The compliance probe found: " + "; ".join(dict.fromkeys(failing)) + "."
        lines = [
            "[[quirk]]",
            f"name = {_toml_string(title)}",
            f"vid = 0x{self.vid:04X}",
            f"pid = [0x{self.pid:04X}]",
            f"reason = {_toml_string(reason)}",
            f"source = {_toml_string(f'tmc probe of {self.resource} on {self.started[:10]}')}",
            "[quirk.flags]",
        ]
        lines += [f"{flag} = {_toml_value(value)}" for flag, value in flags.items()]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class QuirkSave:
    """What saving a report's quirk entry would do to the user's quirks file (:func:`prepare_quirk_entry`)."""

    path: Path
    text: str  # the whole file as it will be written
    flags: dict[str, Any]  # the flags it adds (or changes)
    merged_into: str  # the name of the user entry the flags join; '' when a new entry is appended
    entry: str  # that entry as it will read


def prepare_quirk_entry(report: ProbeReport, path: Path | None = None, name: str | None = None, *,
                        base: list | None = None) -> QuirkSave:
    """Merge ``report``'s suggested flags with the entries that already apply to the device.

    Flags that ``base`` (the entries read before the user's file; default the shipped
    database) and the file at ``path`` (default :func:`user_quirks_path`) already set to the
    same value are left out. When the file holds an entry for exactly
    this device (its VID and PID, no product or IDN pattern) the new flags join that entry;
    otherwise a new entry is appended. Nothing is written here.

    Raises ValueError when nothing would be saved (no flag suggested, or every suggested
    flag already in force), and :class:`QuirksFileError` when the file does not load now or
    would not load afterwards.
    """
    if not report.suggested_flags():
        raise ValueError("the probe found nothing a quirk flag would work around")
    path = path if path is not None else user_quirks_path()
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    user = parse_database(old, str(path)) if old.strip() else []  # never add to a file that does not load
    db = QuirkDatabase(entries=list(shipped_entries() if base is None else base) + user)
    flags = report.new_flags(db)
    if not flags:
        names = [e.name for e in db.entries if e.matches(report.vid, report.pid, report.product, report.idn or None)
                 and set(e.flags) & set(report.suggested_flags())]
        raise ValueError("the quirk entries that already apply to this device set every flag the probe suggests"
                         + (f" ({'; '.join(dict.fromkeys(names))})" if names else ""))
    target = next((e for e in reversed(user) if e.matches_ids(report.vid, report.pid) and e.pids == (report.pid,)
                   and e.product is None and e.idn is None and e.pid_range is None), None)
    merged = _merge_into(old, target, flags) if target is not None else None
    if merged is not None:
        text, entry = merged
        merged_into = target.name
    else:
        entry = report.quirk_entry(name, flags)
        text = (old.rstrip() + "\n\n" if old.strip() else "") + entry
        merged_into = ""
    parse_database(text, str(path))  # refuse to write a file that would not load
    return QuirkSave(path, text, flags, merged_into, entry)


def save_quirk_entry(report: ProbeReport, path: Path | None = None, name: str | None = None, *,
                     base: list | None = None) -> Path:
    """Save ``report``'s quirk flags to the user's quirks file, merged as :func:`prepare_quirk_entry` says.

    The file is replaced atomically (a new file renamed over the old one), so a failed
    write leaves the old file whole.
    """
    return write_quirk_save(prepare_quirk_entry(report, path, name, base=base))


def write_quirk_save(save: QuirkSave) -> Path:
    """Write what :func:`prepare_quirk_entry` prepared; the next session sees it."""
    save.path.parent.mkdir(parents=True, exist_ok=True)
    save_text(save.path, save.text)  # never truncates the old file on a failed write
    default_database.cache_clear()  # the next session sees the new entry
    return save.path


def _merge_into(text: str, entry, flags: dict[str, Any]) -> tuple[str, str] | None:
    """``text`` with ``flags`` set in ``entry``'s ``[quirk.flags]`` table, and the entry as it reads
    then; None when the entry's flags are not written as such a table (then a new entry is added)."""
    lines = text.splitlines()
    first = int(entry.origin.rsplit(":", 1)[1]) - 1
    end = next((i for i in range(first + 1, len(lines)) if lines[i].strip().startswith("[[quirk]]")), len(lines))
    table = next((i for i in range(first, end) if lines[i].strip() == "[quirk.flags]"), None)
    if table is None or any(lines[i].strip().startswith("[") for i in range(table + 1, end)):
        return None
    block = lines[first:end]
    for flag, value in flags.items():
        line = f"{flag} = {_toml_value(value)}"
        at = next((i for i in range(table - first + 1, len(block))
                   if block[i].split("=", 1)[0].strip() == flag), None)
        if at is not None:
            block[at] = line
        else:
            last = max(i for i in range(table - first, len(block)) if block[i].strip() or i == table - first)
            block.insert(last + 1, line)
    merged = lines[:first] + block + lines[end:]
    return "\n".join(merged) + "\n", "\n".join(block).rstrip() + "\n"


# --- the probe ------------------------------------------------------------------------------


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
            for step in prober.steps(include_clear):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                name = step.__name__[1:]
                meta = STEP_BY_NAME[name]
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
                    findings.extend(step())
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


def _descriptor_findings(intf, endpoints: Endpoints | None, info: DeviceInfo) -> list[Finding]:
    found = []
    problems, flags = [], {}
    if (intf.bInterfaceClass, intf.bInterfaceSubClass) != (USBTMC_CLASS, USBTMC_SUBCLASS):
        problems.append(f"the interface is class 0x{intf.bInterfaceClass:02X}/0x{intf.bInterfaceSubClass:02X}, "
                        "not the USBTMC triple, so no standard host finds it")
        flags["force_usbtmc"] = True
    if endpoints is None:
        problems.append("the Bulk-IN/Bulk-OUT pair is missing")
    else:
        for name, size in (("Bulk-IN", endpoints.bulk_in_packet_bytes), ("Bulk-OUT", endpoints.bulk_out_packet_bytes)):
            legal = {"full (12 Mbit/s)": {8, 16, 32, 64}, "high (480 Mbit/s)": {512}}.get(info.speed)
            if legal is not None and size not in legal:
                problems.append(f"{name} wMaxPacketSize is {size} at {info.speed} speed")
        if intf.bInterfaceProtocol == InterfaceProtocol.USB488 and endpoints.interrupt_in is None:
            problems.append("a USB488 interface without Interrupt-IN cannot signal SRQ")
    observed = "; ".join(problems) or (
        f"class FE/03 protocol {intf.bInterfaceProtocol}; Bulk-OUT 0x{endpoints.bulk_out:02X} and Bulk-IN "
        f"0x{endpoints.bulk_in:02X} ({endpoints.bulk_in_packet_bytes}-byte packets)"
        + (f", Interrupt-IN 0x{endpoints.interrupt_in:02X}" if endpoints.interrupt_in else ""))
    found.append(Finding("descriptors", FAIL if problems else PASS, observed, flags))
    if info.firmware_mode_pid:
        found.append(Finding("descriptors", INFO, f"the instrument was in its firmware-update mode "
                                                  f"(PID 0x{info.firmware_mode_pid:04X}) and was switched"))
    notes = []
    if not info.serial:
        notes.append("the serial number is empty: the resource string has an empty serial field "
                     f"({info.resource}), and two such instruments cannot be told apart")
    found.append(Finding("strings", WARN if notes else PASS, "; ".join(notes) or
                         f"manufacturer {info.manufacturer!r}, product {info.product!r}, serial {info.serial!r}"))
    return found


@dataclass
class _Transfer:
    """What one REQUEST_DEV_DEP_MSG_IN brought back."""

    btag: int
    requested: int
    raw: bytes
    elapsed_s: float
    header: framing.InHeader | None = None

    @property
    def data(self) -> bytes:
        return self.raw[HEADER_BYTES:]


class _Prober:
    """The raw session the checks share. Not thread-safe: one probe runs in one thread."""

    def __init__(self, transport: UsbTransport, endpoints: Endpoints, timeout_ms: int, usb488: bool, reopen) -> None:
        self.ep = endpoints
        self.timeout_ms = timeout_ms
        self.usb488 = usb488
        self._reopen = reopen
        self.packet = endpoints.bulk_in_packet_bytes
        # The session's own bTag counters, control requests and recovery sequences.
        self.link = Link(transport, endpoints, usb488=usb488)
        self.recovery = Recovery(self.link, timeout_ms=timeout_ms)
        self.caps: Capabilities | None = None
        self.idn = ""
        self.reply = b""  # the *IDN? reply as it should read
        self.max_request = _BIG_REQUEST
        self.ren_asserted = False
        self.needs_remote = False
        self.dead = False
        self.query_error_made = False
        self.known: set[str] = set()  # deviations already reported, so later checks do not trip on them

    def steps(self, include_clear: bool):
        steps = [self._capabilities, self._query, self._zlp, self._split, self._termchar, self._reopen_session,
                 self._read_status_byte, self._remote_local, self._indicator_pulse, self._abort_bulk_out,
                 self._abort_bulk_in, self._timeout_recovery]
        if include_clear:
            steps.append(self._initiate_clear)
        return steps

    # --- low-level transfers ---

    @property
    def t(self) -> UsbTransport:
        """The claimed interface (replaced when a check reopens the session)."""
        return self.link.transport

    @t.setter
    def t(self, transport: UsbTransport) -> None:
        self.link.transport = transport

    @property
    def btag(self) -> int:
        return self.link.btag

    def next_btag(self) -> int:
        return self.link.next_btag()

    def control(self, request: Request, value: int, length: int, *, endpoint: int | None = None) -> bytes:
        return self.link.control_raw(request, value, length, endpoint=endpoint)

    def write(self, payload: bytes) -> int:
        btag = self.next_btag()
        self.t.bulk_out(framing.pack_dev_dep_msg_out(btag, payload, eom=True), self.timeout_ms)
        return btag

    def request(self, size: int, term_char: int | None = None) -> int:
        btag = self.next_btag()
        self.t.bulk_out(framing.pack_request_dev_dep_msg_in(btag, size, term_char), self.timeout_ms)
        return btag

    def read_device_transfer(self, expected: int) -> tuple[bytes, float]:
        """Read until the device ends its transfer: a buffer with room for ``expected`` bytes
        plus a packet (for the ZLP), continued while the device keeps filling it."""
        buffer = -(-(HEADER_BYTES + expected + 3) // self.packet) * self.packet + self.packet
        started = time.monotonic()
        if "no_zlp" in self.known:
            # As the cured core reads: one packet, then exactly the rest (no ZLP to wait for).
            raw = bytearray(self.t.bulk_in(self.packet, self.timeout_ms))
            if len(raw) == self.packet:
                size = int.from_bytes(raw[4:8], "little")
                rest = HEADER_BYTES + size + framing.padding_bytes(size) - len(raw)
                if rest > 0:
                    raw += self.t.bulk_in(-(-rest // self.packet) * self.packet, self.timeout_ms)
            return bytes(raw), time.monotonic() - started
        raw = bytearray(self.t.bulk_in(buffer, self.timeout_ms))
        last = len(raw)
        while last == buffer:  # the device sent more than asked for: read on to its short packet
            more = self.t.bulk_in(buffer, self.timeout_ms)
            raw += more
            last = len(more)
        return bytes(raw), time.monotonic() - started

    def transfer(self, size: int, term_char: int | None = None) -> _Transfer:
        btag = self.request(size, term_char)
        raw, elapsed = self.read_device_transfer(size)
        header = None
        if len(raw) >= HEADER_BYTES:
            try:
                header = framing.parse_in_header(raw, expected_btag=None, expected_msg_id=None)
            except ProtocolError:
                header = None
        return _Transfer(btag, size, raw, elapsed, header)

    def stalled(self, elapsed_s: float) -> bool:
        return elapsed_s >= 0.8 * self.timeout_ms / 1000

    def drain(self) -> int:
        """Read Bulk-IN until a short packet (or nothing arrives)."""
        return self.recovery.drain_bulk_in(min(self.timeout_ms, 300))

    def abort_in(self, btag: int) -> str:
        """The ABORT_BULK_IN sequence in its exact order: INITIATE, drain, CHECK."""
        outcome = self.recovery.abort_bulk_in(btag)
        if outcome.initiate_status != Status.SUCCESS:
            return f"INITIATE_ABORT_BULK_IN answered 0x{outcome.initiate_status:02X}"
        if outcome.check_status == Status.PENDING:
            return "CHECK_ABORT_BULK_IN_STATUS stayed PENDING"
        return f"aborted ({outcome.drained_bytes} bytes drained), CHECK answered 0x{outcome.check_status:02X}"

    def resync(self) -> None:
        """After a failed check: abort whatever read may hang, drain, clear both halts."""
        self.recovery.run(lambda: self.abort_in(self.btag), lambda: self.recovery.clear_halt(self.ep.bulk_out),
                          lambda: self.recovery.clear_halt(self.ep.bulk_in), lambda: f"{self.drain()} drained")

    def read_message(self, size: int) -> tuple[bytes, list[_Transfer]]:
        """Read one reply transfer by transfer, ``size`` bytes per request, until EOM."""
        out, transfers = bytearray(), []
        for _ in range(4096):
            transfer = self.transfer(size)
            transfers.append(transfer)
            if transfer.header is None:
                raise ProtocolError(f"a Bulk-IN transfer of {len(transfer.raw)} bytes without a valid header")
            take = transfer.header.transfer_size
            data = transfer.data[:take] if "transfer_size_includes_padding" not in self.known else \
                _strip_nuls(transfer.data[:take])
            if "transfer_size_unreliable" in self.known:
                data = _strip_nuls(transfer.data)
            out += data
            if transfer.header.eom or "no_eom" in self.known:
                return bytes(out), transfers
        raise ProtocolError("no EOM after 4096 transfers")

    def query(self, message: bytes, size: int | None = None) -> bytes:
        self.write(message)
        data, _ = self.read_message(size or self.max_request)
        return data

    def idn_works(self) -> bool:
        try:
            return self.query(b"*IDN?\n").rstrip(b"\x00") == self.reply
        except TmcError:
            self.resync()
            return False

    def finish(self) -> None:
        try:
            if not self.dead and self.caps is not None and self.caps.usb488_2 and self.query_error_made:
                self.query(b"*ESR?\n")  # the deliberate timeout set QYE: leave the register clean
        except TmcError:
            pass
        if self.ren_asserted:
            try:
                self.control(Request.REN_CONTROL, 0, 1)
            except TmcError:
                pass
        self.t.close()

    # --- checks ---

    def _capabilities(self) -> list[Finding]:
        try:
            reply = self.control(Request.GET_CAPABILITIES, 0, CAPABILITIES_BYTES)
        except StallError:
            return [Finding("capabilities", FAIL, "GET_CAPABILITIES was STALLed")]
        try:
            self.caps = framing.parse_capabilities(reply, usb488=self.usb488)
        except ProtocolError as exc:
            return [Finding("capabilities", FAIL, str(exc))]
        claims = [label for label, value in self.caps.describe() if value]
        notes = []
        if self.caps.sr1 and self.ep.interrupt_in is None:
            notes.append("SR1 is claimed without an Interrupt-IN endpoint")
        observed = (f"USBTMC {Capabilities.version(self.caps.bcd_usbtmc)}"
                    + (f", USB488 {Capabilities.version(self.caps.bcd_usb488)}" if self.caps.is_usb488 else "")
                    + "; claims: " + (", ".join(claims) or "nothing optional"))
        return [Finding("capabilities", WARN if notes else PASS, "; ".join(notes + [observed]))]

    def _query(self) -> list[Finding]:
        findings: list[Finding] = []
        first = self._try_query(_BIG_REQUEST)
        if first is None and self.caps is not None and self.caps.ren_control:
            try:
                if self.control(Request.REN_CONTROL, 1, 1)[0] == Status.SUCCESS:
                    self.ren_asserted = True
                    first = self._try_query(_BIG_REQUEST)
                    if first is not None:
                        self.needs_remote = True
                        findings.append(Finding("remote", FAIL, "*IDN? got no answer until REN was asserted",
                                                {"remote_on_open": True}))
            except TmcError:
                pass
        if first is None:
            for size in _LADDER:
                first = self._try_query(size)
                if first is not None:
                    self.max_request = size
                    findings.append(Finding(
                        "request_size", FAIL,
                        f"requests for {_BIG_REQUEST} bytes got no answer; requests for {size} bytes did"
                        + (" (the larger ones tried did not)" if size != _LADDER[0] else ""),
                        {"max_in_transfer_bytes": size}))
                    break
        if first is None:
            self.dead = True
            return findings + [Finding("request_size", FAIL,
                                       "*IDN? got no answer to any request size; the remaining checks need one")]
        if self.max_request == _BIG_REQUEST:
            findings.append(Finding("request_size", PASS, f"answered a request for {_BIG_REQUEST} bytes"))
        findings += self._judge_reply(first)
        second = self._try_query(self.max_request)  # a second query shows a stale bTag
        if second is not None:
            stale = [f for f in self._judge_reply(second) if f.check == "btag" and f.verdict == FAIL]
            if stale and not any(f.check == "btag" and f.verdict == FAIL for f in findings):
                findings = [f for f in findings if f.check != "btag"] + stale
        return findings

    def _try_query(self, size: int) -> list[_Transfer] | None:
        """Write *IDN? and read its transfers with ``size``-byte requests; None when nothing came."""
        try:
            self.write(b"*IDN?\n")
        except TmcTimeoutError:
            self.resync()
            return None
        transfers: list[_Transfer] = []
        for _ in range(64):
            try:
                transfer = self.transfer(size)
            except TmcTimeoutError:
                self.abort_in(self.btag)
                return transfers or None
            transfers.append(transfer)
            header = transfer.header
            if header is None or header.eom or not transfer.data:
                break
            if header.transfer_size > size or header.transfer_size < len(transfer.data) - 3:
                break  # not framed per request: the reply analysis says what happened
        return transfers

    def _judge_reply(self, transfers: list[_Transfer]) -> list[Finding]:
        """MsgID, bTag, TransferSize, padding, EOM and the short packet of one *IDN? reply."""
        findings = []
        first = transfers[0]
        header = first.header
        if header is None:
            inverse = len(first.raw) >= 3 and first.raw[1] ^ 0xFF != first.raw[2]
            return [Finding("btag" if inverse else "msgid", FAIL,
                            "the reply's header is not a USBTMC header (bTagInverse does not match)"
                            if inverse else f"the reply is {len(first.raw)} bytes, shorter than a header")]
        # MsgID
        if header.msg_id != MsgId.DEV_DEP_MSG_IN:
            findings.append(Finding("msgid", FAIL, f"the first transfer's MsgID is {header.msg_id}",
                                    {"tolerate_bad_first_msgid": True}))
        else:
            findings.append(Finding("msgid", PASS, "MsgID 2 (DEV_DEP_MSG_IN)"))
        # bTag
        if header.btag != first.btag:
            self.known.add("stale_btag")
            findings.append(Finding("btag", FAIL, f"the reply echoes bTag {header.btag} to a request with bTag "
                                                  f"{first.btag} (bTagInverse matches its own bTag)",
                                    {"tolerate_stale_btag": True}))
        else:
            findings.append(Finding("btag", PASS, f"bTag {first.btag} echoed with its inverse"))
        # Everything the transfers carried, and what their headers said.
        data = first.data
        size = header.transfer_size
        text = data[:size].rstrip(b"\x00")
        full = bytes(data)
        stream = b""
        if size > len(data):  # more announced than this transfer held: is the rest coming header-less?
            stream = self._read_stream(size - len(data))
        if size > first.requested:
            findings.append(Finding("transfer_size", FAIL,
                                    f"TransferSize {size} exceeds the {first.requested} bytes requested",
                                    {"header_in_first_transfer_only": True}))
        elif stream and len(data) + len(stream) >= size:
            self.known.add("stream")
            findings.append(Finding("transfer_size", FAIL,
                                    f"TransferSize {size}, but this transfer held {len(data)} bytes and the rest "
                                    "came in further transfers without a header",
                                    {"header_in_first_transfer_only": True, "single_request_per_reply": True,
                                     "eom_unreliable": True}))
        else:
            verdicts = [self._judge_size(t) for t in transfers if t.header is not None]
            worst = next((v for v in verdicts if v.verdict == FAIL), verdicts[0])
            findings.append(worst)
            if "transfer_size_unreliable" in worst.flags:
                text = full.rstrip(b"\x00")
        # Padding
        if "stream" in self.known or size > first.requested:
            findings.append(Finding("padding", SKIP, "not framed per transfer"))
        elif (HEADER_BYTES + len(data)) % 4:
            findings.append(Finding("padding", FAIL, f"the transfer is {HEADER_BYTES + len(data)} bytes long"))
        else:
            pad = len(data) - min(size, len(data))
            findings.append(Finding("padding", PASS, f"{pad} alignment byte{'s' if pad != 1 else ''} to a "
                                                     "multiple of 4" if pad else "no alignment bytes needed"))
        # EOM: the whole reply is in; is it marked?
        reply = text + stream
        last = transfers[-1].header
        if "stream" in self.known:
            findings.append(Finding("eom", WARN if header.eom else FAIL,
                                    "EOM is set on a transfer that does not hold the end of the message"
                                    if header.eom else "EOM is never set"))
        elif len(transfers) == 1 and not header.eom:
            # The next request shows whether more was to come.
            try:
                extra = self.transfer(self.max_request)
                more = extra.data[: extra.header.transfer_size] if extra.header else extra.raw
            except TmcTimeoutError:
                self.abort_in(self.btag)
                more = None
            if more:
                reply += more
                findings.append(Finding("eom", PASS, "the reply continued in a second transfer with EOM"))
            else:
                self.known.add("no_eom")
                findings.append(Finding("eom", FAIL, "EOM is not set, and a further request got no data",
                                        {"no_eom": True}))
        elif last is not None and last.eom:
            findings.append(Finding("eom", PASS, "EOM set on the last transfer"))
        else:
            findings.append(Finding("eom", FAIL, "the reply ended without EOM"))
        # Multi-transfer replies (small requests): join them.
        if len(transfers) > 1 and "stream" not in self.known:
            reply = b"".join(t.data[: t.header.transfer_size] for t in transfers if t.header).rstrip(b"\x00")
        # The short packet
        if self.stalled(first.elapsed_s) and len(first.raw) % self.packet == 0:
            self.known.add("no_zlp")
            findings.append(Finding("zlp", FAIL, f"a {len(first.raw)}-byte transfer ends on a packet boundary and "
                                                 "no zero-length packet followed: the read waited for the whole "
                                                 "timeout", {"no_zlp": True}))
        if not self.reply:
            self.reply = reply
            self.idn = reply.decode("utf-8", "backslashreplace").strip()
        return findings

    def _judge_size(self, transfer: _Transfer) -> Finding:
        data, size = transfer.data, transfer.header.transfer_size
        extra = len(data) - size
        message = data[:size]
        if 0 <= extra <= 3 and not any(data[size:]):
            trailing = len(message) - len(message.rstrip(b"\x00"))
            if extra == 0 and size % 4 == 0 and 0 < trailing <= 3 and (HEADER_BYTES + size) % 4 == 0 \
                    and (HEADER_BYTES + size - trailing) % 4:
                self.known.add("transfer_size_includes_padding")
                return Finding("transfer_size", FAIL, f"TransferSize {size} counts {trailing} NUL alignment "
                                                      "bytes as message bytes",
                               {"transfer_size_includes_padding": True})
            return Finding("transfer_size", PASS, f"TransferSize {size} = the message bytes sent")
        if extra > 0:
            self.known.add("transfer_size_unreliable")
            return Finding("transfer_size", FAIL, f"TransferSize {size}, but the transfer carried {len(data)} bytes "
                                                  f"({_printable(data[size:])} beyond it)",
                           {"transfer_size_unreliable": True})
        return Finding("transfer_size", FAIL, f"TransferSize {size}, but the transfer ended after {len(data)} bytes")

    def _read_stream(self, wanted: int) -> bytes:
        """Data that follows a header transfer without a new request (a Rigol-style stream)."""
        got = bytearray()
        while len(got) < wanted:
            try:
                more = self.t.bulk_in(-(-(wanted - len(got)) // self.packet) * self.packet + self.packet,
                                      min(self.timeout_ms, 300))
            except TmcTimeoutError:
                break
            if not more:
                continue
            got += more
        return bytes(got[:wanted])

    def _zlp(self) -> list[Finding]:
        if "no_zlp" in self.known:
            return []
        if "stream" in self.known:
            return [Finding("zlp", SKIP, "the device ignores the request size, so no transfer can be sized")]
        want = self.packet - HEADER_BYTES  # a transfer of exactly one packet
        if self.max_request < want:
            return [Finding("zlp", SKIP, f"requests are limited to {self.max_request} bytes, less than a packet")]
        message, reply = b"*IDN?\n", self.reply
        if len(reply) < want:
            copies = -(-want // max(1, len(reply) + 1))
            if not (self.caps and self.caps.usb488_2) or copies > 16:
                return [Finding("zlp", SKIP, f"the *IDN? reply ({len(reply)} bytes) is shorter than the {want} "
                                             "bytes needed to fill a packet")]
            message = b";".join([b"*IDN?"] * copies) + b"\n"
        self.write(message)
        transfer = self.transfer(want)
        self._finish_reply(transfer)
        if transfer.header is None or transfer.header.transfer_size != want:
            return [Finding("zlp", SKIP, "the device did not send a transfer of exactly one packet")]
        if self.stalled(transfer.elapsed_s):
            self.known.add("no_zlp")
            return [Finding("zlp", FAIL, f"after a transfer of exactly {self.packet} bytes no zero-length packet "
                                         "came: the read waited for the whole timeout", {"no_zlp": True})]
        return [Finding("zlp", PASS, f"a {self.packet}-byte transfer was ended by a zero-length packet")]

    def _finish_reply(self, last: _Transfer) -> None:
        """Read whatever is left of the current reply (requests until EOM), ignoring it."""
        if last.header is not None and last.header.eom:
            return
        for _ in range(256):
            try:
                transfer = self.transfer(self.max_request)
            except TmcTimeoutError:
                self.abort_in(self.btag)
                return
            if transfer.header is None or transfer.header.eom or "no_eom" in self.known:
                return

    def _split(self) -> list[Finding]:
        size = 7  # 12 + 7 bytes: every transfer needs an alignment byte
        self.write(b"*IDN?\n")
        pieces, findings = [], []
        for index in range(len(self.reply) // size + 4):
            try:
                transfer = self.transfer(size)
            except TmcTimeoutError:
                self.abort_in(self.btag)
                findings.append(Finding("split", FAIL, f"request {index + 1} for {size} bytes got no answer"))
                break
            header = transfer.header
            if header is None:
                findings.append(Finding("split", FAIL, f"transfer {index + 1} has no valid header",
                                        {"header_in_first_transfer_only": True}))
                break
            counted = transfer.data[size:header.transfer_size]
            if size < header.transfer_size <= size + 3 and not any(counted) \
                    and (HEADER_BYTES + header.transfer_size) % 4 == 0:
                if "transfer_size_includes_padding" not in self.known:
                    self.known.add("transfer_size_includes_padding")
                    findings.append(Finding("transfer_size", FAIL,
                                            f"asked for {size} bytes, TransferSize {header.transfer_size} counts "
                                            f"{len(counted)} NUL alignment bytes as message bytes",
                                            {"transfer_size_includes_padding": True}))
                pieces.append(transfer.data[:size])
                if header.eom:
                    break
                continue
            if header.transfer_size > size:
                self.drain()
                return [Finding("split", FAIL, f"asked for {size} bytes, the device announced "
                                               f"{header.transfer_size} and sent "
                                               f"{len(transfer.data)}: it ignores the request size",
                                {"header_in_first_transfer_only": True, "single_request_per_reply": True})]
            if index and transfer.data[:header.transfer_size] == self.reply[:header.transfer_size] \
                    and len(self.reply) > 2 * size:
                self.drain()
                return [Finding("split", FAIL, "the second request restarted the reply from its first byte",
                                {"single_request_per_reply": True})]
            pieces.append(transfer.data[:header.transfer_size])
            if header.eom or "no_eom" in self.known and len(b"".join(pieces)) >= len(self.reply):
                break
        joined = b"".join(pieces)
        if findings and findings[-1].check == "split":
            return findings
        if joined.rstrip(b"\x00") == self.reply:
            return findings + [Finding("split", PASS, f"{len(pieces)} transfers of at most {size} bytes, EOM on "
                                                      "the last, joined to the whole reply")]
        return findings + [Finding("split", FAIL, f"{len(pieces)} transfers of at most {size} bytes joined to "
                                                  f"{_printable(joined)} instead of the reply")]

    def _termchar(self) -> list[Finding]:
        if not (self.caps and self.caps.term_char):
            return [Finding("termchar", SKIP, "TermChar is not claimed")]
        cut = self.reply.find(b",")
        if cut < 0:
            return [Finding("termchar", SKIP, "the reply holds no ',' to end a transfer on")]
        self.write(b"*IDN?\n")
        transfer = self.transfer(self.max_request, term_char=ord(","))
        header = transfer.header
        self._finish_reply(transfer)
        expected = self.reply[: cut + 1]
        if header and header.ended_on_term_char and transfer.data[: header.transfer_size] == expected:
            return [Finding("termchar", PASS, f"the transfer ended after the first ',' ({len(expected)} bytes) "
                                              "with bmTransferAttributes.D1 set")]
        got = transfer.data[: header.transfer_size] if header else transfer.raw
        return [Finding("termchar", FAIL, f"with TermChar ',' the transfer held {_printable(got)}"
                                          + ("" if header and header.ended_on_term_char else ", D1 clear"))]

    def _reopen_session(self) -> list[Finding]:
        """Close without clearing halts, open again: does the first query work?"""
        self.t.close()
        self.t = self._reopen()
        self.control(Request.GET_CAPABILITIES, 0, CAPABILITIES_BYTES)
        if self.ren_asserted:
            self.control(Request.REN_CONTROL, 1, 1)
        try:
            ok = self.query(b"*IDN?\n").rstrip(b"\x00") == self.reply
            error = "" if ok else "the reply differed"
        except (StallError, TransferError) as exc:
            ok, error = False, str(exc)
        except TmcError as exc:
            ok, error = False, str(exc)
        if ok:
            return [Finding("reopen", PASS, "the first query of a new session works")]
        # Cure: clear both halts, close, open again.
        for endpoint in (self.ep.bulk_out, self.ep.bulk_in):
            self.recovery.clear_halt(endpoint)
        self.drain()
        self.t.close()
        self.t = self._reopen()
        self.control(Request.GET_CAPABILITIES, 0, CAPABILITIES_BYTES)
        if self.ren_asserted:
            self.control(Request.REN_CONTROL, 1, 1)
        cured = self.idn_works()
        return [Finding("reopen", FAIL, f"the first query of a new session failed ({error})"
                        + ("; after the previous session cleared both bulk halts it worked" if cured else ""),
                        {"clear_halt_on_close": True} if cured else {})]

    def _read_status_byte(self) -> list[Finding]:
        if not self.usb488:
            return [Finding("read_status_byte", SKIP, "not a USB488 interface")]
        tag = self.link.next_stb_tag()
        try:
            reply = self.control(Request.READ_STATUS_BYTE, tag, 3)
        except StallError:
            return [Finding("read_status_byte", FAIL, "READ_STATUS_BYTE was STALLed")]
        if reply[0] != Status.SUCCESS or len(reply) < 3 or reply[1] != tag:
            return [Finding("read_status_byte", FAIL, f"the control reply is {reply.hex(' ')} for bTag {tag}")]
        if self.ep.interrupt_in is None:
            return [Finding("read_status_byte", PASS, f"STB 0x{reply[2]:02X} in the control reply, bTag {tag} echoed")]
        try:
            packet = self.t.interrupt_in(max(2, self.ep.interrupt_in_packet_bytes), self.timeout_ms)
        except TmcTimeoutError:
            return [Finding("read_status_byte", FAIL, "no notification arrived on Interrupt-IN")]
        if len(packet) >= 2 and packet[0] == NOTIFY_READ_STATUS_BYTE_FLAG | tag:
            return [Finding("read_status_byte", PASS, f"STB 0x{packet[1]:02X} on Interrupt-IN as "
                                                      f"[0x{packet[0]:02X}, 0x{packet[1]:02X}], bTag {tag} matched")]
        return [Finding("read_status_byte", FAIL, f"Interrupt-IN brought {packet.hex(' ')} for bTag {tag}")]

    def _remote_local(self) -> list[Finding]:
        if not (self.caps and self.caps.ren_control):
            return [Finding("remote_local", SKIP, "REN_CONTROL/GO_TO_LOCAL/LOCAL_LOCKOUT are not claimed")]
        results = []
        for request, value in ((Request.REN_CONTROL, 1), (Request.GO_TO_LOCAL, 0), (Request.LOCAL_LOCKOUT, 0),
                               (Request.REN_CONTROL, 0 if not self.needs_remote else 1)):
            try:
                status = self.control(request, value, 1)[0]
                results.append((request.name, f"0x{status:02X}" if status != Status.SUCCESS else "SUCCESS"))
            except StallError:
                results.append((request.name, "STALL"))
        self.ren_asserted = self.needs_remote
        bad = [f"{name} {what}" for name, what in results if what != "SUCCESS"]
        if bad:
            return [Finding("remote_local", FAIL, "claimed in GET_CAPABILITIES, but " + ", ".join(bad),
                            {"ren_control_broken": True})]
        return [Finding("remote_local", PASS, "REN_CONTROL, GO_TO_LOCAL, LOCAL_LOCKOUT and the REN release "
                                              "answered SUCCESS")]

    def _indicator_pulse(self) -> list[Finding]:
        if not (self.caps and self.caps.indicator_pulse):
            return [Finding("indicator_pulse", SKIP, "INDICATOR_PULSE is not claimed")]
        try:
            status = self.control(Request.INDICATOR_PULSE, 0, 1)[0]
        except StallError:
            return [Finding("indicator_pulse", FAIL, "INDICATOR_PULSE was STALLed although claimed")]
        return [Finding("indicator_pulse", PASS if status == Status.SUCCESS else FAIL, f"answered 0x{status:02X}")]

    def _abort_bulk_out(self) -> list[Finding]:
        # A transfer announcing "*IDN?\n" of which only "*ID" arrives: in progress, never executed.
        btag = self.next_btag()
        frame = framing.dev_dep_msg_out_header(btag, 6, eom=True) + b"*ID"
        self.t.bulk_out(frame, self.timeout_ms)
        outcome = self.recovery.abort_bulk_out(btag)
        notes = [f"INITIATE_ABORT_BULK_OUT answered 0x{outcome.initiate_status:02X}"]
        ok = outcome.aborted
        if outcome.initiate_status == Status.SUCCESS and outcome.check_status is not None:
            notes.append(f"CHECK_ABORT_BULK_OUT_STATUS 0x{outcome.check_status:02X}, NBYTES_RXD {outcome.count_bytes}")
        works = self.idn_works()
        notes.append("the next query worked" if works else "the next query failed")
        return [Finding("abort_bulk_out", PASS if ok and works else FAIL, "; ".join(notes))]

    def _abort_bulk_in(self) -> list[Finding]:
        self.write(b"*IDN?\n")
        btag = self.request(self.max_request)
        time.sleep(0.01)  # let the reply reach the FIFO: the transfer is then in progress
        outcome = self.abort_in(btag)
        works = self.idn_works()
        ok = outcome.startswith("aborted") and outcome.endswith("0x01") and works
        return [Finding("abort_bulk_in", PASS if ok else FAIL,
                        f"INITIATE, drain, CHECK: {outcome}; the next query "
                        + ("worked" if works else "failed"))]

    def _timeout_recovery(self) -> list[Finding]:
        # A read request with nothing to answer: the read times out (488.2 devices note QYE).
        btag = self.request(self.max_request)
        self.query_error_made = True
        try:
            raw, _ = self.read_device_transfer(self.max_request)
            self.drain()
            return [Finding("timeout_recovery", WARN, f"a read request without a query was answered with "
                                                      f"{_printable(raw[HEADER_BYTES:])}")]
        except TmcTimeoutError:
            pass
        outcome = self.abort_in(btag)
        works = self.idn_works()
        return [Finding("timeout_recovery", PASS if works else FAIL,
                        f"the read timed out as it should; ABORT_BULK_IN: {outcome}; the next query "
                        + ("worked" if works else "failed"))]

    def _initiate_clear(self) -> list[Finding]:
        outcome = self._clear(drain=False)
        if outcome == "hung":
            self.dead = True
            return [Finding("initiate_clear", FAIL, "INITIATE_CLEAR was never answered; the instrument stopped "
                                                    "answering (replug it)",
                            {"no_initiate_clear": True, "clear_on_open": False})]
        if outcome == "pending":
            self.dead = True
            return [Finding("initiate_clear", FAIL, "CHECK_CLEAR_STATUS stayed PENDING; the clear never finished",
                            {"no_initiate_clear": True, "clear_on_open": False})]
        if outcome.startswith("status"):
            return [Finding("initiate_clear", FAIL, f"INITIATE_CLEAR answered {outcome}",
                            {"no_initiate_clear": True, "clear_on_open": False})]
        findings = []
        if self.idn_works():
            findings.append(Finding("initiate_clear", PASS, f"the clear finished ({outcome}); the next query worked"))
        else:
            self._clear(drain=False)
            self.recovery.clear_halt(self.ep.bulk_in)
            cured = self.idn_works()
            findings.append(Finding("initiate_clear", FAIL,
                                    "the first reply after the clear was lost"
                                    + ("; clearing the Bulk-IN halt after the clear cures it" if cured else ""),
                                    {"clear_halts_bulk_in": True} if cured else {}))
        if outcome == "done without the drain":
            # It asked for a Bulk-IN read it did not need. Does the read hurt?
            if self._clear(drain=True) == "pending":
                self.dead = True
                findings.append(Finding("initiate_clear", FAIL,
                                        "CHECK_CLEAR_STATUS asks for the Bulk-IN read (bmClear.D0), but after that "
                                        "read the clear never finishes; without it the clear completes",
                                        {"no_drain_on_clear": True}))
        return findings

    def _clear(self, drain: bool) -> str:
        """INITIATE_CLEAR and CHECK_CLEAR_STATUS; without ``drain`` the Bulk-IN read waits a few polls."""
        try:
            outcome = self.recovery.device_clear(drain_after_asks=0 if drain else 3)
        except TmcTimeoutError:
            return "hung"
        if outcome.initiate_status != Status.SUCCESS:
            return f"status 0x{outcome.initiate_status:02X}"
        if outcome.check_status == Status.PENDING:
            return "pending"
        if not outcome.finished:
            return f"status 0x{outcome.check_status:02X}"
        return "done without the drain" if outcome.drain_asks else "done"


def _strip_nuls(data: bytes) -> bytes:
    trimmed = data.rstrip(b"\x00")
    return trimmed if len(data) - len(trimmed) <= 3 else data[: len(data) - 3]


def _printable(data: bytes, limit: int = 40) -> str:
    text = repr(bytes(data[:limit]))
    return text + ("..." if len(data) > limit else "")


def _wrap(prefix: str, text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], prefix
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip() != prefix.strip():
            lines.append(line.rstrip())
            line = " " * len(prefix)
        line += word + " "
    lines.append(line.rstrip())
    return ["      " + ln for ln in lines]


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(getattr(v, "as_toml", lambda v=v: repr(v))() for v in value) + "]"
    return _toml_string(str(value))


__all__ = ["FAIL", "INFO", "PASS", "SKIP", "STEPS", "WARN", "Finding", "PlannedStep", "ProbeReport", "QuirkSave",
           "Step", "plan", "prepare_quirk_entry", "probe", "save_quirk_entry", "write_quirk_save"]
