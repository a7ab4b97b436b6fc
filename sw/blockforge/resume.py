"""Resuming work that was already done: a fingerprint of everything a piece of work depends on, and a
JSON record written next to its outputs that names the fingerprint it was made for.

Both resumable jobs use it: the pruning pipeline's phase checkpoints (``progress.json``) and the
end-to-end flow's stage stamps (``OUTDIR/.stages/<stage>.json``). A rerun whose fingerprint equals the
recorded one skips the work; any changed input changes the fingerprint and reruns it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .fsutil import write_json

__all__ = ["contents", "file_digest", "fingerprint", "read_record", "write_record"]


def fingerprint(inputs: Any) -> str:
    """SHA-256 (64 hex digits) of ``inputs`` as canonical JSON: keys sorted, values JSON cannot hold
    (paths, dataclasses) as their ``str()``."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: str | os.PathLike) -> dict:
    """Size and SHA-256 of a file (an output a stage wrote, or a data file it read), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"size": os.stat(path).st_size, "sha256": h.hexdigest()}


def contents(paths: list[Path]) -> dict[str, dict | None]:
    """:func:`file_digest` of each file, and of every file under each folder (a ``.stages`` folder of stamps
    excluded); None for a path that does not exist. Equal results: the very same bytes."""
    out: dict[str, dict | None] = {}
    for path in map(Path, paths):
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() and ".stages" not in p.parts):
                out[str(child)] = file_digest(child)
        else:
            out[str(path)] = file_digest(path) if path.is_file() else None
    return out


def read_record(path: str | os.PathLike, expected: str) -> dict | None:
    """The JSON object at ``path`` if its ``fingerprint`` is ``expected``; None if the file is missing,
    damaged (the work then reruns rather than trust it) or was written for other inputs."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("fingerprint") == expected else None


def write_record(path: str | os.PathLike, record: dict) -> Path:
    """Write ``record`` (which holds its ``fingerprint``) as indented JSON, atomically (fsutil.write_json)."""
    return write_json(path, record)
