"""Quantization: weights, requantization parameters and their error bound, bias, calibration."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockforge import reference
from blockforge.errors import SpecError, UsageError
from blockforge.quant import (DEFAULT_CALIBRATOR, ActivationObserver, parse_calibrator, quantize_linear, quantize_tensor, quantize_weight,
                              requant_params, requant_relative_error)
from blockforge.spec import load_spec

TILE8 = load_spec("tile8")


def test_weight_quantization_per_channel():
    seed = 11
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(16, 40))
    w[3] = 0.0                      # an all-zero (pruned) channel
    w[5, 10:20] = 0.0               # pruned weights inside a channel
    w_q, s_w = quantize_weight(w)
    assert w_q.dtype == np.int8
    assert s_w[3] == 0.0 and not w_q[3].any()
    assert not w_q[5, 10:20].any(), f"seed {seed}: pruned weights must stay exactly 0"
    for o in (0, 1, 5, 15):
        assert s_w[o] == np.abs(w[o]).max() / 127
        assert int(np.abs(w_q[o]).max()) == 127, f"seed {seed}: channel {o} must reach ±127"
    assert np.all(np.abs(w_q.astype(float) * s_w[:, None] - w) <= s_w[:, None] / 2 + 1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected_with_one_line(bad):
    w = np.ones((8, 8))
    w[2, 5] = bad
    with pytest.raises(UsageError, match=r"attn\.q\.weight\[2, 5\]") as info:
        quantize_linear("attn.q", w, None, 0.1, 0.1, TILE8)
    assert "\n" not in str(info.value)
    b = np.zeros(8)
    b[1] = bad
    with pytest.raises(UsageError, match=r"attn\.q\.bias\[1\]"):
        quantize_linear("attn.q", np.ones((8, 8)), b, 0.1, 0.1, TILE8)
    with pytest.raises(UsageError, match="s_x"):
        quantize_linear("attn.q", np.ones((8, 8)), None, bad, 0.1, TILE8)


def test_untileable_shape_is_a_spec_error():
    with pytest.raises(SpecError, match="max_in_features"):
        quantize_linear("ffn.out", np.ones((8, 4000)), None, 0.1, 0.1, TILE8)


@pytest.mark.parametrize("bits", [2, 8, 15, 16, 24, 31])
def test_requant_params_normalized_and_error_bound(bits):
    seed = 100 + bits
    numerics = dataclasses.replace(TILE8.numerics, multiplier_bits=bits)
    rng = np.random.default_rng(seed)
    # Ratios over the range where normalization is possible: 2^(bits-1-62) .. 2^bits.
    exponents = rng.uniform(bits - 1 - 62 + 1, bits - 0.01, size=5000)
    ratios = 2.0 ** exponents
    m, s = requant_params(ratios, numerics)
    assert m.dtype == np.int64 and s.dtype == np.int64
    assert np.all((m >= 2 ** (bits - 1)) & (m < 2 ** bits)), f"seed {seed}: M not normalized"
    assert np.all((s >= 0) & (s <= 62)), f"seed {seed}"
    error = requant_relative_error(ratios, m, s)
    assert error.max() <= 2.0 ** -bits, f"seed {seed}: max relative error {error.max()} > 2^-{bits}"


def test_requant_params_edges():
    n = TILE8.numerics                                          # 16-bit multiplier
    assert requant_params(1.0, n) == (32768, 15)
    assert requant_params(0.75, n) == (49152, 16)
    assert requant_params(0.0, n) == (0, 0)
    assert requant_params(1 - 2 ** -20, n) == (32768, 15)       # rounds up to 2^16: renormalized
    m, s = requant_params(2.0 ** -60, n)                        # needs S = 75: capped at 62
    assert s == 62 and m == 4
    assert requant_params(1e-30, n) == (0, 0)                   # underflows to zero
    assert requant_params(1e6, n) == (65535, 0)                 # saturated multiplier
    assert all(isinstance(v, int) for v in requant_params(0.3, n))
    with pytest.raises(UsageError):
        requant_params(-0.5, n)
    with pytest.raises(UsageError):
        requant_params(float("nan"), n)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e4, allow_nan=False))
def test_requant_params_hypothesis(ratio):
    m, s = requant_params(ratio, TILE8.numerics)
    assert 2 ** 15 <= m < 2 ** 16 and 0 <= s <= 62
    assert abs(m * 2.0 ** -s - ratio) <= ratio * 2.0 ** -16


def test_quantize_tensor_rounds_half_even_and_saturates():
    x = np.array([0.25, 0.75, -0.25, -0.75, 0.5, 1.5, 2.5, -0.5, 1000.0, -1000.0])
    assert quantize_tensor(x, 0.5).tolist() == [0, 2, 0, -2, 1, 3, 5, -1, 127, -128]
    with pytest.raises(UsageError):
        quantize_tensor(x, 0.0)


def test_quantize_linear_keeps_pruned_blocks_out_and_matches_float():
    seed = 21
    rng = np.random.default_rng(seed)
    out_features, in_features = 40, 48
    w = rng.normal(scale=0.05, size=(out_features, in_features))
    w[0:8, 8:16] = 0.0             # a pruned 8x8 block
    w[16:24, :] = 0.0              # a whole pruned block row
    b = rng.normal(scale=0.1, size=out_features)
    x = rng.normal(size=(in_features, 32))
    s_x = np.abs(x).max() / 127
    y_float = w @ x + b[:, None]
    s_y = np.abs(y_float).max() / 127
    layer = quantize_linear("l", w, b, s_x, s_y, TILE8)
    assert layer.nnz_blocks == 5 * 6 - 1 - 6
    assert not layer.block_mask()[0, 1] and not layer.block_mask()[2].any()
    y_q, _ = reference.linear(layer, quantize_tensor(x, s_x), TILE8.numerics)
    error = np.abs(y_q * s_y - y_float)
    # weight (≤ s_w/2 per weight) + activation (≤ s_x/2) rounding over 48 products, plus one output step.
    assert error.max() < 3 * s_y, f"seed {seed}: max error {error.max() / s_y:.2f} output steps"
    # A fully pruned channel still outputs its bias, quantized to the output scale.
    assert np.array_equal(y_q[16:24], np.repeat(np.rint(b[16:24] / s_y)[:, None], 32, axis=1).astype(np.int64))


def test_zero_channel_without_bias_gets_m_and_s_zero():
    w = np.ones((8, 8))
    w[2] = 0.0
    layer = quantize_linear("l", w, np.zeros(8), 0.1, 0.2, TILE8)
    assert layer.multiplier[2] == 0 and layer.shift[2] == 0 and layer.bias[2] == 0
    assert layer.weight_scale[2] == 0.0


def test_bias_is_clamped_to_the_spec_limit():
    w = np.full((8, 8), 1e-6)
    layer = quantize_linear("l", w, np.full(8, 1e6), 1e-3, 1.0, TILE8)
    assert np.all(layer.bias[:8] == TILE8.bias_limit)


# --------------------------------------------------------------------------------------------------
# Calibration.

def test_observer_rebinning_keeps_counts_and_max():
    seed = 31
    rng = np.random.default_rng(seed)
    obs = ActivationObserver(bins=256)
    batches = [rng.normal(scale=s, size=1000) for s in (0.1, 1.0, 5.0, 0.5, 40.0)]
    for batch in batches:
        obs.observe(batch)
    everything = np.abs(np.concatenate(batches))
    assert obs.count == everything.size == int(obs.counts.sum())
    assert obs.threshold("max") == pytest.approx(everything.max(), rel=1e-6)
    # The histogram agrees with a one-shot histogram over the final range.
    direct = np.minimum((everything / obs.width).astype(np.int64), obs.bins - 1)
    assert np.abs(np.bincount(direct, minlength=obs.bins) - obs.counts).sum() <= 2, f"seed {seed}"


def test_percentile_calibrator_matches_numpy_within_a_bin():
    seed = 41
    rng = np.random.default_rng(seed)
    values = rng.standard_t(3, size=200_000)
    obs = ActivationObserver()
    for chunk in np.array_split(values, 7):
        obs.observe(chunk)
    expected = np.percentile(np.abs(values), 99.9)
    assert abs(obs.threshold("percentile", percentile=99.9) - expected) <= 1.01 * obs.width, f"seed {seed}"


def test_mse_calibrator_clips_heavy_tails_but_not_uniform_data():
    seed = 51
    rng = np.random.default_rng(seed)
    uniform = ActivationObserver()
    uniform.observe(rng.uniform(-1, 1, size=100_000))
    assert uniform.threshold("mse") > 0.95, f"seed {seed}"
    data = rng.standard_t(2, size=100_000)
    heavy = ActivationObserver()
    heavy.observe(data)
    t = heavy.threshold("mse")

    def mse(threshold):
        step = threshold / 127
        return np.mean((np.clip(np.rint(data / step), -127, 127) * step - data) ** 2)
    grid = np.linspace(0.5, np.abs(data).max(), 400)
    best = min(mse(g) for g in grid)
    assert t < 0.9 * np.abs(data).max(), f"seed {seed}: threshold {t} does not clip"
    assert mse(t) <= 1.15 * best, f"seed {seed}: mse {mse(t)} vs best on a grid {best}"


def test_observer_edge_cases():
    obs = ActivationObserver()
    with pytest.raises(UsageError, match="no values"):
        obs.scale()
    obs.observe(np.zeros(10))
    assert obs.scale("mse") == 1.0
    obs.observe(np.array([0.5, -2.0]))
    assert math.isclose(obs.scale("max"), 2.0 / 127)
    with pytest.raises(UsageError, match="unknown calibrator"):
        obs.scale("entropy")
    with pytest.raises(UsageError, match="non-finite"):
        obs.observe(np.array([np.nan]))


def test_calibration_recipes():
    assert parse_calibrator("mse") == ("mse", "mse")
    assert parse_calibrator("mse/percentile") == ("mse", "percentile")
    assert parse_calibrator(DEFAULT_CALIBRATOR) == ("mse", "percentile")
    for bad in ("kl", "mse/", "mse/max/max", "/", ""):
        with pytest.raises(UsageError, match="unknown calibrator"):
            parse_calibrator(bad)
