"""Run one layer on the engine in Amaranth's simulator (the :class:`~.harness.Harness`).

Python only starts the engine, waits for ``done`` and reads the captured outputs: the simulator
runs free in between. Meant for small specs (Amaranth's simulator manages ~20k cycles/s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from amaranth.sim import Simulator

from blockforge.hexfiles import unpack_outputs
from blockforge.layer import BlockSparseLayer
from blockforge.spec import Spec

from .harness import Harness, harness_images
from .layouts import status_names

__all__ = ["RunResult", "run_layer", "run_layers"]


@dataclass(frozen=True)
class RunResult:
    y: np.ndarray | None       # int64 (out_features, N), None if the run did not finish cleanly
    cycles: int
    status: int
    out_words: list[int]
    timed_out: bool

    @property
    def status_names(self) -> list[str]:
        return status_names(self.status)


def run_layer(spec: Spec, layer: BlockSparseLayer, x_q: np.ndarray, *, weight_stall: int = 0,
              out_stall: int = 0, seed: int = 1, config: list[int] | None = None,
              max_cycles: int = 200_000, vcd: str | None = None, **depths) -> RunResult:
    """Simulate ``layer`` on ``x_q`` (int (in, N)); ``config`` overrides the four config words."""
    return run_layers(spec, [(layer, x_q)], weight_stall=weight_stall, out_stall=out_stall, seed=seed,
                      configs=None if config is None else [config], max_cycles=max_cycles, vcd=vcd,
                      **depths)[0]


def run_layers(spec: Spec, jobs: Sequence[tuple[BlockSparseLayer, np.ndarray]], *, weight_stall: int = 0,
               out_stall: int = 0, seed: int = 1, configs: Sequence[list[int] | None] | None = None,
               max_cycles: int = 200_000, gap: int = 2, vcd: str | None = None, **depths) -> list[RunResult]:
    """Simulate ``(layer, x_q)`` jobs back to back on ONE engine, reset only once before the first:
    between runs the testbench rewrites the memories and the config words (as the Verilog top's
    ``reload`` does: words past the new layer's end keep their old contents), waits ``gap`` cycles and
    pulses ``start`` again. ``configs`` optionally overrides the config words per job."""
    all_images = [harness_images(layer, spec, x) for layer, x in jobs]
    for images, config in zip(all_images, configs or [None] * len(jobs)):
        if config is not None:
            images["config"] = list(config)
    depths.setdefault("weight_depth", max(max(len(i["weights"]), spec.tile_words) for i in all_images))
    depths.setdefault("index_depth", max(max(len(i["index"]), 1) for i in all_images))
    harness = Harness(spec, all_images[0], weight_stall=weight_stall, out_stall=out_stall, seed=seed, **depths)
    mems = {"weights": harness.weight_mem, "index": harness.index_mem, "act": harness.act_mem,
            "params": harness.params_mem}
    results = []

    async def testbench(ctx):
        await ctx.tick()        # the config words stand for a cycle before the first start (docs/engine.md)
        for k, images in enumerate(all_images):
            if k:
                for key, mem in mems.items():
                    for addr, word in enumerate(images[key][:mem.depth]):
                        ctx.set(mem.data[addr], word)
                for signal, word in zip(harness.config, images["config"]):
                    ctx.set(signal, word)
                for _ in range(gap):
                    await ctx.tick()
            ctx.set(harness.start, 1)
            await ctx.tick()
            ctx.set(harness.start, 0)
            for _ in range(max_cycles):
                if ctx.get(harness.done):
                    break
                await ctx.tick()
            count = ctx.get(harness.out_count)
            results.append({
                "timed_out": not ctx.get(harness.done), "cycles": ctx.get(harness.cycles),
                "status": ctx.get(harness.status),
                "words": [ctx.get(harness.out_mem.data[i]) for i in range(min(count, harness.out_depth))]})

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    runs = []
    for (layer, _), images, result in zip(jobs, all_images, results):
        ok = not result["timed_out"] and result["status"] == 0
        y = unpack_outputs(result["words"], layer, spec, images["config"][0]) if ok else None
        runs.append(RunResult(y, result["cycles"], result["status"], result["words"], result["timed_out"]))
    return runs
