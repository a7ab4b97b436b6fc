"""Generated Verilog: every shipped spec elaborates in Icarus; one small layer runs from hex files
to completion, bit-exact and in exactly the estimated cycles."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from blockforge.errors import UsageError
from blockforge.estimate import layer_cycles
from blockforge.hexfiles import read_outputs, write_config, write_hex
from blockforge.reference import linear
from blockforge.spec import load_spec, shipped_spec_names
from blockforge_hw.icarus import compile_icarus, run_icarus
from blockforge_hw.layouts import STATUS_BITS
from blockforge_hw.testing import random_activations, random_layer, small_spec
from blockforge_hw.verilog import write_verilog

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")


@pytest.mark.parametrize("name", shipped_spec_names())
def test_every_shipped_spec_elaborates_in_icarus(name, tmp_path):
    paths = write_verilog(load_spec(name), tmp_path / "rtl")
    vvp, messages = compile_icarus(tmp_path / "rtl", tmp_path / "sim.vvp")
    assert vvp.exists()
    assert "warning" not in messages.lower(), messages[:2000]
    assert "module bf_sim_top" in paths["sim_top"].read_text()


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory):
    spec = small_spec(2, 4, read_latency=2)
    root = tmp_path_factory.mktemp("icarus")
    write_verilog(spec, root / "rtl")
    vvp, _ = compile_icarus(root / "rtl", root / "sim.vvp")
    return spec, root, vvp


@pytest.mark.parametrize("seed", [0, 1])
def test_icarus_runs_a_layer_exactly(small_sim, seed):
    spec, root, vvp = small_sim
    rng = np.random.default_rng(600 + seed)
    mask = rng.random((6, 5)) < 0.5
    mask[2] = False                                  # an empty block row
    layer = random_layer(spec, rng, 12, 20, block_mask=mask)
    x = random_activations(rng, 20, 6)
    hex_dir = root / f"hex{seed}"
    write_hex(layer, spec, hex_dir, x)
    expected, _ = linear(layer, x, spec.numerics)
    free = run_icarus(vvp, hex_dir, hex_dir / "out.hex")
    assert (free.status, free.timed_out) == (0, False), free.log[-1000:]
    assert np.array_equal(read_outputs(hex_dir / "out.hex", layer, spec, 6), expected), f"seed {600 + seed}"
    assert free.cycles == layer_cycles(spec, layer.nnz_per_row(), 6), f"seed {600 + seed}"
    stalled = run_icarus(vvp, hex_dir, hex_dir / "out_stalled.hex", stall_weights=100, stall_out=100, seed=seed + 3)
    assert stalled.status == 0 and stalled.cycles > free.cycles, f"seed {600 + seed}"
    assert np.array_equal(read_outputs(hex_dir / "out_stalled.hex", layer, spec, 6), expected), f"seed {600 + seed}"


def test_icarus_loads_the_byte_files_as_the_hex_files(small_sim):
    """``+membin``: the same layer from ``$fread`` byte files computes the same outputs in the same cycles."""
    spec, root, vvp = small_sim
    rng = np.random.default_rng(620)
    layer = random_layer(spec, rng, 12, 20, density=0.6)
    x = random_activations(rng, 20, 7)
    runs = {}
    for fmt in ("hex", "bin"):
        mem_dir = root / f"fmt_{fmt}"
        write_hex(layer, spec, mem_dir, x, fmt=fmt)
        result = run_icarus(vvp, mem_dir, mem_dir / "out.hex", fmt=fmt)
        assert (result.status, result.timed_out) == (0, False), result.log[-1000:]
        runs[fmt] = (read_outputs(mem_dir / "out.hex", layer, spec, 7), result.cycles)
    expected, _ = linear(layer, x, spec.numerics)
    assert np.array_equal(runs["bin"][0], expected), "seed 620"
    assert runs["bin"][1] == runs["hex"][1] == layer_cycles(spec, layer.nnz_per_row(), 7), "seed 620"


def test_icarus_stops_on_a_missing_byte_file(small_sim, tmp_path):
    spec, root, vvp = small_sim
    layer = random_layer(spec, np.random.default_rng(630), 4, 8)
    write_hex(layer, spec, tmp_path, random_activations(np.random.default_rng(630), 8, 2))   # hex files only
    with pytest.raises(UsageError, match="cannot open .*weights.bin"):
        run_icarus(vvp, tmp_path, tmp_path / "out.hex", fmt="bin")


def test_icarus_reports_bad_config(small_sim):
    spec, root, vvp = small_sim
    layer = random_layer(spec, np.random.default_rng(610), 4, 8)
    hex_dir = root / "bad"
    write_hex(layer, spec, hex_dir, random_activations(np.random.default_rng(610), 8, 2))
    write_config(hex_dir / "config.hex", n_tokens=9, n_block_rows=layer.n_block_rows,
                 n_block_cols=layer.n_block_cols, n_tiles=layer.nnz_blocks)
    result = run_icarus(vvp, hex_dir, hex_dir / "out.hex", timeout_cycles=5000)
    assert not result.timed_out
    assert result.status == 1 << STATUS_BITS["bad_tokens"]
