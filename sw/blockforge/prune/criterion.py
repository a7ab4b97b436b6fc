"""Block scores: the L2 (Frobenius) norm of each block, computed for all blocks at once."""

from __future__ import annotations

import torch

from .pattern import BlockLayout, to_blocks

__all__ = ["block_norms"]


def block_norms(weight: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    """‖W_g‖₂ for every block g: a (block_rows, block_cols) tensor of ``weight``'s dtype.

    Differentiable wherever no block is all zero (the norm has no gradient at 0).
    """
    return to_blocks(weight, layout).pow(2).sum(dim=(-2, -1)).sqrt()
