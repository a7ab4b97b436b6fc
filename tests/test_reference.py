"""The golden integer model: hand-worked rounding vectors, saturation, and tiled == dense == a
pure-Python oracle on random block-sparse layers of every shipped spec."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from blockforge import reference
from blockforge.layer import BlockSparseLayer
from blockforge.spec import load_spec, shipped_spec_names

SPECS = shipped_spec_names()

# (value, shift) -> expected result per mode; worked by hand (x / 2^s, then the mode's rule).
ROUNDING_VECTORS = [
    # v,   s,  half_up, half_even, truncate        exact quotient
    (5,    2,  1,   1,   1),                       # 1.25
    (6,    2,  2,   2,   1),                       # 1.5   tie
    (7,    2,  2,   2,   1),                       # 1.75
    (10,   2,  3,   2,   2),                       # 2.5   tie: up vs even
    (14,   2,  4,   4,   3),                       # 3.5   tie, even is up
    (2,    2,  1,   0,   0),                       # 0.5   tie
    (-2,   2,  0,   0,  -1),                       # -0.5  tie: half_up goes towards +inf
    (-5,   2, -1,  -1,  -2),                       # -1.25
    (-6,   2, -1,  -2,  -2),                       # -1.5  tie
    (-7,   2, -2,  -2,  -2),                       # -1.75
    (-10,  2, -2,  -2,  -3),                       # -2.5  tie
    (-14,  2, -3,  -4,  -4),                       # -3.5  tie
    (123,  0, 123, 123, 123),                      # shift 0 is the identity in every mode
    (-123, 0, -123, -123, -123),
    (1,    1,  1,   0,   0),                       # 0.5
    (3,    1,  2,   2,   1),                       # 1.5
    (2 ** 61, 62, 1, 0, 0),                        # 0.5 at the largest shift
    (-(2 ** 61), 62, 0, 0, -1),                    # -0.5 at the largest shift
    (3 * 2 ** 60, 62, 1, 1, 0),                    # 0.75
]


@pytest.mark.parametrize("mode_index,mode", list(enumerate(("half_up", "half_even", "truncate"))))
def test_round_shift_hand_worked_vectors(mode_index, mode):
    values = np.array([v for v, *_ in ROUNDING_VECTORS], dtype=np.int64)
    shifts = np.array([s for _, s, *_ in ROUNDING_VECTORS], dtype=np.int64)
    expected = np.array([row[2 + mode_index] for row in ROUNDING_VECTORS], dtype=np.int64)
    got = reference.round_shift(values, shifts, mode)
    for v, s, e, g in zip(values, shifts, expected, got):
        assert int(g) == int(e), f"{mode}: round_shift({v}, {s}) = {g}, expected {e}"


# (acc, M, S) -> y per mode, int8 saturating; hand-worked: acc·M / 2^S.
REQUANT_VECTORS = [
    (300, 32768, 17, 75, 75, 75),        # 300·2^15/2^17 = 75 exactly
    (-36, 3, 3, -13, -14, -14),          # -108/8 = -13.5  tie
    (-35, 3, 3, -13, -13, -14),          # -105/8 = -13.125
    (-37, 3, 3, -14, -14, -14),          # -111/8 = -13.875
    (20, 5, 3, 13, 12, 12),              # 100/8 = 12.5    tie
    (1000, 1, 0, 127, 127, 127),         # saturates high
    (-1000, 1, 0, -128, -128, -128),     # saturates low
    (255, 1, 1, 127, 127, 127),          # 127.5 -> 128 saturates in half_up; 128 even -> saturates; 127
    (-257, 1, 1, -128, -128, -128),      # -128.5 -> -128 / -128 / -129 -> -128
    (77, 0, 0, 0, 0, 0),                 # M = 0: an empty channel with zero bias outputs 0
]


@pytest.mark.parametrize("mode_index,mode", list(enumerate(("half_up", "half_even", "truncate"))))
def test_requantize_hand_worked_vectors_with_saturation(mode_index, mode):
    numerics = dataclasses.replace(load_spec("tile8").numerics, rounding=mode)
    acc = np.array([[row[0]] for row in REQUANT_VECTORS], dtype=np.int64)
    m = np.array([row[1] for row in REQUANT_VECTORS], dtype=np.int64)
    s = np.array([row[2] for row in REQUANT_VECTORS], dtype=np.int64)
    got = reference.requantize(acc, m, s, numerics)[:, 0]
    for row, g in zip(REQUANT_VECTORS, got):
        assert int(g) == row[3 + mode_index], f"{mode}: requantize{row[:3]} = {g}, expected {row[3 + mode_index]}"


def test_saturate_clamps_or_wraps():
    values = np.array([-300, -129, -128, 0, 127, 128, 200, 300])
    assert reference.saturate(values, 8, True).tolist() == [-128, -128, -128, 0, 127, 127, 127, 127]
    assert reference.saturate(values, 8, False).tolist() == [-44, 127, -128, 0, 127, -128, -56, 44]


def test_round_shift_rejects_bad_shift_and_mode():
    with pytest.raises(ValueError):
        reference.round_shift(np.array([1]), 63, "half_up")
    with pytest.raises(ValueError):
        reference.round_shift(np.array([1]), 1, "stochastic")


# --------------------------------------------------------------------------------------------------
# Random layers: tiled == dense == pure-Python oracle.

def random_layer(spec, rng, out_features, in_features, density, *, empty_rows=0, name="layer"):
    """A random quantized layer with the requested block density and some forced empty block rows."""
    br, bc = spec.block.rows, spec.block.cols
    tiling = spec.tiling(out_features, in_features)
    keep = rng.random((tiling.block_rows, tiling.block_cols)) < density
    if empty_rows:
        keep[rng.choice(tiling.block_rows, size=min(empty_rows, tiling.block_rows), replace=False)] = False
    mask = np.kron(keep, np.ones((br, bc), dtype=bool))[:out_features, :in_features]
    weight = rng.integers(-127, 128, size=(out_features, in_features)).astype(np.int8) * mask
    bias = rng.integers(-2 ** 20, 2 ** 20, size=out_features)
    multiplier = rng.integers(2 ** (spec.numerics.multiplier_bits - 1), 2 ** spec.numerics.multiplier_bits,
                              size=out_features)
    shift = rng.integers(18, 32, size=out_features)
    return BlockSparseLayer.from_dense(name, weight.astype(np.int8), bias, multiplier, shift, spec,
                                       scale_in=0.02, scale_out=0.05,
                                       weight_scale=rng.random(out_features) / 100)


def oracle_linear(layer, x, numerics):
    """Python-int loops over the dense weight; rounding by the textbook integer formulas."""
    w = layer.to_dense().tolist()
    out = []
    for o in range(layer.out_features):
        row = []
        m, s = int(layer.multiplier[o]), int(layer.shift[o])
        for n in range(x.shape[1]):
            acc = int(layer.bias[o]) + sum(w[o][k] * int(x[k, n]) for k in range(layer.in_features))
            v = acc * m
            if s == 0:
                q = v
            elif numerics.rounding == "half_up":
                q = (v + (1 << (s - 1))) >> s
            elif numerics.rounding == "truncate":
                q = v >> s
            else:
                q, r = divmod(v, 1 << s)
                half = 1 << (s - 1)
                q += 1 if (r > half or (r == half and q % 2)) else 0
            row.append(max(-128, min(127, q)) if numerics.saturate else ((q + 128) % 256) - 128)
        out.append(row)
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("spec_name", SPECS)
@pytest.mark.parametrize("rounding", ["half_up", "half_even", "truncate"])
def test_tiled_equals_dense_and_oracle(spec_name, rounding):
    seed = 1000 + SPECS.index(spec_name) * 10 + ["half_up", "half_even", "truncate"].index(rounding)
    rng = np.random.default_rng(seed)
    spec = load_spec(spec_name)
    numerics = dataclasses.replace(spec.numerics, rounding=rounding)
    for out_features, in_features, density, empty_rows in ((37, 101, 0.5, 2), (16, 96, 1.0, 0),
                                                           (24, 50, 0.0, 0), (9, 200, 0.3, 1)):
        layer = random_layer(spec, rng, out_features, in_features, density, empty_rows=empty_rows)
        x = rng.integers(-128, 128, size=(in_features, 5))
        y, acc = reference.linear(layer, x, numerics)
        y_dense, acc_dense = reference.linear_dense(layer, x, numerics)
        where = f"seed {seed}, {spec_name}, {out_features}x{in_features} density {density}"
        assert np.array_equal(acc, acc_dense), where
        assert np.array_equal(y, y_dense), where
        assert np.array_equal(y, oracle_linear(layer, x, numerics)), where


def test_int64_fallback_matches_float_path():
    """Out-of-range activations force the int64 path; both paths equal the dense product."""
    seed = 7
    rng = np.random.default_rng(seed)
    spec = load_spec("tile8")
    layer = random_layer(spec, rng, 32, 64, 0.6)
    big = rng.integers(-2 ** 40, 2 ** 40, size=(64, 3))
    small = rng.integers(-128, 128, size=(64, 3))
    for x in (big, small):
        expected = layer.to_dense().astype(object) @ x.astype(object) + layer.bias[:32, None].astype(object)
        got = reference.accumulate_tiled(layer, x)[:32]
        assert got.tolist() == expected.tolist(), f"seed {seed}"


def test_linear_rejects_bad_activations():
    spec = load_spec("tile8")
    layer = random_layer(spec, np.random.default_rng(3), 8, 16, 1.0)
    with pytest.raises(ValueError, match="shape"):
        reference.linear(layer, np.zeros((15, 2), dtype=np.int64), spec.numerics)
    with pytest.raises(ValueError, match="integers"):
        reference.linear(layer, np.zeros((16, 2)), spec.numerics)


def test_layer_macs_counts_stored_tiles():
    spec = load_spec("tile8")
    layer = random_layer(spec, np.random.default_rng(4), 64, 64, 0.5)
    sparse, dense = reference.layer_macs(layer, 10)
    assert sparse == layer.nnz_blocks * 64 * 10
    assert dense == 64 * 64 * 10
