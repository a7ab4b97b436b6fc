"""Progress on stderr for work whose length is not known in advance (a simulator build, a tool run): a
line that shows the elapsed seconds while the work runs, so a long stage is never silent. Quiet when
disabled (``--no-progress``, ``--json``) and when stderr is not a terminal unless forced."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterator, TextIO

__all__ = ["elapsed"]


@contextlib.contextmanager
def elapsed(desc: str, *, enabled: bool = True, stream: TextIO | None = None, period: float = 1.0,
            force: bool = False) -> Iterator[None]:
    """``with elapsed("verilator build"):`` prints ``verilator build: 12 s`` on one line, refreshed every
    ``period`` seconds, and ``verilator build: done in 31 s`` at the end (``failed after`` on an error)."""
    stream = stream or sys.stderr
    if not enabled or not (force or stream.isatty()):
        yield
        return
    start = time.perf_counter()
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(period):
            stream.write(f"\r{desc}: {time.perf_counter() - start:.0f} s")
            stream.flush()

    thread = threading.Thread(target=tick, name=f"progress: {desc}", daemon=True)
    stream.write(f"{desc}: 0 s")
    stream.flush()
    thread.start()
    outcome = "failed after"
    try:
        yield
        outcome = "done in"
    finally:
        stop.set()
        thread.join()
        stream.write(f"\r{desc}: {outcome} {time.perf_counter() - start:.0f} s\n")
        stream.flush()
