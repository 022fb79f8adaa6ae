"""``tmc``: the command-line side of TMC Console.

Every failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from app.usbtmc import Instrument, TmcError, list_resources
from app.usbtmc.ieee488 import ESR_BITS, STB_BITS, set_bit_names

EXIT_ERROR = 1
EXIT_USAGE = 2


def _backend(args):
    if args.sim:
        from app.sim import backend

        return backend()
    return None


def _recorder(args):
    """The I/O trace of this command when ``--trace FILE`` was given (written by :func:`main`)."""
    if not getattr(args, "trace", None):
        return None
    if getattr(args, "_recorder", None) is None:
        from app.usbtmc.trace import Recorder

        args._recorder = Recorder()
    return args._recorder


def _open(args) -> Instrument:
    return Instrument(args.resource, backend=_backend(args), timeout_ms=args.timeout_ms, trace=_recorder(args))


def _escape(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else {10: "\\n", 13: "\\r", 9: "\\t", 92: "\\\\"}.get(b, f"\\x{b:02x}") for b in data)


def cmd_list(args) -> int:
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
    with _open(args) as inst:
        inst.write(args.command)
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
    with _open(args) as inst:
        inst.write(args.command)
    return 0


def cmd_read(args) -> int:
    with _open(args) as inst:
        data = inst.read_raw()
    _print_reply(data, args.raw)
    return 0


def cmd_stb(args) -> int:
    with _open(args) as inst:
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
                   trace=_recorder(args))
    print(report.to_json() if args.json else report.text(), end="\n" if args.json else "")
    if args.save_quirks:
        from pathlib import Path

        try:
            path = save_quirk_entry(report, Path(args.quirks_file) if args.quirks_file else None)
        except ValueError as exc:
            print(f"tmc: {exc}; nothing saved", file=sys.stderr)
            return 0
        print(f"quirk entry saved to {path}", file=sys.stderr)
    return 0


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
    parser = argparse.ArgumentParser(prog="tmc", description="Talk to USBTMC/USB488 instruments.")
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str, resource: bool = True):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--sim", action="store_true", help="use the virtual instruments instead of USB")
        p.add_argument("--timeout-ms", type=int, default=5000, metavar="MS", help="transfer timeout (default 5000)")
        if resource:
            p.add_argument("resource", help="VISA resource string, e.g. USB0::0x1209::0x0001::SERIAL::INSTR")
            p.add_argument("--trace", metavar="FILE",
                           help="write an I/O trace of every transfer to FILE (.pcapng, .csv or .jsonl; docs/trace.md)")
        p.set_defaults(func=func)
        return p

    p = add("list", cmd_list, "list USBTMC instruments", resource=False)
    p.add_argument("--json", action="store_true", help="one JSON record per instrument")
    p.add_argument("--no-probe", action="store_true", help="do not ask instruments for their capabilities")
    p = add("query", cmd_query, "send a command and print the reply")
    p.add_argument("command", help="program message, e.g. '*IDN?'")
    p.add_argument("--raw", action="store_true", help="print the reply with escapes (binary-safe)")
    p = add("write", cmd_write, "send a command")
    p.add_argument("command")
    p = add("read", cmd_read, "read one reply")
    p.add_argument("--raw", action="store_true", help="print the reply with escapes (binary-safe)")
    add("stb", cmd_stb, "read the status byte (USB488 READ_STATUS_BYTE)")
    add("clear", _simple(lambda i: i.clear(), "device cleared"), "device clear (USBTMC INITIATE_CLEAR)")
    add("trigger", _simple(lambda i: i.trigger(), "triggered"), "send the USB488 TRIGGER message")
    add("pulse", _simple(lambda i: i.indicator_pulse(), "indicator pulsed"), "blink the indicator (INDICATOR_PULSE)")
    p = add("probe", cmd_probe, "check an instrument against USBTMC/USB488 and suggest quirk flags "
            "(safe queries only; INITIATE_CLEAR last; default timeout 1000 ms per transfer)")
    p.set_defaults(timeout_ms=1000)
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
    sub.choices["bench"].set_defaults(func=bench.cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "trace", None):
        from app.trace_export import FORMATS

        suffix = args.trace.rsplit(".", 1)[-1].lower() if "." in args.trace else ""
        if f".{suffix}" not in FORMATS:
            parser.error(f"--trace {args.trace}: the file name must end in {', '.join(FORMATS)}")
    try:
        return args.func(args)
    except TmcError as exc:
        print(f"tmc: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tmc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    finally:
        _write_trace(args)


if __name__ == "__main__":
    raise SystemExit(main())
