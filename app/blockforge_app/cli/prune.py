"""``blockforge prune`` and ``blockforge evaluate``: block-structured pruning of a Hugging Face encoder
under a spec's blocks, and evaluation of a (pruned) model on a task."""

from __future__ import annotations

import argparse
import json
import os

from blockforge.data import TASK_HELP
from blockforge.prune.options import (ALLOCATIONS, DEFAULT_DISTILL_HIDDEN, DEFAULT_DISTILL_PHASES, DEVICES,
                                      DISTILL_PHASES, METHODS, REGULARIZERS)
from blockforge.spec import DEFAULT_SPEC


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune", help="prune a Hugging Face encoder to block sparsity under a spec (BSP)",
        description="Fine-tune dense (unless the model is already fine-tuned), run reweighted group Lasso "
                    "over the spec's blocks, hard-prune to the target block sparsity, retrain with masks, "
                    "and save a normal Hugging Face model with pruning.json.")
    parser.add_argument("--model", default="default", help="'default' (all-MiniLM-L6-v2), a local HF folder or hub:NAME (Hugging Face Hub)")
    parser.add_argument("--task", default="default", help=TASK_HELP)
    parser.add_argument("--spec", default=DEFAULT_SPEC, help=f"spec name or YAML path (default {DEFAULT_SPEC})")
    parser.add_argument("--sparsity", type=float, default=0.5, help="target block sparsity in [0, 1) (default 0.5)")
    parser.add_argument("--method", default="bsp", choices=METHODS,
                        help="bsp (default), magnitude (one-shot), magnitude-retrain, magnitude-gradual (cubic ramp)")
    parser.add_argument("--ratios", help="YAML file of per-layer block sparsities (layer name or glob -> ratio)")
    parser.add_argument("--allocation", default="uniform", choices=ALLOCATIONS,
                        help="uniform: every layer at --sparsity; global: --sparsity is overall, spread over the "
                             "layers by normalized block norms (default uniform)")
    parser.add_argument("--regularizer", default="prox", choices=REGULARIZERS,
                        help="bsp: prox (default; proximal, calibrated λ) or paper (the authors' loss term)")
    parser.add_argument("--epochs", type=float, nargs=3, metavar=("DENSE", "BSP", "RETRAIN"),
                        help="epochs of the three training phases (default 2 2 2; 2 4 4 above 80%% sparsity; "
                             "fractions allowed)")
    parser.add_argument("--lr", type=float, help="learning rate of the dense fine-tune (default 5e-5)")
    parser.add_argument("--bsp-lr", type=float, help="learning rate of the group-Lasso phase (default 1e-4)")
    parser.add_argument("--retrain-lr", type=float, help="learning rate of masked retraining (default 1e-4)")
    parser.add_argument("--lambda", dest="lam", type=float,
                        help="group-Lasso λ for every layer (default: calibrated per layer to the target)")
    parser.add_argument("--lambda-file", help="YAML of a fixed λ per layer name or glob (optional 'default:')")
    parser.add_argument("--cap-margin", help="prox: penalize blocks below quantile r + M(1 - r); 'none' = all "
                                             "(default 0.25)")
    parser.add_argument("--no-budget", action="store_true",
                        help="prox: let the soft-threshold zero more than a layer's target count")
    parser.add_argument("--reweight-period", type=int, help="steps between recomputing α (default 16)")
    parser.add_argument("--plain-prox", action="store_true",
                        help="proximal step in the plain metric instead of Adam's (see docs/pruning.md)")
    parser.add_argument("--distill", action=argparse.BooleanOptionalAction, default=True,
                        help="distill from the dense model (logits and hidden states; default on; "
                             "--no-distill to train on the labels alone)")
    parser.add_argument("--distill-phases", choices=DISTILL_PHASES,
                        help="retrain: distill in masked retraining only; all: in the group-Lasso / ramp phase "
                             f"too (default {DEFAULT_DISTILL_PHASES})")
    parser.add_argument("--distill-hidden", type=float, metavar="WEIGHT",
                        help="add WEIGHT x the hidden states' relative squared error to the teacher's "
                             f"(0: logits only; default {DEFAULT_DISTILL_HIDDEN:g})")
    parser.add_argument("--train-size", type=int, help="cap on training examples")
    parser.add_argument("--dev-size", type=int, help="cap on dev examples")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="auto: CUDA when present, else the CPU (default auto)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--checkpoint-dir", help="save after each phase here; rerunning resumes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-o", "--output", required=True, help="output folder (must not exist or be empty)")
    parser.set_defaults(handler=_prune)

    ev = subparsers.add_parser("evaluate", help="evaluate a model folder on a task (GLUE metrics, dev split)")
    ev.add_argument("--model", required=True, help="model folder (e.g. the output of blockforge prune) or 'default'")
    ev.add_argument("--task", default="default", help=TASK_HELP)
    ev.add_argument("--spec", help="also report the all-zero block fraction under this spec")
    ev.add_argument("--dev-size", type=int, help="cap on dev examples")
    ev.add_argument("--max-length", type=int, default=64)
    ev.add_argument("--threads", type=int, help="torch CPU threads")
    ev.set_defaults(handler=_evaluate)


def _prune(args: argparse.Namespace) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from pathlib import Path

    from blockforge.errors import UsageError
    from blockforge.fsutil import check_output
    from blockforge.prune.pipeline import PruneConfig, run_pruning
    from blockforge.prune.schedule import Schedule, check_sparsity
    from blockforge.spec import load_spec

    check_sparsity(args.sparsity, "--sparsity")
    out = Path(args.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: output folder exists and is not empty")
    check_output(out, folder=True)                 # before hours of training, not after
    if args.checkpoint_dir:
        check_output(args.checkpoint_dir, folder=True, flag="--checkpoint-dir")
    overrides = {}
    if args.epochs:
        overrides.update(dense_epochs=args.epochs[0], bsp_epochs=args.epochs[1], retrain_epochs=args.epochs[2])
    for key, value in (("learning_rate", args.lr), ("bsp_learning_rate", args.bsp_lr),
                       ("retrain_learning_rate", args.retrain_lr), ("lam", args.lam),
                       ("reweight_period", args.reweight_period)):
        if value is not None:
            overrides[key] = value
    if args.plain_prox:
        overrides["preconditioned"] = False
    if args.cap_margin is not None:
        overrides["cap_margin"] = _cap_margin(args.cap_margin)
    if args.no_budget:
        overrides["budget"] = False
    if args.regularizer == "paper":
        given = [flag for flag, on in (("--plain-prox", args.plain_prox), ("--cap-margin", args.cap_margin),
                                       ("--no-budget", args.no_budget), ("--reweight-period", args.reweight_period))
                 if on is not None and on is not False]
        if given:
            raise UsageError(f"{given[0]}: a prox switch, not used by --regularizer paper")
    given = {name: value for name, value in (("distill_phases", args.distill_phases),
                                              ("distill_hidden", args.distill_hidden)) if value is not None}
    if given and not args.distill:
        raise UsageError(f"--{next(iter(given)).replace('_', '-')}: needs distillation (drop --no-distill)")
    config = PruneConfig(model=args.model, task=args.task, spec=load_spec(args.spec), sparsity=args.sparsity,
                         method=args.method, ratios=args.ratios, seed=args.seed,
                         schedule=Schedule.recommended(args.sparsity, **overrides),
                         batch_size=args.batch_size, max_length=args.max_length, train_size=args.train_size,
                         dev_size=args.dev_size, distill=args.distill, threads=args.threads,
                         progress=not args.no_progress, checkpoint_dir=args.checkpoint_dir,
                         regularizer=args.regularizer, lambda_file=args.lambda_file, allocation=args.allocation,
                         device=args.device, **given)
    result = run_pruning(config, out)
    report = result.report
    summary = {"output": str(out), "method": report["method"], "spec": report["spec"]["name"],
               "block_sparsity": round(report["block_sparsity"]["block_sparsity"], 4),
               "metrics": report["metrics"], "overlap_with_magnitude": report.get("overlap_with_magnitude")}
    if "bsp" in report:
        summary["below_threshold_fraction"] = round(report["bsp"]["below_threshold_fraction"], 4)
    print(json.dumps(summary))


def _cap_margin(text: str) -> float | None:
    from blockforge.errors import UsageError

    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise UsageError(f"--cap-margin: a number in [0, 1] or 'none', not {text[:20]!r}")
    return value


def _evaluate(args: argparse.Namespace) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from blockforge.data import load_task
    from blockforge.models import load_model, load_tokenizer
    from blockforge.prune.evaluation import block_sparsity, evaluate
    from blockforge.spec import load_spec

    spec = load_spec(args.spec) if args.spec else None
    if args.threads:
        torch.set_num_threads(args.threads)
    task = load_task(args.task, dev_size=args.dev_size)
    model = load_model(args.model, labels=task.labels).model
    metrics = evaluate(model, task, tokenizer=load_tokenizer(args.model), max_length=args.max_length)
    out = {"model": args.model, "task": task.name, "dev_examples": len(task.dev), "metrics": metrics}
    if args.spec:
        layers = block_sparsity(model, spec)
        blocks = sum(v["blocks"] for v in layers.values())
        out["zero_block_fraction"] = sum(v["zero_blocks"] for v in layers.values()) / blocks
    print(json.dumps(out))
