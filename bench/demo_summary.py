"""Benchmark: the main job (what `make demo` runs) end to end; prints one JSON line with its summary
(accuracies dense / pruned / int8 / through the RTL, compression, cycles estimated vs simulated, speedup,
mismatches) and the wall time of every stage.

    .venv/bin/python bench/demo_summary.py [--out build/bench/demo] [--sparsity 0.5] [--spec tile8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/demo"))
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--spec", default="tile8")
    parser.add_argument("--keep", action="store_true", help="resume an existing run instead of starting fresh")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from blockforge_app.flow import RunConfig, run_flow

    if args.out.exists() and not args.keep:
        shutil.rmtree(args.out)
    started = time.perf_counter()
    result = run_flow(RunConfig(spec=args.spec, sparsity=args.sparsity), args.out, log=lambda line: None)
    stages = {p.stem: json.loads(p.read_text())["seconds"] for p in (args.out / ".stages").glob("*.json")}
    print(json.dumps({"bench": "demo_summary", **result.summary, "stage_seconds": stages,
                      "wall_seconds": round(time.perf_counter() - started, 1)}, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
