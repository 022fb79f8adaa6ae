"""What the probe holds a device to, and the steps it takes: verdicts, the specification each
check cites, the table of steps with their labels and risks, :func:`plan`, and :class:`Finding`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any



PASS, FAIL, WARN, SKIP, INFO = "pass", "fail", "warn", "skip", "info"



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
