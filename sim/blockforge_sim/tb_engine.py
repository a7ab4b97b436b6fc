"""The cocotb bench of the engine's simulation top: runs layer jobs in one simulator process and checks
each against the golden reference.

Per job, Python writes the layer's memory files (``$fread`` bytes), pulses ``reload`` and ``start`` (for the next pass
of the layer it holds, only the activations and config, with ``reload_inputs``), then waits for
``done`` while the simulator runs free; the checker compares the dumped outputs with
``blockforge.reference`` element by element and the cycle counter with ``blockforge.estimate``.

The session file is named by the ``BF_SESSION`` environment variable (see :mod:`.simulator`). A session
either lists its jobs (batch mode: the test fails on any mismatch, error status or cycle difference)
or names two FIFOs (serve mode: jobs arrive one JSON line at a time and each result goes back as one
line, so a host can keep one simulator running across many layer calls; the host judges results).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import cocotb
import numpy as np

from blockforge.hexfiles import write_hex, write_inputs
from blockforge.image import decode_image_layer, read_image_bytes
from blockforge.spec import spec_from_dict

from .checker import LayerChecker
from .driver import CLOCK_NS, EngineDriver
from .jobs import MEMORY_FORMAT, JobResult, LayerJob, Session, save_results
from .monitor import CompletionMonitor

# Cycles allowed per estimated cycle before a job counts as hung (stalls included), plus a floor.
TIMEOUT_FACTOR = 8
TIMEOUT_FLOOR = 20_000
STOP = "stop"


class Bench:
    """Driver, monitor and checker around one simulation top; runs one job at a time."""

    def __init__(self, dut, session: Session):
        self.session = session
        self.spec = spec_from_dict(session.spec, source=session.spec_source)
        self.driver = EngineDriver(dut)
        self.monitor = CompletionMonitor(dut, CLOCK_NS)
        self.checker = LayerChecker(self.spec, session.max_report)
        self.hexdir = Path(session.hexdir)
        self.images: dict[str, memoryview] = {}                 # image path -> its bytes, read once
        self.layers: dict[tuple[str, str], object] = {}          # (image, layer) -> the decoded layer
        self.loaded: tuple[str, str] | None = None    # (image, layer) whose weights the memories hold

    async def setup(self) -> None:
        self.driver.start_clock(free_running=self.session.free_clock)
        await self.driver.reset()

    async def run(self, job: LayerJob) -> JobResult:
        t0 = time.perf_counter()
        layer = self.layers.get((job.image, job.layer))
        if layer is None:                 # only this layer is decoded and verified (the host read them all)
            if job.image not in self.images:
                self.images[job.image] = read_image_bytes(job.image)
            layer = self.layers[job.image, job.layer] = decode_image_layer(
                self.images[job.image], job.layer, self.spec, source=job.image)
        x_q = np.load(job.x, allow_pickle=False)
        out_path = self.hexdir / "out.hex"
        out_path.unlink(missing_ok=True)
        if self.loaded == (job.image, job.layer):   # the next pass of the same layer: new tokens only
            write_inputs(layer, self.spec, self.hexdir, x_q, fmt=MEMORY_FORMAT)
            await self.driver.reload_inputs()
        else:
            write_hex(layer, self.spec, self.hexdir, x_q, fmt=MEMORY_FORMAT)
            await self.driver.reload()
            self.loaded = (job.image, job.layer)
        await self.driver.start()
        expected = self.checker.expected_cycles(layer, x_q.shape[1])
        # the estimate's cycles run without a value-change callback; the engine's counter still decides
        done = await self.monitor.wait_done(TIMEOUT_FACTOR * expected + TIMEOUT_FLOOR, quiet_cycles=expected)
        result, _ = self.checker.check(job, layer, x_q, done, out_path)
        if out_path.exists():
            out_path.replace(self.hexdir / f"out_{job.job_id}.hex")
        result.sim_seconds = time.perf_counter() - t0
        return result

    def failure(self, job: LayerJob, result: JobResult) -> str | None:
        seed = self.session.seed
        if result.timed_out or result.status:
            state = "timed out" if result.timed_out else f"error status {', '.join(result.status_names)}"
            return f"{job.layer} (job {job.job_id}, seed {seed}): {state}"
        if result.mismatches:
            return result.describe_mismatches(seed)
        if job.check_cycles and not self.session.stalls and result.cycles != result.estimated_cycles:
            return (f"{job.layer} (job {job.job_id}): RTL took {result.cycles} cycles, the estimator "
                    f"says {result.estimated_cycles}")
        return None


@cocotb.test()
async def layers_match_reference(dut):
    session = Session.load(os.environ["BF_SESSION"])
    bench = Bench(dut, session)
    await bench.setup()
    if session.requests:
        await _serve(bench, session)
        return
    results, failures = [], []
    for job in session.jobs:
        result = await bench.run(job)
        results.append(result)
        save_results(session.results, results)
        problem = bench.failure(job, result)
        if problem:
            failures.append(problem)
    assert not failures, " | ".join(failures)


async def _serve(bench: Bench, session: Session) -> None:
    """Serve jobs from the requests FIFO until the host sends ``stop`` (or closes it)."""
    with open(session.requests) as requests, open(session.responses, "w") as responses:
        for line in requests:
            line = line.strip()
            if line == STOP:
                break
            if not line:
                continue
            result = await bench.run(LayerJob(**json.loads(line)))
            responses.write(json.dumps(asdict(result)) + "\n")
            responses.flush()
