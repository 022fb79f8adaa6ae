"""``tmc sim serve --lan``: the virtual instruments on 127.0.0.1 over raw sockets, VXI-11 and HiSLIP."""

from __future__ import annotations

import argparse
import sys
import threading

EXIT_UNAVAILABLE = 1


def _serve(args) -> int:
    if not args.lan:
        print("tmc sim serve: say which servers to run (--lan; the USB side is 'tmc sim run')", file=sys.stderr)
        return 2
    from app.sim import default_devices

    from . import serve

    try:
        servers = serve(default_devices(), args.host, standard_ports=not args.any_port)
    except OSError as exc:
        print(f"tmc sim serve: cannot listen on {args.host}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    with servers:
        for entry in servers.resources:
            print(f"{entry.resource}\t{entry.protocol}\t{entry.label}")
        sys.stdout.flush()
        print("serving; Ctrl-C (or closing stdin with --until-eof) stops", file=sys.stderr)
        stop = threading.Event()
        if args.until_eof:
            threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


def register(actions) -> argparse.ArgumentParser:
    """Add ``serve`` to ``tmc sim``'s actions."""
    text = ("serve the virtual instruments (SAM7, loopback, AWG) on the LAN protocols and print one VISA "
            "resource string per instrument and protocol (docs/lan.md)")
    p = actions.add_parser("serve", help=text, description=text)
    p.add_argument("--lan", action="store_true", help="raw SCPI sockets, VXI-11 and HiSLIP")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default %(default)s)")
    p.add_argument("--any-port", action="store_true",
                   help="take free ports instead of trying the standard ones first (5025, 111, 4880)")
    p.add_argument("--until-eof", action="store_true", help="stop when standard input closes (for scripts)")
    p.set_defaults(func=_serve)
    return p
