"""The spec's BR×BC blocks laid over every prunable weight.

A weight of shape (out, in) is zero-padded at the bottom to a multiple of BR rows and on the right to a
multiple of BC columns (the padding rule of :meth:`blockforge.spec.Spec.tiling`), then cut into a grid of
``block_rows × block_cols`` blocks. Block (r, c) covers rows ``r*BR : (r+1)*BR`` and columns
``c*BC : (c+1)*BC`` of the padded matrix. All functions here are vectorized over blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import Spec, Tiling
from .roles import PrunableLinear, find_prunable_linears

__all__ = ["BlockLayout", "PrunableLayer", "block_layout", "expand_block_mask", "from_blocks",
           "prunable_layers", "to_blocks"]


@dataclass(frozen=True)
class BlockLayout:
    """How one (out, in) weight is cut into the spec's blocks."""

    block_shape: tuple[int, int]
    tiling: Tiling

    @property
    def grid(self) -> tuple[int, int]:
        """(block rows, block columns)."""
        return self.tiling.block_rows, self.tiling.block_cols

    @property
    def n_blocks(self) -> int:
        return self.tiling.n_blocks


@dataclass(frozen=True)
class PrunableLayer:
    """A prunable linear together with its block layout."""

    name: str
    role: str
    layer_index: int | None
    module: nn.Linear
    layout: BlockLayout

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight


def block_layout(spec: Spec, weight_shape: tuple[int, int], *, layer: str = "weight") -> BlockLayout:
    """The layout of an (out, in) weight under ``spec``; SpecError if the engine cannot take it."""
    out_features, in_features = (int(s) for s in weight_shape)
    tiling = spec.tiling(out_features, in_features, layer=layer)
    return BlockLayout((spec.block.rows, spec.block.cols), tiling)


def prunable_layers(model: nn.Module, spec: Spec) -> list[PrunableLayer]:
    """Every prunable linear of ``model`` (see :mod:`.roles`) with its block layout under ``spec``."""
    layers = []
    for lin in find_prunable_linears(model):
        layout = block_layout(spec, tuple(lin.module.weight.shape), layer=lin.name)
        layers.append(_with_layout(lin, layout))
    return layers


def _with_layout(lin: PrunableLinear, layout: BlockLayout) -> PrunableLayer:
    return PrunableLayer(lin.name, lin.role, lin.layer_index, lin.module, layout)


def to_blocks(weight: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    """(out, in) → (block_rows, block_cols, BR, BC), zero padded; differentiable."""
    br, bc = layout.block_shape
    t = layout.tiling
    if tuple(weight.shape) != (t.out_features, t.in_features):
        raise ValueError(f"weight of shape {tuple(weight.shape)} does not match layout "
                         f"({t.out_features}, {t.in_features})")
    padded = F.pad(weight, (0, t.pad_in, 0, t.pad_out)) if (t.pad_in or t.pad_out) else weight
    return padded.reshape(t.block_rows, br, t.block_cols, bc).permute(0, 2, 1, 3)


def from_blocks(blocks: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    """Inverse of :func:`to_blocks`: (block_rows, block_cols, BR, BC) → (out, in), padding dropped."""
    t = layout.tiling
    padded = blocks.permute(0, 2, 1, 3).reshape(t.padded_out, t.padded_in)
    return padded[: t.out_features, : t.in_features]


def expand_block_mask(block_mask: torch.Tensor, layout: BlockLayout) -> torch.Tensor:
    """A (block_rows, block_cols) mask → the (out, in) element mask it covers (same dtype)."""
    br, bc = layout.block_shape
    t = layout.tiling
    full = block_mask.repeat_interleave(br, dim=0).repeat_interleave(bc, dim=1)
    return full[: t.out_features, : t.in_features]
