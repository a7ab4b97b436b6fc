"""The ``blockforge`` command line.

Each subcommand group lives in its own module in this package and exposes ``register(subparsers)``;
heavy imports (torch, amaranth, cocotb) happen inside the handlers, so ``blockforge spec ...`` stays
fast. A :class:`~blockforge.errors.BlockforgeError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
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


class _Parser(argparse.ArgumentParser):
    """A usage error is one line like every other error (the usage text is one ``--help`` away), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    previous = _terminate_like_interrupt()
    try:
        status = args.handler(args)
    except BlockforgeError as exc:
        print(f"blockforge: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A path the user named cannot be read or written (a file where a folder should be, a read-only
        # or full disk): one line like any other bad input, not a traceback.
        print(f"blockforge: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print("blockforge: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("blockforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `blockforge inspect --json | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0 if status is None else int(status)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds exactly like Ctrl-C: every temporary
    file and folder is removed by the same handlers, and old outputs stay whole."""


def _raise_terminated(signum, frame):  # noqa: ANN001 (signal handler signature)
    raise Terminated()


def _terminate_like_interrupt():
    """Install the SIGTERM handler (main thread only); returns the previous handler to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _os_error(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else None
    what = exc.strerror or type(exc).__name__
    if where is not None and exc.filename2 is not None:
        return f"{where} -> {exc.filename2}: {what}"
    return f"{where}: {what}" if where is not None else str(exc)[:200]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
