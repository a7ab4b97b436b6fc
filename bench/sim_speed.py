"""Benchmark: RTL simulation speed under cocotb, and wall time of a whole-model batch through the RTL.

Prints one JSON line:
- per simulator (Icarus always, Verilator when installed): build seconds and simulated cycles per second
  for a 384×384 tile8 layer at 50% block sparsity, N = 32, run three times in one serving simulator
  (hex writing, reload and checking included, so this is what a user gets), for the bench as it runs now
  (``bf_sim_clocked``: the clock inside the simulation) and, side by side in the same run, the previous
  bench (``bf_sim_top`` clocked from cocotb, every signal VPI-public), with the ratio;
- per simulator, ``pool``: simulated cycles per wall second of the same layer's jobs spread over a pool of
  ``--workers`` simulators (default one per core), side by side with a pool of one, with the ratio;
- ``model_batch``: wall time to run a batch of real dev sentences through the default MiniLM, block-magnitude
  pruned to 50% under tile8 and quantized, with every prunable linear on the RTL (Verilator if installed,
  else skipped unless --model-on-icarus), and whether the logits equal the integer PyTorch path.

    .venv/bin/python bench/sim_speed.py [--examples 8] [--skip-model] [--model-on-icarus] [--workers K]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from blockforge.image import write_image
from blockforge.spec import load_spec
from blockforge_hw.testing import random_layer
from blockforge_sim.runner import available_simulators
from blockforge_sim.simulator import RtlBackend, RtlSimulator, default_workers, summarize


def bench_layer(work: Path):
    """The bench's layer (tile8, 384×384, 50% blocks), written as an image; returns (spec, layer, image, rng)."""
    spec = load_spec("tile8")
    rng = np.random.default_rng(0)
    layer = random_layer(spec, rng, 384, 384, density=0.5, bias_scale=9999, multiplier_range=(1 << 15, 1 << 16),
                         shift_range=(16, 23), name="bench.layer", scale_in=0.05, scale_out=0.1,
                         weight_scale=np.full(384, 0.01))
    work.mkdir(parents=True, exist_ok=True)
    image = work / "layer.bfim"
    write_image(image, [layer], spec)
    return spec, layer, image, rng


def layer_speed(simulator: str, work: Path, repeats: int = 3, free_clock: bool = True) -> dict:
    spec, layer, image, rng = bench_layer(work)
    rtl = RtlSimulator(spec, simulator=simulator, work_dir=work / "rtl", free_clock=free_clock, progress=False)
    t0 = time.perf_counter()
    rtl.build()
    build = time.perf_counter() - t0
    cycles = seconds = 0.0
    ok = True
    with rtl.serve(seed=1) as server:
        for _ in range(repeats):
            x = rng.integers(-128, 128, (384, 32)).astype(np.int8)
            run = server.run_layers(image, [(layer.name, x)], layers={layer.name: layer})
            result = run.results[0]
            ok &= result.ok and result.cycles == result.estimated_cycles
            cycles += result.cycles
            seconds += result.sim_seconds
    return {"build_s": round(build, 1), "layer_cycles": int(cycles / repeats), "cycles_per_s": round(cycles / seconds),
            "exact_and_cycle_equal": bool(ok), "block_density": round(layer.block_density, 3)}


def pool_speed(simulator: str, work: Path, workers: int, jobs: int) -> dict:
    """Simulated cycles per wall second for ``jobs`` single-layer jobs spread over a pool of ``workers``
    simulators (servers started before the clock starts)."""
    spec, layer, image, rng = bench_layer(work)
    rtl = RtlSimulator(spec, simulator=simulator, work_dir=work / "rtl", progress=False)
    rtl.build()
    todo = [(layer.name, rng.integers(-128, 128, (384, 32)).astype(np.int8)) for _ in range(jobs)]
    with rtl.pool(workers=workers) as pool:
        list(pool.map(image, todo[:workers], layers={layer.name: layer}))        # start every server
        t0 = time.perf_counter()
        runs = list(pool.map(image, todo, layers={layer.name: layer}))
        wall = time.perf_counter() - t0
    cycles = sum(run.cycles for run in runs)
    return {"workers": pool.workers, "jobs": jobs, "cycles_per_wall_s": round(cycles / wall),
            "exact_and_cycle_equal": all(r.ok and r.cycles == r.estimated_cycles for run in runs for r in run.results)}


def model_batch(simulator: str, work: Path, examples: int) -> dict:
    import torch

    from blockforge.data import load_task
    from blockforge.export import export_model
    from blockforge.models import load_model, load_tokenizer
    from blockforge.model_estimate import block_mask_of
    from blockforge.prune.roles import find_prunable_linears
    from blockforge.batches import tokenize
    from blockforge.qmodel import integer_model

    spec = load_spec("tile8")
    task = load_task("default", train_size=256, dev_size=examples)
    model = load_model("default", labels=task.labels).model.eval()
    tokenizer = load_tokenizer("default")
    with torch.no_grad():                     # block-magnitude prune every prunable linear to 50%
        for p in find_prunable_linears(model):
            w = p.module.weight
            blocks = w.reshape(w.shape[0] // 8, 8, w.shape[1] // 8, 8)
            norms = blocks.pow(2).sum(dim=(1, 3))
            keep = norms > norms.flatten().median()
            w.copy_((blocks * keep[:, None, :, None]).reshape(w.shape))
    layers = export_model(model, spec, task, tokenizer=tokenizer, calib=128).quantized.layers
    density = float(np.mean([block_mask_of(layer.to_dense(), spec).mean() for layer in layers]))
    split = tokenize(tokenizer, task.dev, 64)
    batch = split.collate(list(range(len(split))), False)
    batch.pop("labels")
    rtl = RtlSimulator(spec, simulator=simulator, work_dir=work / "rtl")
    rtl.build()
    with torch.no_grad(), RtlBackend(rtl, layers) as backend:
        expected = integer_model(model, layers, spec)(**batch).logits
        t0 = time.perf_counter()
        got = integer_model(model, layers, spec, backend=backend)(**batch).logits
        wall = time.perf_counter() - t0
    totals = summarize(backend.stats)
    return {"simulator": simulator, "examples": examples, "tokens": int(batch["input_ids"].numel()),
            "block_density": round(density, 3), "wall_s": round(wall, 1), "rtl_cycles": totals["cycles"],
            "cycles_equal_estimate": totals["cycles"] == totals["estimated_cycles"],
            "mismatches": totals["mismatches"], "logits_identical": bool(torch.equal(expected, got)),
            "cycles_per_s": round(totals["cycles"] / wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--model-on-icarus", action="store_true")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="simulators of the pool measurement (default: one per core; 1 skips it)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    simulators = available_simulators()
    out = {"bench": "sim_speed", "spec": "tile8", "layer": [384, 384], "n_tokens": 32, "simulators": simulators}
    with tempfile.TemporaryDirectory(prefix="bf-sim-speed-") as tmp:
        work = Path(tmp)
        for simulator in simulators:
            new = layer_speed(simulator, work / simulator)
            old = layer_speed(simulator, work / f"{simulator}-old", free_clock=False)
            out[simulator] = {**new, "previous_bench": old, "speedup_vs_previous": round(
                new["cycles_per_s"] / old["cycles_per_s"], 2)}
            if args.workers > 1:                 # the pool: one simulator per core, side by side with one
                jobs = 4 * args.workers if simulator == "verilator" else args.workers
                one = pool_speed(simulator, work / f"{simulator}-pool", 1, jobs)
                many = pool_speed(simulator, work / f"{simulator}-pool", args.workers, jobs)
                out[simulator]["pool"] = {**many, "one_server": one, "speedup_vs_one": round(
                    many["cycles_per_wall_s"] / one["cycles_per_wall_s"], 2)}
        if not args.skip_model:
            model_sim = "verilator" if "verilator" in simulators else ("icarus" if args.model_on_icarus else None)
            if model_sim:
                out["model_batch"] = model_batch(model_sim, work / f"model-{model_sim}", args.examples)
            else:
                out["model_batch"] = {"skipped": "Verilator not installed (pass --model-on-icarus to use Icarus)"}
    out["goals"] = {"icarus_cycles_per_s": 20_000, "verilator_cycles_per_s": 1_000_000, "model_batch_wall_s": 600}
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
