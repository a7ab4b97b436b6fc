"""Evaluate a model on a task, and measure the block sparsity of a saved model under a spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data import Task, load_task
from ..spec import Spec
from .criterion import block_norms
from .pattern import prunable_layers

__all__ = ["block_sparsity", "evaluate"]


def evaluate(model: Any, task: Task | str, *, tokenizer: Any = None, batch_size: int = 64, max_length: int = 64,
             dev_size: int | None = None, progress: bool = False) -> dict[str, float]:
    """The task's GLUE metrics on its dev split.

    ``model`` is a loaded sequence-classification model (then pass ``tokenizer``) or a model folder /
    ``default``; ``task`` is a :class:`~blockforge.data.Task` or a task string for
    :func:`~blockforge.data.load_task`. Raises DataError / UsageError on bad input.
    """
    from ..models import load_model, load_tokenizer
    from ..batches import tokenize
    from .training import evaluate_model

    if isinstance(task, str):
        task = load_task(task, dev_size=dev_size)
    if isinstance(model, (str, Path)):
        tokenizer = tokenizer or load_tokenizer(model)
        model = load_model(model, labels=task.labels).model
    if tokenizer is None:
        raise ValueError("evaluate: pass the tokenizer with a loaded model")
    split = tokenize(tokenizer, task.dev, max_length)
    return evaluate_model(model, split, task, batch_size=batch_size, progress=progress)


@torch.no_grad()
def block_sparsity(model: Any, spec: Spec) -> dict[str, dict[str, int | float]]:
    """Per prunable layer: blocks, all-zero blocks and their fraction under ``spec``."""
    out = {}
    for layer in prunable_layers(model, spec):
        norms = block_norms(layer.weight, layer.layout)
        zero = int((norms == 0).sum())
        out[layer.name] = {"blocks": norms.numel(), "zero_blocks": zero, "zero_fraction": zero / norms.numel()}
    return out
