"""Checker: compares what the engine wrote with ``blockforge.reference`` (every element, exactly) and
its cycle counter with ``blockforge.estimate``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blockforge import reference
from blockforge.estimate import layer_cycles
from blockforge.hexfiles import read_outputs
from blockforge.layer import BlockSparseLayer
from blockforge.spec import Spec
from blockforge_hw.layouts import status_names

from .jobs import JobResult, LayerJob
from .monitor import Completion


class LayerChecker:
    def __init__(self, spec: Spec, max_report: int = 5):
        self.spec = spec
        self.max_report = max_report

    def expected_cycles(self, layer: BlockSparseLayer, n_tokens: int) -> int:
        return layer_cycles(self.spec, layer.nnz_per_row(), n_tokens)

    def check(self, job: LayerJob, layer: BlockSparseLayer, x_q: np.ndarray, done: Completion,
              out_path: Path) -> tuple[JobResult, np.ndarray | None]:
        """The job's result and the RTL outputs y (out_features, N) (None if the run did not finish)."""
        n_tokens = x_q.shape[1]
        expected, _ = reference.linear(layer, x_q, self.spec.numerics)
        y = None
        if not done.timed_out and done.status == 0 and out_path.exists():
            y = read_outputs(out_path, layer, self.spec, n_tokens)
        elements = expected.size
        mismatches, first = elements, []
        if y is not None:
            diff = np.argwhere(y != expected)
            mismatches = len(diff)
            first = [{"channel": int(o), "token": int(n), "expected": int(expected[o, n]), "got": int(y[o, n])}
                     for o, n in diff[: self.max_report]]
        result = JobResult(
            job_id=job.job_id, layer=job.layer, n_tokens=n_tokens, elements=elements, mismatches=mismatches,
            cycles=done.cycles, estimated_cycles=self.expected_cycles(layer, n_tokens), status=done.status,
            status_names=status_names(done.status), timed_out=done.timed_out,
            macs=reference.layer_macs(layer, n_tokens)[0], first_mismatches=first)
        return result, y
