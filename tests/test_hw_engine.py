"""The Amaranth engine end to end in Amaranth's simulator: bit-exact against blockforge.reference,
cycle count equal to blockforge.estimate, status bits instead of hangs."""

from __future__ import annotations

import numpy as np
import pytest

from blockforge.estimate import layer_cycles
from blockforge.reference import linear
from blockforge.spec import spec_from_dict
from blockforge_hw.engine import Engine
from blockforge_hw.layouts import STATUS_BITS
from blockforge_hw.simulate import run_layer, run_layers
from blockforge_hw.testing import random_activations, random_layer, small_spec


def check_layer(spec, layer, x, seed, **stalls):
    result = run_layer(spec, layer, x, seed=seed, **stalls)
    assert not result.timed_out, f"seed {seed}: engine did not finish"
    assert result.status == 0, f"seed {seed}: status {result.status_names}"
    expected, _ = linear(layer, x, spec.numerics)
    assert np.array_equal(result.y, expected), f"seed {seed}: outputs differ from the reference"
    if not stalls:
        cycles = layer_cycles(spec, layer.nnz_per_row(), x.shape[1])
        assert result.cycles == cycles, f"seed {seed}: engine {result.cycles} cycles, estimate {cycles}"
    return result


@pytest.mark.parametrize("seed", range(12))
def test_random_layers_exact_and_cycles_equal(seed):
    rng = np.random.default_rng(seed)
    rows, cols, bus = [(2, 4, 32), (2, 4, 64), (1, 8, 16), (4, 2, 8), (2, 2, 32), (4, 4, 32)][seed % 6]
    spec = small_spec(rows, cols, bus_bits=bus, read_latency=1 + seed % 3,
                      rounding=("half_up", "half_even", "truncate")[seed % 3], saturate=seed % 4 != 3)
    out_f, in_f = int(rng.integers(1, 33)), int(rng.integers(1, 33))
    layer = random_layer(spec, rng, out_f, in_f, density=float(rng.random()))
    check_layer(spec, layer, random_activations(rng, in_f, int(rng.integers(1, 9))), seed)


@pytest.mark.parametrize("case", ["dense", "all_empty", "empty_rows", "n1", "nmax", "one_tile"])
def test_edge_cases(case):
    seed = 100 + ["dense", "all_empty", "empty_rows", "n1", "nmax", "one_tile"].index(case)
    rng = np.random.default_rng(seed)
    spec = small_spec(2, 4)
    mask = {"dense": np.ones((8, 8), bool), "all_empty": np.zeros((8, 8), bool),
            "empty_rows": np.tile([[True], [False], [False], [True]], (2, 8)),
            "one_tile": np.eye(8, dtype=bool)[:, ::-1]}.get(case, rng.random((8, 8)) < 0.4)
    n_tokens = {"n1": 1, "nmax": 8, "dense": 8}.get(case, 5)
    layer = random_layer(spec, rng, 16, 32, block_mask=mask)
    check_layer(spec, layer, random_activations(rng, 32, n_tokens), seed)


@pytest.mark.parametrize("seed", range(3))
def test_stalls_keep_outputs_exact(seed):
    rng = np.random.default_rng(200 + seed)
    spec = small_spec(2, 4, read_latency=2)
    layer = random_layer(spec, rng, 12, 24, density=0.6)
    x = random_activations(rng, 24, 6)
    free = run_layer(spec, layer, x)
    stalled = check_layer(spec, layer, x, 200 + seed, weight_stall=96, out_stall=128)
    assert stalled.cycles > free.cycles, f"seed {200 + seed}: stalls did not cost cycles"


def test_output_backpressure_only():
    rng = np.random.default_rng(300)
    spec = small_spec(2, 4)
    layer = random_layer(spec, rng, 16, 16, density=1.0)
    check_layer(spec, layer, random_activations(rng, 16, 8), 300, out_stall=200)


def test_saturation_and_rounding_ties():
    """Large multipliers saturate; shift-1 products of odd values are exact ties."""
    rng = np.random.default_rng(400)
    for rounding in ("half_up", "half_even", "truncate"):
        for saturate in (True, False):
            spec = small_spec(2, 4, rounding=rounding, saturate=saturate)
            layer = random_layer(spec, rng, 8, 8, density=1.0, shift_range=(0, 2))
            layer.multiplier[:] = rng.integers(1, 4, layer.multiplier.shape)
            check_layer(spec, layer, random_activations(rng, 8, 3), 400)


def status_of(spec, layer, x, **kw):
    result = run_layer(spec, layer, x, max_cycles=2000, **kw)
    assert not result.timed_out, f"engine hung (status {result.status})"
    return result.status


def test_bad_config_sets_status_instead_of_hanging():
    rng = np.random.default_rng(500)
    spec = small_spec(2, 4)
    layer = random_layer(spec, rng, 8, 16, density=1.0)
    x = random_activations(rng, 16, 4)
    good = [4, layer.n_block_rows, layer.n_block_cols, layer.nnz_blocks]
    assert status_of(spec, layer, x, config=[0] + good[1:]) == 1 << STATUS_BITS["bad_tokens"]
    assert status_of(spec, layer, x, config=[9] + good[1:]) == 1 << STATUS_BITS["bad_tokens"]
    assert status_of(spec, layer, x, config=[4, 17, 4, 8]) == 1 << STATUS_BITS["bad_shape"]
    assert status_of(spec, layer, x, config=[4, 4, 0, 8]) == 1 << STATUS_BITS["bad_shape"]
    # index names more tiles than the weights hold
    assert status_of(spec, layer, x, config=[4, 4, 4, 5]) == 1 << STATUS_BITS["tile_overrun"]
    # a column beyond n_block_cols
    assert status_of(spec, layer, x, config=[4, 4, 2, 16]) & 1 << STATUS_BITS["bad_column"]
    # weights beyond the weight memory
    assert status_of(spec, layer, x, config=[4, 4, 4, 17]) == 1 << STATUS_BITS["weights_overrun"]
    # more rows than the index holds: the walker runs off the index memory
    assert status_of(spec, layer, x, config=[4, 5, 4, 16]) == 1 << STATUS_BITS["index_overrun"]


def test_constructor_rejects_what_the_spec_cannot_take():
    spec = small_spec(2, 4)
    with pytest.raises(ValueError, match="weight_depth 1"):
        Engine(spec, weight_depth=1)
    with pytest.raises(ValueError, match="index_depth"):
        Engine(spec, index_depth=0)
    with pytest.raises(ValueError, match="Spec"):
        Engine("tile8")


# ---- restart without reset ---------------------------------------------------------------------------
# One engine, reset once, runs several layers back to back (memories and config rewritten between runs,
# as the Verilog top's reload does). Each run must be exact and take exactly the estimated cycles: no
# state of one run (e.g. weight words requested while idle) may leak into the next.

def check_runs(spec, jobs, seed, **kw):
    results = run_layers(spec, jobs, **kw)
    for k, ((layer, x), result) in enumerate(zip(jobs, results)):
        where = f"seed {seed}, run {k} ({layer.name})"
        assert not result.timed_out and result.status == 0, f"{where}: status {result.status_names}"
        expected, _ = linear(layer, x, spec.numerics)
        assert np.array_equal(result.y, expected), \
            f"{where}: {int((result.y != expected).sum())} outputs differ from the reference"
        cycles = layer_cycles(spec, layer.nnz_per_row(), x.shape[1])
        assert result.cycles == cycles, f"{where}: engine {result.cycles} cycles, estimate {cycles}"
    return results


@pytest.mark.parametrize("latency", [1, 2, 3])
def test_back_to_back_runs_without_reset(latency):
    seed = 600 + latency
    rng = np.random.default_rng(seed)
    spec = small_spec(2, 4, read_latency=latency)
    a = random_layer(spec, rng, 16, 32, density=0.6, name="a")
    b = random_layer(spec, rng, 24, 16, density=0.5, name="b")
    empty = random_layer(spec, rng, 8, 8, density=0.0, name="empty")
    xa, xb, xe = random_activations(rng, 32, 5), random_activations(rng, 16, 7), random_activations(rng, 8, 3)
    check_runs(spec, [(a, xa), (a, xa), (b, xb), (empty, xe), (a, xa)], seed, gap=latency - 1)


def test_restart_right_after_an_error_abort():
    """A run stopped by an error while weight words are still in flight: the next start (no reset,
    no idle gap) must not see them."""
    rng = np.random.default_rng(610)
    spec = small_spec(2, 4, read_latency=3)
    layer = random_layer(spec, rng, 16, 32, density=1.0)
    x = random_activations(rng, 32, 2)
    bad_column = [2, layer.n_block_rows, 2, layer.nnz_blocks]
    results = run_layers(spec, [(layer, x), (layer, x)], configs=[bad_column, None], gap=0)
    assert results[0].status == 1 << STATUS_BITS["bad_column"]
    assert results[1].status == 0
    expected, _ = linear(layer, x, spec.numerics)
    assert np.array_equal(results[1].y, expected)
    assert results[1].cycles == layer_cycles(spec, layer.nnz_per_row(), 2)


# ---- bandwidth-limited weight memory ------------------------------------------------------------------

def bandwidth_spec(rows, cols, bus_bits, latency, bandwidth):
    data = small_spec(rows, cols, bus_bits=bus_bits, read_latency=latency).to_dict()
    data["memory"]["bandwidth_bytes_per_cycle"] = bandwidth
    return spec_from_dict(data, source="<bandwidth>")


@pytest.mark.parametrize("seed", range(8))
def test_bandwidth_limited_memory_cycles_equal_estimate(seed):
    """The harness's weight memory throttled by the spec's bandwidth (token bucket): outputs exact and
    cycles equal to the estimate, on two back-to-back runs."""
    rng = np.random.default_rng(700 + seed)
    rows, cols, bus = [(2, 4, 32), (2, 4, 16), (1, 8, 16), (4, 4, 32)][seed % 4]
    spec = bandwidth_spec(rows, cols, bus, 1 + seed % 3, [0.5, 1, 1.5, 2.5, 0.75, 1.25, 1.75, 0.6][seed])
    assert spec.tile_load_cycles > spec.tile_words
    out_f, in_f = int(rng.integers(4, 33)), int(rng.integers(4, 33))
    mask = None
    if seed % 2:        # empty rows and a sparse tail: the MAC array waits for the drain, the FIFO fills up
        t = spec.tiling(out_f, in_f)
        mask = rng.random((t.block_rows, t.block_cols)) < 0.7
        mask[1::3] = False
    layer = random_layer(spec, rng, out_f, in_f, density=float(rng.uniform(0.2, 1)), block_mask=mask)
    x = random_activations(rng, in_f, int(rng.integers(1, 9)))
    check_runs(spec, [(layer, x), (layer, x)], 700 + seed)


@pytest.mark.parametrize("seed", range(3))
def test_lut_multipliers_of_the_fpga_build_stay_exact(seed):
    """The FPGA build's MAC products (shift-and-add in LUTs) give the outputs and cycles of the
    simulated RTL's multiplications, with stalls too."""
    rng = np.random.default_rng(900 + seed)
    rows, cols, bus = [(8, 8, 64), (2, 4, 32), (1, 8, 16)][seed]
    spec = small_spec(rows, cols, bus_bits=bus, features=32, rounding=("half_up", "half_even", "truncate")[seed])
    layer = random_layer(spec, rng, 32, 32, density=0.6)
    x = random_activations(rng, 32, int(rng.integers(1, 9)))
    expected, _ = linear(layer, x, spec.numerics)
    result = run_layer(spec, layer, x, seed=seed, multipliers="lut", requantizer_multipliers="lut")
    assert result.status == 0 and np.array_equal(result.y, expected), f"seed {seed}"
    assert result.cycles == layer_cycles(spec, layer.nnz_per_row(), x.shape[1]), f"seed {seed}"
    stalled = run_layer(spec, layer, x, seed=seed, weight_stall=60, out_stall=60, multipliers="lut")
    assert np.array_equal(stalled.y, expected), f"seed {seed}: stalls"


@pytest.mark.parametrize("seed", range(4))
def test_accumulator_collision_reads_are_never_used(monkeypatch, seed):
    """The FPGA build declares the accumulator's read-during-write collisions undefined (docs/fpga.md):
    with every collided read returning garbage, outputs and cycles stay those of the reference, at the
    token counts that collide most (N = 1, 2, 3: a row's read right behind its own write) and with stalls."""
    import functools

    import blockforge_hw.engine as engine_module
    from blockforge_hw.accumulator_bank import AccumulatorBank

    monkeypatch.setattr(engine_module, "AccumulatorBank",
                        functools.partial(AccumulatorBank, collision_data=(1 << 40) - 1 - seed))
    rng = np.random.default_rng(700 + seed)
    rows, cols, bus = [(2, 4, 32), (1, 8, 64), (4, 2, 8), (2, 2, 32)][seed]
    spec = small_spec(rows, cols, bus_bits=bus, read_latency=1 + seed % 2)
    layer = random_layer(spec, rng, 16, 32, density=0.8)
    for n_tokens in (1, 2, 3):
        check_layer(spec, layer, random_activations(rng, 32, n_tokens), seed)
    check_layer(spec, layer, random_activations(rng, 32, 2), seed, weight_stall=80, out_stall=80)


def test_mixed_dsp_and_lut_products_stay_exact():
    """The FPGA build on a part with too few DSPs: the first k products multiply, the rest are LUT
    shift-and-add (tile16 on ECP5-85: 124 of 256); outputs and cycles equal the reference."""
    rng = np.random.default_rng(955)
    spec = small_spec(2, 4, bus_bits=32, features=32)
    layer = random_layer(spec, rng, 32, 32, density=0.7)
    x = random_activations(rng, 32, 5)
    expected, _ = linear(layer, x, spec.numerics)
    result = run_layer(spec, layer, x, multipliers=5)
    assert result.status == 0 and np.array_equal(result.y, expected)
    assert result.cycles == layer_cycles(spec, layer.nnz_per_row(), x.shape[1])
    with pytest.raises(ValueError, match="DSP products"):
        Engine(spec, multipliers=9)
