"""The training and evaluation loops the pruning pipeline runs (on :mod:`blockforge.batches`): AdamW with an optional per-step hook, optional knowledge distillation, and GLUE-metric evaluation.

A plain loop on top of ``accelerate``: the same code runs in one process or under ``torchrun`` /
``accelerate launch`` (gloo on CPU), where every rank takes its own slice of each global batch and the
gradients are averaged by DDP, so weights (and masks derived from them) stay identical across ranks.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..batches import Batches, TokenizedSplit
from ..data import Task, compute_metrics

__all__ = ["evaluate_model", "hidden_state_loss", "train_phase"]


def hidden_state_loss(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...],
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Relative squared error of the student's hidden states against the teacher's, averaged over the
    encoder layers (the embedding output, index 0, is left out): per layer
    ``Σ‖h_s − h_t‖² / Σ‖h_t‖²`` over the real (unpadded) tokens of the batch. Scale-free, so one weight
    suits any model width; 0 when the student reproduces the teacher."""
    if len(student) != len(teacher):
        raise ValueError(f"hidden states: student has {len(student)} layers, teacher {len(teacher)}")
    terms = []
    for s, t in zip(student[1:], teacher[1:]):
        diff = (s - t).pow(2).sum(-1)
        ref = t.pow(2).sum(-1)
        if attention_mask is not None:
            keep = attention_mask.to(diff.dtype)
            diff, ref = diff * keep, ref * keep
        terms.append(diff.sum() / ref.sum().clamp_min(1e-12))
    return torch.stack(terms).mean()


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, total: int, warmup_ratio: float, constant: bool) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up then linear decay, or constant."""
    if constant:
        return 1.0
    warmup = int(round(warmup_ratio * total))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def train_phase(accelerator, model: nn.Module, split: TokenizedSplit, batches: Batches, *, phase: int,
                steps: int, learning_rate: float, weight_decay: float, warmup_ratio: float = 0.06,
                constant_lr: bool = False, regression: bool = False,
                after_step: Callable[[int, float, torch.optim.Optimizer], None] | None = None, before_step: Callable[[int], None] | None = None,
                teacher: nn.Module | None = None, distill_alpha: float = 0.5, distill_temperature: float = 2.0,
                distill_hidden: float = 0.0, penalty: Callable[[], torch.Tensor] | None = None,
                desc: str = "train", progress: bool = True) -> dict[str, float]:
    """Train ``model`` (already prepared by ``accelerator``) for ``steps`` optimizer steps.

    ``before_step(step)`` runs before each forward pass, ``after_step(step, lr, optimizer)`` right after
    each optimizer step with the learning rate that step used. With a ``teacher`` the loss is
    ``(1 − a)·task + a·T²·KL(softmax(teacher/T) ‖ softmax(student/T))`` (classification only), plus
    ``distill_hidden ×`` :func:`hidden_state_loss` when that weight is positive (any task).
    ``penalty()``, if given, is added to every step's loss (e.g. the group-Lasso term of paper mode).
    Batches are moved to ``accelerator.device``. Returns the mean loss and the number of steps (the
    reported loss excludes the penalty).
    """
    from tqdm.auto import tqdm

    if steps <= 0:
        return {"steps": 0, "mean_loss": float("nan")}
    optimizer = torch.optim.AdamW(_decay_groups(model, weight_decay), lr=learning_rate)
    optimizer = accelerator.prepare(optimizer)
    model.train()
    total_loss = 0.0
    bar = tqdm(total=steps, desc=desc, disable=not (progress and accelerator.is_local_main_process),
               leave=False, dynamic_ncols=True)
    hidden = teacher is not None and distill_hidden > 0
    logit_kd = teacher is not None and not regression    # the KL term is for classification only
    for step, indices in enumerate(batches.steps(phase, steps)):
        if before_step is not None:
            before_step(step)
        lr = learning_rate * lr_factor(step, steps, warmup_ratio, constant_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {k: v.to(accelerator.device) for k, v in split.collate(indices, regression).items()}
        labels = batch.pop("labels")
        out = model(**batch, output_hidden_states=True) if hidden else model(**batch)
        logits = out.logits
        if regression:
            loss = F.mse_loss(logits.squeeze(-1), labels)
        else:
            loss = F.cross_entropy(logits, labels)
        if logit_kd or hidden:                             # else the teacher's forward would go unused
            with torch.no_grad():
                taught = teacher(**batch, output_hidden_states=hidden)
            if logit_kd:
                t = distill_temperature
                kd = F.kl_div(F.log_softmax(logits / t, dim=-1), F.log_softmax(taught.logits / t, dim=-1),
                              reduction="batchmean", log_target=True) * t * t
                loss = (1 - distill_alpha) * loss + distill_alpha * kd
            if hidden:
                loss = loss + distill_hidden * hidden_state_loss(out.hidden_states, taught.hidden_states,
                                                                 batch.get("attention_mask"))
        reported = loss.detach()
        if penalty is not None:
            loss = loss + penalty()
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(step, lr, optimizer)
        total_loss += float(reported)
        bar.update(1)
        bar.set_postfix(loss=f"{total_loss / (step + 1):.4f}")
    bar.close()
    return {"steps": steps, "mean_loss": total_loss / steps}


@torch.no_grad()
def evaluate_model(model: nn.Module, split: TokenizedSplit, task: Task, *, batch_size: int = 64,
                   progress: bool = False, desc: str = "evaluate") -> dict[str, float]:
    """The task's GLUE metrics of ``model`` on ``split`` (batches bucketed by length; eval mode)."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    order = sorted(range(len(split)), key=lambda i: len(split.features[i]["input_ids"]))
    predictions = [0.0] * len(split)
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    device = next(model.parameters()).device
    for chunk in tqdm(chunks, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        batch = {k: v.to(device) for k, v in split.collate(chunk, task.is_regression).items()}
        batch.pop("labels")
        logits = model(**batch).logits
        values = logits.squeeze(-1) if task.is_regression else logits.argmax(dim=-1)
        for i, v in zip(chunk, values.tolist()):
            predictions[i] = float(v)
    model.train(was_training)
    return compute_metrics(task.metrics, predictions, split.labels)
