"""Accuracy vs block compression of the pruning methods on the default model and task (slow, hours).

One command runs (or resumes) the grid and rebuilds the committed figures::

    python bench/accuracy.py --seeds 0 1 2 --sparsities 0.8 0.5       # run / resume, then --report
    python bench/accuracy.py --report                                  # only rebuild JSON, table, plot

The grid is a queue of tasks: the dense fine-tune of each seed (shared by every method of that seed),
then one task per (spec, sparsity, method, seed) in the order given. Each finished task is a JSON file
under ``--rows`` (default ``docs/results/accuracy-runs/``, committed: the evidence outlives the build
folder, and later sessions add seeds to it); a task in progress keeps phase checkpoints under
``build/accuracy/ckpt/`` so a killed run resumes after its last finished phase. Several workers may run
the same command at once: a task is claimed by creating ``claims/<task>`` exclusively (a claim of a dead
process is taken over), and a row waits for the dense model of its seed.

Every method gets the same number of optimizer steps after the dense phase (``--prune-epochs``; by default
the sparsifying and retraining epochs of ``Schedule.recommended`` for the cell's sparsity, the schedule
``blockforge prune`` uses: 2 + 2 up to 80%, 4 + 4 above) and the same distillation setting: ``bsp``
splits them into ``--bsp-epochs`` of reweighted group Lasso and the rest of masked retraining;
``magnitude-retrain`` spends them all on masked retraining after a one-shot block-magnitude prune;
``magnitude`` is the one-shot prune with no retraining (0 steps).

``--report`` writes ``docs/results/accuracy.json`` (``{"dense": {...}, "rows": [...]}``), the table in
docs/results.md ("## Pruning accuracy": mean ± sample std over seeds, and each seed) and
``docs/results/accuracy.png`` (accuracy vs compression, one line per method, error bars = std).
Each run records the commit it ran (``code``, ``-dirty`` with local edits to the code folders).
Prints one JSON line: the rows.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from blockforge.prune.options import DEFAULT_DISTILL_HIDDEN, DEFAULT_DISTILL_PHASES, DISTILL_PHASES  # light: no torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Pruning accuracy"
#: bench method → (pipeline method, PruneConfig overrides, Schedule overrides). Every method but
#: ``magnitude`` trains ``--prune-epochs`` after the dense phase; ``bsp*`` and ``magnitude-gradual``
#: spend ``--bsp-epochs`` of them in their sparsifying phase and the rest in masked retraining.
METHODS = {
    "magnitude": ("magnitude", {}, {}),
    "magnitude-retrain": ("magnitude-retrain", {}, {}),
    "magnitude-gradual": ("magnitude-gradual", {}, {}),
    "bsp-paper": ("bsp", {"regularizer": "paper"}, {}),
    "bsp-no-cap": ("bsp", {}, {"cap_margin": None}),
    "bsp-no-budget": ("bsp", {}, {"budget": False}),
    "bsp-plain-prox": ("bsp", {}, {"preconditioned": False}),
    "bsp": ("bsp", {}, {}),
}
METHOD_ORDER = {name: i for i, name in enumerate(METHODS)}
#: The grid issue 12 asks for: (spec, sparsity) × these methods; rows without runs are listed as not run.
PLANNED = [("tile8", s) for s in (0.5, 0.67, 0.8, 0.9)] + [("row1x48", 0.8)]
PLANNED_METHODS = ("magnitude", "magnitude-retrain", "magnitude-gradual", "bsp-paper", "bsp")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--specs", nargs="+", default=["tile8"])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.5])
    parser.add_argument("--methods", nargs="+", default=["bsp", "magnitude-retrain", "magnitude"],
                        choices=list(METHODS))
    parser.add_argument("--allocation", choices=("uniform", "global"), default="uniform",
                        help="per-layer block budget (global: overall sparsity, ranked normalized norms)")
    parser.add_argument("--dense-epochs", type=float, default=2.0)
    parser.add_argument("--prune-epochs", type=float,
                        help="epochs after the dense phase, the same for every retraining method (default: the "
                             "recommended schedule's of each sparsity, 4 up to 80%%, 8 above)")
    parser.add_argument("--bsp-epochs", type=float,
                        help="bsp's group-Lasso share of --prune-epochs (default: the recommended schedule's)")
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--dev-size", type=int, default=1000)
    parser.add_argument("--no-distill", action="store_true", help="no distillation from the dense model")
    parser.add_argument("--distill-phases", choices=DISTILL_PHASES, default=DEFAULT_DISTILL_PHASES,
                        help="distill in retraining only, or in the sparsifying phase too (default: the recipe's)")
    parser.add_argument("--distill-hidden", type=float, default=DEFAULT_DISTILL_HIDDEN,
                        help="weight of hidden-state distillation (0 = logits only; default: the recipe's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-wait", action="store_true",
                        help="return when every task left is claimed by another worker (instead of waiting)")
    parser.add_argument("--work", default=str(ROOT / "build" / "accuracy"))
    parser.add_argument("--rows", default=str(ROOT / "docs" / "results" / "accuracy-runs"),
                        help="one JSON file per finished task (committed)")
    parser.add_argument("--out-dir", default=str(ROOT / "docs" / "results"))
    parser.add_argument("--results-md", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument("--report", action="store_true", help="only rebuild JSON, table and plot from --work")
    args = parser.parse_args(argv)

    work, rows_dir = Path(args.work), Path(args.rows)
    if not args.report:
        run_grid(args, work, rows_dir)
    rows = load_rows(rows_dir)
    summary = write_report(rows, Path(args.out_dir), Path(args.results_md))
    print(json.dumps({"bench": "accuracy", "rows": summary["rows"], "dense": summary["dense"]}))
    return 0


# --------------------------------------------------------------------------------------------- running

def epochs_of(args, sparsity: float) -> tuple[float, float]:
    """(epochs after dense, sparsifying share) of a cell: the flags, else ``Schedule.recommended``'s."""
    from blockforge.prune.schedule import Schedule

    recommended = Schedule.recommended(sparsity)
    prune = args.prune_epochs if args.prune_epochs is not None else recommended.bsp_epochs + recommended.retrain_epochs
    sparsifying = args.bsp_epochs if args.bsp_epochs is not None else recommended.bsp_epochs
    if sparsifying > prune:
        raise SystemExit(f"--bsp-epochs ({sparsifying:g}) must not exceed --prune-epochs ({prune:g})")
    return prune, sparsifying


def budget_of(args, task: dict) -> dict:
    """What a task ran with (recorded in its row)."""
    return {"train_size": args.train_size, "dev_size": args.dev_size, "dense_epochs": args.dense_epochs,
            "prune_epochs": task.get("prune_epochs"), "bsp_epochs": task.get("bsp_epochs"),
            "distill": not args.no_distill,
            "distill_phases": args.distill_phases, "distill_hidden": args.distill_hidden,
            "batch_size": 32, "max_length": 64, "threads": args.threads, "allocation": args.allocation}


def task_list(args) -> list[dict]:
    tasks = []
    for seed in args.seeds:
        tasks.append({"key": f"dense_seed{seed}", "method": "dense", "seed": seed})
    for sparsity in args.sparsities:
        prune_epochs, bsp_epochs = epochs_of(args, sparsity)
        for spec in args.specs:
            for seed in args.seeds:
                for method in args.methods:
                    alloc = "" if args.allocation == "uniform" else f"-{args.allocation}"
                    steps = f"pe{prune_epochs:g}" + (f"b{bsp_epochs:g}" if method not in (
                        "magnitude", "magnitude-retrain") else "")
                    kd = "" if not args.no_distill or method == "magnitude" else "_nokd"
                    if method != "magnitude" and not args.no_distill:
                        kd += ("_kdall" if args.distill_phases == "all" and method != "magnitude-retrain" else "") + (
                            f"_hid{args.distill_hidden:g}" if args.distill_hidden else "")
                    tasks.append({"key": f"{spec}_{round(sparsity * 100)}_{method}{alloc}_{steps}{kd}_seed{seed}",
                                  "method": method, "spec": spec, "sparsity": sparsity, "seed": seed,
                                  "prune_epochs": prune_epochs, "bsp_epochs": bsp_epochs})
    return tasks


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def claim(work: Path, key: str) -> bool:
    claims = work / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / key
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                return False
            path.unlink(missing_ok=True)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True
    return False


def run_grid(args, work: Path, rows_dir: Path) -> None:
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    from blockforge.prune.pipeline import PruneConfig, prune_model, save_pruned
    from blockforge.prune.schedule import Schedule
    from provenance import code_revision

    code = code_revision()                 # the code this worker loaded, not a later commit's
    rows_dir.mkdir(parents=True, exist_ok=True)
    common = dict(task="default", train_size=args.train_size, dev_size=args.dev_size, progress=False,
                  threads=args.threads, distill=not args.no_distill,
                  **({"distill_phases": args.distill_phases, "distill_hidden": args.distill_hidden}
                     if not args.no_distill else {}))

    def schedule_of(task: dict) -> Schedule:
        if task["method"] == "dense":
            return Schedule(dense_epochs=args.dense_epochs, bsp_epochs=0, retrain_epochs=0)
        method, _, overrides = METHODS[task["method"]]
        total, sparsifying = task["prune_epochs"], task["bsp_epochs"]
        epochs = {"magnitude": (0, 0), "magnitude-retrain": (0, total)}.get(method, (sparsifying, total - sparsifying))
        return Schedule(dense_epochs=0, bsp_epochs=epochs[0], retrain_epochs=epochs[1], **overrides)

    def done(key: str) -> bool:
        # a dense row only counts while its model is on disk (the rows are committed, models are not)
        return (rows_dir / f"{key}.json").is_file() and (not key.startswith("dense_") or (work / key).is_dir())

    pending = task_list(args)
    while True:
        pending = [t for t in pending if not done(t["key"])]
        if not pending:
            return
        ran = False
        for task in pending:
            if task["method"] != "dense" and not done(f"dense_seed{task['seed']}"):
                continue
            if done(task["key"]) or not claim(work, task["key"]):
                continue
            try:
                run_task(task, work, rows_dir, budget_of(args, task), code, common, schedule_of(task), PruneConfig,
                         prune_model, save_pruned)
            finally:
                (work / "claims" / task["key"]).unlink(missing_ok=True)
            ran = True
            break
        if not ran:
            if args.no_wait:
                return
            time.sleep(30)


def run_task(task, work, rows_dir, budget, code, common, schedule, PruneConfig, prune_model,
             save_pruned) -> None:
    from blockforge.spec import load_spec

    seed, method = task["seed"], task["method"]
    dense_dir = work / f"dense_seed{seed}"
    ckpt = work / "ckpt" / task["key"]
    print(f"[{time.strftime('%H:%M:%S')}] start {task['key']}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if method == "dense":
        config = PruneConfig(model="default", method="magnitude", sparsity=0.0, seed=seed,
                             schedule=schedule, checkpoint_dir=str(ckpt), **common)
        result = prune_model(config)
        if dense_dir.exists():
            shutil.rmtree(dense_dir)
        save_pruned(result, dense_dir)
        rep = result.report
        row = {"method": "dense", "spec": "-", "sparsity": 0.0, "seed": seed,
               "accuracy": rep["metrics"]["dense"]["accuracy"], "steps": rep["phases"]["dense"]["steps"]}
    else:
        pipeline_method, extra, _ = METHODS[method]
        config = PruneConfig(model=str(dense_dir), method=pipeline_method, spec=load_spec(task["spec"]),
                             sparsity=task["sparsity"], seed=seed, schedule=schedule, evaluate_dense=False,
                             checkpoint_dir=str(ckpt), allocation=budget["allocation"], **extra, **common)
        rep = prune_model(config).report
        steps = sum(p.get("steps", 0) for name, p in rep["phases"].items() if name != "dense")
        row = {"method": method, "spec": task["spec"], "sparsity": task["sparsity"], "seed": seed,
               "accuracy": rep["metrics"]["final"]["accuracy"], "steps": steps,
               "block_sparsity": rep["block_sparsity"]["block_sparsity"],
               "after_prune": rep["metrics"]["after_prune"]["accuracy"],
               "overlap_with_magnitude": rep.get("overlap_with_magnitude"),
               "phase_seconds": {k: v.get("seconds") for k, v in rep["phases"].items() if "seconds" in v}}
        if "bsp" in rep:
            row.update(after_bsp=rep["metrics"]["after_bsp"]["accuracy"],
                       below_threshold=rep["bsp"]["below_threshold_fraction"],
                       regularizer={k: rep["bsp"].get(k) for k in ("regularizer", "preconditioned", "cap_margin",
                                                                    "budget")})
        if budget["allocation"] != "uniform":
            row["layer_ratios"] = rep["ratios"]
    row.update(key=task["key"], distill=budget["distill"], budget=budget,
               seconds=round(time.perf_counter() - t0, 1), when=time.strftime("%Y-%m-%d %H:%M:%S"),
               code=code)
    tmp = rows_dir / f".{task['key']}.json.tmp"
    tmp.write_text(json.dumps(row, indent=1) + "\n")
    os.replace(tmp, rows_dir / f"{task['key']}.json")
    shutil.rmtree(ckpt, ignore_errors=True)
    print(f"[{time.strftime('%H:%M:%S')}] done {task['key']}: {row['accuracy']:.4f} in {row['seconds']:.0f} s",
          file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- reporting

def load_rows(rows_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(rows_dir.glob("*.json"))] if rows_dir.is_dir() else []


def label_of(row: dict) -> str:
    """The table's method label: the bench method, plus what differs from its definition (the
    regularizer switches actually recorded in the run, the allocation, a sparsifying share of the
    steps other than half), so runs of different recipes never share a row."""
    label = row["method"]
    reg = row.get("regularizer") or {}
    if label.startswith("bsp") and reg.get("regularizer", "prox") == "prox":
        off = [name for name, flag in (("plain-prox", reg.get("preconditioned") is False),
                                       ("no-cap", "cap_margin" in reg and reg["cap_margin"] is None),
                                       ("no-budget", reg.get("budget") is False)) if flag]
        label = "bsp" + "".join(f"-{o}" for o in off)
    budget = row.get("budget") or {}
    allocation = budget.get("allocation", "uniform")
    label = label if allocation == "uniform" else f"{label} ({allocation} allocation)"
    sparsifying, total = budget.get("bsp_epochs"), budget.get("prune_epochs")
    if row["method"] not in ("magnitude", "magnitude-retrain") and sparsifying is not None and total \
            and sparsifying * 2 != total:  # the grid's split is half sparsifying, half retraining
        label = f"{label} ({sparsifying:g} of {total:g} epochs sparsifying)"
    if row["method"] == "magnitude":
        return label
    if not row.get("distill", True):
        return f"{label} (no distillation)"
    # rows from before the distillation options existed ran logits-only KD in retraining
    phases, hidden = budget.get("distill_phases", "retrain"), budget.get("distill_hidden", 0.0)
    sparsifying_phase = row["method"] != "magnitude-retrain"
    if (phases if sparsifying_phase else DEFAULT_DISTILL_PHASES) == DEFAULT_DISTILL_PHASES \
            and hidden == DEFAULT_DISTILL_HIDDEN:
        return label
    what = "logits" if not hidden else f"logits + hidden states ×{hidden:g}"
    where = "" if not sparsifying_phase else (", retraining only" if phases == "retrain" else ", every phase")
    return f"{label} (KD: {what}{where})"


def _std(values: list[float]) -> float | None:
    return round(statistics.stdev(values), 4) if len(values) > 1 else None


def aggregate(rows: list[dict]) -> dict:
    dense = sorted((r for r in rows if r["method"] == "dense"), key=lambda r: r["seed"])
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] != "dense":
            groups.setdefault((r["spec"], r["sparsity"], label_of(r), r["steps"]), []).append(r)
    out_rows = []
    for (spec, sparsity, method, _), group in sorted(groups.items(), key=lambda kv: (
            kv[0][0] != "tile8", kv[0][0], kv[0][1], kv[0][3], METHOD_ORDER.get(kv[0][2].split(" ")[0], 9),
            kv[0][2])):
        group.sort(key=lambda r: r["seed"])
        accs = [r["accuracy"] for r in group]
        entry = {"spec": spec, "sparsity": sparsity, "compression": round(1 / (1 - sparsity), 2), "method": method,
                 "seeds": [r["seed"] for r in group], "accuracy": [round(a, 4) for a in accs],
                 "mean": round(statistics.fmean(accs), 4), "std": _std(accs),
                 "steps": sorted({r["steps"] for r in group}), "distill": sorted({r["distill"] for r in group}),
                 "block_sparsity": [round(r["block_sparsity"], 4) for r in group],
                 "seconds": [r["seconds"] for r in group]}
        entry["steps"] = entry["steps"][0] if len(entry["steps"]) == 1 else entry["steps"]
        entry["distill"] = entry["distill"][0] if len(entry["distill"]) == 1 else entry["distill"]
        by_seed = {d["seed"]: d["accuracy"] for d in dense}
        gaps = [r["accuracy"] - by_seed[r["seed"]] for r in group if r["seed"] in by_seed]
        if gaps:
            entry["gap_to_dense_mean"] = round(statistics.fmean(gaps), 4)
        for key in ("after_bsp", "after_prune", "below_threshold", "overlap_with_magnitude"):
            values = [r[key] for r in group if r.get(key) is not None]
            if values:
                entry[key] = [round(v, 4) for v in values]
        out_rows.append(entry)
    dense_accs = [d["accuracy"] for d in dense]
    return {
        "task": "default (tweet sentiment, positive vs negative), model all-MiniLM-L6-v2",
        "budget": sorted({json.dumps(r["budget"], sort_keys=True) for r in rows if r["method"] != "dense"}),
        "dense": {"seeds": [d["seed"] for d in dense], "accuracy": [round(a, 4) for a in dense_accs],
                  "mean": round(statistics.fmean(dense_accs), 4) if dense_accs else None,
                  "std": _std(dense_accs), "steps": dense[0]["steps"] if dense else None,
                  "seconds": [d["seconds"] for d in dense]},
        "rows": out_rows,
    }


def _pm(mean, std) -> str:
    return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def write_report(rows: list[dict], out_dir: Path, results_md: Path) -> dict:
    summary = aggregate(rows)
    summary["budget"] = [json.loads(b) for b in summary["budget"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".accuracy.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, out_dir / "accuracy.json")
    plotted = plot(summary, out_dir / "accuracy.png")
    d = summary["dense"]
    lines = [SECTION, "",
             "Written by `python bench/accuracy.py --report` from the runs of `python bench/accuracy.py` (do not "
             "edit by hand; raw figures in [results/accuracy.json](results/accuracy.json)). Default model "
             "all-MiniLM-L6-v2, default task (tweet sentiment), dev accuracy on the fixed dev split; encoder linears "
             "(q/k/v/o and both FFN matrices), every layer at the same block sparsity. The dense model of each seed "
             "is fine-tuned once and shared by all methods of that seed. Every method that retrains gets the same "
             "number of optimizer steps after the dense phase and the same distillation setting (`bsp`: group "
             "Lasso then masked retraining; `magnitude-retrain`: one-shot block-magnitude prune then masked "
             "retraining; `magnitude`: one-shot, no retraining). Distillation from the dense model is the "
             "default recipe's — its logits and hidden states (weight 1) in every phase after the dense one — unless "
             "the label says otherwise: `KD: logits, retraining only` is the recipe of the runs before 2026-12-04. "
             "Mean ± sample std over the seeds; gap = mean of (method − dense of the same seed).", "",
             "Budget (as run): " + "; ".join(f"`{json.dumps(b, sort_keys=True)}`" for b in summary["budget"]), ""]
    if plotted:
        lines += ["![accuracy vs block compression](results/accuracy.png)", ""]
    lines += ["| spec | block sparsity | compression | method | steps after dense | seeds | dev accuracy | gap to dense "
              "| per seed | minutes per run |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    if d["accuracy"]:
        lines.append(f"| - | 0% | 1× | dense | {d['steps']} (dense) | {','.join(map(str, d['seeds']))} "
                     f"| {_pm(d['mean'], d['std'])} | — | {', '.join(f'{a:.4f}' for a in d['accuracy'])} "
                     f"| {statistics.fmean(d['seconds']) / 60:.0f} |")
    have = {(e["spec"], e["sparsity"], e["method"]) for e in summary["rows"]}
    missing = [f"{spec} {sparsity:.0%} {method}" for spec, sparsity in PLANNED for method in PLANNED_METHODS
               if (spec, sparsity, method) not in have]
    for e in summary["rows"]:
        gap = e.get("gap_to_dense_mean")
        lines.append(
            f"| {e['spec']} | {e['sparsity']:.0%} | {e['compression']:g}× | {e['method']} | {e['steps']} "
            f"| {','.join(map(str, e['seeds']))} | {_pm(e['mean'], e['std'])} "
            f"| {'—' if gap is None else f'{gap * 100:+.1f} pt'} | {', '.join(f'{a:.4f}' for a in e['accuracy'])} "
            f"| {statistics.fmean(e['seconds']) / 60:.0f} |")
    if missing:
        lines += ["", "Not run with the default recipe (no figures): " + "; ".join(missing) + "."]
    section = "\n".join(lines) + "\n"
    text = results_md.read_text() if results_md.exists() else "# Results\n\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("\n" + text[nxt + 1:] if nxt >= 0 else "")
    tmp = results_md.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, results_md)
    return summary


def plot(summary: dict, path: Path) -> bool:
    """Accuracy vs compression (log x), one line per (spec, method), error bars = std; False if no rows.
    A cell run at a second budget (more steps at the same compression) gets a line of its own, labelled
    with its steps."""
    if not summary["rows"]:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10.0, 4.6), dpi=120)
    d = summary["dense"]
    if d["mean"] is not None:
        ax.axhline(d["mean"], color="black", lw=1, ls="--", label=f"dense ({d['mean']:.3f})")
    lines: dict[str, list[dict]] = {}
    for e in sorted(summary["rows"], key=lambda e: e["steps"]):
        label = f"{e['method']} ({e['spec']})"
        if any(o["compression"] == e["compression"] for o in lines.get(label, ())):
            label = f"{e['method']} ({e['spec']}, {e['steps']} steps)"
        lines.setdefault(label, []).append(e)
    for k, (label, entries) in enumerate(sorted(lines.items())):
        entries.sort(key=lambda e: e["compression"])
        ax.errorbar([e["compression"] for e in entries], [e["mean"] for e in entries],
                    yerr=[e["std"] or 0.0 for e in entries], marker="osD^v"[k // 20 % 5], capsize=3, label=label,
                    color=plt.cm.tab20.colors[k % 20])
    ax.set_xscale("log")
    ticks = sorted({e["compression"] for e in summary["rows"]})
    ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("block compression (1 / (1 − block sparsity))")
    ax.set_ylabel("dev accuracy")
    ax.set_title("MiniLM-L6, default task: accuracy vs block compression")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
