"""Benchmark: one shipped-spec layer on the generated Verilog under Icarus (plain vvp, no Python in
the loop). Prints one JSON line: RTL cycles vs the cycle model, exactness, utilization, speedup,
simulation speed.

    .venv/bin/python bench/engine_icarus.py [--spec tile8] [--out 384] [--in 384] [--density 0.5] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from blockforge.estimate import estimate_layer, utilization
from blockforge.hexfiles import read_outputs, write_hex
from blockforge.reference import linear
from blockforge.spec import load_spec
from blockforge_hw.icarus import compile_icarus, run_icarus
from blockforge_hw.testing import random_activations, random_layer
from blockforge_hw.verilog import write_verilog


def add_layer_arguments(parser: argparse.ArgumentParser, *, tokens: int) -> None:
    """The options naming the benchmarked layer (shared with bench/verilog_passes.py)."""
    parser.add_argument("--spec", default="tile8")
    parser.add_argument("--out", type=int, default=384)
    parser.add_argument("--in", dest="in_features", type=int, default=384)
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--tokens", type=int, default=tokens)
    parser.add_argument("--seed", type=int, default=0)


def make_layer(args: argparse.Namespace):
    """(spec, random block-sparse layer, random activations) from :func:`add_layer_arguments`' options."""
    spec = load_spec(args.spec)
    rng = np.random.default_rng(args.seed)
    layer = random_layer(spec, rng, args.out, args.in_features, density=args.density)
    return spec, layer, random_activations(rng, args.in_features, args.tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_layer_arguments(parser, tokens=64)
    parser.add_argument("--stall", type=int, default=0, help="stall rate /256 on weights and output")
    args = parser.parse_args()
    spec, layer, x = make_layer(args)
    with tempfile.TemporaryDirectory(prefix="bf_bench_") as tmp:
        root = Path(tmp)
        t0 = time.monotonic()
        write_verilog(spec, root / "rtl")
        t1 = time.monotonic()
        vvp, _ = compile_icarus(root / "rtl", root / "sim.vvp")
        t2 = time.monotonic()
        write_hex(layer, spec, root / "hex", x)
        t3 = time.monotonic()
        result = run_icarus(vvp, root / "hex", root / "out.hex", stall_weights=args.stall, stall_out=args.stall,
                            seed=args.seed + 1)
        t4 = time.monotonic()
        y = read_outputs(root / "out.hex", layer, spec, args.tokens)
    expected, _ = linear(layer, x, spec.numerics)
    est = estimate_layer(spec, layer, args.tokens)
    print(json.dumps({
        "bench": "engine_icarus", "spec": spec.name, "shape": [args.out, args.in_features],
        "block_density": round(est["block_density"], 4), "n_tokens": args.tokens, "seed": args.seed,
        "stall": args.stall, "status": result.status, "exact": bool(np.array_equal(y, expected)),
        "rtl_cycles": result.cycles, "estimate_cycles": est["cycles"],
        "cycles_equal": result.cycles == est["cycles"],
        "utilization": round(utilization(spec, est["macs"], result.cycles), 4),
        "speedup_vs_dense": round(est["dense_cycles"] / result.cycles, 3),
        "speedup_times_density": round(est["dense_cycles"] / result.cycles * est["block_density"], 3),
        "verilog_s": round(t1 - t0, 2), "compile_s": round(t2 - t1, 2), "hex_s": round(t3 - t2, 2),
        "sim_s": round(t4 - t3, 2), "sim_cycles_per_s": round(result.cycles / (t4 - t3)),
    }))


if __name__ == "__main__":
    main()
