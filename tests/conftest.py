"""Shared test helpers. The seeded random layer itself lives in :mod:`blockforge_hw.testing` (benches use
it too); here are the settings tests share on top of it."""

from __future__ import annotations

import numpy as np

from blockforge_hw.testing import random_layer

__all__ = ["image_layer"]


def image_layer(spec, name, out_features, in_features, density, rng, *, empty_rows=(), big_bias=False):
    """A seeded random layer ready for a ``.bfim`` image and the RTL: block density ``density`` (optionally
    some empty block rows), normalized multipliers, shifts 12..25, scales set; ``big_bias`` uses the
    spec's whole bias range."""
    bits = spec.numerics.multiplier_bits
    return random_layer(spec, rng, out_features, in_features, density=density, empty_rows=empty_rows,
                        bias_scale=spec.bias_limit if big_bias else 20_000,
                        multiplier_range=(1 << (bits - 1), 1 << bits), shift_range=(12, 25), name=name,
                        scale_in=0.05, scale_out=0.1, weight_scale=np.full(out_features, 0.01))

