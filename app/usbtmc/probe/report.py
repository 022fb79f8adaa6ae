"""A probe's result: :class:`ProbeReport` as text, JSON and a quirk entry, and the merge of that
entry into the user's quirks file (:func:`prepare_quirk_entry`, :func:`save_quirk_entry`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..files import save_text
from ..quirks import QuirkDatabase, default_database, parse_database, shipped_entries, user_quirks_path

from .spec import FAIL, INFO, PASS, SKIP, WARN, Finding, _toml_string, _toml_value

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



def _wrap(prefix: str, text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], prefix
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip() != prefix.strip():
            lines.append(line.rstrip())
            line = " " * len(prefix)
        line += word + " "
    lines.append(line.rstrip())
    return ["      " + ln for ln in lines]
