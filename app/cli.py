"""``tmc``: the command-line side of TMC Console.

Every failure is one line on stderr and a non-zero exit, never a traceback. Exit codes
(:data:`EXIT_CODES`, also in ``tmc --help`` and the README): 0 done, 1 the command could
not be carried out, 2 bad usage, 3 the instrument reported an error (``tmc write``) or
failed a compliance check (``tmc probe``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable

from app.usbtmc import Instrument, ResourceError, TmcError, list_resources
from app.usbtmc.errors import UsageError as RequestError
from app.usbtmc.ieee488 import ESR_BITS, ESR_ERROR_MASK, STB_BITS, parse_register_value, set_bit_names

EXIT_OK = 0
EXIT_ERROR = 1  # the command could not be carried out: no such instrument, a timeout, no access
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_DEVICE = 3  # the instrument reported an error after tmc write, or tmc probe found a deviation
EXIT_CODES = (
    "exit codes: 0 done; 1 the command could not be carried out (no instrument, a timeout, no access); "
    "2 bad usage (options, resource string, timeout); 3 the instrument reported an error (tmc write) or failed a compliance check (tmc probe); "
    "130 interrupted"
)
SIM_HELP = (
    "use the virtual instruments instead of USB. Each tmc call builds a fresh virtual bus, so nothing "
    "carries over between calls: a reply left by 'tmc write --sim' is gone for the next 'tmc read --sim' "
    "(use 'tmc query', or 'tmc sim run -- COMMAND' for a bus that stays plugged in while COMMAND runs)"
)
_QUEUE_ENTRY = re.compile(r'^\s*([+-]?\d+)\s*(?:,\s*"?(.*?)"?\s*)?$', re.DOTALL)  # SCPI-99 21.8: code,"text"
_MAX_QUEUE_ENTRIES = 20


def _backend(args):
    if args.sim:
        from app.sim import backend, default_bus

        return backend(default_bus(quirky=getattr(args, "quirky", False)))
    return None


def _one_shot(exc: BaseException) -> str:
    """The error of a command that ends with it, on one line: what recovery ran is said, but not
    that the session stays usable, which means nothing to a one-shot command."""
    report = getattr(exc, "report", None)
    if report is not None and report.usable:
        base, ran = exc.args[0] if exc.args else "", report.what_ran()
        return " ".join((f"{base} ({ran})" if ran else str(base)).split()) or type(exc).__name__
    return _one_line(exc)


def _recorder(args):
    """The I/O trace of this command when ``--trace FILE`` was given (written by :func:`main`)."""
    if not getattr(args, "trace", None):
        return None
    if getattr(args, "_recorder", None) is None:
        from app.usbtmc.trace import Recorder

        args._recorder = Recorder()
    return args._recorder


def _open(args, *, clear: bool = True) -> Instrument:
    """A session for the command; ``clear=False`` for the commands that read what an earlier one
    left (a reply, the status byte), which the device clear on opening would discard. A
    ``TCPIP::`` resource opens a raw socket, VXI-11 or HiSLIP session (docs/lan.md)."""
    from app.lan import is_lan_resource, open_lan

    if is_lan_resource(args.resource):
        return open_lan(args.resource, args.timeout_ms, trace=_recorder(args))
    return Instrument(args.resource, backend=_backend(args), timeout_ms=args.timeout_ms, trace=_recorder(args),
                      clear_on_open=clear)


class UsageError(Exception):
    """The command line itself is wrong (exit code EXIT_USAGE)."""


def _message(text: str) -> str:
    """A program message from the command line: argv holds undecodable bytes as surrogates
    (PEP 383), which no instrument encoding can send as typed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = os.fsencode(text[exc.start:exc.end])
        raise UsageError(f"the command holds bytes that are not UTF-8 ({_escape(bad)} at character {exc.start + 1}); "
                         "nothing was sent") from None
    return text


def _escape(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else {10: "\\n", 13: "\\r", 9: "\\t", 92: "\\\\"}.get(b, f"\\x{b:02x}") for b in data)


def _list_lan(args) -> int:
    """LAN instruments found by mDNS and the VXI-11 broadcast (docs/lan.md)."""
    from app.lan.discovery import broadcast_vxi11, browse_mdns

    found = broadcast_vxi11(wait_s=args.wait_s)
    try:
        found += browse_mdns(wait_s=args.wait_s)
    except RuntimeError as exc:  # zeroconf missing: the broadcast still counts
        print(f"tmc: {exc}", file=sys.stderr)
    for entry in {f.resource: f for f in found}.values():
        print(json.dumps({"resource": entry.resource, "found_by": entry.how, "name": entry.name}) if args.json
              else f"{entry.resource}  [{entry.how}]{'  ' + entry.name if entry.name else ''}")
    if not found and not args.json:
        print("no LAN instruments answered (add them by resource string: TCPIP::host::hislip0::INSTR...)")
    return 0


def cmd_list(args) -> int:
    if args.lan:
        return _list_lan(args)
    infos = list_resources(_backend(args), probe=not args.no_probe)
    if args.json:
        for info in infos:
            print(json.dumps({
                "resource": info.resource, "vid": info.vid, "pid": info.pid, "serial": info.serial,
                "manufacturer": info.manufacturer, "product": info.product, "protocol": info.protocol,
                "speed": info.speed, "problem": info.problem,
                "quirks": [a.flag for a in info.quirks],
            }))
        return 0
    if not infos:
        print("no USBTMC instruments found" + ("" if args.sim else " (try --sim for the virtual instruments)"))
        return 0
    for info in infos:
        line = f"{info.resource}  {info.manufacturer} {info.product}  [{info.protocol}, {info.speed}]"
        print(line)
        if info.problem:
            print(f"    cannot open: {info.problem}")
        for quirk in info.quirks:
            print(f"    quirk {quirk.flag} = {quirk.value!r}: {quirk.reason}")
    return 0


def cmd_query(args) -> int:
    command = _message(args.command)
    with _open(args) as inst:
        inst.write(command)
        data = inst.read_raw()
    _print_reply(data, args.raw)
    return 0


def _print_reply(data: bytes, raw: bool) -> None:
    if raw:
        print(_escape(data))
    else:
        sys.stdout.write(data.decode("utf-8", errors="backslashreplace"))
        if not data.endswith(b"\n"):
            sys.stdout.write("\n")


def cmd_write(args) -> int:
    command = _message(args.command)
    with _open(args) as inst:
        inst.write(command)
        if args.check == "off" or _asks_for_errors(command):
            return EXIT_OK
        # A LAN session has no capabilities to ask: *ESR? is the check every 488.2 instrument answers.
        scpi = inst.capabilities.scpi if inst.capabilities is not None else False
        method = args.check if args.check != "auto" else ("syst_err" if scpi else "esr")
        try:
            errors = _device_errors(inst, method)
        except (TmcError, ValueError) as exc:
            query = "SYST:ERR?" if method == "syst_err" else "*ESR?"
            print(f"tmc: the command was sent, but the error check ({query}) failed: {_one_shot(exc)}",
                  file=sys.stderr)
            return EXIT_ERROR
    for error in errors:
        print(f"tmc: the instrument reported {error} after {command!r}", file=sys.stderr)
    return EXIT_DEVICE if errors else EXIT_OK


def _asks_for_errors(command: str) -> bool:
    """The command reads the error state itself: a check after it would find nothing or read away its answer."""
    return bool(re.search(r"(^|;)\s*:?(\*ESR\?|SYST(EM)?:ERR(OR)?)", command, re.IGNORECASE))


def _device_errors(inst: Instrument, method: str) -> list[str]:
    """What the instrument says went wrong, as the console's error check asks: ``SYST:ERR?`` read
    until it answers 0 (SCPI-99 21.8), or ``*ESR?`` and its error bits (IEEE 488.2 11.5.1.1)."""
    if method == "esr":
        esr = parse_register_value(inst.query("*ESR?"))
        return [f"{ESR_BITS[bit][0]} ({ESR_BITS[bit][1].lower()}) in *ESR? #H{esr:02X}"
                for bit in sorted(ESR_BITS, reverse=True) if esr & ESR_ERROR_MASK & 1 << bit]
    errors = []
    for _ in range(_MAX_QUEUE_ENTRIES):
        answer = inst.query("SYST:ERR?")
        match = _QUEUE_ENTRY.match(answer.strip())
        if not match:
            raise ValueError(f"SYST:ERR? answered {answer.strip()!r}, not an error-queue entry")
        if int(match.group(1)) == 0:
            break
        errors.append(answer.strip())
    return errors


def cmd_read(args) -> int:
    with _open(args, clear=False) as inst:
        data = inst.read_raw()
    _print_reply(data, args.raw)
    return 0


def cmd_stb(args) -> int:
    with _open(args, clear=False) as inst:
        stb = inst.read_stb()
    names = ", ".join(set_bit_names(stb, STB_BITS)) or "no bits set"
    print(f"STB 0x{stb:02X} ({stb}): {names}")
    return 0


def cmd_probe(args) -> int:
    from app.usbtmc.probe import probe, save_quirk_entry

    backend = None
    if args.sim:  # the virtual bus with the quirky instruments, so they can be probed too
        from app.sim import backend as sim_backend
        from app.sim import default_bus

        backend = sim_backend(default_bus(quirky=True))

    def progress(title: str) -> None:
        print(f"  {title}...", file=sys.stderr)

    report = probe(args.resource, backend, timeout_ms=args.timeout_ms, progress=None if args.json else progress,
                   safe=args.safe, trace=_recorder(args))
    print(report.to_json() if args.json else report.text(), end="\n" if args.json else "")
    if args.save_quirks:
        from pathlib import Path

        try:
            path = save_quirk_entry(report, Path(args.quirks_file) if args.quirks_file else None)
        except ValueError as exc:
            print(f"tmc: {exc}; nothing saved", file=sys.stderr)
        else:
            print(f"quirk entry saved to {path}", file=sys.stderr)
    return EXIT_OK if report.compliant else EXIT_DEVICE


def cmd_trace(args) -> int:
    from app.trace_export import dissector_path

    if not args.dissector_path:
        print("tmc trace: say what to print (--dissector-path); traces are written by --trace FILE "
              "on the commands that talk to an instrument", file=sys.stderr)
        return EXIT_USAGE
    print(dissector_path())
    return 0


def _write_trace(args) -> None:
    """Write the command's trace, whatever became of the command (a failure is what it is for)."""
    recorder = getattr(args, "_recorder", None)
    if recorder is None:
        return
    from app.trace_export import ExportError, export

    try:
        count = export(recorder, args.trace)
    except (ExportError, OSError) as exc:
        print(f"tmc: the trace was not written: {exc}", file=sys.stderr)
        return
    print(f"tmc: trace of {count} records written to {args.trace}", file=sys.stderr)


def _simple(action: Callable[[Instrument], None], done: str):
    def run(args) -> int:
        with _open(args) as inst:
            action(inst)
        print(done)
        return 0

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tmc", description="Talk to USBTMC/USB488 instruments.", epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str, resource: bool = True, timeout_ms: int = 5000):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES)
        p.add_argument("--sim", action="store_true", help=SIM_HELP)
        p.add_argument("--quirky", action="store_true",
                       help="with --sim, plug in the quirky virtual instruments too (a twin of each quirk entry)")
        p.add_argument("--timeout-ms", type=int, default=timeout_ms, metavar="MS",
                       help="transfer timeout (default %(default)s)")
        if resource:
            p.add_argument("resource", help="VISA resource string, e.g. USB0::0x1209::0x0001::SERIAL::INSTR, "
                                            "TCPIP::192.168.1.5::5025::SOCKET, TCPIP::host::inst0::INSTR or "
                                            "TCPIP::host::hislip0::INSTR")
            p.add_argument("--trace", metavar="FILE",
                           help="write an I/O trace of every transfer to FILE (.pcapng, .csv or .jsonl; docs/trace.md)")
        p.set_defaults(func=func)
        return p

    p = add("list", cmd_list, "list USBTMC instruments", resource=False)
    p.add_argument("--json", action="store_true", help="one JSON record per instrument")
    p.add_argument("--no-probe", action="store_true", help="do not ask instruments for their capabilities")
    p.add_argument("--lan", action="store_true",
                   help="LAN instruments instead: mDNS (_hislip, _scpi-raw, _vxi-11, _lxi) and the VXI-11 broadcast")
    p.add_argument("--wait-s", type=float, default=2.0, metavar="S", help="with --lan, how long to listen (default 2)")
    p = add("query", cmd_query, "send a command and print the reply")
    p.add_argument("command", help="program message, e.g. '*IDN?'")
    p.add_argument("--raw", action="store_true", help="print the reply with escapes (binary-safe)")
    p = add("write", cmd_write, "send a command, then ask the instrument for errors as the console does "
            "(exit 3 when it reports one)")
    p.add_argument("command")
    p.add_argument("--check", choices=("auto", "syst_err", "esr", "off"), default="auto",
                   help="the error check after the command: SYST:ERR? read until 0, *ESR? decoded, or none; "
                        "auto uses SYST:ERR? where the interface claims SCPI, else *ESR? (default auto)")
    p = add("read", cmd_read, "read one reply")
    p.add_argument("--raw", action="store_true", help="print the reply with escapes (binary-safe)")
    add("stb", cmd_stb, "read the status byte (USB488 READ_STATUS_BYTE)")
    add("clear", _simple(lambda i: i.clear(), "device cleared"), "device clear (USBTMC INITIATE_CLEAR)")
    add("trigger", _simple(lambda i: i.trigger(), "triggered"), "send the USB488 TRIGGER message")
    add("pulse", _simple(lambda i: i.indicator_pulse(), "indicator pulsed"), "blink the indicator (INDICATOR_PULSE)")
    p = add("probe", cmd_probe, "check an instrument against USBTMC/USB488 and suggest quirk flags "
            "(queries only; INITIATE_CLEAR last). Exit 0 when no check failed (warnings allowed), "
            "3 when one did, 1 when the instrument could not be opened. With --sim the quirky "
            "instruments are on the bus.", timeout_ms=1000)
    p.add_argument("--safe", action="store_true",
                   help="skip the steps this device's quirk entries mark as risky (e.g. INITIATE_CLEAR "
                        "on a Rigol DS1000Z, which then stops answering until it is replugged)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--save-quirks", action="store_true", help="append the suggested quirk entry to your quirks file")
    p.add_argument("--quirks-file", metavar="PATH", help="the quirks file to append to (default: your user file)")

    text = "the I/O trace: where the Wireshark dissector for USBTMC/USB488 is (docs/trace.md)"
    p = sub.add_parser("trace", help=text, description=text)
    p.add_argument("--dissector-path", action="store_true",
                   help="print the path of the shipped Lua dissector, for tshark -X lua_script:PATH")
    p.set_defaults(func=cmd_trace)

    from app.sim.umockdev.cli import register as register_sim

    register_sim(sub)
    from app import bench

    text = "upload and query benchmark: TMC Console's core, python-usbtmc and pyvisa-py on the virtual AWG"
    bench.add_arguments(sub.add_parser("bench", help=text, description=text))
    sub.choices["bench"].set_defaults(func=_cmd_bench)
    return parser


def _cmd_bench(args) -> int:
    """``tmc bench``; with ``--lan`` the LAN benchmark, which builds on the USB one."""
    if getattr(args, "lan", False):
        from app.bench_lan import cmd_bench_lan

        return cmd_bench_lan(args)
    from app.bench import cmd_bench

    return cmd_bench(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quirky", False) and not args.sim:
        parser.error("--quirky needs --sim: the quirky instruments are virtual")
    if getattr(args, "trace", None):
        from app.trace_export import FORMATS

        suffix = args.trace.rsplit(".", 1)[-1].lower() if "." in args.trace else ""
        if f".{suffix}" not in FORMATS:
            parser.error(f"--trace {args.trace}: the file name must end in {', '.join(FORMATS)}")
    try:
        if args.command_name not in ("sim", "bench"):
            _say_quirk_problems()
        return args.func(args)
    except (UsageError, ResourceError, RequestError) as exc:  # the command line asked for something impossible
        print(f"tmc: {_one_shot(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except TmcError as exc:
        print(f"tmc: {_one_shot(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tmc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except (OSError, UnicodeError) as exc:  # a file the command reads or writes
        print(f"tmc: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a fault of tmc itself: still one line, never a traceback
        print(f"tmc: internal error ({type(exc).__name__}): {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        _write_trace(args)


def _say_quirk_problems() -> None:
    """What of the user's quirks file was skipped, one line each, before the command runs."""
    from app.usbtmc.quirks import default_database

    for problem in default_database().problems:
        print(f"tmc: {problem}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
