"""Hard pruning to a target block sparsity, and masks that keep pruned blocks exactly zero.

A block mask is a bool (block_rows, block_cols) tensor, True = kept. :func:`hard_prune` removes, in
every layer, the ``round(ratio × n_blocks)`` blocks with the lowest scores (block L2 norm by default;
ties broken by block index, so the result is deterministic). :class:`MaskEnforcer` then keeps pruned
weights at exactly 0.0 through retraining: gradients of pruned weights are zeroed by a hook (so the
optimizer's moments stay zero) and :meth:`MaskEnforcer.apply` multiplies the weights by the mask after
every optimizer step (so weight decay or any other update cannot revive them).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .criterion import block_norms
from .pattern import PrunableLayer, expand_block_mask

__all__ = ["MaskEnforcer", "hard_prune", "lowest_blocks_mask", "pruned_block_counts", "zero_block_counts"]


def pruned_block_counts(layers: Sequence[PrunableLayer], ratios: Mapping[str, float]) -> dict[str, int]:
    """Blocks to prune per layer: round(ratio × n_blocks)."""
    return {layer.name: int(round(ratios[layer.name] * layer.layout.n_blocks)) for layer in layers}


def lowest_blocks_mask(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Keep-mask (True = kept) that removes the ``n_prune`` lowest-scoring blocks of ``scores``."""
    flat = scores.detach().flatten().to(torch.float64)
    order = torch.argsort(flat, stable=True)
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[order[:n_prune]] = False
    return keep.reshape(scores.shape)


@torch.no_grad()
def hard_prune(layers: Sequence[PrunableLayer], ratios: Mapping[str, float],
               scores: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Zero the lowest-scoring blocks of every layer in place and return the block keep-masks.

    ``ratios`` maps every layer name to its target block sparsity in [0, 1); ``scores`` defaults to the
    current block norms.
    """
    counts = pruned_block_counts(layers, ratios)
    masks = {}
    for layer in layers:
        layer_scores = scores[layer.name] if scores is not None else block_norms(layer.weight, layer.layout)
        masks[layer.name] = lowest_blocks_mask(layer_scores, counts[layer.name])
        layer.weight.mul_(expand_block_mask(masks[layer.name], layer.layout).to(layer.weight.dtype))
    return masks


@torch.no_grad()
def zero_block_counts(layers: Sequence[PrunableLayer]) -> dict[str, int]:
    """Number of all-zero blocks per layer (padding counts as zero)."""
    return {layer.name: int((block_norms(layer.weight, layer.layout) == 0).sum()) for layer in layers}


class MaskEnforcer:
    """Keeps the pruned blocks of ``layers`` exactly zero while the model trains.

    Use as a context manager or call :meth:`remove` to detach the gradient hooks; call :meth:`apply`
    after every optimizer step.
    """

    def __init__(self, layers: Sequence[PrunableLayer], block_masks: Mapping[str, torch.Tensor]):
        self.layers = list(layers)
        self.block_masks = dict(block_masks)
        self.weight_masks = {
            layer.name: expand_block_mask(self.block_masks[layer.name], layer.layout).to(
                device=layer.weight.device, dtype=layer.weight.dtype)
            for layer in self.layers}
        self._hooks = [layer.weight.register_hook(lambda grad, m=self.weight_masks[layer.name]: grad * m)
                       for layer in self.layers]
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Multiply every weight by its mask (pruned weights become exactly 0.0)."""
        for layer in self.layers:
            layer.weight.mul_(self.weight_masks[layer.name])

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def __enter__(self) -> "MaskEnforcer":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
