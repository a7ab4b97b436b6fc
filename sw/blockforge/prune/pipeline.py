"""The pruning pipeline: fine-tune dense → reweighted group Lasso → hard prune → masked retraining → save.

Entry points (all take a frozen :class:`PruneConfig`):

* :func:`run_pruning` ``(config, output_dir) -> PruneResult`` — the whole job, saved atomically
  (written to a temporary folder next to ``output_dir`` and renamed; no partial folder on error).
* :func:`prune_model` ``(config) -> PruneResult`` — the same without saving.
* :func:`save_pruned` ``(result, output_dir)`` — ``save_pretrained`` (safetensors) + tokenizer +
  ``pruning.json`` (the report) + ``block_masks.safetensors`` (keep-mask per layer, 1 = kept).

Methods: ``bsp`` (all four phases), ``magnitude`` (one-shot block-magnitude pruning of the dense
model, no retraining), ``magnitude-retrain`` (one-shot, then masked retraining), ``magnitude-gradual``
(Zhu & Gupta: the bsp phase's steps ramp the block sparsity up on a cubic schedule, pruning the
lowest-norm blocks every ``reweight_period`` steps, then masked retraining). The dense phase is skipped
when the model's classifier head came from its checkpoint (an already fine-tuned model) or when
``schedule.dense_epochs`` is 0.

``bsp`` has two regularizers: ``prox`` (default: proximal group soft-threshold, calibrated λ, Adam
metric, cap and budget, each switchable in :class:`~.schedule.Schedule`) and ``paper`` (the authors'
formulation: λ Σ α_g ‖W_g‖ added to the loss with a fixed λ per layer, α refreshed at every epoch start,
nothing else). ``allocation`` ``global`` turns ``sparsity`` into the overall block sparsity of the
prunable weights, spread over layers by a global ranking of normalized block norms of the dense model.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import check_seed
from ..errors import UsageError
from ..fsutil import new_dir_mode
from ..resume import fingerprint, read_record, write_record
from ..spec import DEFAULT_SPEC, Spec, load_spec
from .criterion import block_norms
from .masking import lowest_blocks_mask, pruned_block_counts, zero_block_counts
from .options import (ALLOCATIONS, DEFAULT_DISTILL_HIDDEN, DEFAULT_DISTILL_PHASES, DEVICES, DISTILL_PHASES, METHODS,
                      REGULARIZERS)
from .pattern import PrunableLayer, prunable_layers
from .regularizer import ReweightedGroupLasso, adam_block_scale
from .sparsifier import BlockSparsifier
from .schedule import (PAPER_LAMBDA, Phase, Schedule, auto_lambda, check_sparsity, cubic_sparsity, global_ratios,
                       load_lambdas, load_ratios, phase_steps, resolve_ratios)

__all__ = ["ALLOCATIONS", "DEVICES", "METHODS", "REGULARIZERS", "PruneConfig", "PruneResult", "DEMO_SCHEDULE",
           "prune_model", "resolve_device", "run_pruning", "save_pruned"]

REPORT_NAME = "pruning.json"
MASKS_NAME = "block_masks.safetensors"

#: A short schedule for the end-to-end demo (a few minutes on 2 CPU cores with train_size=1000):
#: 1 epoch dense, 1 epoch reweighted group Lasso, 1 epoch masked retraining.
DEMO_SCHEDULE = Schedule(dense_epochs=1.0, bsp_epochs=1.0, retrain_epochs=1.0, learning_rate=1e-4,
                         bsp_learning_rate=1e-4, retrain_learning_rate=1e-4)


@dataclass(frozen=True)
class PruneConfig:
    """Everything one pruning run depends on.

    model: ``default``, a local HF folder or hub:NAME (Hugging Face Hub). task: see :func:`blockforge.data.load_task`.
    spec: the :class:`~blockforge.spec.Spec` (parsed by the caller; default the shipped DEFAULT_SPEC).
    sparsity: target block sparsity in [0, 1) of every prunable
    layer (``allocation="uniform"``) or of all prunable weights together, spread over the layers by a
    global ranking of normalized block norms (``"global"``), unless ``ratios`` names a YAML ratios file
    (:mod:`.schedule`). schedule: phase lengths and rates (None = :meth:`~.schedule.Schedule.recommended`
    for ``sparsity``: longer phases above 80%). regularizer: ``prox`` or ``paper`` (bsp only);
    lambda_file: YAML of fixed λ per layer (paper mode, or a fixed λ for prox). device: ``auto`` (CUDA
    when present, else CPU), ``cpu`` or ``cuda`` (UsageError if no CUDA device is there). train_size /
    dev_size: caps on the task's examples (None = task default). distill: knowledge distillation from the
    dense model (its logits, classification tasks; default on; ignored by one-shot ``magnitude``);
    distill_phases: ``all`` (default: the sparsifying phase — group Lasso or the gradual ramp — and masked
    retraining) or ``retrain`` (masked retraining only); distill_hidden: weight of the hidden-state term
    (:func:`~.training.hidden_state_loss`, 0 = logits only); both are ignored without ``distill``.
    zero_threshold: block norm under which a block counts as driven to zero by the regularizer
    (reported, not used for pruning). threads: torch intra-op threads (None = as is).
    checkpoint_dir: if set, the state after each phase is saved there and a rerun with the same config
    resumes after the last finished phase. evaluate_dense: evaluate the dense model before pruning
    (skip it to save time when the dense figure is known, e.g. in benchmarks sharing a dense model).
    """

    model: str = "default"
    task: str = "default"
    spec: Spec = field(default_factory=lambda: load_spec(DEFAULT_SPEC))
    sparsity: float = 0.5
    method: str = "bsp"
    ratios: str | None = None
    schedule: Schedule | None = None
    seed: int = 0
    batch_size: int = 32
    max_length: int = 64
    train_size: int | None = None
    dev_size: int | None = None
    distill: bool = True
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    distill_phases: str = DEFAULT_DISTILL_PHASES
    distill_hidden: float = DEFAULT_DISTILL_HIDDEN
    zero_threshold: float = 1e-3
    threads: int | None = None
    progress: bool = True
    checkpoint_dir: str | None = None
    evaluate_dense: bool = True
    regularizer: str = "prox"
    lambda_file: str | None = None
    allocation: str = "uniform"
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.spec, Spec):
            raise TypeError(f"PruneConfig.spec: expected a Spec (load_spec at the edge), got {type(self.spec).__name__}")
        check_sparsity(self.sparsity)
        check_seed(self.seed)
        if self.schedule is None:
            object.__setattr__(self, "schedule", Schedule.recommended(self.sparsity))
        for name, value, known in (("method", self.method, METHODS), ("regularizer", self.regularizer, REGULARIZERS),
                                   ("allocation", self.allocation, ALLOCATIONS), ("device", self.device, DEVICES)):
            if value not in known:
                raise UsageError(f"{name}: unknown {name} {str(value)[:40]!r} (known: {', '.join(known)})")
        if self.method != "bsp" and (self.regularizer != "prox" or self.lambda_file):
            what = "--regularizer paper" if self.regularizer != "prox" else "--lambda-file"
            raise UsageError(f"{what}: applies to --method bsp only, not {self.method}")
        if self.lambda_file and self.schedule.lam is not None:
            raise UsageError("--lambda and --lambda-file: give one λ source, not both")
        if self.allocation == "global" and self.ratios:
            raise UsageError("--allocation global and --ratios: the ratios file already fixes every layer's ratio")
        for name in ("batch_size", "max_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', '-')}: must be a positive integer, not {getattr(self, name)!r}")
        if not 0 <= self.distill_alpha <= 1:
            raise UsageError(f"distill-alpha: must be in [0, 1], not {self.distill_alpha!r}")
        if self.distill_phases not in DISTILL_PHASES:
            raise UsageError(f"distill-phases: unknown value {str(self.distill_phases)[:40]!r} "
                             f"(known: {', '.join(DISTILL_PHASES)})")
        if not isinstance(self.distill_hidden, (int, float)) or not 0 <= self.distill_hidden < float("inf"):
            raise UsageError(f"distill-hidden: must be a finite weight >= 0, not {self.distill_hidden!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the spec as its source (shipped name or path), as the report and resume fingerprint
        record it."""
        return {**dataclasses.asdict(self), "spec": self.spec.source}


@dataclass
class PruneResult:
    """The pruned model (in memory), its tokenizer, block keep-masks per layer and the report."""

    model: Any
    tokenizer: Any
    block_masks: dict[str, torch.Tensor]
    report: dict[str, Any]
    output_dir: Path | None = None


def run_pruning(config: PruneConfig, output_dir: str | Path) -> PruneResult:
    """Run the pipeline of ``config`` and save the result to ``output_dir`` (atomically)."""
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise UsageError(f"{output_dir}: output folder exists and is not empty")
    result = prune_model(config)
    save_pruned(result, output_dir)
    return result


def save_pruned(result: PruneResult, output_dir: str | Path) -> Path:
    """Write the model, tokenizer, ``pruning.json`` and block masks to ``output_dir`` atomically."""
    from safetensors.torch import save_file

    from ..models import quiet_transformers

    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise UsageError(f"{output_dir}: output folder exists and is not empty")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    os.chmod(tmp, new_dir_mode())           # a folder as mkdir makes it, not mkdtemp's 0700
    try:
        with quiet_transformers():
            result.model.save_pretrained(tmp, safe_serialization=True)
            if result.tokenizer is not None:
                result.tokenizer.save_pretrained(tmp)
        save_file({name: mask.to(torch.uint8).contiguous() for name, mask in result.block_masks.items()},
                  str(tmp / MASKS_NAME))
        (tmp / REPORT_NAME).write_text(json.dumps(result.report, indent=2, sort_keys=False) + "\n")
        if output_dir.exists():
            output_dir.rmdir()
        os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.output_dir = output_dir
    return output_dir


def prune_model(config: PruneConfig) -> PruneResult:
    """Run the phases of ``config.method`` and return the pruned model and its report (not saved)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from ..data import load_task
    from ..models import load_model, load_tokenizer
    from ..batches import Batches, tokenize
    from .training import evaluate_model, train_phase

    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = config.spec
    task = load_task(config.task, train_size=config.train_size, dev_size=config.dev_size)
    accelerator = Accelerator(cpu=resolve_device(config.device) == "cpu")
    set_seed(config.seed)
    loaded = load_model(config.model, labels=task.labels)
    model = loaded.model
    tokenizer = load_tokenizer(config.model)
    layers = prunable_layers(model, spec)
    names = [layer.name for layer in layers]
    ratios = (load_ratios(config.ratios, names, config.sparsity) if config.ratios
              else resolve_ratios(names, config.sparsity))
    fixed_lambda = load_lambdas(config.lambda_file, names) if config.lambda_file else None

    train_split = tokenize(tokenizer, task.train, config.max_length)
    dev_split = tokenize(tokenizer, task.dev, config.max_length)
    batches = Batches(len(train_split), config.batch_size, seed=config.seed,
                      rank=accelerator.process_index, world=accelerator.num_processes)
    sched = config.schedule
    phases = sched.phases(config.method)
    progress = config.progress

    report: dict[str, Any] = {
        "format": "blockforge-pruning/1",
        "method": config.method,
        "spec": {"name": spec.name, "source": spec.source, "digest": spec.digest,
                 "block": {"rows": spec.block.rows, "cols": spec.block.cols}},
        "model": {"source": str(config.model), "path": loaded.path, "model_type": model.config.model_type,
                  "head_from_checkpoint": loaded.head_from_checkpoint},
        "target_sparsity": config.sparsity,
        "ratios_file": config.ratios,
        "seed": config.seed,
        "hyperparameters": config.to_dict(),
        "data": task.describe(),
        "processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "phases": {},
        "metrics": {},
    }
    checkpoint = _Checkpoints(config, accelerator) if config.checkpoint_dir else None
    resumed = checkpoint.load(model) if checkpoint else None
    done_phases = set(resumed["phases_done"]) if resumed else set()
    if resumed:
        report.update({k: v for k, v in resumed["report"].items()
                       if k in ("phases", "metrics", "bsp", "ramp", "below_threshold_before_prune", "allocation")})
        if "ratios" in resumed["report"]:
            ratios = resumed["report"]["ratios"]
        report["resumed_after"] = resumed["phases_done"][-1]

    model = accelerator.prepare(model)
    unwrapped = accelerator.unwrap_model(model)

    def evaluate(label: str) -> dict[str, float]:
        metrics = evaluate_model(unwrapped, dev_split, task, batch_size=max(64, config.batch_size),
                                 progress=progress and accelerator.is_local_main_process, desc=f"eval {label}")
        report["metrics"][label] = metrics
        return metrics

    teacher = None      # the dense model, once the dense phase is done (see below)

    def train(phase: Phase, **kw) -> None:
        steps = phase_steps(phase.epochs, batches.steps_per_epoch)
        if phase.name == "retrain" or (phase.name != "dense" and config.distill_phases == "all"):
            kw["teacher"] = teacher
        t0 = time.perf_counter()
        stats = train_phase(accelerator, model, train_split, batches, phase=phase.index, steps=steps,
                            learning_rate=phase.learning_rate, weight_decay=sched.weight_decay,
                            warmup_ratio=sched.warmup_ratio, constant_lr=phase.constant_lr,
                            regression=task.is_regression, desc=phase.name, progress=progress,
                            distill_alpha=config.distill_alpha, distill_temperature=config.distill_temperature,
                            distill_hidden=config.distill_hidden, **kw)
        report["phases"][phase.name] = {"epochs": phase.epochs, "steps": steps, "learning_rate": phase.learning_rate,
                                        "seconds": round(time.perf_counter() - t0, 2), **stats}

    # (1) dense fine-tune
    if "dense" not in done_phases:
        if loaded.head_from_checkpoint or sched.dense_epochs <= 0:
            report["phases"]["dense"] = {"skipped": "fine-tuned head in checkpoint" if loaded.head_from_checkpoint
                                         else "dense_epochs is 0"}
        else:
            train(phases["dense"])
        if config.evaluate_dense:
            evaluate("dense")
        if config.allocation == "global":
            ratios = global_ratios(layers, config.sparsity)
    report["ratios"] = ratios
    report["allocation"] = {"mode": config.allocation, "overall_target": _target_fraction(layers, ratios)}
    if resumed and resumed["magnitude_masks"]:
        magnitude_masks = resumed["magnitude_masks"]
    else:
        magnitude_masks = _magnitude_masks(layers, ratios)
    if checkpoint and "dense" not in done_phases:
        checkpoint.save("dense", unwrapped, report, {}, magnitude_masks)
    if config.distill and config.method != "magnitude":
        teacher = copy.deepcopy(unwrapped).eval()
        if resumed:
            teacher.load_state_dict(checkpoint.state("dense"))
        for p in teacher.parameters():
            p.requires_grad_(False)

    # (2) the sparsifying phase: reweighted group Lasso (bsp) or the gradual ramp (magnitude-gradual)
    sparsify = {"bsp": (_paper_phase if config.regularizer == "paper" else _bsp_phase, "after_bsp"),
                "magnitude-gradual": (_gradual_phase, "after_ramp")}.get(config.method)
    sparsifying = phases.get("bsp") or phases.get("ramp")
    if sparsify and sparsifying.name not in done_phases:
        run_phase, label = sparsify
        run_phase(config, layers, ratios, batches, report, train, sparsifying, fixed_lambda)
        evaluate(label)
        if checkpoint:
            checkpoint.save(sparsifying.name, unwrapped, report, {}, magnitude_masks)

    # (3) hard prune: the sparsifier selects the lowest-norm blocks and holds them at zero from now on
    sparsifier = BlockSparsifier().prepare(layers, ratios)
    if "prune" not in done_phases:
        norms = {layer.name: block_norms(layer.weight.detach(), layer.layout) for layer in layers}
        below = sum(int((n < config.zero_threshold).sum()) for n in norms.values())
        report["below_threshold_before_prune"] = below / sum(n.numel() for n in norms.values())
        block_masks = sparsifier.step(1.0, scores=norms)
        evaluate("after_prune")
        if checkpoint:
            checkpoint.save("prune", unwrapped, report, block_masks, magnitude_masks)
    else:
        block_masks = resumed["block_masks"]
        sparsifier.load(block_masks)
    report["overlap_with_magnitude"] = _overlap(block_masks, magnitude_masks)

    # (4) masked retraining
    if "retrain" in phases and "retrain" not in done_phases:
        try:
            train(phases["retrain"], after_step=lambda step, lr, optimizer: sparsifier.enforce())
        finally:
            block_masks = sparsifier.squash_mask()
        evaluate("final")
        if checkpoint:
            checkpoint.save("retrain", unwrapped, report, block_masks, magnitude_masks)
    elif config.method == "magnitude":
        report["metrics"]["final"] = report["metrics"]["after_prune"]
    block_masks = sparsifier.squash_mask()

    report["layers"] = _layer_report(layers, ratios, block_masks)
    report["block_sparsity"] = _overall(report["layers"])
    report["seconds"] = round(time.perf_counter() - started, 2)
    accelerator.wait_for_everyone()
    return PruneResult(unwrapped, tokenizer, {k: v.cpu() for k, v in block_masks.items()}, report)


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda`` for a :class:`PruneConfig` device; UsageError if ``cuda`` is not there.

    ``auto`` is CUDA when a CUDA device is available, else CPU (then accelerate runs data parallel over
    gloo under torchrun).
    """
    if device not in DEVICES:
        raise UsageError(f"device: unknown device {str(device)[:40]!r} (known: {', '.join(DEVICES)})")
    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise UsageError("device: cuda requested but no CUDA device is available (use --device cpu or auto)")
    return "cuda" if device == "cuda" or (device == "auto" and available) else "cpu"


def _bsp_phase(config: PruneConfig, layers: list[PrunableLayer], ratios: dict[str, float], batches,
               report: dict, train, phase: Phase, fixed_lambda: dict[str, float] | None) -> None:
    sched = config.schedule
    steps = phase_steps(phase.epochs, batches.steps_per_epoch)
    if fixed_lambda is not None:
        lam = {name: (value if ratios[name] > 0 else 0.0) for name, value in fixed_lambda.items()}
    elif sched.lam is None:
        lam = auto_lambda(layers, ratios, [sched.bsp_learning_rate] * steps, sched.reweight_period,
                          sched.epsilon, sched.lambda_scale)
    else:
        lam = {layer.name: (sched.lam if ratios[layer.name] > 0 else 0.0) for layer in layers}
    cap = (None if sched.cap_margin is None else
           {name: ratio + sched.cap_margin * (1.0 - ratio) for name, ratio in ratios.items()})
    regularizer = ReweightedGroupLasso(layers, lam, sched.epsilon,
                                       budget=pruned_block_counts(layers, ratios) if sched.budget else None,
                                       cap=cap)
    history = []

    def before_step(step: int) -> None:
        if step % sched.reweight_period == 0:
            regularizer.reweight()

    def after_step(step: int, lr: float, optimizer) -> None:
        scale = ({layer.name: adam_block_scale(layer.weight, layer.layout, optimizer) for layer in layers}
                 if sched.preconditioned else None)
        regularizer.proximal_step(lr, scale)
        if (step + 1) % max(1, steps // 8) == 0 or step + 1 == steps:
            history.append({"step": step + 1, "zero_fraction": round(regularizer.zero_block_fraction(
                config.zero_threshold), 4), "layers_at_budget": len(regularizer.frozen)})

    if steps:
        train(phase, before_step=before_step, after_step=after_step)
    target = _target_fraction(layers, ratios)
    report["bsp"] = {
        "regularizer": "prox",
        "lambda": {"mode": "auto" if sched.lam is None and fixed_lambda is None else "fixed",
                   "scale": sched.lambda_scale, "per_layer": {k: float(f"{v:.6g}") for k, v in lam.items()}},
        "epsilon": sched.epsilon,
        "preconditioned": sched.preconditioned,
        "cap_margin": sched.cap_margin,
        "budget": sched.budget,
        "reweight_period_steps": sched.reweight_period,
        "zero_threshold": config.zero_threshold,
        "below_threshold_fraction": regularizer.zero_block_fraction(config.zero_threshold),
        "target_block_fraction": target,
        "layers_at_budget": len(regularizer.frozen),
        "history": history,
    }


def _paper_phase(config: PruneConfig, layers: list[PrunableLayer], ratios: dict[str, float], batches,
                 report: dict, train, phase: Phase, fixed_lambda: dict[str, float] | None) -> None:
    """The authors' formulation: loss + λ Σ_g α_g ‖W_g‖₂ under AdamW, fixed λ per layer, α refreshed at
    the start of every epoch of the phase; no proximal step, cap, budget or Adam metric."""
    sched = config.schedule
    steps = phase_steps(phase.epochs, batches.steps_per_epoch)
    default = PAPER_LAMBDA if sched.lam is None else sched.lam
    lam = {layer.name: (fixed_lambda[layer.name] if fixed_lambda is not None else default)
           if ratios[layer.name] > 0 else 0.0 for layer in layers}
    regularizer = ReweightedGroupLasso(layers, lam, sched.epsilon)
    milestones = []

    def before_step(step: int) -> None:
        if step % batches.steps_per_epoch == 0:
            regularizer.reweight()
            milestones.append(step)

    if steps:
        train(phase, before_step=before_step, penalty=regularizer.penalty)
    report["bsp"] = {
        "regularizer": "paper",
        "lambda": {"mode": "fixed", "file": config.lambda_file,
                   "per_layer": {k: float(f"{v:.6g}") for k, v in lam.items()}},
        "epsilon": sched.epsilon,
        "reweight_milestones_steps": milestones,
        "zero_threshold": config.zero_threshold,
        "below_threshold_fraction": regularizer.zero_block_fraction(config.zero_threshold),
        "target_block_fraction": _target_fraction(layers, ratios),
    }


def _gradual_phase(config: PruneConfig, layers: list[PrunableLayer], ratios: dict[str, float], batches,
                   report: dict, train, phase: Phase, fixed_lambda=None) -> None:
    """Gradual block-magnitude pruning (Zhu & Gupta): every ``reweight_period`` steps (and at the last
    step) each layer's lowest-norm blocks are pruned up to ``cubic_sparsity`` of its final count; pruned
    blocks stay exactly zero (their norm is 0, so they stay among the lowest)."""
    sched = config.schedule
    steps = phase_steps(phase.epochs, batches.steps_per_epoch)
    sparsifier = BlockSparsifier().prepare(layers, ratios)
    history = []

    def after_step(step: int, lr: float, optimizer) -> None:
        if (step + 1) % sched.reweight_period == 0 or step + 1 == steps:
            fraction = cubic_sparsity(step, steps, 1.0)
            sparsifier.step(fraction)
            history.append({"step": step + 1, "fraction_of_target": round(fraction, 4)})
        else:
            sparsifier.enforce()

    try:
        if steps:
            train(phase, after_step=after_step)
    finally:
        sparsifier.squash_mask()
    report["ramp"] = {"schedule": "cubic", "update_period_steps": sched.reweight_period, "history": history}


def _magnitude_masks(layers: list[PrunableLayer], ratios: dict[str, float]) -> dict[str, torch.Tensor]:
    """The keep-masks plain one-shot block-magnitude pruning would choose now (weights untouched)."""
    counts = pruned_block_counts(layers, ratios)
    return {layer.name: lowest_blocks_mask(block_norms(layer.weight.detach(), layer.layout), counts[layer.name])
            for layer in layers}


def _overlap(masks: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float | None:
    """|pruned ∩ pruned_reference| / |pruned_reference| over all layers (None if nothing is pruned)."""
    both = ref = 0
    for name, keep in masks.items():
        pruned, ref_pruned = ~keep, ~reference[name]
        both += int((pruned & ref_pruned).sum())
        ref += int(ref_pruned.sum())
    return None if ref == 0 else both / ref


def _target_fraction(layers: list[PrunableLayer], ratios: dict[str, float]) -> float:
    total = sum(layer.layout.n_blocks for layer in layers)
    return sum(ratios[layer.name] * layer.layout.n_blocks for layer in layers) / total


def _layer_report(layers: list[PrunableLayer], ratios: dict[str, float],
                  block_masks: dict[str, torch.Tensor]) -> dict[str, dict]:
    zeros = zero_block_counts(layers)
    out = {}
    for layer in layers:
        t = layer.layout.tiling
        pruned = int((~block_masks[layer.name]).sum())
        out[layer.name] = {
            "role": layer.role, "shape": [t.out_features, t.in_features],
            "block_grid": [t.block_rows, t.block_cols], "blocks": t.n_blocks,
            "target_ratio": ratios[layer.name], "pruned_blocks": pruned,
            "block_sparsity": pruned / t.n_blocks, "zero_blocks": zeros[layer.name],
        }
    return out


def _overall(layers: dict[str, dict]) -> dict[str, float]:
    blocks = sum(v["blocks"] for v in layers.values())
    return {"blocks": blocks, "pruned_blocks": sum(v["pruned_blocks"] for v in layers.values()),
            "zero_blocks": sum(v["zero_blocks"] for v in layers.values()),
            "block_sparsity": sum(v["pruned_blocks"] for v in layers.values()) / blocks}


class _Checkpoints:
    """Phase-granular checkpoints: ``<dir>/<phase>.pt`` (model state, masks, report) + ``progress.json``.

    A run resumes only if the config fingerprint matches; the main process writes, every rank reads.
    """

    ORDER = ("dense", "bsp", "ramp", "prune", "retrain")

    def __init__(self, config: PruneConfig, accelerator):
        self.dir = Path(config.checkpoint_dir)
        self.accelerator = accelerator
        fields_ = config.to_dict()
        for volatile in ("progress", "checkpoint_dir", "threads", "evaluate_dense"):
            fields_.pop(volatile)
        self.fingerprint = fingerprint(fields_)

    def _progress(self) -> dict | None:
        return read_record(self.dir / "progress.json", self.fingerprint)

    def state(self, phase: str) -> dict:
        return torch.load(self.dir / f"{phase}.pt", weights_only=True)["model"]

    def load(self, model) -> dict | None:
        progress = self._progress()
        if not progress or not progress["phases_done"]:
            return None
        last = progress["phases_done"][-1]
        try:
            blob = torch.load(self.dir / f"{last}.pt", weights_only=True)
            model.load_state_dict(blob["model"])
        except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError):
            # a damaged checkpoint: start over instead of failing or trusting it (and forget the claims)
            (self.dir / "progress.json").unlink(missing_ok=True)
            return None
        return {"phases_done": progress["phases_done"], "report": json.loads(blob["report"]),
                "block_masks": blob["block_masks"], "magnitude_masks": blob["magnitude_masks"]}

    def save(self, phase: str, model, report: dict, block_masks: dict, magnitude_masks: dict | None = None) -> None:
        if self.accelerator.is_main_process:
            self.dir.mkdir(parents=True, exist_ok=True)
            blob = {"model": model.state_dict(), "report": json.dumps(report, default=str),
                    "block_masks": block_masks, "magnitude_masks": magnitude_masks or {}}
            tmp = self.dir / f".{phase}.pt.tmp"
            torch.save(blob, tmp)
            os.replace(tmp, self.dir / f"{phase}.pt")
            progress = self._progress() or {"fingerprint": self.fingerprint, "phases_done": []}
            done = [p for p in self.ORDER if p in progress["phases_done"] or p == phase]
            progress["phases_done"] = done
            write_record(self.dir / "progress.json", progress)
        self.accelerator.wait_for_everyone()
