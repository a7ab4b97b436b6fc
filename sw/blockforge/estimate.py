"""The cycle model of the block-sparse engine: the exact cycle count of ``blockforge_hw.Engine`` for a
layer with no injected stalls, and the figures derived from it.

The engine's schedule (docs/engine.md "Schedule" derives every constant below from the RTL):

- L = read_latency, W = tile_words, N = tokens, P = max(N, W, 2): a tile occupies the MAC array for N
  cycles; TileFetch assembles tiles W cycles apart and hands them over through an offer register, so
  in steady state tiles of one block row follow each other every P cycles. An empty block row occupies
  the MAC array one cycle.
- The first tile can be taken in cycle L + W + 2 (requests from cycle 0, one word per cycle, one cycle
  into the offer register).
- Block row q's MAC work ends at E_q = S_q + (nnz_q − 1)·P + N + A (its rows_done event), or
  E_q = S_q + 1 + A for an empty row, where S_q is the cycle its first job is taken and
  A = :func:`accumulate_latency` the register stages between the MAC array's operands and the
  accumulator write (products, adder tree, read-modify-write).
- The output stage drains row q in cycles D_q … D_q + N − 1, D_q = max(E_q + 2, D_{q−1} + N).
- Two accumulator banks: row q's first job waits for D_{q−2} + N (row q−2 drained).
- The count ends with the last output's handshake: cycles = D_{R−1} + N + :func:`drain_latency`.

The pipeline registers that make the engine meet its FPGA clock are part of this model: the hardware
components build their stages from the constants below (and check that they did).

With ``memory.bandwidth_bytes_per_cycle`` below the bus width the simulated memory accepts words under
the token bucket :class:`BandwidthBucket` (tile_load_cycles per tile), and the schedule follows the
weight words one by one through the fetch: still the exact RTL cycle count (docs/engine.md
"Bandwidth limit"). numpy only; no torch, no amaranth.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .errors import UsageError
from .spec import Spec

__all__ = ["ACCUMULATOR_STAGES", "TREE_LEVELS_PER_STAGE", "product_levels", "requantizer_stages",
           "drain_latency", "mac_stages", "accumulate_latency", "layer_cycles", "layer_schedule",
           "estimate_layer", "utilization", "dense_nnz_per_row", "BandwidthBucket",
           "bandwidth_bucket"]


# ---- pipeline depths (docs/engine.md "Pipeline") -------------------------------------------------------
ACCUMULATOR_STAGES = 4      # read the row, its data registered twice, add (with forwarding), write back
TREE_LEVELS_PER_STAGE = 1   # adder-tree levels between two registers of the MAC array


def product_levels(multiplier_bits: int) -> int:
    """Register stages of the requantizer's (acc + bias)·M: one per level of the shift-and-add tree over
    M's bits (at least two: DSP output, chunk sum)."""
    return max(2, (int(multiplier_bits) - 1).bit_length())


def requantizer_stages(multiplier_bits: int) -> int:
    """The requantizer's latency: bias, operands, the product, shift by 8s, shift by 1s, round, fit."""
    return 2 + product_levels(multiplier_bits) + 4


def drain_latency(multiplier_bits: int) -> int:
    """A token the output stage addresses in cycle c is on ``out`` in c + drain_latency: memory data
    (1), its register (1), the requantizer, the output FIFO's registered head (2). 14 for 16-bit M."""
    return 2 + requantizer_stages(multiplier_bits) + 2


def mac_stages(block_cols: int) -> int:
    """Registers from the MAC array's operands to its partial sums: each multiplier's own copy of its
    operands, two for the product, then one after every TREE_LEVELS_PER_STAGE levels of the
    ceil(log2 BC)-level adder tree (at least one)."""
    levels = (int(block_cols) - 1).bit_length()
    return 3 + max(1, -(-levels // TREE_LEVELS_PER_STAGE))


def accumulate_latency(spec: Spec) -> int:
    """A: cycles from a token's MAC cycle to its accumulator write, minus one (the write cycle of the
    last token of a tile taken in cycle T is T + N + A)."""
    return mac_stages(spec.block.cols) + ACCUMULATOR_STAGES


@dataclass(frozen=True)
class BandwidthBucket:
    """The token bucket that limits the weight memory to ``memory.bandwidth_bytes_per_cycle``.

    The bandwidth is rounded down to a whole number of cycles per tile, T = ``spec.tile_load_cycles``:
    the bucket gains ``gain`` = W (tile words) units per cycle, an accepted word costs ``cost`` = T
    units, so at most W words pass per T cycles. It holds at most ``capacity`` = T + W − 1 units (the
    most it reaches under continuous demand, so no credit is lost while words are wanted), is full
    when a run starts, and a request is accepted only in a cycle in which it holds at least T.
    The simulated memories (``blockforge_hw``'s Harness and Verilog top) implement exactly this.
    """

    gain: int
    cost: int
    capacity: int


def bandwidth_bucket(spec: Spec) -> BandwidthBucket | None:
    """The weight memory's bucket for ``spec``; None when it serves one word per cycle."""
    words, load = spec.tile_words, spec.tile_load_cycles
    if load <= words:
        return None
    return BandwidthBucket(gain=words, cost=load, capacity=load + words - 1)


def _check_nnz(nnz_per_row) -> np.ndarray:
    nnz = np.asarray(nnz_per_row, dtype=np.int64).reshape(-1)
    if nnz.size == 0:
        raise UsageError("a layer needs at least one block row")
    if np.any(nnz < 0):
        raise UsageError("non-zero tiles per row must be >= 0")
    return nnz


def layer_schedule(spec: Spec, nnz_per_row: np.ndarray, n_tokens: int) -> dict[str, np.ndarray | int]:
    """The engine's per-row event times (cycles after start) for one layer with no stalls.

    Returns {"start": S_q, "mac_end": E_q, "drain": D_q (int64 arrays over block rows),
    "cycles": total}. Raises UsageError for a bad N or a negative tile count.
    """
    n = spec.check_tokens(n_tokens)
    nnz = _check_nnz(nnz_per_row).tolist()
    start, mac_end, drain = [], [], []

    def record(s: int, end: int, d: int) -> None:
        start.append(s)
        mac_end.append(end)
        drain.append(d)

    last = _rows(nnz, n, _tile_source(spec, nnz, n), accumulate_latency(spec), record)
    return {"start": np.array(start, dtype=np.int64), "mac_end": np.array(mac_end, dtype=np.int64),
            "drain": np.array(drain, dtype=np.int64),
            "cycles": last + n + drain_latency(spec.numerics.multiplier_bits)}


def layer_cycles(spec: Spec, nnz_per_row: np.ndarray, n_tokens: int) -> int:
    """Exact engine cycles (start to last output handshake, no stalls) for a layer whose block rows
    hold ``nnz_per_row`` non-zero tiles, at N = ``n_tokens``."""
    n = spec.check_tokens(n_tokens)
    nnz = _check_nnz(nnz_per_row).tolist()
    tail = n + drain_latency(spec.numerics.multiplier_bits)
    return _rows(nnz, n, _tile_source(spec, nnz, n), accumulate_latency(spec)) + tail


def _rows(nnz: list[int], n: int, tiles: Callable[[int, int], tuple[int, int]], pipe: int,
          record: Callable[[int, int, int], None] | None = None) -> int:
    """The row recurrence of docs/engine.md "The cycle formula"; returns D of the last block row.

    ``tiles(s, k)`` takes a row's k tiles no earlier than cycle s and returns (first take, last take);
    ``pipe`` is A (:func:`accumulate_latency`); ``record(S_q, E_q, D_q)``, if given, sees every row's
    events. Plain ints: this is the hot path of whole-model estimates.
    """
    mac_free = 1                # the index memory's first entry is readable in cycle 1
    older = -n                  # D_{q-2}: no constraint for q < 2 (mac_free >= 1 > older + n)
    last = -n                   # D_{q-1}: no constraint for q = 0 (end + 2 >= 3 > last + n)
    for k in nnz:
        s = older + n           # two accumulator banks: row q waits until row q-2 has drained
        if s < mac_free:
            s = mac_free
        if k:
            s, take = tiles(s, k)
            mac_free = take + n
        else:
            mac_free = s + 1
        end = mac_free + pipe
        older = last
        last = last + n if last + n > end + 2 else end + 2
        if record is not None:
            record(s, end, last)
    return last


def _tile_source(spec: Spec, nnz: list[int], n: int) -> Callable[[int, int], tuple[int, int]]:
    """How a row's tiles reach the MAC array: closed form when the memory serves a word per cycle,
    else word by word through the bandwidth bucket.

    TileFetch's assembly slots (A) fill one word per cycle; a whole tile moves to the offer register (B)
    in cycle t = max(A full, the cycle after B's last take) and A starts the next tile in that same
    cycle, so it is full again at t + W; the tile is offered from t + 1 and taken at
    T = max(the MAC array's cycle, t + 1). With words always in time A is first full at L + W + 1.
    Within a row the gap d = T − t follows d' = max(N, m + 1) − m with m = max(W − d, 1), a
    non-decreasing map, so it settles in a few tiles; from then on every tile costs the same."""
    latency, words = spec.memory.read_latency, spec.tile_words
    bucket = bandwidth_bucket(spec)
    if bucket is not None:
        return _throttled_tiles(latency, words, bucket, nnz, n)
    moved = None        # t of the last tile that moved to B
    take = 0            # T of the last tile taken

    def tiles(s: int, k: int) -> tuple[int, int]:
        nonlocal moved, take
        moved = latency + words + 1 if moved is None else max(moved + words, take + 1)
        first = take = max(s, moved + 1)
        remaining = k - 1
        while remaining:
            gap = take - moved
            wait = words - gap if words - gap > 1 else 1       # cycles until the next tile moves to B
            step = n if n > wait + 1 else wait + 1
            if step - wait == gap:                               # settled: every later tile alike
                moved = take + wait + (remaining - 1) * step
                take += remaining * step
                break
            moved, take = take + wait, take + step
            remaining -= 1
        return first, take
    return tiles


def _throttled_tiles(latency: int, words: int, bucket: BandwidthBucket, nnz: list[int], n: int
                     ) -> Callable[[int, int], tuple[int, int]]:
    """Tiles with the weight words followed one by one through the fetch (docs/engine.md "Bandwidth
    limit"): word k is requested from e_k = max(t_{k−1} + 1, p_{k−D} + 1) (credit: FIFO depth
    D = W + L + 3), accepted at t_k ≥ e_k when the bucket holds ``cost``, readable at t_k + L + 1,
    popped into the assembly slots at p_k = max(t_k + L + 1, p_{k−1} + 1, the cycle the previous tile
    moved to the offer register if k starts a tile); the slots are full the cycle after the tile's last
    pop, the tile moves to the offer register at max(full, previous take + 1) and is offered from the
    next cycle."""
    depth = words + latency + 3
    gain, cost, capacity = bucket.gain, bucket.cost, bucket.capacity
    pops: deque[int] = deque(maxlen=depth)   # pop cycles of the last `depth` words
    last_accept, credit_after = -1, capacity   # bucket: full in cycle 0
    last_pop = -1

    def fill(after: int) -> int:
        """Pop the next tile's words, the first no earlier than ``after``; the cycle the slots are full."""
        nonlocal last_accept, credit_after, last_pop
        for i in range(words):
            wanted = last_accept + 1
            if len(pops) == depth and pops[0] + 1 > wanted:
                wanted = pops[0] + 1
            credit = credit_after + gain * (wanted - last_accept - 1)
            if credit >= cost:
                accept = wanted
            else:
                accept = last_accept + 1 + -(-(cost - credit_after) // gain)
                credit = credit_after + gain * (accept - last_accept - 1)
            credit = min(capacity, credit)
            credit_after = min(capacity, credit + gain - cost)
            last_accept = accept
            pop = accept + latency + 1
            if pop <= last_pop:
                pop = last_pop + 1
            if i == 0 and pop < after:
                pop = after
            pops.append(pop)
            last_pop = pop
        return last_pop + 1

    full = fill(0) if any(nnz) else 0
    take = 0

    def tiles(s: int, k: int) -> tuple[int, int]:
        nonlocal full, take
        first = -1
        for i in range(k):
            moved = full if full > take + 1 else take + 1
            full = fill(moved)
            take = max(s if i == 0 else take + n, moved + 1)
            if i == 0:
                first = take
        return first, take
    return tiles


def utilization(spec: Spec, macs: int, cycles: int) -> float:
    """Useful MACs per available MAC: ``macs / (cycles · BR·BC)``; 0.0 for zero cycles. The one definition,
    for estimated and simulated cycles alike."""
    return macs / (cycles * spec.macs_per_cycle) if cycles else 0.0


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
    n = spec.check_tokens(n_tokens)
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
        "utilization": utilization(spec, nnz_blocks * per_tile, cycles),
        "time_us": cycles / spec.clock_mhz,
        "weight_bytes": nnz_blocks * spec.tile_bytes,
        "nnz_blocks": nnz_blocks,
        "total_blocks": total_blocks,
        "block_density": nnz_blocks / total_blocks,
    }
