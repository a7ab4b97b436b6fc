"""Block-structured pruning (BSP) of Hugging Face encoders under an accelerator spec's blocks.

Split by concern: :mod:`.pattern` (the spec's blocks over each weight), :mod:`.criterion` (block L2
norm), :mod:`.regularizer` (reweighted group Lasso + proximal group soft-threshold), :mod:`.schedule`
(phases, λ, ratios, global allocation, cubic ramp), :mod:`.masking` (hard pruning, exact masks),
:mod:`.sparsifier` (``BlockSparsifier``: prepare / step / squash_mask, the torch.ao.pruning shape),
:mod:`.roles` (which linears are prunable per model type), :mod:`.options` (accepted option names),
:mod:`.pipeline` (the end-to-end job) and :mod:`.training` (loops).

The API other stages call::

    from blockforge.prune import PruneConfig, run_pruning, DEMO_SCHEDULE
    from blockforge.spec import load_spec
    result = run_pruning(PruneConfig(model="default", task="default", spec=load_spec("tile8"), sparsity=0.5,
                                     schedule=DEMO_SCHEDULE, train_size=1000, dev_size=500), "out/pruned")
    result.report["metrics"]["final"]          # {"accuracy": ..., "f1": ...}

    from blockforge.prune import evaluate
    evaluate("out/pruned", "default")            # metrics of a saved model on a task

Importing this package does not import torch; the names below load lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DEMO_SCHEDULE", "METHODS", "PruneConfig", "PruneResult", "Schedule", "block_sparsity", "evaluate",
           "load_task", "prune_model", "run_pruning", "save_pruned"]

_LAZY = {"DEMO_SCHEDULE": "pipeline", "METHODS": "pipeline", "PruneConfig": "pipeline", "PruneResult": "pipeline",
         "prune_model": "pipeline", "run_pruning": "pipeline", "save_pruned": "pipeline", "Schedule": "schedule",
         "evaluate": "evaluation", "block_sparsity": "evaluation", "load_task": "..data"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = _LAZY[name]
        return getattr(importlib.import_module(module if module.startswith("..") else f".{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
