"""What the host asks of a simulation, and what comes back — plain JSON on both sides.

A :class:`Session` is one simulator process for one spec; it runs :class:`LayerJob` s in order
(one layer of a real ``.bfim`` image on one block of ≤ max_tokens activation columns each) and writes
one :class:`JobResult` per job. The host (:mod:`.simulator`) writes the session file, the cocotb bench
(:mod:`.tb_engine`) reads it, so both sides share these definitions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The memory files the bench writes for the simulation top (blockforge.hexfiles formats): "bin", the bytes
#: ``$fread`` loads (the host passes blockforge_hw.verilog.memory_plusargs; why: docs/simulation.md).
MEMORY_FORMAT = "bin"


@dataclass(frozen=True)
class LayerJob:
    """Run ``layer`` of ``image`` on the int8 activations in ``x`` (a .npy of shape (in, N))."""

    job_id: str
    image: str
    layer: str
    x: str
    check_cycles: bool = True   # compare the cycle counter with the estimator (only without stalls)


@dataclass(frozen=True)
class Session:
    spec: dict[str, Any]        # the spec as plain data (Spec.to_dict); the bench rebuilds the Spec from it
    jobs: tuple[LayerJob, ...]
    hexdir: str                 # where the bench writes the memory files before each job
    results: str                # JSON file the bench writes
    seed: int = 1
    stall_weights: int = 0      # stall probability on the weight read path, in 256ths
    stall_out: int = 0          # stall probability on the output ready, in 256ths
    max_report: int = 5         # mismatching elements listed per job
    requests: str | None = None   # serve mode: FIFO of job lines from the host
    responses: str | None = None  # serve mode: FIFO of result lines to the host
    spec_source: str = "<dict>"   # where the spec came from, for messages (Spec.source)
    free_clock: bool = False      # the top generates its own clock (bf_sim_clocked): the bench does not drive it

    def save(self, path: Path) -> Path:
        data = asdict(self)
        data["jobs"] = [asdict(j) for j in self.jobs]
        Path(path).write_text(json.dumps(data, indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Session":
        data = json.loads(Path(path).read_text())
        data["jobs"] = tuple(LayerJob(**j) for j in data["jobs"])
        return cls(**data)

    @property
    def stalls(self) -> bool:
        return bool(self.stall_weights or self.stall_out)


@dataclass
class JobResult:
    job_id: str
    layer: str
    n_tokens: int
    elements: int               # output elements compared
    mismatches: int
    cycles: int                 # the engine's cycle counter
    estimated_cycles: int       # blockforge.estimate for the same layer and N
    status: int
    status_names: list[str]
    timed_out: bool
    macs: int                   # MACs the engine performed (non-zero tiles only)
    first_mismatches: list[dict[str, Any]] = field(default_factory=list)
    sim_seconds: float = 0.0    # wall time of this job inside the simulator process

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.status == 0 and not self.timed_out

    def describe_mismatches(self, seed: int) -> str:
        shown = "; ".join(f"y[{m['channel']},{m['token']}] expected {m['expected']} got {m['got']}"
                          for m in self.first_mismatches)
        return (f"{self.layer} (job {self.job_id}, seed {seed}): {self.mismatches} of {self.elements} outputs "
                f"differ from blockforge.reference: {shown}")


def result_row(result: JobResult) -> dict[str, Any]:
    """The plain-data row of one layer's RTL check, as ``blockforge sim --json`` and the flow's
    ``rtl_layers.jsonl`` report it (callers add their own context: wall time, seed, ...)."""
    return {"layer": result.layer, "n_tokens": result.n_tokens, "elements": result.elements,
            "mismatches": result.mismatches, "rtl_cycles": result.cycles,
            "estimated_cycles": result.estimated_cycles, "cycles_equal": result.cycles == result.estimated_cycles,
            "status": result.status_names, "timed_out": result.timed_out}


def result_totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Totals over :func:`result_row` rows: layers, output elements, mismatches, RTL and estimated cycles,
    and how many layers' cycles equal the estimate."""
    return {"layers": len(rows), "elements": sum(r["elements"] for r in rows),
            "mismatches": sum(r["mismatches"] for r in rows), "rtl_cycles": sum(r["rtl_cycles"] for r in rows),
            "estimated_cycles": sum(r["estimated_cycles"] for r in rows),
            "layers_cycles_equal": sum(r["cycles_equal"] for r in rows)}


def save_results(path: str | Path, results: list[JobResult]) -> None:
    Path(path).write_text(json.dumps([asdict(r) for r in results], indent=1))


def load_results(path: str | Path) -> list[JobResult]:
    return [JobResult(**r) for r in json.loads(Path(path).read_text())]
