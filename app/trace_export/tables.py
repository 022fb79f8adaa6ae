"""The trace as CSV (columns like NI IO Monitor's) and as JSON lines."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable
from typing import TextIO

from app.usbtmc import trace as tr

CSV_COLUMNS = ("#", "Time", "Duration (us)", "Session", "Layer", "Call", "Endpoint", "Direction",
               "Requested", "Actual", "Status", "Description", "Message", "Recovery", "Data (hex)", "Data (ASCII)")


def timestamp(t_ns: int) -> str:
    """ISO 8601 UTC with microseconds."""
    stamp = dt.datetime.fromtimestamp(t_ns // 1000 / 1e6, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _layer(entry: tr.Entry) -> str:
    return {tr.MESSAGE: "SCPI", tr.RECOVERY: "recovery", tr.MARKER: "marker", tr.TCP: "LAN"}.get(entry.kind, "USB")


def _call(entry: tr.Entry) -> str:
    if entry.kind == tr.MESSAGE:
        return entry.op
    if entry.kind in (tr.RECOVERY, tr.MARKER):
        return entry.kind
    if entry.kind == tr.CONTROL:
        return "control"
    if entry.kind == tr.TCP:
        return "send" if entry.direction == "out" else "receive"
    return f"{'bulk' if entry.kind == tr.BULK else 'interrupt'} {entry.direction}"


def endpoint_name(entry: tr.Entry) -> str:
    """``0x82`` for a USB endpoint, the channel's name (``HiSLIP sync``) for a LAN one."""
    if entry.kind == tr.TCP:
        return tr.LAN_CHANNELS.get(entry.endpoint, f"0x{entry.endpoint:02X}")
    return f"0x{entry.endpoint:02X}" if entry.is_transfer else ""


def rows(entries: Iterable[tr.Entry], sessions: dict[int, tr.SessionInfo]) -> Iterable[dict]:
    """One dict per entry, decoded (the same fields for CSV and JSON lines)."""
    decoder = tr.Decoder()
    for entry in entries:
        decoded = decoder.decode(entry)
        info = sessions.get(entry.session)
        data = entry.reply if entry.kind == tr.MESSAGE else entry.data
        description = decoded.summary
        if entry.kind == tr.RECOVERY:
            description = f"{entry.text}: {entry.detail}" if entry.detail else entry.text
        elif entry.kind == tr.MESSAGE and entry.detail:
            description += f" -> {entry.detail}"
        yield {
            "seq": entry.seq, "time": timestamp(entry.t_ns), "t_ns": entry.t_ns,
            "duration_us": round(entry.duration_ns / 1000, 1), "session": info.name if info else "",
            "layer": _layer(entry), "call": _call(entry),
            "endpoint": endpoint_name(entry),
            "direction": entry.direction, "requested": entry.requested, "actual": entry.actual,
            "status": entry.status, "description": description, "fields": decoded.fields,
            "message": entry.group, "recovery": entry.step,
            "setup": entry.setup.hex() if entry.setup else "", "data": data.hex(),
            "truncated": entry.truncated if entry.is_transfer else len(data) < entry.actual,
        }


def write_csv(out: TextIO, entries: Iterable[tr.Entry], sessions: dict[int, tr.SessionInfo]) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for row in rows(entries, sessions):
        data = bytes.fromhex(row["data"])
        writer.writerow([row["seq"], row["time"], row["duration_us"], row["session"], row["layer"], row["call"],
                         row["endpoint"], row["direction"], row["requested"], row["actual"], row["status"],
                         row["description"], row["message"] or "", row["recovery"] or "",
                         " ".join(f"{b:02X}" for b in data[:256]), tr.escape(data[:256])])
        count += 1
    return count


def write_jsonl(out: TextIO, entries: Iterable[tr.Entry], sessions: dict[int, tr.SessionInfo]) -> int:
    count = 0
    for row in rows(entries, sessions):
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
