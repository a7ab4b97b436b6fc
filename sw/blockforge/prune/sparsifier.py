"""Block masks over the prunable layers, in the shape of ``torch.ao.pruning``'s sparsifiers.

:class:`BlockSparsifier` owns which blocks are pruned and keeps them exactly zero while the model trains:

* :meth:`~BlockSparsifier.prepare` ``(layers, ratios)`` — attach to the layers with their target ratios
  (nothing pruned yet);
* :meth:`~BlockSparsifier.step` ``(fraction=1.0)`` — prune, in every layer, the ``round(fraction × target)``
  lowest-scoring blocks (block L2 norm of the current weights unless ``scores`` are given) and hold them
  at zero from then on (gradient hook + :meth:`~BlockSparsifier.enforce` after every optimizer step);
  the gradual ramp calls it with a growing fraction, the hard prune once with 1.0;
* :meth:`~BlockSparsifier.squash_mask` — detach the hooks and return the keep-masks (weights stay zero).

The pruning phases are listed by :meth:`blockforge.prune.schedule.Schedule.phases`.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from .criterion import block_norms
from .masking import MaskEnforcer, lowest_blocks_mask, pruned_block_counts
from .pattern import PrunableLayer

__all__ = ["BlockSparsifier"]


class BlockSparsifier:
    """Selects and holds pruned blocks (see the module doc). ``criterion(weight, layout)`` scores blocks."""

    def __init__(self, criterion: Callable[..., torch.Tensor] = block_norms):
        self.criterion = criterion
        self.layers: list[PrunableLayer] = []
        self.counts: dict[str, int] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self._enforcer: MaskEnforcer | None = None

    def prepare(self, layers: Sequence[PrunableLayer], ratios: Mapping[str, float]) -> "BlockSparsifier":
        """Attach to ``layers`` with target block sparsities ``ratios`` (layer name → ratio in [0, 1))."""
        self.layers = list(layers)
        self.counts = pruned_block_counts(self.layers, ratios)
        self.masks = {}
        return self

    @torch.no_grad()
    def step(self, fraction: float = 1.0, scores: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Prune each layer's ``round(fraction × target)`` lowest-scoring blocks and hold them at zero.

        Blocks pruned at an earlier step have norm 0, so under the default criterion they stay pruned.
        Returns the keep-masks (bool, block grid, True = kept).
        """
        masks = {}
        for layer in self.layers:
            layer_scores = scores[layer.name] if scores is not None else self.criterion(layer.weight.detach(),
                                                                                          layer.layout)
            masks[layer.name] = lowest_blocks_mask(layer_scores, int(round(fraction * self.counts[layer.name])))
        self.load(masks)
        return masks

    def load(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Hold the given keep-masks (e.g. from a checkpoint) instead of the current ones."""
        self._detach()
        self.masks = dict(masks)
        self._enforcer = MaskEnforcer(self.layers, self.masks)

    def enforce(self) -> None:
        """Multiply the weights by the masks (call after every optimizer step)."""
        if self._enforcer is not None:
            self._enforcer.apply()

    def squash_mask(self) -> dict[str, torch.Tensor]:
        """Stop holding the masks (no more hooks) and return them on the CPU; the weights stay pruned."""
        self.enforce()
        self._detach()
        return {name: mask.cpu() for name, mask in self.masks.items()}

    def _detach(self) -> None:
        if self._enforcer is not None:
            self._enforcer.remove()
            self._enforcer = None
