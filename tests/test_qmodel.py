"""The PyTorch integer path: calibrate, quantize, swap linears, record exact int8 traffic, swap backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blockforge import reference
from blockforge.errors import UsageError
from blockforge.qmodel import (QuantizedLinear, Recorder, integer_model, quantize_model, reference_backend)
from blockforge.spec import load_spec

transformers = pytest.importorskip("transformers")


def tiny_bert(seed: int = 0, model_type: str = "bert"):
    torch.manual_seed(seed)
    if model_type == "bert":
        config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, max_position_embeddings=64, num_labels=2)
        return transformers.BertForSequenceClassification(config).eval()
    config = transformers.DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                           max_position_embeddings=64, num_labels=2)
    return transformers.DistilBertForSequenceClassification(config).eval()


def random_batches(seed: int, n: int = 3, batch: int = 4, length: int = 12):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1, 120, (batch, length), generator=g)
        mask = torch.ones_like(ids)
        mask[0, length // 2:] = 0                      # some padding, like real batches
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


@pytest.mark.parametrize("model_type,n_layers", [("bert", 12), ("distilbert", 12)])
def test_integer_model_records_exact_int8_traffic(model_type, n_layers):
    seed = 3
    model = tiny_bert(seed, model_type)
    spec = load_spec("tile8")
    quantized = quantize_model(model, spec, random_batches(seed))
    assert len(quantized.layers) == n_layers
    assert set(quantized.roles.values()) == {"query", "key", "value", "attention_output", "ffn_in", "ffn_out"}
    recorder = Recorder()
    qmodel = integer_model(model, quantized, recorder=recorder)
    assert sum(isinstance(m, QuantizedLinear) for m in qmodel.modules()) == n_layers
    assert not any(isinstance(m, QuantizedLinear) for m in model.modules()), "the float model must stay float"
    batch = random_batches(seed + 1, n=1)[0]
    with torch.no_grad():
        float_logits = model(**batch).logits
        int_logits = qmodel(**batch).logits
    assert len(recorder.calls) == n_layers
    for call in recorder.calls:
        layer = quantized.layer(call.layer)
        assert call.x_q.dtype == np.int8 and call.y_q.dtype == np.int8
        assert call.x_q.shape == (layer.in_features, 4 * 12)
        replay, _ = reference.linear(layer, call.x_q, spec.numerics)
        dense, _ = reference.linear_dense(layer, call.x_q, spec.numerics)
        assert np.array_equal(replay, call.y_q), f"seed {seed}: {call.layer}"
        assert np.array_equal(dense, call.y_q), f"seed {seed}: {call.layer}"
    # int8 everywhere in the encoder still tracks the float model closely on a random tiny model.
    cos = torch.nn.functional.cosine_similarity(float_logits.flatten(), int_logits.flatten(), dim=0)
    assert cos > 0.98, f"seed {seed}: logits cosine {cos:.4f}"


def test_backend_is_pluggable_and_bit_exact():
    seed = 5
    model = tiny_bert(seed)
    spec = load_spec("tile8")
    quantized = quantize_model(model, spec, random_batches(seed), calibrator="percentile")
    calls = []

    def dense_backend(layer, x_q):
        calls.append(layer.name)
        return reference.linear_dense(layer, x_q, spec.numerics)[0]

    batch = random_batches(seed + 1, n=1)[0]
    with torch.no_grad():
        a = integer_model(model, quantized).forward(**batch).logits
        b = integer_model(model, quantized, backend=dense_backend).forward(**batch).logits
    assert torch.equal(a, b)
    assert calls == [layer.name for layer in quantized.layers]


def test_pruned_blocks_are_not_stored():
    seed = 7
    model = tiny_bert(seed)
    name = "bert.encoder.layer.0.intermediate.dense"
    linear = dict(model.named_modules())[name]
    with torch.no_grad():
        linear.weight[0:8, 8:16] = 0.0           # one 8x8 block
        linear.weight[16:24, :] = 0.0            # a whole block row...
        linear.bias[16:24] = torch.linspace(-0.5, 0.5, 8)   # ...whose outputs are then its bias
    quantized = quantize_model(model, load_spec("tile8"), random_batches(seed))
    layer = quantized.layer(name)
    mask = layer.block_mask()
    assert not mask[0, 1] and not mask[2].any() and mask.sum() == mask.size - 1 - mask.shape[1]
    recorder = Recorder([name])
    with torch.no_grad():
        integer_model(model, quantized, recorder=recorder)(**random_batches(seed, n=1)[0])
    (call,) = recorder.calls
    # The pruned block row outputs its bias only, quantized to the output scale.
    assert np.all(layer.multiplier[16:24] == 2 ** 15) and np.all(layer.shift[16:24] == 15)
    expected = np.clip(np.rint(np.linspace(-0.5, 0.5, 8) / layer.scale_out), -128, 127)
    assert np.array_equal(layer.bias[16:24], expected)
    assert np.array_equal(call.y_q[16:24], np.repeat(expected[:, None], call.y_q.shape[1], axis=1).astype(np.int8))


def test_quantized_linear_contract():
    seed = 9
    model = tiny_bert(seed)
    spec = load_spec("tile8")
    quantized = quantize_model(model, spec, random_batches(seed))
    layer = quantized.layers[0]
    module = QuantizedLinear(layer, spec.numerics)
    x = torch.randn(2, 3, layer.in_features, generator=torch.Generator().manual_seed(seed))
    y = module(x)
    assert y.shape == (2, 3, layer.out_features) and y.dtype == torch.float32
    # Output values are exactly s_y times the reference's int8 codes.
    from blockforge.quant import quantize_tensor
    x_q = quantize_tensor(x.reshape(-1, layer.in_features).numpy().T, layer.scale_in)
    y_q, _ = reference.linear(layer, x_q, spec.numerics)
    assert torch.equal(y.reshape(-1, layer.out_features),
                       torch.from_numpy((y_q.T.astype(np.float32) * np.float32(layer.scale_out))))
    bad = QuantizedLinear(layer, spec.numerics, backend=lambda lay, xq: np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(UsageError, match="backend returned"):
        bad(x)
    with pytest.raises(UsageError, match="features"):
        module(torch.zeros(2, layer.in_features + 1))
    with pytest.raises(UsageError, match="calibrator"):
        quantize_model(model, spec, random_batches(seed), calibrator="kl")
    with pytest.raises(UsageError, match="at least one batch"):
        quantize_model(model, spec, [])


def test_calibration_recipe_picks_input_and_output_calibrators():
    seed = 13
    model = tiny_bert(seed)
    batches = random_batches(seed)
    mixed = quantize_model(model, load_spec("tile8"), batches, calibrator="max/percentile")
    plain_max = quantize_model(model, load_spec("tile8"), batches, calibrator="max")
    plain_pct = quantize_model(model, load_spec("tile8"), batches, calibrator="percentile")
    for a, b, c in zip(mixed.layers, plain_max.layers, plain_pct.layers):
        assert a.scale_in == b.scale_in and a.scale_out == c.scale_out
    assert mixed.calibration["input_calibrator"] == "max" and mixed.calibration["output_calibrator"] == "percentile"
    assert plain_max.calibration["percentile"] is None


def test_reference_backend_is_reference_linear():
    spec = load_spec("tile16")
    model = tiny_bert(11)
    quantized = quantize_model(model, spec, random_batches(11))
    layer = quantized.layers[0]
    x_q = np.random.default_rng(11).integers(-128, 128, size=(layer.in_features, 6)).astype(np.int8)
    assert np.array_equal(reference_backend(spec.numerics)(layer, x_q), reference.linear(layer, x_q, spec.numerics)[0])
