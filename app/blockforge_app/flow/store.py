"""The resume store: each stage of a run leaves a stamp ``OUTDIR/.stages/<stage>.json`` holding the
fingerprint of its inputs (:mod:`blockforge.resume`), its result, and the size and SHA-256 of every file it
wrote; a rerun skips a stage only when both still match."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from blockforge.resume import contents, fingerprint, read_record, write_record

__all__ = ["Stages"]


class Stages:
    """Runs stages in order; skips a stage whose input fingerprint is unchanged and whose outputs are the
    very files it wrote (size and SHA-256 recorded in its stamp): a truncated, deleted or replaced output
    reruns that stage and, through the fingerprints, everything after it."""

    def __init__(self, out_dir: Path, log: Callable[[str], None]):
        self.out = out_dir
        self.dir = out_dir / ".stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.fingerprints: dict[str, str] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def run(self, name: str, inputs: dict, outputs: list[Path], body: Callable[[], Any],
            after: tuple[str, ...] = ()) -> Any:
        digest = fingerprint({"inputs": inputs, "after": [self.fingerprints[a] for a in after]})[:16]
        self.fingerprints[name] = digest
        stamp = self.dir / f"{name}.json"
        recorded = read_record(stamp, digest) if all(p.exists() for p in outputs) else None
        if recorded is not None and recorded.get("contents") == contents(outputs):
            self.fingerprints[name] = fingerprint({"fingerprint": digest, "contents": recorded["contents"]})[:16]
            self.log(f"[{name}] up to date, skipped")
            self.skipped.append(name)
            return recorded.get("result")
        stamp.unlink(missing_ok=True)
        self.log(f"[{name}] running")
        started = time.perf_counter()
        result = body()
        seconds = round(time.perf_counter() - started, 1)
        written = contents(outputs)
        self.fingerprints[name] = fingerprint({"fingerprint": digest, "contents": written})[:16]
        write_record(stamp, {"fingerprint": digest, "seconds": seconds, "result": result,
                             "outputs": [str(p) for p in outputs], "contents": written})
        self.log(f"[{name}] done in {seconds:.1f} s")
        self.ran.append(name)
        return result


# --------------------------------------------------------------------------------------------------
