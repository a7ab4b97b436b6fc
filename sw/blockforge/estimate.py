"""The cycle model of the block-sparse engine: the exact cycle count of ``blockforge_hw.Engine`` for a
layer with no injected stalls, and the figures derived from it.

The engine's schedule (docs/engine.md "Schedule" derives every constant below from the RTL):

- L = read_latency, W = tile_words, N = tokens, P = max(N, W): a tile occupies the MAC array for N
  cycles, and the next tile is assembled W cycles after the previous one was taken, so tiles of one
  block row follow each other every P cycles. An empty block row occupies the MAC array one cycle.
- The first tile can be taken in cycle L + W + 1 (requests from cycle 0, one word per cycle).
- Block row q's MAC work ends at E_q = S_q + (nnz_q − 1)·P + N + 2 (its rows_done event), or
  E_q = S_q + 3 for an empty row, where S_q is the cycle its first job is taken.
- The output stage drains row q in cycles D_q … D_q + N − 1, D_q = max(E_q + 2, D_{q−1} + N).
- Two accumulator banks: row q's first job waits for D_{q−2} + N (row q−2 drained).
- The count ends with the last output's handshake: cycles = D_{R−1} + N + 3.

With ``memory.bandwidth_bytes_per_cycle`` below the bus width, W is replaced by
``spec.tile_load_cycles`` — a model of a throttled memory, not an RTL equality (the simulated memory
serves one word per cycle). numpy only; no torch, no amaranth.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .errors import UsageError
from .spec import Spec

__all__ = ["layer_cycles", "layer_schedule", "estimate_layer", "dense_nnz_per_row"]


def _check_tokens(spec: Spec, n_tokens: int) -> int:
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)) \
            or not 1 <= int(n_tokens) <= spec.buffers.max_tokens:
        raise UsageError(f"n_tokens must be an integer in [1, {spec.buffers.max_tokens}] "
                         f"(buffers.max_tokens of spec {spec.name}), got {n_tokens!r}")
    return int(n_tokens)


def layer_schedule(spec: Spec, nnz_per_row: np.ndarray, n_tokens: int) -> dict[str, np.ndarray | int]:
    """The engine's per-row event times (cycles after start) for one layer with no stalls.

    Returns {"start": S_q, "mac_end": E_q, "drain": D_q (int64 arrays over block rows),
    "cycles": total}. Raises UsageError for a bad N or a negative tile count.
    """
    n = _check_tokens(spec, n_tokens)
    nnz = np.asarray(nnz_per_row, dtype=np.int64).reshape(-1)
    if nnz.size == 0:
        raise UsageError("a layer needs at least one block row")
    if np.any(nnz < 0):
        raise UsageError("non-zero tiles per row must be >= 0")
    latency = spec.memory.read_latency
    words = spec.tile_load_cycles
    period = max(n, words)
    rows = nnz.size
    start = np.zeros(rows, dtype=np.int64)
    mac_end = np.zeros(rows, dtype=np.int64)
    drain = np.zeros(rows, dtype=np.int64)
    mac_free = 1                       # the index memory's first entry is readable in cycle 1
    next_tile = latency + words + 1    # cycle the next tile is assembled, if it was requested in time
    for q in range(rows):
        s = mac_free
        if q >= 2:
            s = max(s, int(drain[q - 2]) + n)
        k = int(nnz[q])
        if k:
            s = max(s, next_tile)
            last_take = s + (k - 1) * period
            next_tile = last_take + words
            mac_free = last_take + n
            mac_end[q] = mac_free + 2
        else:
            mac_free = s + 1
            mac_end[q] = s + 3
        start[q] = s
        drain[q] = mac_end[q] + 2 if q == 0 else max(int(mac_end[q]) + 2, int(drain[q - 1]) + n)
    return {"start": start, "mac_end": mac_end, "drain": drain, "cycles": int(drain[-1]) + n + 3}


def layer_cycles(spec: Spec, nnz_per_row: np.ndarray, n_tokens: int) -> int:
    """Exact engine cycles (start to last output handshake, no stalls) for a layer whose block rows
    hold ``nnz_per_row`` non-zero tiles, at N = ``n_tokens``."""
    return int(layer_schedule(spec, nnz_per_row, n_tokens)["cycles"])


def dense_nnz_per_row(n_block_rows: int, n_block_cols: int) -> np.ndarray:
    return np.full(int(n_block_rows), int(n_block_cols), dtype=np.int64)


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _layer_shape(spec: Spec, layer: Any) -> tuple[str, np.ndarray, int]:
    """(name, nnz per block row, block columns) of a BlockSparseLayer, an image table row or a dict."""
    name = _get(layer, "name") or "layer"
    nnz = _get(layer, "nnz_per_row")
    if callable(nnz):
        nnz = nnz()
    if nnz is None:
        row_ptr = _get(layer, "row_ptr")
        if row_ptr is None:
            raise UsageError(f"{name}: needs nnz_per_row or row_ptr to estimate cycles")
        nnz = np.diff(np.asarray(row_ptr, dtype=np.int64))
    nnz = np.asarray(nnz, dtype=np.int64).reshape(-1)
    cols = _get(layer, "n_block_cols")
    if callable(cols):
        cols = cols()
    if cols is None:
        in_features = _get(layer, "in_features")
        if in_features is None:
            raise UsageError(f"{name}: needs n_block_cols or in_features to estimate the dense baseline")
        cols = -(-int(in_features) // spec.block.cols)
    cols = int(cols)
    if np.any(nnz > cols):
        raise UsageError(f"{name}: a block row holds more tiles than its {cols} block columns")
    return str(name), nnz, cols


def estimate_layer(spec: Spec, layer: Any, n_tokens: int) -> dict[str, Any]:
    """Cycles and derived figures of one layer on the engine at N = ``n_tokens``.

    ``layer``: a :class:`~blockforge.layer.BlockSparseLayer`, or any object/mapping with
    ``nnz_per_row`` (or ``row_ptr``) and ``n_block_cols`` (or ``in_features``).
    Keys: cycles, dense_cycles, speedup (dense/sparse on the same engine), macs (performed),
    macs_skipped, utilization (macs / (cycles · BR·BC)), time_us (at clock_mhz), weight_bytes (tile
    payload streamed), nnz_blocks, total_blocks, block_density, n_tokens, name.
    """
    name, nnz, cols = _layer_shape(spec, layer)
    n = _check_tokens(spec, n_tokens)
    cycles = layer_cycles(spec, nnz, n)
    dense_cycles = layer_cycles(spec, dense_nnz_per_row(nnz.size, cols), n)
    nnz_blocks = int(nnz.sum())
    total_blocks = nnz.size * cols
    per_tile = spec.macs_per_cycle * n
    return {
        "name": name,
        "n_tokens": n,
        "cycles": cycles,
        "dense_cycles": dense_cycles,
        "speedup": dense_cycles / cycles,
        "macs": nnz_blocks * per_tile,
        "macs_skipped": (total_blocks - nnz_blocks) * per_tile,
        "utilization": nnz_blocks * per_tile / (cycles * spec.macs_per_cycle),
        "time_us": cycles / spec.clock_mhz,
        "weight_bytes": nnz_blocks * spec.tile_bytes,
        "nnz_blocks": nnz_blocks,
        "total_blocks": total_blocks,
        "block_density": nnz_blocks / total_blocks,
    }
