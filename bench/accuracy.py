"""Accuracy of block-sparse pruning methods on the default model and task (slow).

For each seed: fine-tune the default model dense once, then prune that dense model with ``magnitude``
(one-shot), ``magnitude-retrain`` (one-shot + masked retraining) and ``bsp`` (reweighted group Lasso +
hard prune + masked retraining) at each block sparsity and spec. Every run's figures are appended to a
JSON-lines cache (default ``build/bench_accuracy.jsonl``) so several invocations (e.g. more seeds) add
up; the table in docs/results.md ("## Pruning accuracy") is regenerated from the whole cache, mean over
seeds. Prints one JSON line: the aggregated table.

    python bench/accuracy.py --seeds 0 --specs tile8 row1x48 --sparsities 0.5 0.8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Pruning accuracy"
METHODS = ("magnitude", "magnitude-retrain", "bsp")
PLAIN_BSP = "bsp ablation: uncapped, plain-metric prox"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--specs", nargs="+", default=["tile8", "row1x48"])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--dense-epochs", type=float, default=2.0)
    parser.add_argument("--bsp-epochs", type=float, default=1.0)
    parser.add_argument("--retrain-epochs", type=float, default=1.0)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--dev-size", type=int, default=2000)
    parser.add_argument("--distill", action="store_true")
    parser.add_argument("--plain-prox", action="store_true", help="bsp with the plain-metric proximal step")
    parser.add_argument("--variant", help="label appended to the method name in the table (e.g. for a "
                                          "different budget)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=str(ROOT / "build" / "bench_accuracy.jsonl"))
    parser.add_argument("--results-md", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument("--table-only", action="store_true", help="only rebuild the table from the cache")
    parser.add_argument("--reuse-dense", help="folder holding dense_seed<N> models of an earlier run (skips "
                                              "the dense fine-tune of those seeds; their row must be in the cache)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from blockforge.prune.pipeline import PruneConfig, prune_model, save_pruned
    from blockforge.prune.schedule import Schedule

    cache = Path(args.cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    budget = {"train_size": args.train_size, "dev_size": args.dev_size, "dense_epochs": args.dense_epochs,
              "bsp_epochs": args.bsp_epochs, "retrain_epochs": args.retrain_epochs, "distill": args.distill,
              "batch_size": 32, "max_length": 64, "threads": args.threads}

    def record(row: dict) -> None:
        row = {**row, "budget": budget, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
        with open(cache, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), file=sys.stderr, flush=True)

    if not args.table_only:
        work = Path(tempfile.mkdtemp(prefix="bench_acc_", dir=cache.parent))
        schedule = Schedule(dense_epochs=args.dense_epochs, bsp_epochs=args.bsp_epochs,
                            retrain_epochs=args.retrain_epochs, preconditioned=not args.plain_prox)
        common = dict(task="default", train_size=args.train_size, dev_size=args.dev_size, schedule=schedule,
                      distill=args.distill, progress=False, threads=args.threads)
        for seed in args.seeds:
            dense_dir = work / f"dense_seed{seed}"
            if args.reuse_dense and (Path(args.reuse_dense) / dense_dir.name / "config.json").is_file():
                dense_dir = Path(args.reuse_dense) / dense_dir.name
            else:
                t0 = time.perf_counter()
                dense = prune_model(PruneConfig(model="default", method="magnitude", sparsity=0.0, seed=seed,
                                                **common))
                save_pruned(dense, dense_dir)
                record({"method": "dense", "spec": "-", "sparsity": 0.0, "seed": seed,
                        "accuracy": dense.report["metrics"]["dense"]["accuracy"],
                        "seconds": round(time.perf_counter() - t0, 1)})
            for spec in args.specs:
                for sparsity in args.sparsities:
                    for method in args.methods:
                        t0 = time.perf_counter()
                        result = prune_model(PruneConfig(model=str(dense_dir), method=method, spec=spec,
                                                         sparsity=sparsity, seed=seed, evaluate_dense=False,
                                                         **common))
                        rep = result.report
                        row = {"method": method, "spec": spec, "sparsity": sparsity, "seed": seed,
                               "variant": args.variant,
                               "accuracy": rep["metrics"]["final"]["accuracy"],
                               "block_sparsity": rep["block_sparsity"]["block_sparsity"],
                               "zero_blocks": rep["block_sparsity"]["zero_blocks"],
                               "seconds": round(time.perf_counter() - t0, 1)}
                        if method == "bsp":
                            row.update(preconditioned=rep["bsp"]["preconditioned"], cap_margin=rep["bsp"]["cap_margin"],after_bsp=rep["metrics"]["after_bsp"]["accuracy"],
                                       after_prune=rep["metrics"]["after_prune"]["accuracy"],
                                       below_threshold=rep["bsp"]["below_threshold_fraction"],
                                       overlap_with_magnitude=rep["overlap_with_magnitude"])
                        record(row)

    rows = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
    table = aggregate(rows)
    write_results(Path(args.results_md), table, rows)
    print(json.dumps({"bench": "accuracy", "table": table}))
    return 0


def aggregate(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        method = row["method"]
        if method == "bsp" and not (row.get("preconditioned") and row.get("cap_margin") is not None):
            method = PLAIN_BSP
        if row.get("variant"):
            method = f"{method} ({row['variant']})"
        groups.setdefault((row["spec"], row["sparsity"], method), []).append(row)
    order = {"dense": 0, "magnitude": 1, "magnitude-retrain": 2, PLAIN_BSP: 4, "bsp": 5}
    table = []
    def rank(method: str) -> tuple:
        return order.get(method, order.get(method.split(" (")[0], 9) + 0.5), method

    spec_order = {"-": 0, "tile8": 1, "row1x48": 2}
    for (spec, sparsity, method), group in sorted(groups.items(), key=lambda kv: (
            spec_order.get(kv[0][0], 3), kv[0][0], kv[0][1], rank(kv[0][2]))):
        accs = [r["accuracy"] for r in group]
        entry = {"spec": spec, "sparsity": sparsity, "method": method, "seeds": sorted({r["seed"] for r in group}),
                 "accuracy_mean": round(statistics.fmean(accs), 4), "accuracy": [round(a, 4) for a in accs]}
        for key in ("below_threshold", "overlap_with_magnitude", "after_bsp", "after_prune"):
            values = [r[key] for r in group if r.get(key) is not None]
            if values:
                entry[key] = round(statistics.fmean(values), 4)
        table.append(entry)
    return table


def write_results(path: Path, table: list[dict], rows: list[dict]) -> None:
    budgets = {json.dumps(r["budget"], sort_keys=True) for r in rows}
    lines = [SECTION, "",
             "Written by `bench/accuracy.py` (do not edit by hand). Default model all-MiniLM-L6-v2, default task "
             "(tweet sentiment, positive vs negative), dev accuracy on the fixed dev split; encoder linears "
             "only (q/k/v/o and both FFN matrices), every layer at the same block sparsity. "
             "The dense model of each seed is fine-tuned once and shared by all methods of that seed. "
             "Accuracy is the mean over the seeds listed, the per-seed column lists each. Note the budgets: `magnitude-retrain` gets `retrain_epochs` of masked training after pruning, `bsp` gets `bsp_epochs` of group-Lasso training plus the same `retrain_epochs`, so `bsp` trains longer after the dense phase.", "",
             "Budgets (as run): " + "; ".join(f"`{b}`" for b in sorted(budgets)), "",
             "| spec | block sparsity | method | seeds | dev accuracy | per seed | blocks < 1e-3 before hard prune "
             "| overlap with magnitude set |",
             "|---|---|---|---|---|---|---|---|"]
    for e in table:
        lines.append(
            f"| {e['spec']} | {e['sparsity']:.0%} | {e['method']} | {','.join(map(str, e['seeds']))} "
            f"| {e['accuracy_mean']:.4f} | {', '.join(f'{a:.4f}' for a in e['accuracy'])} "
            f"| {_fmt(e.get('below_threshold'))} | {_fmt(e.get('overlap_with_magnitude'))} |")
    section = "\n".join(lines) + "\n"
    text = path.read_text() if path.exists() else "# Results\n\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[nxt + 1:] if nxt >= 0 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
