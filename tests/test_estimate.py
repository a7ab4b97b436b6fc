"""The cycle model's own properties (equality with the RTL is in test_hw_engine/test_hw_verilog)."""

from __future__ import annotations

import numpy as np
import pytest

from blockforge.errors import UsageError
from blockforge.estimate import accumulate_latency, dense_nnz_per_row, estimate_layer, layer_cycles, layer_schedule
from blockforge.spec import load_spec, shipped_spec_names, spec_from_dict
from blockforge_hw.testing import random_layer, small_spec


@pytest.mark.parametrize("name", shipped_spec_names())
def test_dense_steady_state_utilization_at_least_95_percent(name):
    spec = load_spec(name)
    n = spec.tile_load_cycles                     # the hardest case the target allows: N = tile load
    rows = spec.buffers.max_out_features // spec.block.rows // 4
    cols = spec.buffers.max_in_features // spec.block.cols // 4
    result = estimate_layer(spec, {"nnz_per_row": dense_nnz_per_row(rows, cols), "n_block_cols": cols}, n)
    assert result["utilization"] >= 0.95, f"{name}: utilization {result['utilization']:.4f} at N={n}"


@pytest.mark.parametrize("name", ["tile8", "tile16"])
@pytest.mark.parametrize("shape", [(384, 384), (1536, 384), (384, 1536)])
@pytest.mark.parametrize("density", [0.5, 0.2])
def test_sparse_speedup_at_least_095_over_density(name, shape, density):
    """MiniLM's layer shapes at N = max_tokens (row specs are output-bound there: see next test)."""
    spec = load_spec(name)
    rng = np.random.default_rng(7)
    rows, cols = shape[0] // spec.block.rows, shape[1] // spec.block.cols
    nnz = rng.binomial(cols, density, rows)
    result = estimate_layer(spec, {"nnz_per_row": nnz, "n_block_cols": cols}, spec.buffers.max_tokens)
    d = result["block_density"]
    assert result["speedup"] >= 0.95 / d, f"{name} seed 7: speedup {result['speedup']:.3f} < 0.95/{d:.3f}"


@pytest.mark.parametrize("name", shipped_spec_names())
def test_output_port_bound(name):
    """Every block row leaves through a BR-lane port one token per cycle: cycles >= rows · N."""
    spec = load_spec(name)
    for nnz in ([0] * 10, [1, 0, 2, 0, 1], [3] * 4):
        for n in (1, 8, 64):
            assert layer_cycles(spec, nnz, n) >= len(nnz) * n


def test_cycles_grow_with_tiles_and_tokens():
    spec = load_spec("tile8")
    base = layer_cycles(spec, [4, 4, 4], 16)
    assert layer_cycles(spec, [4, 5, 4], 16) > base
    assert layer_cycles(spec, [4, 4, 4], 17) > base
    assert layer_cycles(spec, [4, 4, 4], 16) == base


def test_steady_state_tile_period_is_max_of_n_and_tile_words():
    spec = load_spec("tile8")                    # 8 words per tile
    for n in (1, 4, 8, 20, 64):
        a, b = layer_cycles(spec, [30], n), layer_cycles(spec, [31], n)
        assert b - a == max(n, spec.tile_words), f"N={n}"


def test_schedule_respects_two_banks():
    spec = load_spec("tile8")
    sched = layer_schedule(spec, [1, 0, 0, 3, 0, 2], 10)
    for q in range(2, 6):
        assert sched["start"][q] >= sched["drain"][q - 2] + 10
    assert np.all(np.diff(sched["drain"]) >= 10)


def test_estimate_layer_accepts_a_layer():
    spec = small_spec()
    layer = random_layer(spec, np.random.default_rng(1), 16, 32, density=0.5)
    result = estimate_layer(spec, layer, 4)
    assert result["cycles"] == layer_cycles(spec, layer.nnz_per_row(), 4)
    assert result["macs"] + result["macs_skipped"] == layer.total_blocks * 8 * 4
    assert result["weight_bytes"] == layer.nnz_blocks * spec.tile_bytes
    assert result["time_us"] == pytest.approx(result["cycles"] / spec.clock_mhz)


def test_bad_arguments():
    spec = small_spec()
    with pytest.raises(UsageError, match="n_tokens"):
        layer_cycles(spec, [1], 9)
    with pytest.raises(UsageError, match="n_tokens"):
        layer_cycles(spec, [1], 0)
    with pytest.raises(UsageError, match=">= 0"):
        layer_cycles(spec, [-1], 1)
    with pytest.raises(UsageError, match="more tiles"):
        estimate_layer(spec, {"nnz_per_row": [5], "n_block_cols": 4}, 1)


# ---- bandwidth limit ---------------------------------------------------------------------------------

def _with_bandwidth(name, bandwidth):
    data = load_spec(name).to_dict()
    data["memory"]["bandwidth_bytes_per_cycle"] = bandwidth
    return spec_from_dict(data, source="<bandwidth>")


def test_word_level_fetch_model_reduces_to_the_closed_form_without_a_limit():
    """The bandwidth-limited schedule follows every weight word; with a bucket that never refuses it must
    give exactly the closed-form recurrence (both describe the same RTL)."""
    from blockforge.estimate import BandwidthBucket, _rows, _throttled_tiles, _tile_source

    def events(nnz, n, tiles):
        rows = []
        _rows(nnz, n, tiles, accumulate_latency(spec), lambda *row: rows.append(row))
        return rows

    rng = np.random.default_rng(0)
    for trial in range(300):
        base = load_spec(shipped_spec_names()[trial % len(shipped_spec_names())]).to_dict()
        base["memory"]["read_latency"] = 1 + trial % 4
        spec = spec_from_dict(base, source="<trial>")
        words, latency = spec.tile_words, spec.memory.read_latency
        rows = int(rng.integers(1, 20))
        nnz = (rng.integers(0, 6, rows) * (rng.random(rows) < 0.7)).tolist()
        n = int(rng.integers(1, spec.buffers.max_tokens + 1))
        unlimited = BandwidthBucket(gain=words, cost=words, capacity=2 * words - 1)
        word_by_word = events(nnz, n, _throttled_tiles(latency, words, unlimited, nnz, n))
        assert word_by_word == events(nnz, n, _tile_source(spec, nnz, n)), (trial, nnz, n)


@pytest.mark.parametrize("name", ["tile8", "tile16", "row1x96"])
def test_bandwidth_limit_costs_at_least_tile_load_per_tile(name):
    rng = np.random.default_rng(1)
    nnz = rng.integers(0, 8, 40)
    n = 16
    free = layer_cycles(load_spec(name), nnz, n)
    previous = free
    for bandwidth in (16, 4, 1):
        spec = _with_bandwidth(name, bandwidth)
        cycles = layer_cycles(spec, nnz, n)
        assert cycles >= previous
        assert cycles >= int(nnz.sum()) * spec.tile_load_cycles - spec.tile_load_cycles
        previous = cycles


def test_fast_cycle_count_equals_the_schedule():
    """layer_cycles (the whole-model hot path) and layer_schedule (per-row arrays) agree."""
    rng = np.random.default_rng(5)
    for trial in range(400):
        base = load_spec(shipped_spec_names()[trial % len(shipped_spec_names())]).to_dict()
        base["memory"]["read_latency"] = 1 + trial % 4
        spec = spec_from_dict(base, source="<trial>")
        nnz = rng.integers(0, 8, int(rng.integers(1, 30))) * (rng.random() < 0.9)
        n = int(rng.integers(1, spec.buffers.max_tokens + 1))
        assert layer_cycles(spec, nnz, n) == layer_schedule(spec, nnz, n)["cycles"], (trial, nnz.tolist(), n)
