"""A runnable script that repeats a traced session: on TMC Console's own sessions, or on PyVISA.

A USB session's script opens the instrument with ``app.usbtmc``; a LAN session's (raw socket,
VXI-11, HiSLIP) opens the same ``TCPIP`` resource with ``app.lan``. The script repeats the
session's writes, queries, reads, device clears, triggers, status-byte reads and SRQ waits in
order, with the bytes exactly as they were sent (terminations included). Each reply is printed as ``step N: <bytes>`` and compared with
the recorded one; the script exits 1 when a reply differs. An operation that failed
when recorded is expected to fail again (its error is printed, not raised).

Everything recorded goes into the script as Python literals made by :func:`repr`, so a
device's reply can never become code. A message kept only in part (larger than the
trace's cap) is not repeated: the script says so in a comment.
"""

from __future__ import annotations

import datetime as dt

from app.lan.resource import is_lan_resource, parse_lan_resource
from app.protocol.raw_socket import MessageSplitter
from app.usbtmc import trace as tr

_HEADER = '''#!/usr/bin/env python3
"""Repeats a TMC Console session with {resource}, traced {when}.

    python {name} {options}[RESOURCE]

Prints each reply as "step N: <bytes>"; exits 1 when a reply differs from the recorded one.
Generated from the session's I/O trace (docs/trace.md).
"""
'''

# What app.lan's raw socket session sends for a trigger and a status byte read (its default termination).
_SOCKET_TRIGGER, _SOCKET_STB = b"*TRG\n", b"*STB?\n"

# Both scripts compare each reply with the recorded one the same way.
_CHECK_FUNCTION = (
    "    differ = 0",
    "",
    "    def check(step, got, recorded):",
    "        nonlocal differ",
    '        print(f"step {step}: {got!r}")',
    "        if recorded is not None and got != recorded:",
    "            differ += 1",
    '            print(f"step {step}: differs; recorded {recorded!r}", file=sys.stderr)',
)

def _steps(recorder: tr.Recorder, session: int) -> list[tr.Entry]:
    """The session's messages, without those it sent by itself while opening (the script's
    own session sends them again)."""
    return [e for e in recorder.entries()
            if e.session == session and e.kind == tr.MESSAGE and not e.text.endswith(tr.ON_OPEN)]


def default_session(recorder: tr.Recorder) -> int | None:
    """The newest session that has messages to repeat."""
    numbers = [e.session for e in recorder.entries() if e.kind == tr.MESSAGE]
    return numbers[-1] if numbers else None


def _complete(entry: tr.Entry) -> bool:
    return len(entry.data) == entry.requested


def resource_of(info: tr.SessionInfo) -> str:
    """The VISA resource string the session opened (a USB session's name is its resource)."""
    return info.resource or info.name


def python_script(recorder: tr.Recorder, session: int, name: str = "replay.py") -> str:
    """The session as a script on ``app.usbtmc`` (TMC Console's core)."""
    info = recorder.sessions[session]
    resource = resource_of(info)
    entries = _steps(recorder, session)
    when = _when(entries)
    if is_lan_resource(resource):
        # A LAN instrument is an address: the virtual ones are reached the same way (tmc sim serve --lan).
        options, imports, setup = "", ["from app.lan import open_session", "from app.usbtmc import TmcError"], []
        opening = "    with open_session(args.resource, timeout_ms=TIMEOUT_MS) as inst:"
    else:
        options, imports = "[--sim] ", ["from app.usbtmc import Instrument, TmcError"]
        setup = ['    parser.add_argument("--sim", action="store_true", help="the virtual instruments of TMC Console")',
                 "    args = parser.parse_args(argv)",
                 "    backend = None",
                 "    if args.sim:",
                 "        from app.sim import backend as sim_backend",
                 "",
                 "        backend = sim_backend()"]
        opening = "    with Instrument(args.resource, backend=backend, timeout_ms=TIMEOUT_MS) as inst:"
    lines = [_HEADER.format(resource=_safe(resource), when=when, name=name, options=options).rstrip("\n"), "",
             "import argparse", "import sys", "", *imports, "",
             f"RESOURCE = {resource!r}", f"TIMEOUT_MS = {int(info.timeout_ms)}", "", "",
             "def main(argv=None) -> int:",
             "    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])",
             '    parser.add_argument("resource", nargs="?", default=RESOURCE)',
             *(setup or ["    args = parser.parse_args(argv)"]),
             *_CHECK_FUNCTION,
             "",
             "    def failed(step, exc, recorded):",
             '        print(f"step {step}: {type(exc).__name__} ({recorded} when recorded): {exc}")',
             "",
             opening]
    body = []
    for step, entry in enumerate(entries, 1):
        call, check = _core_call(entry)
        if call is None:
            body.append(f"# step {step}: {check}")
            continue
        ok = entry.status == tr.OK
        if ok:
            body.append(call if check is None else f"check({step}, {call}, {check})")
        else:
            body += ["try:",
                     f"    {call if check is None else f'check({step}, {call}, None)'}",
                     "except TmcError as exc:",
                     f"    failed({step}, exc, {entry.status!r})"]
    if all(line.startswith("#") for line in body):
        body.append("pass  # nothing to repeat")
    lines += [f"        {line}" for line in body]
    lines += ["    return 1 if differ else 0", "", "", 'if __name__ == "__main__":', "    sys.exit(main())", ""]
    return "\n".join(lines)


def _core_call(entry: tr.Entry) -> tuple[str | None, str | None]:
    """(the call, the recorded reply's literal or None), or (None, why it is left out)."""
    op = entry.op
    if op in ("write", "query") and not _complete(entry):
        return None, f"a {entry.requested}-byte {op} was traced only in part and is not repeated"
    reply = repr(entry.reply) if entry.status == tr.OK and len(entry.reply) == entry.actual else "None"
    if op == "write":
        return f"inst.write_raw({entry.data!r})", None
    if op == "query":
        return f"inst.query_raw({entry.data!r})", reply
    if op == "read":
        return "inst.read_raw()", reply
    if op == "clear":
        return "inst.clear()", None
    if op == "trigger":
        return "inst.trigger()", None
    if op == "stb":
        return "bytes([inst.read_stb()])", "None"  # status bytes change with the device's state
    if op == "wait_srq":
        return f"bytes([inst.wait_srq({int(entry.requested) or 'None'})])", "None"
    return None, f"{op} is not repeated"


def pyvisa_script(recorder: tr.Recorder, session: int, name: str = "replay_pyvisa.py") -> str:
    """The session as a PyVISA script (any VISA library; ``@py`` for pyvisa-py)."""
    info = recorder.sessions[session]
    resource = resource_of(info)
    socket = is_lan_resource(resource) and parse_lan_resource(resource).protocol == "SOCKET"
    entries = _steps(recorder, session)
    lines = [_HEADER.format(resource=_safe(resource), when=_when(entries), name=name,
                            options="[--visa-library @py] ").rstrip("\n"), "",
             "import argparse", "import sys", "import time", "", "import pyvisa", "",
             f"RESOURCE = {resource!r}", f"TIMEOUT_MS = {int(info.timeout_ms)}", "", "",
             "def wait_srq(inst, timeout_ms):",
             "    # Polls the status byte for RQS (IEEE 488.2 11.2): VISA's SRQ events are not offered everywhere.",
             "    deadline = time.monotonic() + timeout_ms / 1000",
             "    while True:",
             "        stb = inst.read_stb()",
             "        if stb & 0x40 or time.monotonic() > deadline:",
             "            return stb",
             "        time.sleep(0.01)",
             "", "",
             "def main(argv=None) -> int:",
             "    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])",
             '    parser.add_argument("resource", nargs="?", default=RESOURCE)',
             '    parser.add_argument("--visa-library", default="", help="e.g. @py for pyvisa-py")',
             "    args = parser.parse_args(argv)",
             "    rm = pyvisa.ResourceManager(args.visa_library)",
             "    inst = rm.open_resource(args.resource)",
             "    inst.timeout = TIMEOUT_MS",
             *(["    # A raw socket has no message end but the newline (IEEE 488.2 7.5): without it as the",
                "    # TermChar, VISA reads until the timeout. (A binary block holding a newline ends early.)",
                '    inst.read_termination = "\\n"'] if socket else []),
             *_CHECK_FUNCTION,
             "",
             "    try:"]
    body = []
    for step, entry in enumerate(entries, 1):
        calls, check = _visa_calls(entry, socket)
        if calls is None:
            body.append(f"# step {step}: {check}")
            continue
        *before, last = calls
        statements = before + [last if check is None else f"check({step}, {last}, {check})"]
        if entry.op in ("clear", "trigger", "stb", "wait_srq"):
            # Not every VISA library offers these, nor fails them with pyvisa.Error: pyvisa-py has
            # none of them on USB, no trigger on a socket (NotImplementedError), and its HiSLIP
            # status query can end in a socket timeout or a RuntimeError when an SRQ comes first.
            # Say so, go on.
            body += ["try:", *[f"    {s}" for s in before], f"    {last if check is None else f'check({step}, {last}, None)'}",
                     "except (pyvisa.Error, NotImplementedError, OSError, RuntimeError) as exc:",
                     f"    print(f\"step {step}: {entry.op} failed: {{exc}}\")"]
            continue
        if entry.status == tr.OK:
            body += statements
        else:
            body += ["try:", *[f"    {s}" for s in statements], "except pyvisa.Error as exc:",
                     f"    print(f\"step {step}: {{type(exc).__name__}} ({entry.status} when recorded): {{exc}}\")"]
    if all(line.startswith("#") for line in body):
        body.append("pass  # nothing to repeat")
    lines += [f"        {line}" for line in body]
    lines += ["    finally:", "        inst.close()", "        rm.close()", "    return 1 if differ else 0", "", "",
              'if __name__ == "__main__":', "    sys.exit(main())", ""]
    return "\n".join(lines)


def _visa_calls(entry: tr.Entry, socket: bool = False) -> tuple[list[str] | None, str | None]:
    """The PyVISA calls that repeat ``entry``; ``socket``: on a raw SCPI socket, where TMC Console's
    session ends a message with the newline it lacks, which VISA's write_raw would not add."""
    op = entry.op
    if op in ("write", "query") and not _complete(entry):
        return None, f"a {entry.requested}-byte {op} was traced only in part and is not repeated"
    reply = repr(entry.reply) if entry.status == tr.OK and len(entry.reply) == entry.actual else "None"
    data = entry.data + b"\n" if socket and op in ("write", "query") and not _ends(entry.data) else entry.data
    if op == "write":
        return [f"inst.write_raw({data!r})"], None
    if op == "query":
        return [f"inst.write_raw({data!r})", "inst.read_raw()"], reply
    if op == "read":
        return ["inst.read_raw()"], reply
    if op == "clear":
        return ["inst.clear()"], None
    # A raw socket has neither a trigger nor a status byte read of its own: app.lan sends *TRG and
    # asks *STB? (IEEE 488.2 10.37, 10.36), and so does the script.
    if op == "trigger":
        return [f"inst.write_raw({_SOCKET_TRIGGER!r})" if socket else "inst.assert_trigger()"], None
    if op == "stb":
        return ([f"inst.write_raw({_SOCKET_STB!r})", "inst.read_raw()"] if socket
                else ["bytes([inst.read_stb()])"]), "None"
    if op == "wait_srq":
        return [f"bytes([wait_srq(inst, {int(entry.requested) or 'TIMEOUT_MS'})])"], "None"
    return None, f"{op} is not repeated"


def _ends(data: bytes) -> bool:
    """Whether ``data`` ends a raw-socket message (a newline outside strings and blocks), as
    app.lan's raw session decides before it adds one."""
    ends = False
    for _chunk, eom in MessageSplitter().feed(data):
        ends = eom
    return ends


def _when(entries: list[tr.Entry]) -> str:
    if not entries:
        return "(nothing recorded)"
    stamp = dt.datetime.fromtimestamp(entries[0].t_ns / 1e9, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def _safe(text: str) -> str:
    """Text for the script's docstring: printable, without quotes or backslashes."""
    return "".join(c if c.isprintable() and c not in "\"\\" else "?" for c in text)
