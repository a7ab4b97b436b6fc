"""When and how much to prune: the phases of the pipeline, λ, reweighting periods and sparsity ratios.

Ratios are global (one ``--sparsity`` for every prunable layer) or per layer from a YAML file as in the
paper. The ratios file is a mapping from a layer name or an ``fnmatch`` glob over layer names to a block
sparsity in [0, 1), optionally under a top-level ``ratios:`` key next to ``default:``::

    default: 0.5                                  # optional; else the --sparsity value
    ratios:
      "*.attention.self.query": 0.8
      bert.encoder.layer.5.output.dense: 0.3

Later entries win over earlier ones. An entry that matches no prunable layer is an error.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..errors import UsageError
from ..yamlsafe import load_yaml, shown
from .criterion import block_norms
from .pattern import PrunableLayer

__all__ = ["LONG_SCHEDULE_ABOVE", "PAPER_LAMBDA", "Phase", "Schedule", "auto_lambda", "check_sparsity",
           "cubic_sparsity", "global_ratios", "load_lambdas", "load_ratios", "phase_steps", "resolve_ratios"]

#: λ of the authors' code (ZLKong/BERT_demo, the per-layer YAML): the default of ``--regularizer paper``.
MAX_LAMBDA = 1e3         # a λ file's values: far above any useful penalty, below float overflow
PAPER_LAMBDA = 1e-4
#: Above this target block sparsity (5×) :meth:`Schedule.recommended` doubles the phases after the dense one
#: (docs/pruning.md "Default schedule": at 90% the 2 + 2 epochs of the 80% recipe end 3.6 pt below dense,
#: 4 + 4 end 0.2 pt below, three seeds each).
LONG_SCHEDULE_ABOVE = 0.8


@dataclass(frozen=True)
class Phase:
    """One training phase: its name (``dense``, ``bsp``, ``ramp``, ``retrain``), the index of its shuffle
    stream, length in epochs, peak learning rate and whether the rate is constant (else linear decay
    with warm-up)."""

    name: str
    index: int
    epochs: float
    learning_rate: float
    constant_lr: bool


@dataclass(frozen=True)
class Schedule:
    """Lengths and learning rates of the pipeline phases.

    Epochs may be fractional (a phase of 0.5 epochs is half the shuffled training set). ``reweight_period``
    is in optimizer steps. ``lam`` None means λ is calibrated per layer by :func:`auto_lambda`.
    """

    # the measured recipe (docs/pruning.md "At the budget"): as many steps after the dense phase
    # as two dense fine-tunes, half group Lasso, half masked retraining
    dense_epochs: float = 2.0
    bsp_epochs: float = 2.0
    retrain_epochs: float = 2.0
    learning_rate: float = 5e-5          # dense fine-tune (linear decay, 6% warm-up)
    bsp_learning_rate: float = 1e-4      # reweighted group-Lasso phase (constant)
    retrain_learning_rate: float = 1e-4  # masked retraining (linear decay, 6% warm-up)
    lam: float | None = None
    lambda_scale: float = 1.5
    epsilon: float = 1e-3
    reweight_period: int = 16
    preconditioned: bool = True          # proximal step in Adam's metric (see regularizer.adam_block_scale)
    cap_margin: float | None = 0.25      # penalize blocks below quantile r + margin·(1 − r); None = all blocks
    budget: bool = True                  # a layer's soft-threshold zeroes at most its target number of blocks
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01

    @classmethod
    def recommended(cls, sparsity: float, **overrides: Any) -> "Schedule":
        """The default schedule for a target block sparsity: 2 + 2 + 2 epochs (dense, sparsifying,
        retraining) up to :data:`LONG_SCHEDULE_ABOVE`; above it twice the epochs after the dense phase,
        2 + 4 + 4. ``sparsity`` is the run's target (with a ratios file, its default). ``overrides`` (any
        field) win over both."""
        longer = {"bsp_epochs": 4.0, "retrain_epochs": 4.0} if check_sparsity(sparsity) > LONG_SCHEDULE_ABOVE else {}
        return cls(**{**longer, **overrides})

    def phases(self, method: str) -> dict[str, Phase]:
        """The training phases of ``method``, in order: dense fine-tune; the sparsifying phase (``bsp``:
        group Lasso, ``magnitude-gradual``: ramp; constant rate); masked retraining (all but ``magnitude``)."""
        out = [Phase("dense", 1, self.dense_epochs, self.learning_rate, False)]
        sparsify = {"bsp": "bsp", "magnitude-gradual": "ramp"}.get(method)
        if sparsify:
            out.append(Phase(sparsify, 2, self.bsp_epochs, self.bsp_learning_rate, True))
        if method != "magnitude":
            out.append(Phase("retrain", 3, self.retrain_epochs, self.retrain_learning_rate, False))
        return {phase.name: phase for phase in out}

    def __post_init__(self) -> None:
        for name in ("dense_epochs", "bsp_epochs", "retrain_epochs"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"{name.replace('_', '-')}: must be a non-negative number, not {shown(value)}")
        for name in ("learning_rate", "bsp_learning_rate", "retrain_learning_rate", "lambda_scale", "epsilon"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"{name.replace('_', '-')}: must be a positive number, not {shown(value)}")
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            raise UsageError(f"lambda: must be a non-negative number, not {shown(self.lam)}")
        if self.cap_margin is not None and not 0 <= self.cap_margin <= 1:
            raise UsageError(f"cap-margin: must be in [0, 1], not {shown(self.cap_margin)}")
        if self.reweight_period < 1:
            raise UsageError(f"reweight-period: must be a positive number of steps, not {shown(self.reweight_period)}")


def phase_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps of a phase of ``epochs`` epochs (at least one step when epochs > 0)."""
    return 0 if epochs <= 0 else max(1, math.ceil(epochs * steps_per_epoch))


def check_sparsity(value: Any, where: str = "sparsity") -> float:
    """``value`` as a block sparsity in [0, 1), or UsageError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:   # NaN fails too
        raise UsageError(f"{where}: block sparsity must be a number in [0, 1), got {shown(value)}")
    return float(value)


def resolve_ratios(layer_names: Sequence[str], default: float, entries: Mapping[str, Any] | None = None,
                   source: str = "ratios") -> dict[str, float]:
    """Per-layer ratios: ``default`` for every layer, overridden by name/glob ``entries`` in order."""
    ratios = {name: check_sparsity(default, f"{source}: default") for name in layer_names}
    for key, value in (entries or {}).items():
        if not isinstance(key, str):
            raise UsageError(f"{source}: ratios: layer name must be a string, got {shown(key)}")
        ratio = check_sparsity(value, f"{source}: ratios.{key[:80]}")
        matched = [name for name in layer_names if name == key or fnmatch.fnmatchcase(name, key)]
        if not matched:
            raise UsageError(f"{source}: ratios.{key[:80]}: matches no prunable layer "
                             f"(e.g. {layer_names[0]})")
        for name in matched:
            ratios[name] = ratio
    return ratios


def load_ratios(path: str | Path, layer_names: Sequence[str], default: float) -> dict[str, float]:
    """Per-layer ratios from a YAML ratios file (see the module doc); UsageError on any problem."""
    source = str(path)
    data = load_yaml(path, error=UsageError, what="ratios file")
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{source}: expected a mapping of layer names to block sparsities")
    if "ratios" in data:
        unknown = set(data) - {"ratios", "default"}
        if unknown:
            raise UsageError(f"{source}: {sorted(unknown)[0]}: unknown key (known keys: default, ratios)")
        entries = data["ratios"]
        if not isinstance(entries, dict):
            raise UsageError(f"{source}: ratios: expected a mapping of layer names to block sparsities")
        default = data.get("default", default)
    else:
        entries = dict(data)
        default = entries.pop("default", default)
    return resolve_ratios(layer_names, default, entries, source)


def shrink_trajectory_end(norm: float, lam: float, step_sizes: Sequence[float], reweight_period: int,
                          epsilon: float) -> float:
    """A block's norm after the group soft-threshold alone (no task gradient) has run over ``step_sizes``
    with α = 1/(‖W_g‖ + ε) refreshed every ``reweight_period`` steps."""
    alpha = 0.0
    for step, eta in enumerate(step_sizes):
        if step % reweight_period == 0:
            alpha = 1.0 / (norm + epsilon)
        norm = max(0.0, norm - eta * lam * alpha)
        if norm == 0.0:
            break
    return norm


def calibrate_lambda(norm: float, step_sizes: Sequence[float], reweight_period: int, epsilon: float) -> float:
    """The smallest λ for which the soft-threshold alone drives a block of norm ``norm`` to exactly zero
    by the last of ``step_sizes`` (bisection on the exact trajectory)."""
    if norm <= 0 or not step_sizes:
        return 0.0
    lo, hi = 0.0, norm * (norm + epsilon) / min(step_sizes)  # hi zeroes the block in one step
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if shrink_trajectory_end(norm, mid, step_sizes, reweight_period, epsilon) > 0.0:
            lo = mid
        else:
            hi = mid
    return hi


@torch.no_grad()
def auto_lambda(layers: Sequence[PrunableLayer], ratios: Mapping[str, float], step_sizes: Sequence[float],
                reweight_period: int, epsilon: float, scale: float = 1.0) -> dict[str, float]:
    """λ per layer such that, with no task gradient, the layer's target share of blocks reaches zero.

    q is the layer's block-norm quantile at its target ratio; λ = ``scale`` × the smallest λ that
    takes a block of norm q to exactly zero over the phase (:func:`calibrate_lambda`). Since the
    shrinkage is monotone in the starting norm, every block below q would reach zero too; the task
    gradient then decides which blocks near the boundary survive. scale > 1 reaches zero before the
    end of the phase, leaving the network a few steps to adapt with those blocks held at zero.
    """
    lam = {}
    for layer in layers:
        ratio = ratios[layer.name]
        if ratio <= 0:
            lam[layer.name] = 0.0
            continue
        norms = block_norms(layer.weight, layer.layout).flatten().to(torch.float64)
        q = float(torch.quantile(norms, ratio))
        lam[layer.name] = scale * calibrate_lambda(q, step_sizes, reweight_period, epsilon)
    return lam


def load_lambdas(path: str | Path, layer_names: Sequence[str]) -> dict[str, float]:
    """Fixed λ per layer from a YAML file (paper mode), as in the authors' code.

    The file maps layer names (or ``fnmatch`` globs) to λ ≥ 0, optionally with a ``default:`` for the
    layers it does not name (else ``PAPER_LAMBDA``). Later entries win. A key that matches no prunable
    layer, a value that is not a non-negative number, or an unreadable file is a UsageError naming the
    file and the key.
    """
    source = str(path)
    data = load_yaml(path, error=UsageError, what="lambda file")
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{source}: expected a mapping of layer names to lambda values")

    def value(key: str, raw: Any) -> float:
        if isinstance(raw, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                raw = float(raw)
            except ValueError:
                pass
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= MAX_LAMBDA:
            raise UsageError(f"{source}: {key[:80]}: lambda must be a number in [0, {MAX_LAMBDA:g}], got {shown(raw, 40)}")
        return float(raw)

    entries = dict(data)
    default = value("default", entries.pop("default", PAPER_LAMBDA))
    lam = {name: default for name in layer_names}
    for key, raw in entries.items():
        if not isinstance(key, str):
            raise UsageError(f"{source}: layer name must be a string, got {str(key)[:40]!r}")
        matched = [name for name in layer_names if name == key or fnmatch.fnmatchcase(name, key)]
        if not matched:
            raise UsageError(f"{source}: {key[:80]}: matches no prunable layer (e.g. {layer_names[0]})")
        for name in matched:
            lam[name] = value(key, raw)
    return lam


@torch.no_grad()
def global_ratios(layers: Sequence[PrunableLayer], sparsity: float) -> dict[str, float]:
    """Per-layer block sparsities whose block-weighted mean is the overall ``sparsity``.

    Every block is scored by its L2 norm divided by the mean block norm of its layer (so that layers of
    different scale compete fairly) and the ``round(sparsity × all blocks)`` lowest scores over all
    layers are pruned (ties by layer order, then block index). A layer keeps at least one block. The
    ratio of a layer is its pruned count / its blocks, so :func:`~.masking.pruned_block_counts`
    returns exactly these counts.
    """
    check_sparsity(sparsity)
    scores, owners = [], []
    for i, layer in enumerate(layers):
        norms = block_norms(layer.weight, layer.layout).flatten().to(torch.float64).cpu()
        mean = norms.mean()
        scores.append(norms / mean if mean > 0 else norms)
        owners.append(torch.full_like(norms, i, dtype=torch.long))
    flat, owner = torch.cat(scores), torch.cat(owners)
    total = int(round(sparsity * flat.numel()))
    chosen = owner[torch.argsort(flat, stable=True)[:total]]
    counts = torch.bincount(chosen, minlength=len(layers)).tolist()
    return {layer.name: min(count, layer.layout.n_blocks - 1) / layer.layout.n_blocks
            for layer, count in zip(layers, counts)}


def cubic_sparsity(step: int, steps: int, final: float, initial: float = 0.0) -> float:
    """The gradual pruning ramp of Zhu & Gupta (2017): ``s_f + (s_i − s_f)(1 − t/T)³`` after ``step + 1``
    of ``steps`` steps (reaches ``final`` at the last step)."""
    if steps <= 0:
        return final
    t = min(1.0, (step + 1) / steps)
    return final + (initial - final) * (1.0 - t) ** 3
