"""Atomic file writes: a temporary file in the target folder, flushed to disk, then renamed over the
target, so a reader sees the old file or the whole new one, never a half-written one. The file gets the
mode an ordinary write would give it: an existing file's mode is kept, a new file gets 0666 minus the
umask (0644 under the usual 022), not the 0600 of a temporary file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import UsageError

__all__ = ["atomic_write", "check_output", "new_dir_mode", "new_file_mode", "write_json"]


def _umask() -> int:
    """The process umask: from /proc on Linux (no side effect), else by setting it and putting it back."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """0666 minus the process umask: the mode ``open(path, "w")`` gives a new file."""
    return 0o666 & ~_umask()


def new_dir_mode() -> int:
    """0777 minus the process umask: the mode ``mkdir`` gives a new folder (``mkdtemp`` gives 0700)."""
    return 0o777 & ~_umask()


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
            try:
                mode = path.stat().st_mode & 0o7777
            except OSError:
                mode = new_file_mode()
            os.chmod(handle.name, mode)
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, data: object) -> Path:
    """``data`` as indented JSON with sorted keys, written atomically (floats stand in for numpy scalars)."""
    return atomic_write(path, json.dumps(data, indent=1, sort_keys=True, default=float).encode())


def check_output(path: str | os.PathLike, *, folder: bool = False, flag: str = "-o") -> Path:
    """Check, before any expensive work, that ``path`` can be written: a file (``folder=False``) or a
    folder, whose missing parents will be created. UsageError naming ``flag`` and the path otherwise."""
    path = Path(path)
    kind = "folder" if folder else "file"
    if path.exists():
        if folder and not path.is_dir():
            raise UsageError(f"{flag} {path}: exists and is not a folder")
        if not folder and path.is_dir():
            raise UsageError(f"{flag} {path}: is a folder, not a file")
    ancestor = path.parent if not path.exists() or not folder else path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write the {kind} here ({ancestor} is not writable)")
    return path
