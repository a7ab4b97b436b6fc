"""The names the pruning options accept (no torch import, so the CLI can build its parser cheaply)."""

from __future__ import annotations

__all__ = ["ALLOCATIONS", "DEFAULT_DISTILL_HIDDEN", "DEFAULT_DISTILL_PHASES", "DEVICES", "DISTILL_PHASES", "METHODS",
           "REGULARIZERS"]

#: bsp: reweighted group Lasso + hard prune + masked retraining; magnitude: one-shot; magnitude-retrain:
#: one-shot + masked retraining; magnitude-gradual: cubic ramp (Zhu & Gupta) + masked retraining.
METHODS = ("bsp", "magnitude", "magnitude-retrain", "magnitude-gradual")
#: prox: proximal soft-threshold with calibrated λ, Adam metric, cap and budget; paper: the authors' loss term.
REGULARIZERS = ("prox", "paper")
#: uniform: every layer at the target; global: the target is overall, spread by normalized block norms.
ALLOCATIONS = ("uniform", "global")
DEVICES = ("auto", "cpu", "cuda")
#: retrain: distillation in masked retraining only; all: in the sparsifying phase (group Lasso, ramp) too.
DISTILL_PHASES = ("retrain", "all")
#: The distillation recipe of the default (measured in docs/pruning.md): the dense teacher in every phase
#: after the dense one, its logits and its hidden states (relative squared error, weight 1).
DEFAULT_DISTILL_PHASES = "all"
DEFAULT_DISTILL_HIDDEN = 1.0
