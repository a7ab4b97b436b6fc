"""BlockSparsifier (prepare / step / enforce / squash_mask) and the phase list of a Schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blockforge.prune.criterion import block_norms
from blockforge.prune.masking import hard_prune
from blockforge.prune.pattern import PrunableLayer, block_layout
from blockforge.prune.schedule import Schedule
from blockforge.prune.sparsifier import BlockSparsifier
from blockforge.spec import load_spec


def _layers(shapes, spec="tile8"):
    torch.manual_seed(0)
    return [PrunableLayer(f"l{i}", "linear", i, nn.Linear(shape[1], shape[0]), block_layout(load_spec(spec), shape))
            for i, shape in enumerate(shapes)]


def _zeros(layer):
    return int((block_norms(layer.weight.detach(), layer.layout) == 0).sum())


def test_step_prunes_a_growing_fraction_and_keeps_earlier_blocks_pruned():
    layers = _layers([(32, 48), (16, 40)])
    ratios = {"l0": 0.75, "l1": 0.5}
    sparsifier = BlockSparsifier().prepare(layers, ratios)
    previous = None
    for fraction in (0.25, 0.5, 1.0):
        masks = sparsifier.step(fraction)
        for layer in layers:
            expected = round(fraction * round(ratios[layer.name] * layer.layout.n_blocks))
            assert int((~masks[layer.name]).sum()) == _zeros(layer) == expected
            if previous is not None:
                assert not bool((~previous[layer.name] & masks[layer.name]).any())  # pruned stays pruned
        previous = masks


def test_held_blocks_stay_zero_through_training_until_squash():
    layers = _layers([(32, 48)])
    layer = layers[0]
    sparsifier = BlockSparsifier().prepare(layers, {"l0": 0.5})
    sparsifier.step()
    optimizer = torch.optim.AdamW(layer.module.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(3):
        layer.module(torch.randn(4, 48)).pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        sparsifier.enforce()
        assert _zeros(layer) == 24 // 2
    masks = sparsifier.squash_mask()
    assert masks["l0"].device.type == "cpu" and int((~masks["l0"]).sum()) == 12
    layer.module(torch.randn(4, 48)).pow(2).sum().backward()  # no hook after squash: the gradient is dense
    assert bool((layer.weight.grad != 0).all())


def test_full_step_matches_hard_prune():
    a, b = _layers([(40, 48), (96, 100)]), _layers([(40, 48), (96, 100)])
    ratios = {"l0": 0.6, "l1": 0.3}
    masks = BlockSparsifier().prepare(a, ratios).step(1.0)
    reference = hard_prune(b, ratios)
    for name in ratios:
        assert torch.equal(masks[name], reference[name])


@pytest.mark.parametrize("method, names", [
    ("bsp", ["dense", "bsp", "retrain"]), ("magnitude", ["dense"]), ("magnitude-retrain", ["dense", "retrain"]),
    ("magnitude-gradual", ["dense", "ramp", "retrain"])])
def test_phases_of_each_method(method, names):
    phases = Schedule(bsp_epochs=1.5).phases(method)
    assert list(phases) == names
    if "ramp" in phases or "bsp" in phases:
        middle = phases[names[1]]
        assert middle.epochs == 1.5 and middle.constant_lr and middle.index == 2
