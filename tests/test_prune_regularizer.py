"""Reweighted group Lasso: gradient, proximal step, budget, λ calibration."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from blockforge.prune.criterion import block_norms
from blockforge.prune.pattern import PrunableLayer, block_layout, to_blocks
from blockforge.prune.regularizer import (ReweightedGroupLasso, adam_block_scale, group_lasso_gradient,
                                          group_lasso_penalty, group_soft_threshold, reweighting_factors)
from blockforge.prune.schedule import calibrate_lambda, shrink_trajectory_end
from blockforge.spec import load_spec


def _layer(shape, spec="tile8", seed=0, name="l"):
    torch.manual_seed(seed)
    lin = nn.Linear(shape[1], shape[0], bias=False).double()
    return PrunableLayer(name, "linear", 0, lin, block_layout(load_spec(spec), shape))


@pytest.mark.parametrize("spec,shape", [("tile8", (24, 40)), ("tile8", (20, 30)), ("row1x48", (5, 100))])
def test_gradient_matches_autograd_of_the_formula(spec, shape):
    layer = _layer(shape, spec)
    alpha = reweighting_factors(layer.weight, layer.layout, 1e-3)
    w = layer.weight.detach().clone().requires_grad_(True)
    # the formula written out directly, block by block
    br, bc = layer.layout.block_shape
    padded = torch.nn.functional.pad(w, (0, layer.layout.tiling.pad_in, 0, layer.layout.tiling.pad_out))
    direct = sum(0.3 * alpha[r, c] * padded[r * br:(r + 1) * br, c * bc:(c + 1) * bc].norm()
                 for r in range(alpha.shape[0]) for c in range(alpha.shape[1]))
    (auto,) = torch.autograd.grad(direct, w)
    torch.testing.assert_close(group_lasso_gradient(w, layer.layout, alpha, 0.3), auto, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(group_lasso_penalty(w, layer.layout, alpha, 0.3), direct, rtol=1e-12, atol=0)


def test_reweighting_factors():
    layer = _layer((16, 16))
    alpha = reweighting_factors(layer.weight, layer.layout, 0.01)
    torch.testing.assert_close(alpha, 1 / (block_norms(layer.weight.detach(), layer.layout) + 0.01))
    assert not alpha.requires_grad


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.floats(0.0, 3.0))
def test_soft_threshold_is_the_proximal_operator(seed, t):
    gen = torch.Generator().manual_seed(seed)
    layout = block_layout(load_spec("tile8"), (16, 24))
    w = torch.randn(16, 24, generator=gen, dtype=torch.float64) * torch.rand(1, generator=gen, dtype=torch.float64)
    thresholds = t * torch.rand(layout.grid, generator=gen, dtype=torch.float64)
    v = group_soft_threshold(w, layout, thresholds)
    norms = block_norms(w, layout)
    vb, wb = to_blocks(v, layout), to_blocks(w, layout)
    for r in range(layout.grid[0]):
        for c in range(layout.grid[1]):
            if norms[r, c] <= thresholds[r, c]:
                assert torch.count_nonzero(vb[r, c]) == 0  # exactly zero
            else:
                torch.testing.assert_close(vb[r, c], wb[r, c] * (1 - thresholds[r, c] / norms[r, c]))

    def objective(x):
        return 0.5 * (x - w).pow(2).sum() + (thresholds * block_norms(x, layout)).sum()

    best = objective(v)
    for _ in range(5):
        assert objective(v + 1e-3 * torch.randn(v.shape, generator=gen, dtype=torch.float64)) >= best - 1e-12


def test_proximal_step_shrinks_by_eta_lambda_alpha_and_zeroes_small_blocks():
    layer = _layer((16, 16))
    with torch.no_grad():
        layer.weight[:8, :8] *= 0.01   # one small block
    before = block_norms(layer.weight.detach(), layer.layout).clone()
    reg = ReweightedGroupLasso([layer], lam=0.5, epsilon=1e-3)
    reg.proximal_step(0.05)
    after = block_norms(layer.weight.detach(), layer.layout)
    expected = (before - 0.05 * 0.5 / (before + 1e-3)).clamp_min(0)
    torch.testing.assert_close(after, expected)
    assert after[0, 0] == 0 and torch.count_nonzero(layer.weight[:8, :8]) == 0


def test_budget_caps_zero_blocks_and_freezes_the_layer():
    layer = _layer((32, 32), seed=3)
    reg = ReweightedGroupLasso([layer], lam=1.0, epsilon=1e-3, budget={"l": 5})
    norms = block_norms(layer.weight.detach(), layer.layout).clone()
    reg.proximal_step(10.0)  # would zero everything
    zero = block_norms(layer.weight.detach(), layer.layout) == 0
    assert int(zero.sum()) == 5
    smallest = torch.argsort(norms.flatten())[:5]
    assert zero.flatten()[smallest].all()
    kept = layer.weight.detach().clone()
    reg.reweight()
    reg.proximal_step(10.0)  # frozen: zero blocks stay zero, others are not shrunk any more
    torch.testing.assert_close(layer.weight.detach(), kept, rtol=0, atol=0)
    with torch.no_grad():
        layer.weight.add_(0.1)
    reg.proximal_step(10.0)
    assert torch.equal(block_norms(layer.weight.detach(), layer.layout) == 0, zero)


@pytest.mark.parametrize("period", [1, 4, 100])
def test_calibrated_lambda_zeroes_exactly_the_boundary_block(period):
    steps = [1e-4] * 50
    lam = calibrate_lambda(0.3, steps, period, 1e-3)
    assert shrink_trajectory_end(0.3, lam, steps, period, 1e-3) == 0.0
    assert shrink_trajectory_end(0.3, lam * 0.98, steps, period, 1e-3) > 0.0
    assert shrink_trajectory_end(0.25, lam, steps, period, 1e-3) == 0.0  # smaller blocks go too


def test_proximal_step_is_vectorized_and_matches_a_per_block_loop():
    layer = _layer((40, 24), "tile8", seed=7)
    w0 = layer.weight.detach().clone()
    reg = ReweightedGroupLasso([layer], lam=0.02, epsilon=1e-3)
    reg.proximal_step(1.0)
    lay = layer.layout
    expected = torch.zeros_like(w0)
    for r in range(lay.grid[0]):
        for c in range(lay.grid[1]):
            blk = w0[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8]
            t = 0.02 / (blk.norm() + 1e-3)
            expected[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = blk * max(0.0, 1 - float(t / blk.norm()))
    torch.testing.assert_close(layer.weight.detach(), expected)


def test_adam_metric_shrinks_blocks_with_small_gradients_faster():
    layer = _layer((16, 16))
    opt = torch.optim.AdamW([layer.weight], lr=1e-3)
    assert adam_block_scale(layer.weight, layer.layout, opt) is None  # no second moments yet
    grad = torch.ones(16, 16, dtype=torch.float64)
    grad[:8, :8] = 0.01   # block (0, 0) gets a 100x smaller gradient
    grad[8:, 8:] = 10.0   # block (1, 1) a 10x larger one
    layer.weight.grad = grad
    opt.step()
    scale = adam_block_scale(layer.weight, layer.layout, opt)
    # d = |g| + eps after one bias-corrected step; s = median(d)/d, clamped to [0.2, 5]
    d = torch.tensor([[0.01, 1.0], [1.0, 10.0]], dtype=torch.float64) + 1e-8
    torch.testing.assert_close(scale, (d.median() / d).clamp(0.2, 5.0))
    norms = block_norms(layer.weight.detach(), layer.layout).clone()
    reg = ReweightedGroupLasso([layer], lam=0.01, epsilon=1e-3)
    reg.proximal_step(1.0, {"l": scale})
    shrink = norms - block_norms(layer.weight.detach(), layer.layout)
    torch.testing.assert_close(shrink, (0.01 / (norms + 1e-3) * scale).clamp(max=norms))


def test_cap_leaves_blocks_above_the_quantile_untouched():
    layer = _layer((32, 32), seed=5)
    norms = block_norms(layer.weight.detach(), layer.layout).clone()
    reg = ReweightedGroupLasso([layer], lam=1e-3, epsilon=1e-3, cap={"l": 0.5})
    theta = torch.quantile(norms.flatten(), 0.5)
    assert torch.equal(reg.alpha["l"] == 0, norms > theta)
    reg.proximal_step(1.0)
    after = block_norms(layer.weight.detach(), layer.layout)
    assert torch.equal(after[norms > theta], norms[norms > theta])
    assert (after[norms <= theta] < norms[norms <= theta]).all()
