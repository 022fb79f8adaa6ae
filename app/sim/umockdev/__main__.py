"""``python -m app.sim.umockdev run -- COMMAND``: the same as ``tmc sim run -- COMMAND``."""

import argparse
import sys

from .cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.sim.umockdev")
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    register(sub)
    args = parser.parse_args(["sim", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
