"""Atomic file writes: a temporary file in the target folder, flushed to disk, then renamed over the
target, so a reader sees the old file or the whole new one, never a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, data: bytes | Iterable[bytes]) -> Path:
    """Write ``data`` (bytes, or an iterable of byte chunks) to ``path`` atomically; returns the path.

    On any failure the temporary file is removed and the exception propagates (OSError for I/O).
    """
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.",
                                         suffix=".tmp", delete=False)
    try:
        with handle:
            for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path
