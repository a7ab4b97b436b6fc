"""Small specs and seeded random layers for engine tests (Amaranth simulator, Icarus, cocotb)."""

from __future__ import annotations

import numpy as np

from blockforge.layer import BlockSparseLayer
from blockforge.spec import Spec, spec_from_dict

__all__ = ["small_spec", "random_layer", "random_activations"]


def small_spec(rows: int = 2, cols: int = 4, *, bus_bits: int = 32, max_tokens: int = 8, features: int = 32,
               rounding: str = "half_up", saturate: bool = True, read_latency: int = 1,
               acc_bits: int = 32, multiplier_bits: int = 16, name: str = "small") -> Spec:
    """A spec small enough for Amaranth's simulator (defaults: 2x4 blocks, 8 tokens, 32 features)."""
    return spec_from_dict({
        "name": name,
        "block": {"rows": rows, "cols": cols},
        "numerics": {"weight_bits": 8, "act_bits": 8, "acc_bits": acc_bits, "multiplier_bits": multiplier_bits,
                     "rounding": rounding, "saturate": saturate},
        "memory": {"weight_bus_bits": bus_bits, "read_latency": read_latency},
        "buffers": {"max_tokens": max_tokens, "max_in_features": features, "max_out_features": features},
        "clock_mhz": 100,
    }, source=f"<{name}>")


def random_layer(spec: Spec, rng: np.random.Generator, out_features: int, in_features: int, *,
                 density: float = 0.5, block_mask: np.ndarray | None = None, empty_rows=(), shift_range=(0, 30),
                 bias_scale: int = 5000, multiplier_range: tuple[int, int] | None = None, name: str = "layer",
                 **scales) -> BlockSparseLayer:
    """A seeded random int8 block-sparse layer — the one generator of engine tests, cosim tests and benches.

    ``block_mask`` (block_rows, block_cols) overrides ``density``; ``empty_rows`` then empties whole block
    rows. Bias is uniform in ±``bias_scale``, the multiplier in ``multiplier_range`` (half-open; default
    [0, 2^multiplier_bits)), the shift in ``shift_range`` (closed). ``scales`` (scale_in, scale_out,
    weight_scale) go to :meth:`BlockSparseLayer.from_dense`.
    """
    br, bc = spec.block.rows, spec.block.cols
    tiling = spec.tiling(out_features, in_features, layer=name)
    if block_mask is None:
        block_mask = rng.random((tiling.block_rows, tiling.block_cols)) < density
    block_mask = np.array(block_mask, dtype=bool)
    block_mask[list(empty_rows)] = False
    weight = rng.integers(-128, 128, (tiling.padded_out, tiling.padded_in))
    weight[weight == 0] = 1          # a kept block stays non-zero
    weight = weight * np.kron(block_mask, np.ones((br, bc), dtype=np.int64))
    weight = weight[:out_features, :in_features].astype(np.int8)
    bias = rng.integers(-bias_scale, bias_scale + 1, out_features)
    low, high = multiplier_range or (0, 1 << spec.numerics.multiplier_bits)
    multiplier = rng.integers(low, high, out_features)
    shift = rng.integers(shift_range[0], shift_range[1] + 1, out_features)
    return BlockSparseLayer.from_dense(name, weight, bias, multiplier, shift, spec, **scales)


def random_activations(rng: np.random.Generator, in_features: int, n_tokens: int) -> np.ndarray:
    return rng.integers(-128, 128, (in_features, n_tokens)).astype(np.int64)
