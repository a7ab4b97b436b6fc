"""The end-to-end flow: run settings, resumable stages, and (slow) a tiny real run through the RTL."""

from __future__ import annotations

import json

import pytest

from blockforge_app.cli import main
from blockforge.errors import UsageError
from blockforge_app.flow import RunConfig, Stages, format_summary


def test_run_config_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("spec: tile16\nsparsity: 0.8\npreset: full\n")
    config = RunConfig.from_yaml(path, sparsity=0.6, seed=None)
    assert (config.spec, config.sparsity, config.preset, config.seed) == ("tile16", 0.6, "full", 0)
    assert config.schedule_values()["dense_epochs"] == 2.0
    assert RunConfig(preset="demo", dense_epochs=0.5).schedule_values()["dense_epochs"] == 0.5
    # the full preset's phases follow the recommended schedule of its sparsity (longer above 80%)
    values = RunConfig(preset="full", sparsity=0.9, retrain_epochs=3.0).schedule_values()
    assert (values["bsp_epochs"], values["retrain_epochs"]) == (4.0, 3.0)


@pytest.mark.parametrize("text, message", [
    ("spec: tile8\nsparsty: 0.5\n", "sparsty: unknown key"),
    ("- 1\n", "expected a mapping"),
    ("spec: [tile8\n", "invalid YAML"),
    ("preset: huge\n", "preset: unknown preset 'huge'"),
    ("simulator: questa\n", "simulator: expected auto, icarus or verilator"),
    ("tokens: 0\n", r"run\.yaml: tokens: expected int >= 1, got 0"),
    ("train_size: -3\n", r"train_size: expected int >= 1, got -3"),
    ("seed: 1.5\n", r"seed: expected int >= 0, got 1\.5"),
    ("distill: 'yes'\n", r"distill: expected bool, got 'yes'"),
    ("max_length: true\n", r"max_length: expected int >= 8, got True"),
    ("a: &a [1, 2]\nb: *a\n", r"line 2: YAML aliases \(\*a\) are not allowed"),
    ("spec: tile8\nspec: tile16\n", r"line 2: duplicate key 'spec'"),
])
def test_run_config_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as info:
        RunConfig.from_yaml(path)
    assert "\n" not in str(info.value)


def test_distillation_follows_the_preset_unless_given():
    assert RunConfig(preset="full").resolved_distill is True        # the measured recipe
    assert RunConfig(preset="demo").resolved_distill is False       # the demo keeps its time budget
    assert RunConfig(preset="full", distill=False).resolved_distill is False


def test_rtl_eval_examples_follow_the_simulator_unless_given():
    assert RunConfig().resolved_rtl_eval_examples("verilator") == 64
    assert RunConfig().resolved_rtl_eval_examples("icarus") == 8
    assert RunConfig(rtl_eval_examples=0).resolved_rtl_eval_examples("verilator") == 0     # 0 skips the stage
    assert RunConfig(rtl_eval_examples=500).resolved_rtl_eval_examples("icarus") == 500
    with pytest.raises(UsageError, match="rtl_eval_examples: expected int >= 0, got -1"):
        RunConfig(rtl_eval_examples=-1)


def test_run_cli_reports_config_errors_with_exit_2(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("modle: default\n")
    assert main(["run", "--config", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blockforge: error: ") and "modle: unknown key" in err and err.count("\n") == 1


def test_stages_skip_when_inputs_and_outputs_are_unchanged(tmp_path):
    calls = []
    log = []

    def make(name):
        def body():
            calls.append(name)
            (tmp_path / f"{name}.txt").write_text(name)
            return {"value": len(calls)}
        return body

    def run_all(setting):
        stages = Stages(tmp_path, log.append)
        a = stages.run("a", {"setting": setting}, [tmp_path / "a.txt"], make("a"))
        b = stages.run("b", {}, [tmp_path / "b.txt"], make("b"), after=("a",))
        return stages, a, b

    stages, a, b = run_all(1)
    assert calls == ["a", "b"] and stages.ran == ["a", "b"]
    stages, a2, b2 = run_all(1)                       # nothing changed: both skipped, results kept
    assert calls == ["a", "b"] and stages.skipped == ["a", "b"] and (a2, b2) == (a, b)
    (tmp_path / "b.txt").unlink()                     # a missing output reruns that stage only
    stages, _, _ = run_all(1)
    assert calls == ["a", "b", "b"] and stages.ran == ["b"]
    stages, _, _ = run_all(2)                         # a changed input reruns it and what depends on it
    assert calls == ["a", "b", "b", "a", "b"] and stages.ran == ["a", "b"]
    assert any("up to date, skipped" in line for line in log)
    (tmp_path / "a.txt").write_text("b")            # same size, other content: a reruns; it writes the same
    stages, _, _ = run_all(2)                        # file again, so b (which depends on its content) is kept
    assert calls[-1] == "a" and stages.ran == ["a"] and stages.skipped == ["b"]
    (tmp_path / "b.txt").write_text("")             # truncated: b reruns
    stages, _, _ = run_all(2)
    assert stages.ran == ["b"]
    (tmp_path / ".stages" / "a.json").write_text("{trunc")      # a damaged stamp: rerun, no traceback
    stages, _, _ = run_all(2)
    assert stages.ran == ["a"] and stages.skipped == ["b"]


def test_format_summary_shows_every_figure():
    summary = {
        "model": "default", "task": "default", "spec": "tile8", "method": "bsp", "target_sparsity": 0.5,
        "preset": "demo", "seed": 0, "dense_accuracy": 0.87, "pruned_float_accuracy": 0.86, "int8_accuracy": 0.855,
        "dev_examples": 500, "rtl_accuracy": 0.875, "rtl_eval_examples": 16, "int8_accuracy_same_examples": 0.875,
        "rtl_logits_identical": True, "block_sparsity": 0.5, "param_compression": 2.0, "prunable_params_kept": 5,
        "prunable_params_dense": 10, "byte_compression_vs_fp32": 7.1, "image_bytes": 123, "n_tokens": 64,
        "estimated_cycles": 1000, "rtl_cycles": 1000, "simulator": "icarus", "estimate_equals_rtl": True,
        "speedup_vs_dense": 1.98, "dense_cycles": 1980, "utilization": 0.99, "time_ms_at_clock": 0.005,
        "mismatches": 0, "rtl_elements_checked": 99, "rtl_layers": 36, "report": "out/report.html"}
    text = format_summary(summary)
    for needle in ("87.0%", "86.0%", "85.5%", "87.5%", "logits identical: True", "2.00x parameters",
                   "estimated 1,000, simulated 1,000 (icarus), equal: True", "1.98x", "mismatches", "0 (99 outputs"):
        assert needle in text, needle


@pytest.mark.slow
@pytest.mark.cosim
def test_tiny_run_end_to_end(tmp_path):
    """The real flow on the default model with a tiny budget: every stage, then a resumed rerun."""
    config = tmp_path / "run.yaml"
    # Icarus runs the engine at ~4k cycles/s: short sentences, high sparsity, one sentence through the RTL.
    config.write_text("sparsity: 0.875\ntrain_size: 64\ndev_size: 32\ndense_epochs: 0.25\nbsp_epochs: 0.25\n"
                      "retrain_epochs: 0.25\ncalib: 16\ntokens: 4\nmax_length: 12\nrtl_eval_examples: 1\n"
                      "simulator: icarus\n")
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mismatches"] == 0 and summary["estimate_equals_rtl"] and summary["rtl_logits_identical"]
    assert summary["block_sparsity"] == pytest.approx(0.875, abs=0.01)
    html = (out / "report.html").read_text()
    assert len(html) > 10_000
    for label in ("The run", "accuracy, dense", "accuracy through the RTL", "compression, image bytes vs fp32",
                  "pruning method", "time per pass (ms)", "clock used"):
        assert label in html, label
    assert main(["run", "--config", str(config), "-o", str(out)]) == 0      # resumed: every stage skipped
    stamps = {p.stem for p in (out / ".stages").glob("*.json")}
    assert stamps == {"prune", "export", "int8_eval", "rtl_layers", "rtl_eval", "estimate", "report"}
