"""The whole-model estimate: every layer priced by the per-layer cycle model (:mod:`blockforge.estimate`).

``estimate_layers(spec, layers, n_tokens)`` prices every layer of an image (or of a model's block
masks) and adds the baselines that make the gain of block sparsity visible:

- **dense**: the same layers with every tile stored, on the same engine (also what an engine without
  zero-skipping takes for the pruned layers: it streams every tile);
- **roofline**: ``cycles ≥ Σ nnz_blocks · max(N, tile_load_cycles)`` — each stored tile occupies the MAC
  array N cycles and needs ``tile_load_cycles`` of weight bandwidth; the rest is pipeline fill and drain.

``masks_from_weights`` turns float weights into the nnz-per-row form the cycle model takes, so a model
folder can be estimated without exporting an image. numpy only.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .clock import EngineClock, engine_clock
from .estimate import estimate_layer, utilization
from .spec import Spec


class LayerShape:
    """The part of a layer the cycle model needs: name, non-zero tiles per block row, block columns."""

    def __init__(self, name: str, block_mask: np.ndarray, out_features: int, in_features: int):
        self.name = name
        self.mask = np.asarray(block_mask, dtype=bool)
        self.out_features = out_features
        self.in_features = in_features
        self.n_block_cols = self.mask.shape[1]

    def nnz_per_row(self) -> np.ndarray:
        return self.mask.sum(axis=1).astype(np.int64)

    def block_mask(self) -> np.ndarray:
        return self.mask

    @property
    def block_density(self) -> float:
        return float(self.mask.mean())


def block_mask_of(weight: np.ndarray, spec: Spec, name: str = "weight") -> np.ndarray:
    """bool (block_rows, block_cols): which BR×BC blocks of ``weight`` (out, in) hold a non-zero."""
    weight = np.asarray(weight)
    t = spec.tiling(*weight.shape, layer=name)
    padded = np.zeros((t.padded_out, t.padded_in), dtype=bool)
    padded[: weight.shape[0], : weight.shape[1]] = weight != 0
    br, bc = spec.block.rows, spec.block.cols
    return padded.reshape(t.block_rows, br, t.block_cols, bc).any(axis=(1, 3))


def masks_from_weights(weights: Iterable[tuple[str, np.ndarray]], spec: Spec) -> list[LayerShape]:
    """Layer shapes for the cycle model from (name, float or int weight (out, in)) pairs."""
    return [LayerShape(name, block_mask_of(w, spec, name), *np.asarray(w).shape) for name, w in weights]


def estimate_layers(spec: Spec, layers: Sequence[Any], n_tokens: int, *, clock: EngineClock | None = None
                    ) -> dict[str, Any]:
    """Per-layer rows and whole-model totals for ``layers`` (BlockSparseLayer or LayerShape) at N tokens.

    Times (``time_us``, ``dense_time_us``) are at ``clock`` (:func:`blockforge.clock.engine_clock`: the spec
    clock, or the achieved Fmax of an FPGA build when lower); default the spec clock. The totals name it:
    ``clock_mhz``, ``clock_source`` ("spec" or "fmax"), ``clock`` (one line).
    Raises UsageError for N outside [1, max_tokens].
    """
    started = time.perf_counter()
    clock = clock or engine_clock(spec)
    rows = []
    roofline_total = 0
    period = max(n_tokens, spec.tile_load_cycles)
    for layer in layers:
        row = estimate_layer(spec, layer, n_tokens)
        row["block_sparsity"] = 1.0 - row["block_density"]
        row["roofline_cycles"] = row["nnz_blocks"] * period
        row["dense_utilization"] = utilization(spec, row["macs"], row["dense_cycles"])
        roofline_total += row["roofline_cycles"]
        row["time_us"] = clock.time_us(row["cycles"])
        rows.append(row)
    cycles = sum(r["cycles"] for r in rows)
    dense = sum(r["dense_cycles"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    nnz = sum(r["nnz_blocks"] for r in rows)
    total_blocks = sum(r["total_blocks"] for r in rows)
    totals = {
        "spec": spec.name,
        "block": f"{spec.block.rows}x{spec.block.cols}",
        "layers": len(rows),
        "n_tokens": n_tokens,
        "cycles": cycles,
        "dense_cycles": dense,
        "speedup": dense / cycles if cycles else 0.0,
        "block_sparsity": 1.0 - nnz / total_blocks if total_blocks else 0.0,
        "nnz_blocks": nnz,
        "total_blocks": total_blocks,
        "macs": macs,
        "macs_skipped": sum(r["macs_skipped"] for r in rows),
        "utilization": utilization(spec, macs, cycles),
        "no_skip_utilization": utilization(spec, macs, dense),
        "roofline_cycles": roofline_total,
        "roofline_efficiency": roofline_total / cycles if cycles else 0.0,
        "time_us": clock.time_us(cycles),
        "dense_time_us": clock.time_us(dense),
        "clock_mhz": clock.mhz,
        "clock_source": clock.source,
        "clock": clock.describe(),
        "weight_bytes": sum(r["weight_bytes"] for r in rows),
        "estimator_seconds": time.perf_counter() - started,
    }
    return {"layers": rows, "totals": totals}


def format_table(result: Mapping[str, Any]) -> str:
    """A human-readable per-layer table with totals."""
    rows, t = result["layers"], result["totals"]
    width = max([len(r["name"]) for r in rows] + [5])
    lines = [f"{'layer':<{width}}  {'sparsity':>8}  {'cycles':>12}  {'dense':>12}  {'speedup':>7}  {'util':>6}  "
             f"{'time us':>9}"]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['block_sparsity']:>8.1%}  {r['cycles']:>12,}  {r['dense_cycles']:>12,}  "
                     f"{r['speedup']:>6.2f}x  {r['utilization']:>6.1%}  {r['time_us']:>9.1f}")
    lines.append(
        f"{'total':<{width}}  {t['block_sparsity']:>8.1%}  {t['cycles']:>12,}  {t['dense_cycles']:>12,}  "
        f"{t['speedup']:>6.2f}x  {t['utilization']:>6.1%}  {t['time_us']:>9.1f}")
    lines.append(
        f"spec {t['spec']} ({t['block']} blocks), N = {t['n_tokens']}: {t['time_us'] / 1e3:.3f} ms at {t['clock']} vs "
        f"{t['dense_time_us'] / 1e3:.3f} ms dense; roofline {t['roofline_cycles']:,} cycles "
        f"({t['roofline_efficiency']:.1%} of it reached); without zero-skipping the MAC array would be "
        f"{t['no_skip_utilization']:.1%} useful; weights streamed {t['weight_bytes']:,} bytes")
    return "\n".join(lines)
