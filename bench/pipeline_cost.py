"""Benchmark: the cycle cost of the pipeline stages added for timing closure (issue 13).

Prices MiniLM-L6's linear shapes (384×384, 1536×384, 384×1536) under random block masks at several
densities with today's cycle model and with the first round's (``blockforge/estimate.py`` as of commit
1115707, read from git history: A = 2, a 3-cycle drain, tiles handed straight from the assembly
register), and prints one JSON line per spec: cycles added per layer and the relative cost.

    .venv/bin/python bench/pipeline_cost.py [--tokens 64] [--baseline 1115707]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from blockforge import estimate
from blockforge.spec import load_spec, shipped_spec_names

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ((384, 384), (1536, 384), (384, 1536))
DENSITIES = (1.0, 0.5, 0.2, 0.1)


def baseline_estimator(commit: str):
    """The estimate module of ``commit``, imported from git history as a package-relative module."""
    source = subprocess.run(["git", "show", f"{commit}:sw/blockforge/estimate.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="bf_estimate_"))
    path = folder / "estimate_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("blockforge.estimate_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--baseline", default="1115707")
    args = parser.parse_args()
    old = baseline_estimator(args.baseline)
    for name in shipped_spec_names():
        spec = load_spec(name)
        rows = []
        for out_f, in_f in SHAPES:
            tiling = spec.tiling(out_f, in_f)
            for density in DENSITIES:
                rng = np.random.default_rng(0)
                nnz = rng.binomial(tiling.block_cols, density, tiling.block_rows)
                new_c = estimate.layer_cycles(spec, nnz, args.tokens)
                old_c = old.layer_cycles(spec, nnz, args.tokens)
                rows.append({"shape": [out_f, in_f], "density": density, "cycles": new_c,
                             "baseline_cycles": old_c, "added": new_c - old_c,
                             "relative": round((new_c - old_c) / old_c, 5)})
        print(json.dumps({"bench": "pipeline_cost", "spec": name, "n_tokens": args.tokens,
                          "accumulate_latency": estimate.accumulate_latency(spec),
                          "drain_latency": estimate.drain_latency(spec.numerics.multiplier_bits),
                          "max_added": max(r["added"] for r in rows),
                          "max_relative": max(r["relative"] for r in rows), "rows": rows}))


if __name__ == "__main__":
    main()
