"""Reweighted group Lasso over the spec's blocks, applied as a proximal step.

The penalty of one layer is ``λ Σ_g α_g ‖W_g‖₂`` over its blocks g, with reweighting factors
``α_g = 1 / (‖W_g‖₂ + ε)`` frozen at the start of each reweighting period (:meth:`reweight`).

Why a proximal step and not a loss term: under AdamW every weight moves by at most about the learning
rate per step whatever the size of its gradient, so a penalty added to the loss cannot shrink a block
faster than ~lr·√(BR·BC) per step and never reaches exactly zero (DESIGN.md, "Pruning"). After each
optimizer step we instead apply the penalty's proximal operator, the group soft-threshold

    W_g ← max(0, 1 − η λ α_g / ‖W_g‖₂) · W_g        (η = the step's learning rate)

which shrinks every block's norm by exactly ``η λ α_g`` and sets it to exactly zero when the norm is
smaller than that. Everything is vectorized per layer: no Python loop over blocks.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .criterion import block_norms
from .pattern import BlockLayout, PrunableLayer, from_blocks, to_blocks

__all__ = ["ReweightedGroupLasso", "adam_block_scale", "group_lasso_gradient", "group_lasso_penalty", "group_soft_threshold",
           "reweighting_factors"]


def reweighting_factors(weight: torch.Tensor, layout: BlockLayout, epsilon: float) -> torch.Tensor:
    """α_g = 1 / (‖W_g‖₂ + ε), a (block_rows, block_cols) tensor, not tracked by autograd."""
    with torch.no_grad():
        return 1.0 / (block_norms(weight.detach(), layout) + epsilon)


def group_lasso_penalty(weight: torch.Tensor, layout: BlockLayout, alpha: torch.Tensor,
                        lam: float) -> torch.Tensor:
    """λ Σ_g α_g ‖W_g‖₂ as a differentiable scalar."""
    return lam * (alpha * block_norms(weight, layout)).sum()


def group_lasso_gradient(weight: torch.Tensor, layout: BlockLayout, alpha: torch.Tensor,
                         lam: float) -> torch.Tensor:
    """∂/∂W of :func:`group_lasso_penalty`: ``λ α_g W_g / ‖W_g‖₂``, and 0 on all-zero blocks
    (the minimum-norm subgradient). Shape (out, in)."""
    blocks = to_blocks(weight.detach(), layout)
    norms = blocks.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()
    scale = torch.where(norms > 0, lam * alpha[..., None, None] / norms.clamp_min(torch.finfo(norms.dtype).tiny),
                        torch.zeros_like(norms))
    return from_blocks(blocks * scale, layout)


def group_soft_threshold(weight: torch.Tensor, layout: BlockLayout, threshold: torch.Tensor) -> torch.Tensor:
    """The proximal operator of ``Σ_g t_g ‖W_g‖₂``: every block scaled by ``max(0, 1 − t_g/‖W_g‖₂)``.

    ``threshold`` is t, a (block_rows, block_cols) tensor or a scalar. Returns a new (out, in) tensor;
    blocks whose norm is ≤ t_g come out exactly 0.0.
    """
    blocks = to_blocks(weight, layout)
    norms = blocks.pow(2).sum(dim=(-2, -1)).sqrt()
    scale = (1.0 - threshold / norms.clamp_min(torch.finfo(norms.dtype).tiny)).clamp_min(0.0)
    scale = torch.where(norms > threshold, scale, torch.zeros_like(scale))
    return from_blocks(blocks * scale[..., None, None], layout)


@torch.no_grad()
def adam_block_scale(weight: torch.Tensor, layout: BlockLayout, optimizer,
                     clamp: tuple[float, float] = (0.2, 5.0)) -> torch.Tensor | None:
    """Per-block step factors of Adam's diagonal metric, for a preconditioned proximal step.

    Adam moves weight i by lr·m_i/d_i with d_i = √v̂_i + eps, i.e. it takes gradient steps in the metric
    diag(d)/lr. The proximal operator of the group penalty in that metric (with d averaged over the
    block) has threshold lr·λ·α_g / d_g. Blocks whose task gradient has been small (small d_g: little
    Fisher information, little saliency w²·F) are thus shrunk faster than blocks the task keeps pushing
    on. The factors returned are s_g = median(d) / d_g over the layer, clamped to ``clamp``, so that
    the layer's calibrated λ keeps its meaning. None if the optimizer holds no second moments yet.
    """
    opt = getattr(optimizer, "optimizer", optimizer)
    state = opt.state.get(weight)
    if not state or "exp_avg_sq" not in state:
        return None
    group = next(g for g in opt.param_groups if any(p is weight for p in g["params"]))
    beta2, eps = group["betas"][1], group["eps"]
    step = float(state["step"])
    d = (state["exp_avg_sq"] / (1.0 - beta2 ** step)).sqrt() + eps
    real = to_blocks(torch.ones_like(d), layout).sum(dim=(-2, -1))
    d_g = to_blocks(d, layout).sum(dim=(-2, -1)) / real
    return (d_g.median() / d_g).clamp(*clamp)


class ReweightedGroupLasso:
    """The reweighted group-Lasso regularizer over a set of prunable layers.

    ``lam`` is one λ for every layer or a mapping layer name → λ. Call :meth:`reweight` at the start of
    every reweighting period and :meth:`proximal_step` after every optimizer step.

    ``cap`` (optional, layer name → quantile c in (0, 1]) restricts the penalty of each period to the
    blocks whose norm is at most the layer's c-quantile at the period start (α_g = 0 above it): a capped
    group Lasso, ``Σ_g α_g min(‖W_g‖, θ)`` in spirit. Blocks well above the pruning boundary are then not
    shrunk at all, so the survivors keep their scale (the plain penalty shrinks every block by the same
    amount of squared norm, which, with the narrow spread of block norms of a trained encoder, cuts the
    surviving blocks down too).

    ``budget`` (optional, layer name → number of blocks) caps how many blocks of a layer the
    soft-threshold may drive to zero: when a step would exceed it, only the blocks with the lowest
    norms up to the budget are zeroed; once a layer is at its budget its zero blocks are held at zero
    and its other blocks are no longer shrunk. This keeps the regularizer from overshooting the target
    sparsity, so that the rest of the phase already trains the network around its final pattern.
    """

    def __init__(self, layers: Sequence[PrunableLayer], lam: float | Mapping[str, float], epsilon: float,
                 budget: Mapping[str, int] | None = None, cap: Mapping[str, float] | None = None):
        if epsilon <= 0:
            raise ValueError(f"epsilon must be positive, not {epsilon!r}")
        self.layers = list(layers)
        self.lam = {layer.name: float(lam[layer.name] if isinstance(lam, Mapping) else lam)
                    for layer in self.layers}
        if any(v < 0 for v in self.lam.values()):
            raise ValueError(f"lambda must be non-negative, not {lam!r}")
        self.epsilon = float(epsilon)
        self.budget = dict(budget) if budget is not None else None
        self.cap = dict(cap) if cap is not None else None
        self.frozen: dict[str, torch.Tensor] = {}   # layer name -> bool mask of blocks held at zero
        self.alpha: dict[str, torch.Tensor] = {}
        self.reweight()

    def reweight(self) -> None:
        """Recompute α_g = 1/(‖W_g‖₂ + ε) from the current weights (0 above the layer's cap)."""
        self.alpha = {}
        for layer in self.layers:
            alpha = reweighting_factors(layer.weight, layer.layout, self.epsilon)
            if self.cap is not None and self.cap.get(layer.name, 1.0) < 1.0:
                norms = 1.0 / alpha - self.epsilon
                theta = torch.quantile(norms.flatten().double(), self.cap[layer.name]).to(norms.dtype)
                alpha = torch.where(norms <= theta, alpha, torch.zeros_like(alpha))
            self.alpha[layer.name] = alpha

    def penalty(self) -> torch.Tensor:
        """Σ_layers λ Σ_g α_g ‖W_g‖₂ with the current α (differentiable where no block is zero)."""
        return sum(group_lasso_penalty(layer.weight, layer.layout, self.alpha[layer.name], self.lam[layer.name])
                   for layer in self.layers)

    @torch.no_grad()
    def proximal_step(self, step_size: float, block_scale: Mapping[str, torch.Tensor | None] | None = None) -> None:
        """Apply the group soft-threshold with t_g = step_size · λ · α_g (· s_g) to every layer, in place.

        ``block_scale`` optionally maps a layer name to per-block factors s_g, e.g. from
        :func:`adam_block_scale`.
        """
        for layer in self.layers:
            name = layer.name
            if name in self.frozen:
                threshold = torch.where(self.frozen[name], torch.inf, 0.0)
            else:
                threshold = step_size * self.lam[name] * self.alpha[name]
                scale = block_scale.get(name) if block_scale is not None else None
                if scale is not None:
                    threshold = threshold * scale
                if self.budget is not None:
                    threshold = self._within_budget(layer, threshold)
            layer.weight.copy_(group_soft_threshold(layer.weight, layer.layout, threshold))

    def _within_budget(self, layer: PrunableLayer, threshold: torch.Tensor) -> torch.Tensor:
        """Thresholds changed so that at most ``budget`` blocks of ``layer`` end at zero; freezes the
        layer when it gets there."""
        norms = block_norms(layer.weight, layer.layout)
        to_zero = norms <= threshold
        allowed = self.budget[layer.name]
        if int(to_zero.sum()) < allowed:
            return threshold
        flat = torch.where(to_zero, norms, torch.inf).flatten()
        chosen = torch.zeros_like(to_zero.flatten())
        chosen[torch.argsort(flat, stable=True)[:allowed]] = True
        chosen = chosen.reshape(to_zero.shape)
        self.frozen[layer.name] = chosen
        return torch.where(chosen, torch.inf, 0.0)

    @torch.no_grad()
    def zero_block_fraction(self, threshold: float) -> float:
        """Share of all blocks (over every layer) whose norm is below ``threshold``."""
        below = total = 0
        for layer in self.layers:
            norms = block_norms(layer.weight, layer.layout)
            below += int((norms < threshold).sum())
            total += norms.numel()
        return below / total
