"""Which code a bench figure came from: the commit of the working tree, marked when it had local edits."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the folders whose edits change a figure (a dirty docs/ or build/ does not)
CODE_DIRS = ("sw", "hw", "sim", "app", "bench")


def code_revision() -> str:
    """``git rev-parse --short HEAD``, with ``-dirty`` when the code folders have uncommitted edits;
    ``unknown`` outside a git checkout."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--", *CODE_DIRS) else "")
