"""Engine components alone in Amaranth's simulator (async testbenches) against blockforge.reference."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from blockforge.reference import requantize
from blockforge_hw.fetch import TileFetch
from blockforge_hw.harness import harness_images
from blockforge_hw.layouts import EngineGeometry
from blockforge_hw.mac_array import MacArray, lut_product
from blockforge_hw.requantizer import Requantizer
from blockforge_hw.stall_injector import StallInjector, lfsr_next
from blockforge_hw.testing import random_activations, random_layer, small_spec


def requant_cases(rng, lanes, n):
    """acc, bias, M, S rows including exact ties, saturation and shift edge cases."""
    acc = rng.integers(-2**20, 2**20, (n, lanes))
    bias = rng.integers(-2**16, 2**16, (n, lanes))
    mult = rng.integers(0, 2**16, (n, lanes))
    shift = rng.integers(0, 40, (n, lanes))
    # ties: (acc + bias)·M = odd·2^(s-1)
    acc[:8], bias[:8], mult[:8], shift[:8] = rng.integers(-50, 50, (8, lanes)) * 2 + 1, 0, 1, 1
    acc[8:12], bias[8:12], mult[8:12] = 2**31 - 2**16 - 1, 2**16, 2**16 - 1      # saturates high
    acc[12:16], bias[12:16], mult[12:16] = -2**31 + 2**16, -2**16, 2**16 - 1     # saturates low
    shift[8:16] = rng.integers(0, 3, (8, lanes))
    shift[16:20] = 62                                                          # shift past the product
    shift[20:24] = 0
    # the rounding carries across the int8 range: 127.5 (rounds to 128, out of range) and -128.5
    # (floor -129 is out of range, the rounded -128 is in)
    acc[24:26], acc[26:28], bias[24:28], mult[24:28], shift[24:28] = 255, -257, 0, 1, 1
    return acc, bias, mult, shift


@pytest.mark.parametrize("multipliers", ["dsp", "lut"])
@pytest.mark.parametrize("rounding", ["half_up", "half_even", "truncate"])
@pytest.mark.parametrize("saturate", [True, False])
def test_requantizer_matches_reference_with_its_latency(rounding, saturate, multipliers):
    """Inputs with random gaps; every output appears exactly ``latency`` cycles after its input."""
    seed = 700 + ["half_up", "half_even", "truncate"].index(rounding) * 2 + saturate
    rng = np.random.default_rng(seed)
    lanes, n = 3, 48
    spec = small_spec(rounding=rounding, saturate=saturate)
    acc, bias, mult, shift = requant_cases(rng, lanes, n)
    expected = np.stack([requantize((acc[k] + bias[k]).reshape(-1, 1), mult[k], shift[k], spec.numerics)[:, 0]
                         for k in range(n)])
    dut = Requantizer(lanes=lanes, acc_bits=32, multiplier_bits=16, rounding=rounding, saturate=saturate,
                      multipliers=multipliers)
    sent, got = [], []

    async def bench(ctx):
        k = cycle = 0
        while len(got) < n:
            valid = k < n and rng.random() < 0.6
            if valid:
                for i in range(lanes):
                    ctx.set(dut.i.payload.acc[i], int(acc[k, i]))
                    ctx.set(dut.i.payload.bias[i], int(bias[k, i]))
                    ctx.set(dut.i.payload.multiplier[i], int(mult[k, i]))
                    ctx.set(dut.i.payload.shift[i], int(shift[k, i]))
                ctx.set(dut.i.payload.last, int(k == n - 1))
                sent.append(cycle)
                k += 1
            ctx.set(dut.i.valid, int(valid))
            if ctx.get(dut.o.valid):
                got.append((cycle, [ctx.get(dut.o.payload.y[i]) for i in range(lanes)], ctx.get(dut.o.payload.last)))
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(np.array([y for _, y, _ in got]), expected), f"seed {seed}: differs from the reference"
    assert [c for c, _, _ in got] == [c + dut.latency for c in sent], f"seed {seed}: latency"
    assert [last for _, _, last in got] == [0] * (n - 1) + [1]


def test_mac_array_partial_sums():
    seed = 710
    rng = np.random.default_rng(seed)
    spec = small_spec(2, 4)
    g = EngineGeometry.from_spec(spec, weight_depth=64, index_depth=64)
    dut = MacArray(g)
    tiles = rng.integers(-128, 128, (3, 2, 4))
    x = rng.integers(-128, 128, (8, 4))            # block column c, token n → x[c] slice (toy: col = job)
    n_tokens = 3
    sums = []

    async def bench(ctx):
        ctx.set(dut.n_tokens, n_tokens)
        ctx.set(dut.row_slot_free, 1)
        job = 0
        for _ in range(40):
            if job < 3:
                ctx.set(dut.jobs.valid, 1)
                for i in range(2):
                    for j in range(4):
                        ctx.set(dut.jobs.payload.tile[i][j], int(tiles[job, i, j]))
                ctx.set(dut.jobs.payload.col, job)
                ctx.set(dut.jobs.payload.first, int(job == 0))
                ctx.set(dut.jobs.payload.last, int(job == 2))
            else:
                ctx.set(dut.jobs.valid, 0)
            addr = ctx.get(dut.act.addr)
            took = ctx.get(dut.jobs.ready) and job < 3
            if ctx.get(dut.partials.valid):
                sums.append((ctx.get(dut.partials.payload.token),
                             [ctx.get(dut.partials.payload.sums[i]) for i in range(2)],
                             ctx.get(dut.partials.payload.row_end)))
            await ctx.tick()
            # the activation memory answers one cycle later: word (col, n)
            col, n = addr >> g.token_bits, addr & (g.act_stride - 1)
            for j in range(4):
                ctx.set(dut.act.data[j], int(x[col * 2 + n % 2, j]) if col < 3 else 0)
            if took:
                job += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    expected = [(n, [int(tiles[c, i] @ x[c * 2 + n % 2]) for i in range(2)], int(c == 2 and n == n_tokens - 1))
                for c in range(3) for n in range(n_tokens)]
    assert sums == expected, f"seed {seed}"


def test_fetch_delivers_tiles_in_bcsr_order():
    """TileFetch against Python memory models: weight latency 3 with random request stalls, random
    job backpressure; the jobs are the layer's tiles and empty rows, in BCSR order."""
    seed = 720
    rng = np.random.default_rng(seed)
    spec = small_spec(2, 4, bus_bits=16, read_latency=3)         # 4 words per tile
    mask = rng.random((4, 4)) < 0.5
    mask[1] = False
    layer = random_layer(spec, rng, 8, 16, block_mask=mask)
    images = harness_images(layer, spec, random_activations(rng, 16, 1))
    g = EngineGeometry.from_spec(spec, weight_depth=64, index_depth=32)
    dut = TileFetch(g)
    jobs = []

    async def bench(ctx):
        ctx.set(dut.n_block_rows, layer.n_block_rows)
        ctx.set(dut.n_block_cols, layer.n_block_cols)
        ctx.set(dut.n_tiles, layer.nnz_blocks)
        ctx.set(dut.has_tiles, layer.nnz_blocks > 0)
        ctx.set(dut.n_tiles_m1, layer.nnz_blocks - 1)
        ctx.set(dut.n_block_rows_m1, layer.n_block_rows - 1)
        in_flight = []                                       # (cycle due, word)
        index_data = 0
        for cycle in range(600):
            ready = bool(rng.random() < 0.5)
            mem_ready = bool(rng.random() < 0.7)
            ctx.set(dut.jobs.ready, ready)
            ctx.set(dut.weight_req.ready, mem_ready)
            ctx.set(dut.index.data.as_value(), index_data)
            due = [w for c, w in in_flight if c == cycle]
            ctx.set(dut.weight_resp.valid, bool(due))
            ctx.set(dut.weight_resp.payload, due[0] if due else 0)
            if ctx.get(dut.jobs.valid) and ready:
                p = dut.jobs.payload
                tile = [[ctx.get(p.tile[i][j]) for j in range(4)] for i in range(2)]
                jobs.append((ctx.get(p.col), ctx.get(p.first), ctx.get(p.last), ctx.get(p.empty), tile))
            if ctx.get(dut.weight_req.valid) and mem_ready:
                addr = ctx.get(dut.weight_req.payload)
                in_flight.append((cycle + 3, images["weights"][addr]))
            address = ctx.get(dut.index.addr)
            await ctx.tick()
            index_data = images["index"][address] if address < len(images["index"]) else 0
        assert not (ctx.get(dut.index_overrun) or ctx.get(dut.bad_column) or ctx.get(dut.tile_overrun))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    expected, k = [], 0
    for r in range(layer.n_block_rows):
        lo, hi = layer.row_ptr[r], layer.row_ptr[r + 1]
        if lo == hi:
            expected.append((0, 1, 1, 1, None))
        for k in range(lo, hi):
            expected.append((int(layer.col_idx[k]), int(k == lo), int(k == hi - 1), 0, layer.tiles[k].tolist()))
    got = [(c, f, la, e, None if e else t) for c, f, la, e, t in jobs]
    assert got == expected, f"seed {seed}"


def test_stall_injector_matches_python_lfsr():
    dut = StallInjector(seed=0x1234)
    states = [0x1234]
    for _ in range(300):
        states.append(lfsr_next(states[-1]))
    seen = []

    async def bench(ctx):
        ctx.set(dut.enable, 1)
        ctx.set(dut.rate, 100)
        for _ in range(300):
            seen.append(ctx.get(dut.stall))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [int((s & 0xFF) < 100) for s in states[:300]]
    assert 0.25 < np.mean(seen) < 0.55


def test_component_constructors_name_bad_values():
    with pytest.raises(ValueError, match="'nearest'"):
        Requantizer(lanes=2, acc_bits=32, multiplier_bits=16, rounding="nearest")
    with pytest.raises(ValueError, match="lanes must be a positive integer, not 0"):
        Requantizer(lanes=0, acc_bits=32, multiplier_bits=16)
    with pytest.raises(ValueError, match="70000"):
        StallInjector(seed=70000)
    with pytest.raises(ValueError, match="EngineGeometry"):
        TileFetch("tile8")
    with pytest.raises(ValueError, match="weight_depth 1"):
        EngineGeometry.from_spec(small_spec(2, 4), weight_depth=1)


def test_lut_product_equals_the_multiplier_on_every_int8_pair():
    """The shift-and-add product that replaces DSPs beyond the part's count, on all 65,536 operand pairs."""
    m = Module()
    a, b, y = Signal(signed(8)), Signal(signed(8)), Signal(signed(16))
    m.d.comb += y.eq(lut_product(a, b))
    wrong = []

    async def bench(ctx):
        for va in range(-128, 128):
            for vb in range(-128, 128):
                ctx.set(a, va)
                ctx.set(b, vb)
                if ctx.get(y) != va * vb:
                    wrong.append((va, vb))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert wrong == []
