"""``tmc sim``: run programs against the virtual instruments through the real libusb (Linux, umockdev).

    tmc sim run -- lsusb -v
    tmc sim run --device sam7 --device loopback -- python3 my_script.py
    tmc sim run --device loopback --fault no-answer --fault size-zero:every=3,times=always -- python3 my_script.py
    tmc sim check

``run`` exits with COMMAND's exit status, or 3 when the virtual bus cannot start
(umockdev missing or too old: the message says what to install).
"""

from __future__ import annotations

import argparse
import sys

from app.sim.faults import DESCRIPTIONS, parse_fault_spec

from . import launcher
from .server import DEFAULT_KINDS, KINDS

EXIT_UNAVAILABLE = 3


def _fault_help() -> str:
    lines = ["fault kinds (SPEC is KIND[:OPTION=VALUE,...]; options: times=N|always, every=N, after_bytes=N,",
             "polls=N, replug_after_s=S; docs/faults.md):"]
    lines += [f"  {kind.value:22} {text}" for kind, text in DESCRIPTIONS.items()]
    return "\n".join(lines)


def _run(args) -> int:
    if any(spec.strip().lower() == "help" for spec in args.fault):
        print(_fault_help())
        return 0
    try:
        faults = [parse_fault_spec(spec).spec() for spec in args.fault]
    except ValueError as exc:
        print(f"tmc sim run: --fault: {exc}", file=sys.stderr)
        return 2
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("tmc sim run: name a command to run, e.g. tmc sim run -- lsusb -v", file=sys.stderr)
        return 2
    try:
        return launcher.run(command, args.device or DEFAULT_KINDS, quiet=args.quiet, trace=args.trace,
                            faults=faults)
    except launcher.SimUnavailable as exc:
        print(f"tmc sim: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except launcher.BusError as exc:
        print(f"tmc sim: the virtual bus failed: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _check(args) -> int:
    problem = launcher.check()
    if problem:
        print(f"tmc sim: {problem}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"umockdev works here (device side runs under {launcher.find_server_python()})")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``sim`` (with ``run`` and ``check``) to the ``tmc`` command's subparsers."""
    sim = subparsers.add_parser(
        "sim", help="run programs against the virtual instruments over the real libusb (Linux)",
        description="Serve the virtual instruments to the real libusb through umockdev (Linux).",
    )
    actions = sim.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run", help="run COMMAND with the virtual instruments plugged in",
        description="Start the virtual instruments on a umockdev bus and run COMMAND so that it sees them as "
                    "real USB devices: lsusb -v, your python-usbtmc or pyvisa-py script, or tmc-console.",
    )
    run.add_argument("--device", action="append", metavar="KIND",
                     help=f"plug this instrument (repeatable; {', '.join(sorted(KINDS))}; default {', '.join(DEFAULT_KINDS)})")
    run.add_argument("--fault", action="append", default=[], metavar="SPEC",
                     help="make every plugged instrument misbehave (repeatable), e.g. stall-bulk-out:after_bytes=100 "
                          "or no-answer:times=always; --fault help lists the kinds (docs/faults.md)")
    run.add_argument("--quiet", action="store_true", help="do not list the plugged instruments on stderr")
    run.add_argument("--trace", action="store_true", help="log every usbdevfs ioctl on stderr")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...", help="the program to run and its arguments")
    run.set_defaults(func=_run)
    check = actions.add_parser("check", help="say whether umockdev can be used here, and what to install if not")
    check.set_defaults(func=_check)
    from app.sim.lan.cli import register as register_lan

    register_lan(actions)
    return sim
