"""Blocks over weights (padding rule), block norms, and the prunable-linear role table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blockforge.errors import SpecError, UsageError
from blockforge.prune.criterion import block_norms
from blockforge.prune.pattern import block_layout, expand_block_mask, from_blocks, prunable_layers, to_blocks
from blockforge.prune.roles import find_prunable_linears
from blockforge.spec import load_spec


@pytest.mark.parametrize("spec_name,shape", [("tile8", (24, 40)), ("tile8", (20, 30)), ("row1x48", (7, 100)),
                                             ("tile16", (33, 17))])
def test_blocks_follow_the_padding_rule(spec_name, shape):
    spec = load_spec(spec_name)
    br, bc = spec.block.rows, spec.block.cols
    layout = block_layout(spec, shape)
    w = torch.randn(shape, dtype=torch.float64)
    blocks = to_blocks(w, layout)
    rows, cols = -(-shape[0] // br), -(-shape[1] // bc)
    assert blocks.shape == (rows, cols, br, bc)
    padded = torch.zeros(rows * br, cols * bc, dtype=torch.float64)
    padded[: shape[0], : shape[1]] = w
    for r in range(rows):
        for c in range(cols):
            assert torch.equal(blocks[r, c], padded[r * br:(r + 1) * br, c * bc:(c + 1) * bc])
    assert torch.equal(from_blocks(blocks, layout), w)
    norms = block_norms(w, layout)
    expected = torch.tensor([[padded[r * br:(r + 1) * br, c * bc:(c + 1) * bc].norm().item() for c in range(cols)]
                             for r in range(rows)], dtype=torch.float64)
    torch.testing.assert_close(norms, expected, rtol=0, atol=1e-12)
    mask = torch.rand(rows, cols) > 0.5
    full = expand_block_mask(mask, layout)
    assert full.shape == shape
    assert torch.equal(full, padded.new_ones(padded.shape).bool().where(
        mask.repeat_interleave(br, 0).repeat_interleave(bc, 1), False)[: shape[0], : shape[1]])


def test_spec_that_cannot_take_the_layer_raises():
    with pytest.raises(SpecError, match="max_in_features"):
        block_layout(load_spec("tile8"), (8, 4096), layer="encoder.layer.0.intermediate.dense")


def _tiny(model_type: str):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    kwargs = dict(vocab_size=64, max_position_embeddings=40, num_labels=2)
    if model_type == "distilbert":
        config = AutoConfig.for_model("distilbert", dim=32, n_layers=2, n_heads=2, hidden_dim=48, **kwargs)
    else:
        config = AutoConfig.for_model(model_type, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=48, **kwargs)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_role_table_finds_the_six_encoder_linears_per_layer(model_type):
    model = _tiny(model_type)
    found = find_prunable_linears(model)
    assert len(found) == 12
    roles = sorted({(f.layer_index, f.role) for f in found})
    assert roles == [(i, r) for i in (0, 1) for r in sorted(
        ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"])]
    names = " ".join(f.name for f in found)
    for excluded in ("classifier", "pooler", "embeddings", "pre_classifier"):
        assert excluded not in names
    shapes = {f.role: tuple(f.module.weight.shape) for f in found}
    assert shapes["ffn_in"] == (48, 32) and shapes["ffn_out"] == (32, 48) and shapes["query"] == (32, 32)
    layers = prunable_layers(model, load_spec("tile16"))
    assert {l.layout.grid for l in layers} == {(2, 2), (3, 2), (2, 3)}


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = nn.Embedding(10, 16)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)) for _ in range(2))
        self.pooler = nn.Linear(16, 16)


class _Classifier(nn.Module):
    """A model of a type the role table does not know."""

    base_model_prefix = "encoder"

    def __init__(self, with_linears: bool = True):
        super().__init__()
        self.config = type("Config", (), {"model_type": "mystery"})()
        self.encoder = _Encoder() if with_linears else nn.Sequential(nn.Embedding(10, 16), nn.LayerNorm(16))
        self.classifier = nn.Linear(16, 2)

    @property
    def base_model(self):
        return self.encoder


def test_generic_fallback_takes_encoder_linears_only():
    found = find_prunable_linears(_Classifier())
    assert [f.name for f in found] == ["encoder.blocks.0.0", "encoder.blocks.0.2", "encoder.blocks.1.0",
                                       "encoder.blocks.1.2"]
    assert [f.layer_index for f in found] == [0, 0, 1, 1]


def test_model_without_linears_is_a_usage_error():
    with pytest.raises(UsageError, match="'mystery'.*no linear layers to prune"):
        find_prunable_linears(_Classifier(with_linears=False))
