"""Shared test helpers. The seeded random layer itself lives in :mod:`blockforge_hw.testing` (benches use
it too); here are the settings tests share on top of it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from blockforge_hw.testing import random_layer

__all__ = ["image_layer"]

# The toy sentiment task of the pruning tests: a sentence of 3-8 words, all of one polarity.
WORDS = {1: "good great lovely fun happy superb brilliant warm".split(),
         0: "bad awful dull sad boring poor terrible cold".split()}


def image_layer(spec, name, out_features, in_features, density, rng, *, empty_rows=(), big_bias=False):
    """A seeded random layer ready for a ``.bfim`` image and the RTL: block density ``density`` (optionally
    some empty block rows), normalized multipliers, shifts 12..25, scales set; ``big_bias`` uses the
    spec's whole bias range."""
    bits = spec.numerics.multiplier_bits
    return random_layer(spec, rng, out_features, in_features, density=density, empty_rows=empty_rows,
                        bias_scale=spec.bias_limit if big_bias else 20_000,
                        multiplier_range=(1 << (bits - 1), 1 << bits), shift_range=(12, 25), name=name,
                        scale_in=0.05, scale_out=0.1, weight_scale=np.full(out_features, 0.01))


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory):
    """A GLUE-format SST-2 folder of the toy task: 96 train and 32 dev sentences, seeded."""
    root = tmp_path_factory.mktemp("glue") / "SST-2"
    root.mkdir()
    rng = random.Random(0)
    for name, n in (("train.tsv", 96), ("dev.tsv", 32)):
        lines = ["sentence\tlabel"]
        for i in range(n):
            label = i % 2
            lines.append(" ".join(rng.choice(WORDS[label]) for _ in range(rng.randint(3, 8))) + f"\t{label}")
        (root / name).write_text("\n".join(lines) + "\n")
    return root
