"""The ``blockforge`` command line.

Each subcommand group lives in its own module in this package and exposes ``register(subparsers)``;
heavy imports (torch, amaranth, cocotb) happen inside the handlers, so ``blockforge spec ...`` stays
fast. A :class:`~blockforge.errors.BlockforgeError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from blockforge import __version__
from blockforge.errors import BlockforgeError

# Subcommand modules, in the order they appear in --help.
COMMAND_MODULES = (
    "spec",
    "prune",
    "image",
    "hw",
    "sim",
    "estimate",
    "run",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blockforge",
        description="Block-structured pruning, int8 block-sparse weight images, RTL simulation and "
                    "cycle estimation for transformer encoders on a block-sparse accelerator.")
    parser.add_argument("--version", action="version", version=f"blockforge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
    except BlockforgeError as exc:
        print(f"blockforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blockforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `blockforge inspect --json | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0 if status is None else int(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
