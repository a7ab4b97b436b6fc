"""Run one layer on the engine in Amaranth's simulator (the :class:`~.harness.Harness`).

Python only starts the engine, waits for ``done`` and reads the captured outputs: the simulator
runs free in between. Meant for small specs (Amaranth's simulator manages ~20k cycles/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from blockforge.layer import BlockSparseLayer
from blockforge.spec import Spec

from .harness import Harness, harness_images
from .layouts import status_names

__all__ = ["RunResult", "run_layer", "unpack_outputs"]


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


def unpack_outputs(words: list[int], layer: BlockSparseLayer, rows: int, n_tokens: int) -> np.ndarray:
    """Output words (block row-major, token-minor; BR int8 lanes each) → y (out_features, N)."""
    y = np.zeros((layer.padded_out, n_tokens), dtype=np.int64)
    for k, word in enumerate(words[: layer.n_block_rows * n_tokens]):
        r, n = divmod(k, n_tokens)
        for i in range(rows):
            byte = (word >> (8 * i)) & 0xFF
            y[r * rows + i, n] = byte - 256 if byte >= 128 else byte
    return y[: layer.out_features]


def run_layer(spec: Spec, layer: BlockSparseLayer, x_q: np.ndarray, *, weight_stall: int = 0,
              out_stall: int = 0, seed: int = 1, config: list[int] | None = None,
              max_cycles: int = 200_000, vcd: str | None = None, **depths) -> RunResult:
    """Simulate ``layer`` on ``x_q`` (int (in, N)); ``config`` overrides the four config words."""
    images = harness_images(layer, spec, x_q)
    if config is not None:
        images["config"] = list(config)
    harness = Harness(spec, images, weight_stall=weight_stall, out_stall=out_stall, seed=seed, **depths)
    n_tokens = images["config"][0]
    result = {}

    async def testbench(ctx):
        ctx.set(harness.start, 1)
        await ctx.tick()
        ctx.set(harness.start, 0)
        for _ in range(max_cycles):
            if ctx.get(harness.done):
                break
            await ctx.tick()
        result["timed_out"] = not ctx.get(harness.done)
        result["cycles"] = ctx.get(harness.cycles)
        result["status"] = ctx.get(harness.status)
        count = ctx.get(harness.out_count)
        result["words"] = [ctx.get(harness.out_mem.data[i]) for i in range(count)]

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    ok = not result["timed_out"] and result["status"] == 0
    y = unpack_outputs(result["words"], layer, spec.block.rows, n_tokens) if ok else None
    return RunResult(y, result["cycles"], result["status"], result["words"], result["timed_out"])
