"""Hard pruning to an exact block count, and masks that survive retraining exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blockforge.prune.criterion import block_norms
from blockforge.prune.masking import MaskEnforcer, hard_prune, lowest_blocks_mask, zero_block_counts
from blockforge.prune.pattern import PrunableLayer, block_layout, expand_block_mask
from blockforge.prune.schedule import resolve_ratios
from blockforge.spec import load_spec


def _layers(shapes, spec="tile8"):
    torch.manual_seed(0)
    out = []
    for i, shape in enumerate(shapes):
        lin = nn.Linear(shape[1], shape[0])
        out.append(PrunableLayer(f"l{i}", "linear", i, lin, block_layout(load_spec(spec), shape)))
    return out


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.8, 0.97])
@pytest.mark.parametrize("spec", ["tile8", "row1x48"])
def test_hard_prune_hits_the_target_within_one_block(ratio, spec):
    layers = _layers([(40, 48), (20, 30), (96, 100)], spec)
    norms = {l.name: block_norms(l.weight.detach(), l.layout) for l in layers}
    masks = hard_prune(layers, resolve_ratios([l.name for l in layers], ratio))
    zeros = zero_block_counts(layers)
    for layer in layers:
        n = layer.layout.n_blocks
        assert abs(zeros[layer.name] - ratio * n) <= 1 if ratio else zeros[layer.name] == 0
        assert int((~masks[layer.name]).sum()) == zeros[layer.name]
        pruned = norms[layer.name][~masks[layer.name]]
        kept = norms[layer.name][masks[layer.name]]
        if len(pruned) and len(kept):
            assert pruned.max() <= kept.min()  # the lowest-norm blocks went


def test_lowest_blocks_mask_breaks_ties_by_index():
    mask = lowest_blocks_mask(torch.zeros(2, 3), 2)
    assert mask.tolist() == [[False, False, True], [True, True, True]]


def test_masks_survive_retraining_exactly():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 24))
    spec = load_spec("tile8")
    layers = [PrunableLayer(str(i), "linear", 0, model[i], block_layout(spec, tuple(model[i].weight.shape)))
              for i in (0, 2)]
    masks = hard_prune(layers, {"0": 0.5, "2": 0.75})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    with MaskEnforcer(layers, masks) as enforcer:
        for _ in range(12):
            x = torch.randn(16, 24)
            loss = (model(x) - x.flip(1)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            enforcer.apply()
            for layer in layers:
                pruned = ~expand_block_mask(masks[layer.name], layer.layout)
                assert torch.count_nonzero(layer.weight.detach()[pruned]) == 0
                assert (layer.weight.detach()[~pruned] != 0).all()
    # the optimizer's moments of pruned weights stayed zero too (gradients were masked)
    state = opt.state[model[0].weight]
    pruned = ~expand_block_mask(masks["0"], layers[0].layout)
    assert torch.count_nonzero(state["exp_avg"][pruned]) == 0
