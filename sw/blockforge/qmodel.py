"""The PyTorch integer path for a whole Hugging Face encoder.

``quantize_model`` calibrates a float model on real batches and turns each prunable ``nn.Linear``
(the role table of :mod:`blockforge.prune.roles`) into a :class:`~blockforge.layer.BlockSparseLayer`.
``integer_model`` then swaps those linears for :class:`QuantizedLinear` modules that quantize their
real float input to int8 with the layer's ``s_x``, run an integer *backend* on it and dequantize the int8
result with ``s_y``; everything else (embeddings, softmax, LayerNorm, GELU, residuals, classifier)
stays float. The default backend is the golden model, ``reference.linear``; any callable

    backend(layer: BlockSparseLayer, x_q: np.ndarray[int8] (in_features, N)) -> y_q (out_features, N)

can replace it — e.g. the RTL engine in simulation — and a :class:`Recorder` captures the exact int8
inputs and outputs of every call, so the same inputs can be replayed through another backend and
compared with exact equality.

This is the only blockforge module besides pruning that imports torch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import reference
from .errors import UsageError
from .layer import BlockSparseLayer
from .quant import (DEFAULT_CALIBRATOR, DEFAULT_PERCENTILE, ActivationObserver, parse_calibrator,
                    quantize_linear, quantize_tensor)
from .spec import Numerics, Spec

__all__ = [
    "Backend",
    "LayerCall",
    "QuantizedLinear",
    "QuantizedModel",
    "Recorder",
    "calibrate",
    "integer_model",
    "quantize_model",
    "reference_backend",
]

Backend = Callable[[BlockSparseLayer, np.ndarray], np.ndarray]


def reference_backend(numerics: Numerics) -> Backend:
    """The golden backend: ``reference.linear(layer, x_q, numerics)[0]``."""
    def run(layer: BlockSparseLayer, x_q: np.ndarray) -> np.ndarray:
        return reference.linear(layer, x_q, numerics)[0]
    run.__name__ = "reference_backend"
    return run


@dataclass(frozen=True)
class LayerCall:
    """One call of a quantized layer: its exact int8 input (in, N) and output (out, N)."""

    layer: str
    x_q: np.ndarray
    y_q: np.ndarray


class Recorder:
    """Collects :class:`LayerCall` records, in call order, for the layers named (all if ``layers`` is None).

    ``max_calls_per_layer`` bounds memory on long runs (later calls are counted but not kept).
    """

    def __init__(self, layers: Iterable[str] | None = None, *, max_calls_per_layer: int | None = None) -> None:
        self.layers = None if layers is None else set(layers)
        self.max_calls_per_layer = max_calls_per_layer
        self.calls: list[LayerCall] = []
        self.counts: dict[str, int] = {}

    def wants(self, name: str) -> bool:
        return self.layers is None or name in self.layers

    def __call__(self, name: str, x_q: np.ndarray, y_q: np.ndarray) -> None:
        if not self.wants(name):
            return
        seen = self.counts.get(name, 0)
        self.counts[name] = seen + 1
        if self.max_calls_per_layer is None or seen < self.max_calls_per_layer:
            self.calls.append(LayerCall(name, x_q.copy(), y_q.copy()))

    def for_layer(self, name: str) -> list[LayerCall]:
        return [call for call in self.calls if call.layer == name]


class QuantizedLinear(nn.Module):
    """Drop-in replacement of an ``nn.Linear``: float in, int8 integer layer via a backend, float out."""

    def __init__(self, layer: BlockSparseLayer, numerics: Numerics, backend: Backend | None = None,
                 recorder: Callable[[str, np.ndarray, np.ndarray], None] | None = None) -> None:
        super().__init__()
        self.layer = layer
        self.numerics = numerics
        self.backend = backend or reference_backend(numerics)
        self.recorder = recorder
        self.in_features = layer.in_features
        self.out_features = layer.out_features

    def extra_repr(self) -> str:
        return (f"{self.layer.name}: in={self.in_features}, out={self.out_features}, "
                f"blocks={self.layer.block_rows}x{self.layer.block_cols}, nnz={self.layer.nnz_blocks}/"
                f"{self.layer.total_blocks}, backend={getattr(self.backend, '__name__', type(self.backend).__name__)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise UsageError(f"{self.layer.name}: input has {x.shape[-1]} features, expected {self.in_features}")
        lead = x.shape[:-1]
        flat = x.detach().reshape(-1, self.in_features).to(torch.float32).cpu().numpy()
        x_q = np.ascontiguousarray(quantize_tensor(flat.T, self.layer.scale_in, self.numerics.act_bits)
                                   .astype(np.int8))
        y_q = np.asarray(self.backend(self.layer, x_q))
        if y_q.shape != (self.out_features, x_q.shape[1]) or not np.issubdtype(y_q.dtype, np.integer):
            raise UsageError(f"{self.layer.name}: backend returned {y_q.dtype} {y_q.shape}, expected integers of "
                             f"shape ({self.out_features}, {x_q.shape[1]})")
        if self.recorder is not None:
            self.recorder(self.layer.name, x_q, y_q.astype(np.int8))
        y = (y_q.T.astype(np.float32) * np.float32(self.layer.scale_out)).reshape(*lead, self.out_features)
        return torch.from_numpy(np.ascontiguousarray(y)).to(dtype=x.dtype, device=x.device)


# --------------------------------------------------------------------------------------------------
# Calibration and quantization.

def _model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k not in ("labels", "label")}


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Mapping[str, Any]], names: Sequence[str], *,
              bins: int = 2048) -> dict[str, tuple[ActivationObserver, ActivationObserver]]:
    """Run the float ``model`` on ``batches`` (dicts of model inputs) and observe, for each named linear,
    its input and output activations. Returns {name: (input observer, output observer)}."""
    modules = dict(model.named_modules())
    missing = [n for n in names if not isinstance(modules.get(n), nn.Linear)]
    if missing:
        raise UsageError(f"not nn.Linear modules of the model: {', '.join(missing[:3])}")
    observers = {n: (ActivationObserver(bins), ActivationObserver(bins)) for n in names}
    handles = []
    for name in names:
        def hook(module, inputs, output, name=name):
            observers[name][0].observe(inputs[0].detach().float().cpu().numpy())
            observers[name][1].observe(output.detach().float().cpu().numpy())
        handles.append(modules[name].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for batch in batches:
            model(**_model_inputs(batch))
            seen += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if seen == 0:
        raise UsageError("calibration needs at least one batch")
    return observers


@dataclass
class QuantizedModel:
    """The integer layers of a model, in module order, and how their scales were chosen."""

    spec: Spec
    layers: list[BlockSparseLayer]
    roles: dict[str, str]
    calibration: dict[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> BlockSparseLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise UsageError(f"no quantized layer named {name!r}")


def quantize_model(model: nn.Module, spec: Spec, batches: Iterable[Mapping[str, Any]], *,
                   calibrator: str = DEFAULT_CALIBRATOR, percentile: float = DEFAULT_PERCENTILE,
                   names: Sequence[str] | None = None) -> QuantizedModel:
    """Calibrate ``model`` on ``batches`` and quantize its prunable linears (or ``names``) for ``spec``.

    ``calibrator`` is a calibrator name for all scales or a recipe ``"<inputs>/<outputs>"`` (default
    ``mse/percentile``: MSE input scales, percentile output scales; see docs/numerics.md).

    The model itself is not modified. Zero (pruned) weights stay zero; all-zero tiles are not stored.
    Raises UsageError (no prunable linear, no batch, non-finite weights), SpecError (a shape the spec
    cannot take).
    """
    from .prune.roles import find_prunable_linears

    input_calibrator, output_calibrator = parse_calibrator(calibrator)
    found = find_prunable_linears(model)
    roles = {p.name: p.role for p in found}
    if names is not None:
        unknown = [n for n in names if n not in roles]
        if unknown:
            raise UsageError(f"not prunable linears of the model: {', '.join(unknown[:3])}")
        roles = {n: roles[n] for n in names}
    observers = calibrate(model, batches, list(roles))
    modules = dict(model.named_modules())
    layers = []
    details = {}
    bits = spec.numerics.act_bits
    for name in roles:
        module = modules[name]
        obs_in, obs_out = observers[name]
        s_x = obs_in.scale(input_calibrator, percentile=percentile, bits=bits)
        s_y = obs_out.scale(output_calibrator, percentile=percentile, bits=bits)
        weight = module.weight.detach().float().cpu().numpy()
        bias = None if module.bias is None else module.bias.detach().float().cpu().numpy()
        layers.append(quantize_linear(name, weight, bias, s_x, s_y, spec))
        details[name] = {"role": roles[name], "s_x": s_x, "s_y": s_y, "max_in": obs_in.max_abs,
                         "max_out": obs_out.max_abs, "values_observed": obs_in.count}
    uses_percentile = "percentile" in (input_calibrator, output_calibrator)
    return QuantizedModel(spec, layers, roles, {"calibrator": calibrator, "input_calibrator": input_calibrator,
                                                "output_calibrator": output_calibrator,
                                                "percentile": percentile if uses_percentile else None,
                                                "layers": details})


def integer_model(model: nn.Module, quantized: QuantizedModel | Sequence[BlockSparseLayer], spec: Spec | None = None,
                  *, backend: Backend | None = None, recorder: Callable | None = None,
                  copy_model: bool = True) -> nn.Module:
    """``model`` (a deep copy unless ``copy_model=False``) with each quantized linear replaced by a
    :class:`QuantizedLinear` running ``backend`` (default: the reference) and reporting to ``recorder``."""
    if isinstance(quantized, QuantizedModel):
        spec, layers = quantized.spec, quantized.layers
    else:
        if spec is None:
            raise UsageError("integer_model: pass the spec with a list of layers")
        layers = list(quantized)
    target = copy.deepcopy(model) if copy_model else model
    modules = dict(target.named_modules())
    for layer in layers:
        old = modules.get(layer.name)
        if not isinstance(old, nn.Linear):
            raise UsageError(f"{layer.name}: not an nn.Linear of the model")
        if (old.out_features, old.in_features) != (layer.out_features, layer.in_features):
            raise UsageError(f"{layer.name}: layer is {layer.out_features}x{layer.in_features}, the model's "
                             f"linear is {old.out_features}x{old.in_features}")
        parent_name, _, child = layer.name.rpartition(".")
        parent = target.get_submodule(parent_name) if parent_name else target
        setattr(parent, child, QuantizedLinear(layer, spec.numerics, backend, recorder))
    return target
