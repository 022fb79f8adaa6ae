"""Exports of the I/O trace: pcapng (Wireshark), CSV, JSON lines, and replay scripts.

:func:`export` picks the format from the file's suffix and writes through a temporary
file in the same folder, so a failed export never destroys the file it replaces.
"""

from __future__ import annotations

import io
from pathlib import Path

from app.usbtmc import trace as tr
from app.usbtmc.errors import SaveError
from app.usbtmc.files import save_with

FORMATS = (".pcapng", ".csv", ".jsonl")
DISSECTOR_NAME = "usbtmc.lua"


class ExportError(ValueError):
    """The trace cannot be written as asked; the message says why."""


def dissector_path() -> Path:
    """Where the shipped Wireshark Lua dissector for USBTMC/USB488 is: the source tree's
    ``resources/`` in a checkout, else the installed ``app.resources`` package."""
    checkout = Path(__file__).resolve().parents[2] / "resources" / DISSECTOR_NAME
    if checkout.is_file():
        return checkout
    from importlib import resources

    return Path(str(resources.files("app.resources").joinpath(DISSECTOR_NAME)))


def export(recorder: tr.Recorder, path, session: int | None = None) -> int:
    """Write ``recorder``'s trace (one session's, or all) to ``path``; the suffix picks the
    format (:data:`FORMATS`). Returns the records written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"{path.name}: unknown trace format {suffix or '(no suffix)'}; "
                          f"use one of {', '.join(FORMATS)}")
    entries = [e for e in recorder.entries() if session is None or e.session == session]
    sessions = {n: i for n, i in recorder.sessions.items() if session is None or n == session}
    counted = []

    def write(out) -> None:
        if suffix == ".pcapng":
            from .pcapng import write_pcapng

            counted.append(write_pcapng(out, entries, sessions))
            return
        from .tables import write_csv, write_jsonl

        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        counted.append((write_csv if suffix == ".csv" else write_jsonl)(text, entries, sessions))
        text.flush()
        text.detach()  # the file stays open for save_with to finish

    try:
        save_with(path, write)  # a failed export leaves the file it would replace as it was
    except SaveError as exc:
        raise ExportError(f"cannot write the trace ({exc})") from None
    return counted[0]
