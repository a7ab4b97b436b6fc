"""The cocotb bench of the engine's simulation top: runs a session of layer jobs in one simulator
process and checks each against the golden reference.

Per job, Python writes the layer's ``$readmemh`` files, pulses ``reload`` and ``start``, then waits for
``done`` while the simulator runs free; the checker compares the dumped outputs with
``blockforge.reference`` element by element and the cycle counter with ``blockforge.estimate``.
The session file is named by the ``BF_SESSION`` environment variable (see :mod:`.session`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cocotb
import numpy as np

from blockforge.hexfiles import write_hex
from blockforge.image import read_image
from blockforge.spec import load_spec

from .checker import LayerChecker
from .driver import CLOCK_NS, EngineDriver
from .jobs import Session, save_results
from .monitor import CompletionMonitor

# Cycles allowed per estimated cycle before a job counts as hung (stalls included), plus a floor.
TIMEOUT_FACTOR = 8
TIMEOUT_FLOOR = 20_000


@cocotb.test()
async def layers_match_reference(dut):
    session = Session.load(os.environ["BF_SESSION"])
    spec = load_spec(session.spec)
    driver, monitor = EngineDriver(dut), CompletionMonitor(dut, CLOCK_NS)
    checker = LayerChecker(spec, session.max_report)
    hexdir = Path(session.hexdir)
    images: dict[str, object] = {}
    results = []
    failures = []

    driver.start_clock()
    await driver.reset()
    for job in session.jobs:
        t0 = time.perf_counter()
        if job.image not in images:
            images[job.image] = read_image(job.image, spec)
        layer = images[job.image].layer(job.layer)
        x_q = np.load(job.x, allow_pickle=False)
        out_path = hexdir / "out.hex"
        out_path.unlink(missing_ok=True)
        write_hex(layer, spec, hexdir, x_q)
        await driver.reload()
        await driver.start()
        budget = TIMEOUT_FACTOR * checker.expected_cycles(layer, x_q.shape[1]) + TIMEOUT_FLOOR
        done = await monitor.wait_done(budget)
        result, _ = checker.check(job, layer, x_q, done, out_path)
        if out_path.exists():
            out_path.replace(hexdir / f"out_{job.job_id}.hex")
        result.sim_seconds = time.perf_counter() - t0
        results.append(result)
        save_results(session.results, results)
        if result.timed_out or result.status:
            state = "timed out" if result.timed_out else f"error status {', '.join(result.status_names)}"
            failures.append(f"{job.layer} (job {job.job_id}, seed {session.seed}): {state}")
        elif result.mismatches:
            failures.append(result.describe_mismatches(session.seed))
        elif job.check_cycles and not session.stalls and result.cycles != result.estimated_cycles:
            failures.append(f"{job.layer} (job {job.job_id}): RTL took {result.cycles} cycles, the estimator "
                            f"says {result.estimated_cycles}")
    assert not failures, " | ".join(failures)
