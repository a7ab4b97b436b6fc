"""Float → integer: int8 weights, activation scales from calibration, int32 bias, and the integer
requantization parameters (M, S) of every output channel.

This is where floats end. Everything after it — :mod:`blockforge.reference`, the image, the engine —
is integer. docs/numerics.md is the normative description of the formulas used here:

- weights, symmetric per output channel: ``s_w[o] = max|W[o,:]| / 127``, ``W_q = clip(rint(W / s_w), ±127)``;
  pruned (zero) weights stay exactly 0.
- activations, symmetric per tensor: ``x_q = clip(rint(x / s_x), -128, 127)``, ``s_x`` from a calibrator
  over a streaming histogram of ``|x|`` (:class:`ActivationObserver`): ``max``, ``percentile`` or ``mse``;
  a recipe ``"<inputs>/<outputs>"`` picks one for the input and one for the output scales (default
  ``mse/percentile``, :func:`parse_calibrator`).
- bias: ``b_q[o] = clip(rint(b[o] / (s_w[o]·s_x)), ±spec.bias_limit)``.
- requantization: ``M[o]·2^-S[o] ≈ s_w[o]·s_x / s_y`` with ``M`` an unsigned ``multiplier_bits`` integer,
  normalized so its top bit is set whenever ``0 ≤ S ≤ 62`` allows it (relative error ≤ 2^-multiplier_bits).

An output channel whose weights are all zero has no weight scale; it keeps its bias exactly: with
a zero bias it gets ``M = S = 0`` (output 0), otherwise its bias scale is chosen as ``s_y / s_x`` so that
``b_q = rint(b / s_y)`` and ``M·2^-S = 1`` — the engine then emits the quantized bias, which is what
the float model computes for a fully pruned channel.

Non-finite inputs (NaN/inf weights, biases or scales) raise :class:`~blockforge.errors.UsageError` naming
the layer. This module imports neither torch nor amaranth.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import UsageError
from .layer import BlockSparseLayer
from .spec import MAX_SHIFT, Numerics, Spec

__all__ = [
    "CALIBRATORS",
    "DEFAULT_CALIBRATOR",
    "DEFAULT_PERCENTILE",
    "ActivationObserver",
    "MAX_SHIFT",
    "dequantize_tensor",
    "parse_calibrator",
    "qmax",
    "quantize_bias",
    "quantize_linear",
    "quantize_tensor",
    "quantize_weight",
    "requant_params",
    "requant_relative_error",
]

CALIBRATORS = ("max", "percentile", "mse")
#: The calibration recipe "<inputs>/<outputs>": MSE for each linear's input scale s_x, percentile for its
#: output scale s_y — the best of the measured recipes (docs/numerics.md "Measured").
DEFAULT_CALIBRATOR = "mse/percentile"
DEFAULT_PERCENTILE = 99.99


def qmax(bits: int) -> int:
    """Largest symmetric code of a signed ``bits`` integer (127 for int8)."""
    return (1 << (bits - 1)) - 1


# --------------------------------------------------------------------------------------------------
# Weights, activations, bias.

def _finite(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        where = "[" + ", ".join(str(int(i)) for i in bad) + "]" if array.ndim else ""
        raise UsageError(f"{what}{where} is {array[tuple(bad)]!r}: weights, biases and scales must be finite")
    return array


def quantize_weight(weight, bits: int = 8, *, name: str = "weight") -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantization of a float (out, in) weight.

    Returns ``(W_q int8 (out, in), s_w float64 (out,))`` with ``s_w[o] = max|W[o,:]| / qmax(bits)``;
    an all-zero channel has ``s_w = 0`` and zero codes. Zero weights map to exactly 0.
    Raises UsageError for non-finite weights or a non-2-D array.
    """
    w = _finite(weight, f"{name}.weight")
    if w.ndim != 2:
        raise UsageError(f"{name}.weight: expected a 2-D (out, in) array, got shape {w.shape}")
    top = qmax(bits)
    s_w = np.abs(w).max(axis=1) / top if w.shape[1] else np.zeros(w.shape[0])
    safe = np.where(s_w > 0, s_w, 1.0)
    w_q = np.clip(np.rint(w / safe[:, None]), -top, top).astype(np.int8)
    return w_q, s_w


def quantize_tensor(values, scale: float, bits: int = 8) -> np.ndarray:
    """Float activations → signed ``bits`` codes (int64): ``clip(rint(x / scale), -2^(b-1), 2^(b-1)-1)``.

    ``rint`` rounds half to even. This is the only float→integer activation conversion in blockforge.
    """
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise UsageError(f"activation scale must be a positive finite number, got {scale!r}")
    x = np.asarray(values)
    q = np.rint(x / np.asarray(scale, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64))
    return np.clip(q, -(1 << (bits - 1)), qmax(bits)).astype(np.int64)


def dequantize_tensor(codes, scale: float) -> np.ndarray:
    """Integer codes → float64 values ``codes · scale``."""
    return np.asarray(codes, dtype=np.float64) * float(scale)


def quantize_bias(bias, bias_scale, limit: int, *, name: str = "bias") -> np.ndarray:
    """``clip(rint(b / bias_scale), ±limit)`` as int64; channels with ``bias_scale == 0`` get 0."""
    b = _finite(bias, f"{name}.bias").reshape(-1)
    scale = np.asarray(bias_scale, dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale > 0, np.rint(b / np.where(scale > 0, scale, 1.0)), 0.0)
    return np.clip(q, -limit, limit).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Requantization parameters.

def requant_params(ratio, numerics: Numerics):
    """Integer multiplier and shift with ``M · 2^-S ≈ ratio`` (the float ``s_w·s_x/s_y``).

    ``M`` is an unsigned integer below ``2**numerics.multiplier_bits``, normalized so its top bit is set
    (``M ≥ 2**(multiplier_bits-1)``), which bounds the relative error by ``2**-multiplier_bits``;
    ``0 ≤ S ≤ 62``. Outside the normalizable range: a ratio below ``2**(multiplier_bits-1-62)`` uses
    ``S = 62`` and a smaller M (a ratio that rounds to M = 0 gives ``(0, 0)``); a ratio of
    ``2**multiplier_bits`` or more uses ``S = 0``, ``M = 2**multiplier_bits - 1`` (every non-zero output
    saturates anyway). ``ratio == 0`` gives ``(0, 0)``.

    Accepts a scalar (returns two Python ints) or an array (returns two int64 arrays of its shape).
    Raises UsageError for a negative or non-finite ratio.
    """
    scalar = np.ndim(ratio) == 0
    r = _finite(ratio, "requantization ratio")
    if np.any(r < 0):
        raise UsageError(f"requantization ratio must be ≥ 0, got {r.min()!r}")
    bits = numerics.multiplier_bits
    fraction, exponent = np.frexp(r)                           # r = fraction · 2^exponent, fraction in [0.5, 1)
    m = np.floor(fraction * float(1 << bits) + 0.5).astype(np.int64)
    s = bits - exponent.astype(np.int64)
    carry = m == (1 << bits)                                   # rounding reached 2^bits: renormalize
    m = np.where(carry, m >> 1, m)
    s = np.where(carry, s - 1, s)
    small = s > MAX_SHIFT
    if np.any(small):
        m = np.where(small, np.floor(np.ldexp(r, MAX_SHIFT) + 0.5).astype(np.int64), m)
        s = np.where(small, MAX_SHIFT, s)
    large = s < 0
    if np.any(large):
        m = np.where(large, (1 << bits) - 1, m)
        s = np.where(large, 0, s)
    zero = m == 0
    m = np.where(zero, 0, m)
    s = np.where(zero, 0, s)
    if scalar:
        return int(m), int(s)
    return m.astype(np.int64), s.astype(np.int64)


def requant_relative_error(ratio, multiplier, shift) -> np.ndarray:
    """``|M·2^-S − ratio| / ratio`` (0 where ratio is 0): the error docs/numerics.md bounds."""
    r = np.asarray(ratio, dtype=np.float64)
    approx = np.ldexp(np.asarray(multiplier, dtype=np.float64), -np.asarray(shift, dtype=np.int64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, np.abs(approx - r) / np.where(r > 0, r, 1.0), 0.0)


# --------------------------------------------------------------------------------------------------
# A whole layer.

def _positive_scale(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise UsageError(f"{what} must be a positive finite number, got {value!r}")
    return v


def quantize_linear(name: str, weight, bias, s_x: float, s_y: float, spec: Spec) -> BlockSparseLayer:
    """Quantize a float linear layer ``y = W x + b`` into a :class:`BlockSparseLayer` for ``spec``.

    ``weight`` float (out, in) — anything ``numpy.asarray`` accepts, e.g. a detached CPU tensor;
    ``bias`` float (out,) or None; ``s_x`` / ``s_y`` the calibrated input / output activation scales.
    Zero weights stay zero; tiles that are all zero after quantization are not stored.
    Raises UsageError for non-finite values or scales, SpecError if the shape does not fit the spec.
    """
    numerics = spec.numerics
    s_x = _positive_scale(s_x, f"{name}: input scale s_x")
    s_y = _positive_scale(s_y, f"{name}: output scale s_y")
    w_q, s_w = quantize_weight(weight, numerics.weight_bits, name=name)
    out_features = w_q.shape[0]
    if bias is None:
        b = np.zeros(out_features)
    else:
        b = _finite(bias, f"{name}.bias").reshape(-1)
        if b.shape[0] != out_features:
            raise UsageError(f"{name}.bias: {b.shape[0]} entries for {out_features} output channels")
    empty = s_w == 0
    keep_bias = empty & (b != 0)
    # A weightless channel's scale is free; s_y/s_x makes its bias exact up to one output step.
    bias_scale = np.where(keep_bias, s_y / s_x, s_w)
    b_q = quantize_bias(b, bias_scale * s_x, min(spec.bias_limit, 2 ** 31 - 1), name=name)
    multiplier, shift = requant_params(bias_scale * s_x / s_y, numerics)
    return BlockSparseLayer.from_dense(name, w_q, b_q, multiplier, shift, spec,
                                       scale_in=s_x, scale_out=s_y, weight_scale=bias_scale)


# --------------------------------------------------------------------------------------------------
# Calibration.

def parse_calibrator(recipe: str) -> tuple[str, str]:
    """``"mse"`` → ("mse", "mse"); ``"mse/percentile"`` → calibrator of the inputs, of the outputs.

    Raises UsageError naming the recipe for anything else.
    """
    parts = recipe.split("/") if isinstance(recipe, str) else []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or any(p not in CALIBRATORS for p in parts):
        raise UsageError(f"unknown calibrator {recipe!r} (known: {', '.join(CALIBRATORS)}, or "
                         f"INPUTS/OUTPUTS such as {DEFAULT_CALIBRATOR!r})")
    return parts[0], parts[1]


class ActivationObserver:
    """A streaming histogram of ``|x|`` for one tensor, and the calibrators that read a scale off it.

    ``observe`` may be called with batches of any shape; the histogram keeps ``bins`` equal bins over
    ``[0, running max]`` and, when a batch exceeds the range, widens every bin by an integer factor
    (merging neighbours exactly, no re-sampling). ``scale(method)`` returns ``threshold / qmax(bits)``:

    - ``max``: the largest |x| seen (no clipping);
    - ``percentile``: the bin edge below which ``percentile`` % of the values fall (clips outliers);
    - ``mse``: the threshold t minimizing the expected squared error of clip-and-round, with clipped
      values costing ``(|x| − t)²``, values below half a step costing ``x²`` (they round to 0) and the
      rest the uniform rounding noise ``Δ²/12``, ``Δ = t / qmax``.

    A tensor that was always zero gets scale 1.0 (any scale represents it exactly).
    """

    def __init__(self, bins: int = 2048) -> None:
        if not isinstance(bins, int) or bins < 16:
            raise UsageError(f"histogram bins must be an integer ≥ 16, got {bins!r}")
        self.bins = bins
        self.counts = np.zeros(bins, dtype=np.int64)
        self.width = 0.0
        self.max_abs = 0.0
        self.count = 0

    def observe(self, values) -> None:
        a = np.abs(np.asarray(values, dtype=np.float32).reshape(-1))
        if a.size == 0:
            return
        top = float(a.max())
        if not math.isfinite(top):
            raise UsageError("calibration saw a non-finite activation")
        self.count += a.size
        self.max_abs = max(self.max_abs, top)
        if top == 0.0 and self.width == 0.0:
            self.counts[0] += a.size
            return
        if self.width == 0.0:
            self.width = top / self.bins
        elif top > self.width * self.bins:
            factor = math.ceil(top / (self.width * self.bins))
            merged = np.zeros(self.bins * factor, dtype=np.int64)
            merged[: self.bins] = self.counts
            self.counts = merged.reshape(self.bins, factor).sum(axis=1)
            self.width *= factor
        index = np.minimum((a / np.float32(self.width)).astype(np.int64), self.bins - 1)
        self.counts += np.bincount(index, minlength=self.bins)

    def threshold(self, method: str = "mse", *, percentile: float = DEFAULT_PERCENTILE,
                  bits: int = 8) -> float:
        """The clipping threshold (a float ≥ 0) chosen by ``method``."""
        if method not in CALIBRATORS:
            raise UsageError(f"unknown calibrator {method!r} (known: {', '.join(CALIBRATORS)})")
        if self.count == 0:
            raise UsageError("calibration observed no values")
        if self.max_abs == 0.0:
            return 0.0
        if method == "max":
            return self.max_abs
        edges = np.arange(1, self.bins + 1) * self.width           # upper edge of each bin
        if method == "percentile":
            if not 0 < percentile <= 100:
                raise UsageError(f"percentile must be in (0, 100], got {percentile!r}")
            cumulative = np.cumsum(self.counts)
            index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
            return float(min(edges[min(index, self.bins - 1)], self.max_abs))
        centers = (np.arange(self.bins) + 0.5) * self.width
        counts = self.counts.astype(np.float64)
        candidates = np.minimum(edges, self.max_abs)
        step = candidates / qmax(bits)
        # cost(t) = Σ_{v>t} c·(v−t)² + Σ_{v<Δ/2} c·v² + Δ²/12 · Σ_{Δ/2≤v≤t} c, via prefix sums.
        c0 = np.concatenate([[0.0], np.cumsum(counts)])
        c1 = np.concatenate([[0.0], np.cumsum(counts * centers)])
        c2 = np.concatenate([[0.0], np.cumsum(counts * centers ** 2)])
        above = np.searchsorted(centers, candidates, side="right")      # bins [above:] are clipped
        small = np.minimum(np.searchsorted(centers, step / 2, side="left"), above)  # bins [:small] round to 0
        clipped = (c2[-1] - c2[above]) - 2 * candidates * (c1[-1] - c1[above]) + candidates ** 2 * (c0[-1] - c0[above])
        cost = clipped + c2[small] + step ** 2 / 12.0 * (c0[above] - c0[small])
        return float(candidates[int(np.argmin(cost))])

    def scale(self, method: str = "mse", *, percentile: float = DEFAULT_PERCENTILE,
              bits: int = 8) -> float:
        """The activation scale ``threshold / qmax(bits)`` (1.0 for an all-zero tensor)."""
        t = self.threshold(method, percentile=percentile, bits=bits)
        return t / qmax(bits) if t > 0 else 1.0
