"""Real cosimulation: the Amaranth engine's Verilog under cocotb checks bit-exact against
blockforge.reference and cycle-exact against blockforge.estimate, on real .bfim images.

Default tier: a handful of small layers on Icarus (the simulator CI runs). ``slow``: the randomized
regression over every shipped spec, sparsities, token counts, rounding modes and stall patterns.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from blockforge import reference
from blockforge_app.cli import main
from blockforge.image import write_image
from blockforge.spec import load_spec, spec_from_dict
from blockforge_sim import runner
from blockforge_sim.simulator import RtlSimulator
from conftest import image_layer

pytestmark = pytest.mark.cosim


def run_cases(tmp_path, spec, cases, *, simulator="icarus", seed=1, stall_weights=0, stall_out=0):
    """Write the case layers into one image and run them all in one simulator process."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    image = tmp_path / f"{spec.name}.bfim"
    write_image(image, [layer for layer, _ in cases], spec)
    rtl = RtlSimulator(spec, simulator=simulator, work_dir=tmp_path / "rtl")
    jobs = [(layer.name, x) for layer, x in cases]
    run = rtl.run_layers(image, jobs, seed=seed, stall_weights=stall_weights, stall_out=stall_out,
                         layers={layer.name: layer for layer, _ in cases})
    return run


def activations(rng, layer, n_tokens):
    return rng.integers(-128, 128, (layer.in_features, n_tokens)).astype(np.int8)


def test_small_layers_bit_exact_and_cycle_exact_on_icarus(tmp_path):
    spec = load_spec("tile8")
    rng = np.random.default_rng(7)
    layers = [
        (image_layer(spec, "dense", 16, 16, 1.0, rng), 1),
        (image_layer(spec, "half_padded", 30, 44, 0.5, rng), 5),           # padding on both axes
        (image_layer(spec, "empty_rows", 32, 24, 0.7, rng, empty_rows=(0, 2)), 8),
        (image_layer(spec, "all_pruned", 16, 16, 0.0, rng), 3),           # bias-only outputs
        (image_layer(spec, "max_tokens", 16, 16, 0.5, rng, big_bias=True), spec.buffers.max_tokens),
    ]
    cases = [(layer, activations(rng, layer, n)) for layer, n in layers]
    run = run_cases(tmp_path, spec, cases)
    for result in run.results:
        assert result.ok, result.describe_mismatches(run.seed)
        assert result.mismatches == 0
        assert result.cycles == result.estimated_cycles, result.layer
    assert [r.n_tokens for r in run.results] == [1, 5, 8, 3, 64]
    for (layer, x), result in zip(cases, run.results):
        expected, _ = reference.linear(layer, x, spec.numerics)
        np.testing.assert_array_equal(run.outputs[result.job_id], expected)


def test_stalls_change_cycles_not_outputs(tmp_path):
    spec = load_spec("tile8")
    rng = np.random.default_rng(11)
    layer = image_layer(spec, "stalled", 24, 32, 0.6, rng)
    x = activations(rng, layer, 12)
    calm = run_cases(tmp_path / "calm", spec, [(layer, x)])
    stalled = run_cases(tmp_path / "stalled", spec, [(layer, x)], seed=5, stall_weights=96, stall_out=96)
    assert calm.results[0].ok and stalled.results[0].ok, stalled.results[0].describe_mismatches(5)
    np.testing.assert_array_equal(calm.outputs[calm.results[0].job_id], stalled.outputs[stalled.results[0].job_id])
    assert calm.results[0].cycles == calm.results[0].estimated_cycles
    assert stalled.results[0].cycles > calm.results[0].cycles


def test_real_minilm_layer_pruned_to_blocks(tmp_path):
    """A layer cut from the real default model (all-MiniLM-L6-v2), block-magnitude pruned to 75%."""
    safetensors = pytest.importorskip("safetensors.numpy")
    from blockforge.models import resolve_model
    from blockforge.quant import quantize_linear

    spec = load_spec("tile8")
    path = resolve_model("default")
    weights = safetensors.load_file(os.path.join(path, "model.safetensors"))
    key = next(k for k in weights if k.endswith("layer.0.attention.self.query.weight"))
    weight = weights[key].astype(np.float32)
    bias = weights[key.replace(".weight", ".bias")].astype(np.float32)
    blocks = weight.reshape(48, 8, 48, 8)
    norms = np.sqrt((blocks ** 2).sum(axis=(1, 3)))
    keep = norms >= np.quantile(norms, 0.75)
    weight = (blocks * keep[:, None, :, None]).reshape(384, 384)
    layer = quantize_linear("bert.encoder.layer.0.attention.self.query", weight, bias, 0.05, 0.08, spec)
    assert layer.nnz_blocks == 2304 // 4                      # the top quarter of the 48 x 48 blocks
    rng = np.random.default_rng(3)
    run = run_cases(tmp_path, spec, [(layer, activations(rng, layer, 8))])
    result = run.results[0]
    assert result.ok, result.describe_mismatches(run.seed)
    assert result.cycles == result.estimated_cycles


def test_sim_cli_on_an_image(tmp_path, capsys):
    spec = load_spec("tile8")
    rng = np.random.default_rng(5)
    layers = [image_layer(spec, "enc.0.q", 16, 24, 0.5, rng), image_layer(spec, "enc.0.o", 24, 16, 0.5, rng)]
    image = tmp_path / "tiny.bfim"
    write_image(image, layers, spec)
    status = main(["sim", str(image), "--spec", "tile8", "--tokens", "4", "--json", "--work-dir",
                   str(tmp_path / "rtl"), "--seed", "9"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [row["layer"] for row in lines[:-1]] == ["enc.0.q", "enc.0.o"]
    assert all(row["mismatches"] == 0 and row["cycles_equal"] and row["seed"] == 9 for row in lines[:-1])
    assert lines[-1]["totals"]["mismatches"] == 0 and lines[-1]["totals"]["layers_cycles_equal"] == 2

    assert main(["sim", str(image), "--spec", "tile8", "--layer", "nope", "--work-dir", str(tmp_path / "rtl")]) == 2
    assert "no layer named 'nope'" in capsys.readouterr().err
    assert main(["sim", str(image), "--spec", "tile8", "--tokens", "65", "--work-dir", str(tmp_path / "rtl")]) == 2
    assert "--tokens must be in [1, 64]" in capsys.readouterr().err


def test_relative_work_dir(tmp_path, monkeypatch):
    """The default work dir is relative (build/rtl); the simulator runs elsewhere, so paths must hold."""
    monkeypatch.chdir(tmp_path)
    spec = load_spec("tile8")
    rng = np.random.default_rng(17)
    layer = image_layer(spec, "rel", 16, 16, 0.5, rng)
    write_image("rel.bfim", [layer], spec)
    rtl = RtlSimulator(spec, work_dir="build/rtl")
    with rtl.serve() as server:
        result = server.run_layers("rel.bfim", [(layer.name, activations(rng, layer, 2))]).results[0]
    assert result.ok and result.cycles == result.estimated_cycles
    run = rtl.run_layers("rel.bfim", [(layer.name, activations(rng, layer, 3))])
    assert run.results[0].ok


def test_server_keeps_one_simulator_for_many_calls(tmp_path):
    spec = load_spec("tile8")
    rng = np.random.default_rng(13)
    layers = [image_layer(spec, f"l{i}", 16, 24, 0.6, rng) for i in range(2)]
    image = tmp_path / "two.bfim"
    write_image(image, layers, spec)
    rtl = RtlSimulator(spec, work_dir=tmp_path / "rtl")
    with rtl.serve(seed=4) as server:
        for call in range(3):
            jobs = [(layer.name, activations(rng, layer, 3 + call)) for layer in layers]
            run = server.run_layers(image, jobs, layers={layer.name: layer for layer in layers})
            for (name, x), result in zip(jobs, run.results):
                expected, _ = reference.linear(next(l for l in layers if l.name == name), x, spec.numerics)
                assert result.ok and result.cycles == result.estimated_cycles, result.describe_mismatches(4)
                np.testing.assert_array_equal(run.outputs[result.job_id], expected)
    assert len(list(server.run_dir.glob("x_*.npy"))) == 0       # activations are cleaned up per call
    with pytest.raises(runner.SimError, match="the simulation server stopped"):
        server.run_layers(image, jobs)


def test_pool_spreads_jobs_over_servers_with_the_results_of_one_server(tmp_path):
    """Two simulator processes serve a list of jobs in parallel; outputs and cycle counts equal those of
    one server, in job order, and calls from several threads share the pool."""
    from concurrent.futures import ThreadPoolExecutor

    spec = load_spec("tile8")
    rng = np.random.default_rng(19)
    layers = [image_layer(spec, f"p{i}", 16, 24, 0.6, rng) for i in range(3)]
    image = tmp_path / "pool.bfim"
    write_image(image, layers, spec)
    by_name = {layer.name: layer for layer in layers}
    jobs = [(layer.name, activations(rng, layer, n)) for n in (2, 5) for layer in layers]
    rtl = RtlSimulator(spec, work_dir=tmp_path / "rtl")
    with rtl.pool(workers=1) as one:
        single = list(one.map(image, jobs, layers=by_name))
    with rtl.pool(workers=2, seed=5) as pool:
        parallel = list(pool.map(image, jobs, layers=by_name))
        with ThreadPoolExecutor(2) as threads:
            calls = list(threads.map(lambda job: pool.run_layers(image, [job, job], layers=by_name), jobs[:2]))
    assert len(one.servers) == 1 and len(pool.servers) == 2
    assert [p.seed for p in parallel] != [5] * len(jobs)            # both servers (seeds 5, 6) ran jobs
    for (name, x), a, b in zip(jobs, single, parallel):
        ra, rb = a.results[0], b.results[0]
        assert ra.layer == rb.layer == name and ra.ok and rb.ok
        assert ra.cycles == rb.cycles == rb.estimated_cycles
        np.testing.assert_array_equal(a.outputs[ra.job_id], b.outputs[rb.job_id])
    for (name, x), run in zip(jobs[:2], calls):
        expected, _ = reference.linear(by_name[name], x, spec.numerics)
        assert run.ok and len(run.results) == 2
        for result in run.results:
            np.testing.assert_array_equal(run.outputs[result.job_id], expected)


def test_rtl_backend_runs_a_tiny_encoder_with_logits_equal_to_the_integer_path(tmp_path):
    """RTL in the loop: every prunable linear of a (tiny, random) BERT computed by the engine."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from blockforge.qmodel import integer_model, quantize_model
    from blockforge_sim.simulator import RtlBackend, summarize

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32, num_labels=2)
    model = transformers.BertForSequenceClassification(config).eval()
    spec = load_spec("tile8")
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(1, 100, (2, 10), generator=g),
                "attention_mask": torch.ones(2, 10, dtype=torch.long)} for _ in range(2)]
    quantized = quantize_model(model, spec, batches)
    batch = {"input_ids": torch.randint(1, 100, (3, 30), generator=g), "attention_mask": torch.ones(3, 30, dtype=torch.long)}
    rtl = RtlSimulator(spec, work_dir=tmp_path / "rtl")
    with torch.no_grad(), RtlBackend(rtl, quantized.layers, seed=2) as backend:
        expected = integer_model(model, quantized).forward(**batch).logits
        got = integer_model(model, quantized, backend=backend).forward(**batch).logits
    assert torch.equal(expected, got)
    totals = summarize(backend.stats)
    assert totals["layer_calls"] == 6 and totals["jobs"] == 12      # 90 tokens → two passes of ≤ 64
    assert totals["mismatches"] == 0 and totals["cycles"] == totals["estimated_cycles"]


# --------------------------------------------------------------------------------------------------
# The randomized regression (slow): every shipped spec, sparsities 0/50/90/100%, N in {1, small, max},
# every rounding mode, with and without stalls. Small layers keep Icarus time bounded.

REGRESSION_SEEDS = (1, 2)


def _regression_specs():
    for name in ("tile8", "tile16", "row1x48", "row1x96"):
        base = load_spec(name)
        for rounding in ("half_up", "half_even", "truncate"):
            numerics = dataclasses.replace(base.numerics, rounding=rounding, saturate=rounding != "truncate")
            data = dataclasses.replace(base, numerics=numerics).to_dict()
            data["name"] = f"{name}-{rounding}"
            yield pytest.param(spec_from_dict(data), id=f"{name}-{rounding}")


def _regression_simulators():
    yield "icarus"
    yield pytest.param("verilator", marks=pytest.mark.skipif(
        "verilator" not in runner.available_simulators(), reason="no Verilator >= 5.036 installed"))


@pytest.mark.slow
@pytest.mark.parametrize("simulator", list(_regression_simulators()))
@pytest.mark.parametrize("spec", list(_regression_specs()))
@pytest.mark.parametrize("seed", REGRESSION_SEEDS)
def test_randomized_regression(tmp_path, spec, seed, simulator):
    rng = np.random.default_rng(seed)
    br, bc = spec.block.rows, spec.block.cols
    out_features, in_features = 2 * br + (br > 1) * 3, 3 * bc - 1
    cases = []
    for density in (1.0, 0.5, 0.1, 0.0):
        for n_tokens in (1, 7, spec.buffers.max_tokens):
            layer = image_layer(spec, f"d{int(density * 100)}_n{n_tokens}", out_features, in_features, density,
                                 rng, big_bias=density == 0.5)
            cases.append((layer, activations(rng, layer, n_tokens)))
    stalls = {"stall_weights": 64, "stall_out": 64} if seed % 2 == 0 else {}
    run = run_cases(tmp_path, spec, cases, seed=seed, simulator=simulator, **stalls)
    for result in run.results:
        assert result.ok, result.describe_mismatches(seed)
        if not stalls:
            assert result.cycles == result.estimated_cycles, (spec.name, result.layer, seed)


@pytest.mark.skipif("verilator" not in runner.available_simulators(), reason="no Verilator >= 5.036 installed")
@pytest.mark.slow
def test_verilator_matches_icarus(tmp_path):
    spec = load_spec("tile8")
    rng = np.random.default_rng(21)
    layer = image_layer(spec, "v", 40, 48, 0.5, rng)
    x = activations(rng, layer, 16)
    icarus = run_cases(tmp_path / "i", spec, [(layer, x)])
    verilator = run_cases(tmp_path / "v", spec, [(layer, x)], simulator="verilator")
    assert icarus.results[0].ok and verilator.results[0].ok
    np.testing.assert_array_equal(icarus.outputs[icarus.results[0].job_id], verilator.outputs[verilator.results[0].job_id])
    assert icarus.results[0].cycles == verilator.results[0].cycles == verilator.results[0].estimated_cycles
    # Verilator ran bf_sim_clocked under blockforge's main (clock from C++, quiet stretch), not cocotb's
    (make_log,) = [log.read_text() for log in (tmp_path / "v" / "rtl").glob("*/build/build.log")]
    assert "verilator_main.cpp" in make_log and "share/lib/verilator/verilator.cpp" not in make_log


def test_back_to_back_layers_without_reset(tmp_path):
    """The bench resets the engine once per session: the same layer twice, then other layers, each
    started right after the previous one's done, must all be bit-exact and cycle-exact."""
    spec = load_spec("tile8")
    rng = np.random.default_rng(21)
    a = image_layer(spec, "a", 32, 48, 0.6, rng)
    b = image_layer(spec, "b", 24, 32, 0.4, rng, empty_rows=(1,))
    xa, xb = activations(rng, a, 16), activations(rng, b, 9)
    jobs = [(a, xa), (a, xa), (b, xb), (a, xa)]
    image = tmp_path / "two.bfim"
    write_image(image, [a, b], spec)
    rtl = RtlSimulator(spec, work_dir=tmp_path / "rtl")
    run = rtl.run_layers(image, [(layer.name, x) for layer, x in jobs], layers={"a": a, "b": b})
    from blockforge import reference
    for (layer, x), result in zip(jobs, run.results):
        assert result.ok and result.mismatches == 0, result.describe_mismatches(run.seed)
        assert result.cycles == result.estimated_cycles, f"job {result.job_id}: {result.cycles} cycles"
        expected, _ = reference.linear(layer, x, spec.numerics)
        np.testing.assert_array_equal(run.outputs[result.job_id], expected)


def test_bandwidth_limited_weight_memory_cycle_exact(tmp_path):
    """tile8 with a 3 bytes/cycle weight memory (the sim top's token bucket, 8 words per 22 cycles):
    outputs exact and cycles equal to the estimate, across densities, token counts and empty rows."""
    import yaml

    data = load_spec("tile8").to_dict()
    data["memory"]["bandwidth_bytes_per_cycle"] = 3
    data["name"] = "tile8-bw3"
    path = tmp_path / "tile8-bw3.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    assert spec.tile_load_cycles == 22
    rng = np.random.default_rng(3)
    cases = []
    for density, n_tokens in ((1.0, 4), (0.5, 30), (0.3, 64), (0.6, 1)):
        layer = image_layer(spec, f"d{int(density * 100)}_n{n_tokens}", 35, 31, density, rng,
                             empty_rows=(1,) if n_tokens == 1 else ())
        cases.append((layer, activations(rng, layer, n_tokens)))
    run = run_cases(tmp_path, spec, cases)
    for result in run.results:
        assert result.ok, result.describe_mismatches(run.seed)
        assert result.cycles == result.estimated_cycles, (result.layer, result.cycles, result.estimated_cycles)


@pytest.mark.parametrize("free_clock", [True, False], ids=["clock-inside", "cocotb-clock"])
def test_both_benches_agree_and_waves_record_the_engine(tmp_path, free_clock):
    """The bench with the clock inside the simulation (bf_sim_clocked, the default) and the previous one
    (bf_sim_top clocked from cocotb) give the same exact outputs and cycles; waves hold the engine's signals."""
    spec = load_spec("tile8")
    rng = np.random.default_rng(5)
    layer = image_layer(spec, "w", 24, 40, 0.5, rng)
    x = activations(rng, layer, 5)
    image = tmp_path / "w.bfim"
    write_image(image, [layer], spec)
    rtl = RtlSimulator(spec, work_dir=tmp_path / "rtl", waves=True, free_clock=free_clock, progress=False)
    run = rtl.run_layers(image, [(layer.name, x)], layers={layer.name: layer})
    result = run.results[0]
    expected, _ = reference.linear(layer, x, spec.numerics)
    assert result.ok and result.cycles == result.estimated_cycles
    np.testing.assert_array_equal(run.outputs[result.job_id], expected)
    assert run.waves is not None and run.waves.stat().st_size > 1000
    # with waves the engine keeps the wires nothing reads (Amaranth's struct field names), for the viewer
    assert "\\jobs__payload.tile[7][4] " in (rtl.work_dir / "rtl" / "bf_engine.v").read_text()


def test_sim_cli_runs_user_activations(tmp_path, capsys):
    """`blockforge sim --activations NPZ`: the user's int8 (in, N) array per layer name, checked bit-exact."""
    spec = load_spec("tile8")
    rng = np.random.default_rng(9)
    layer = image_layer(spec, "mine", 16, 24, 0.5, rng)
    image = tmp_path / "m.bfim"
    write_image(image, [layer], spec)
    acts = tmp_path / "acts.npz"
    np.savez(acts, **{layer.name: activations(rng, layer, 6)})
    assert main(["sim", str(image), "--spec", "tile8", "--activations", str(acts), "--json", "--waves",
                 "--work-dir", str(tmp_path / "wd")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["layer"] == layer.name and rows[0]["n_tokens"] == 6 and rows[0]["mismatches"] == 0
    assert rows[-1]["totals"]["mismatches"] == 0
    waves = Path(rows[-1]["totals"]["waves"])                      # kept in the server's run folder
    assert waves.stat().st_size > 1000 and waves.parent.parent.name == "runs"
