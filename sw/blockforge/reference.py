"""The golden integer model. Everything that computes a quantized layer — the PyTorch integer path,
the RTL checks, the estimator's MAC counts — calls this module; nothing re-implements requantization.

Numerics (docs/numerics.md is the normative text):

    acc[o, n] = b_q[o] + Σ_k W_q[o, k] · x_q[k, n]                  (exact; fits acc_bits by spec rule)
    y_q[o, n] = clamp_or_wrap(round_shift(acc[o, n] · M[o], S[o]))   (act_bits, spec rounding mode)

``round_shift(v, s)`` divides by 2^s with the spec's rounding:

- ``half_up``:   ⌊(v + 2^(s-1)) / 2^s⌋   — add half, arithmetic shift right (ties go towards +∞)
- ``half_even``: nearest, ties to the even result
- ``truncate``:  ⌊v / 2^s⌋               — plain arithmetic shift right (towards −∞)

with ``round_shift(v, 0) = v`` in every mode. Everything is numpy int64; the product acc·M is exact
because the spec guarantees acc_bits + multiplier_bits + 1 ≤ 64. No torch, no amaranth import.
"""

from __future__ import annotations

import numpy as np

from .layer import BlockSparseLayer
from .spec import MAX_SHIFT, Numerics

__all__ = ["round_shift", "requantize", "saturate", "linear", "linear_dense", "accumulate_tiled",
           "accumulate_dense", "layer_macs"]


def round_shift(values: np.ndarray, shift: np.ndarray | int, rounding: str) -> np.ndarray:
    """Divide int64 ``values`` by 2**``shift`` (elementwise, broadcast) with the given rounding mode."""
    v = np.asarray(values, dtype=np.int64)
    s = np.broadcast_to(np.asarray(shift, dtype=np.int64), v.shape)
    if np.any(s < 0) or np.any(s > MAX_SHIFT):
        raise ValueError(f"shift must be in [0, {MAX_SHIFT}]")
    floor = v >> s
    if rounding == "truncate":
        return floor
    remainder = v - (floor << s)                                  # in [0, 2^s)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    if rounding == "half_up":
        return floor + ((remainder >= half) & (s > 0))
    if rounding == "half_even":
        above = remainder > half
        tie = (remainder == half) & (s > 0)
        return floor + (above | (tie & (floor & 1 == 1)))
    raise ValueError(f"unknown rounding mode {rounding!r}")


def saturate(values: np.ndarray, bits: int, clamp: bool = True) -> np.ndarray:
    """Fit int64 values into signed ``bits``: clamp (saturate) or wrap (two's complement)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = np.asarray(values, dtype=np.int64)
    if clamp:
        return np.clip(v, lo, hi)
    return ((v - lo) & ((1 << bits) - 1)) + lo


def requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, numerics: Numerics) -> np.ndarray:
    """int64 accumulators (out, N) → int64 outputs in the act_bits range; M, S per output channel."""
    acc = np.asarray(acc, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64).reshape(-1, 1)
    s = np.asarray(shift, dtype=np.int64).reshape(-1, 1)
    scaled = round_shift(acc * m, s, numerics.rounding)
    return saturate(scaled, numerics.act_bits, numerics.saturate)


def _check_activations(layer: BlockSparseLayer, x_q: np.ndarray) -> np.ndarray:
    x = np.asarray(x_q)
    if x.ndim != 2 or x.shape[0] != layer.in_features:
        raise ValueError(f"{layer.name}: activations must have shape ({layer.in_features}, N), got {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{layer.name}: activations must be integers, got {x.dtype}")
    return x.astype(np.int64)


def accumulate_tiled(layer: BlockSparseLayer, x_q: np.ndarray) -> np.ndarray:
    """int64 accumulators (padded_out, N): bias plus one BR×BC tile product per stored tile, BCSR order.

    The stored tiles of a group of block rows are placed by their (row_ptr, col_idx) into a zeroed
    weight strip, which multiplies the zero-padded activations: each output sums exactly the products
    of its block row's stored tiles with the matching activation slices, as the engine does (absent
    tiles contribute zero). Products are formed in float64 when every partial sum is provably an integer
    below 2**53 (always true for in-range int8 data, see :func:`_float64_is_exact`), otherwise in int64;
    either way the result is exact. Strips of about 256 output channels keep the product BLAS-sized
    without materializing the whole dense matrix.
    """
    x = _check_activations(layer, x_q)
    br, bc, n = layer.block_rows, layer.block_cols, x.shape[1]
    dtype = np.float64 if _float64_is_exact(layer, x) else np.int64
    x_padded = np.zeros((layer.padded_in, n), dtype=dtype)
    x_padded[: layer.in_features] = x
    acc = np.zeros((layer.padded_out, n), dtype=np.int64)
    rows_per_strip = max(1, _STRIP_CHANNELS // br)
    row_of_tile = np.repeat(np.arange(layer.n_block_rows), layer.nnz_per_row())
    for first in range(0, layer.n_block_rows, rows_per_strip):
        last = min(first + rows_per_strip, layer.n_block_rows)
        lo, hi = int(layer.row_ptr[first]), int(layer.row_ptr[last])
        if lo == hi:
            continue
        strip = np.zeros((last - first, layer.n_block_cols, br, bc), dtype=dtype)
        strip[row_of_tile[lo:hi] - first, layer.col_idx[lo:hi]] = layer.tiles[lo:hi]
        strip = strip.transpose(0, 2, 1, 3).reshape((last - first) * br, layer.padded_in)
        acc[first * br:last * br] = strip @ x_padded
    return acc + layer.bias.reshape(-1, 1)


_STRIP_CHANNELS = 256


def _float64_is_exact(layer: BlockSparseLayer, x: np.ndarray) -> bool:
    """Whether float64 products/sums of these integers are exact: Σ|w|·|x| over a row < 2**53."""
    if x.size == 0 or layer.tiles.size == 0:
        return True
    max_w = int(np.abs(layer.tiles.astype(np.int64)).max())
    max_x = max(abs(int(x.max())), abs(int(x.min())))        # Python ints: no int64 overflow at -2**63
    return max_w * max_x * layer.padded_in < 2 ** 53


def accumulate_dense(layer: BlockSparseLayer, x_q: np.ndarray) -> np.ndarray:
    """The same accumulators computed from the dense weight (a cross-check of the tiled path)."""
    x = _check_activations(layer, x_q)
    acc = np.zeros((layer.padded_out, x.shape[1]), dtype=np.int64)
    acc[: layer.out_features] = layer.to_dense().astype(np.int64) @ x
    return acc + layer.bias.reshape(-1, 1)


def linear(layer: BlockSparseLayer, x_q: np.ndarray, numerics: Numerics) -> tuple[np.ndarray, np.ndarray]:
    """Golden layer: int activations (in_features, N) → (y_q (out_features, N), acc (out_features, N)), int64."""
    acc = accumulate_tiled(layer, x_q)
    y = requantize(acc, layer.multiplier, layer.shift, numerics)
    return y[: layer.out_features], acc[: layer.out_features]


def linear_dense(layer: BlockSparseLayer, x_q: np.ndarray, numerics: Numerics) -> tuple[np.ndarray, np.ndarray]:
    """:func:`linear` computed densely; must agree exactly (tests check it)."""
    acc = accumulate_dense(layer, x_q)
    y = requantize(acc, layer.multiplier, layer.shift, numerics)
    return y[: layer.out_features], acc[: layer.out_features]


def layer_macs(layer: BlockSparseLayer, n_tokens: int) -> tuple[int, int]:
    """(MACs the block-sparse engine performs, MACs a dense engine would) for N tokens, padded shapes."""
    per_tile = layer.block_rows * layer.block_cols * n_tokens
    return layer.nnz_blocks * per_tile, layer.total_blocks * per_tile
