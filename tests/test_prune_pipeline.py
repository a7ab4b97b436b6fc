"""The pruning pipeline and CLI end to end on tiny random BERT / RoBERTa / DistilBERT models (the only
weights for those available offline are none, so the configs are built here) and on the real default
model (loading only, no training)."""

from __future__ import annotations

import json

import pytest
import torch

from blockforge_app.cli import main
from blockforge.errors import UsageError
from blockforge.prune.criterion import block_norms
from blockforge.prune.pattern import prunable_layers
from blockforge.prune.pipeline import PruneConfig, prune_model, run_pruning
from blockforge.prune.schedule import Schedule
from blockforge.spec import load_spec

TINY_SCHEDULE = Schedule(dense_epochs=1, bsp_epochs=1, retrain_epochs=1, learning_rate=1e-3,
                         bsp_learning_rate=1e-3, retrain_learning_rate=1e-3, reweight_period=2)


@pytest.fixture(scope="module")
def tokenizer():
    from blockforge.models import load_tokenizer

    return load_tokenizer("default")


def _save_tiny(path, model_type, tokenizer):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    common = dict(vocab_size=tokenizer.vocab_size, max_position_embeddings=72, num_labels=2)
    if model_type == "distilbert":
        config = AutoConfig.for_model("distilbert", dim=32, n_layers=2, n_heads=2, hidden_dim=64, **common)
    else:
        config = AutoConfig.for_model(model_type, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, pad_token_id=tokenizer.pad_token_id, **common)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    # a base model without a task head, as a pretrained checkpoint would be
    model.base_model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, tokenizer):
    return _save_tiny(tmp_path_factory.mktemp("tiny_bert"), "bert", tokenizer)


def _config(model, task, **kw):
    base = dict(model=str(model), task=f"sst2:{task}", spec="tile8", sparsity=0.5, schedule=TINY_SCHEDULE,
                batch_size=16, max_length=16, progress=False, seed=0)
    config = {**base, **kw}
    return PruneConfig(**{**config, "spec": load_spec(config["spec"])})


def _zero_fraction_per_layer(model, spec):
    return {l.name: (int((block_norms(l.weight.detach(), l.layout) == 0).sum()), l.layout.n_blocks)
            for l in prunable_layers(model, load_spec(spec))}


@pytest.mark.parametrize("sparsity", [0.5, 0.75])
def test_bsp_end_to_end_saves_an_exactly_block_sparse_model(tmp_path, tiny_bert, sst2_dir, sparsity):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "pruned"
    result = run_pruning(_config(tiny_bert, sst2_dir, sparsity=sparsity), out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["block_masks.safetensors", "config.json", "model.safetensors", "pruning.json", "tokenizer.json",
         "tokenizer_config.json"])
    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    for name, (zero, n) in _zero_fraction_per_layer(reloaded, "tile8").items():
        assert abs(zero - sparsity * n) <= 1, name
    for (k, v), (k2, v2) in zip(result.model.state_dict().items(), reloaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    report = json.loads((out / "pruning.json").read_text())
    assert report["method"] == "bsp" and report["spec"]["block"] == {"rows": 8, "cols": 8}
    assert set(report["metrics"]) == {"dense", "after_bsp", "after_prune", "final"}
    assert report["below_threshold_before_prune"] == report["bsp"]["below_threshold_fraction"]
    assert 0 <= report["overlap_with_magnitude"] <= 1
    assert report["phases"]["dense"]["steps"] == 6 and report["phases"]["retrain"]["steps"] == 6
    assert report["seed"] == 0 and report["data"]["train_examples"] == 96
    assert len(report["layers"]) == 12
    assert all(abs(v["block_sparsity"] - sparsity) <= 1 / v["blocks"] for v in report["layers"].values())
    # the regularizer really drove blocks to zero before hard pruning (budgeted to the target)
    assert report["bsp"]["below_threshold_fraction"] == pytest.approx(sparsity, abs=0.05)


def test_magnitude_prunes_the_lowest_norm_blocks_of_the_dense_model(tiny_bert, sst2_dir):
    result = prune_model(_config(tiny_bert, sst2_dir, method="magnitude"))
    assert result.report["overlap_with_magnitude"] == 1.0
    assert "retrain" not in result.report["phases"]
    assert result.report["metrics"]["final"] == result.report["metrics"]["after_prune"]


@pytest.mark.parametrize("model_type", ["roberta", "distilbert"])
def test_other_architectures(tmp_path, tokenizer, sst2_dir, model_type):
    model_dir = _save_tiny(tmp_path / model_type, model_type, tokenizer)
    result = prune_model(_config(model_dir, sst2_dir, method="bsp", spec="row1x48",
                                 schedule=Schedule(dense_epochs=0.5, bsp_epochs=0.5, retrain_epochs=0.5,
                                                   reweight_period=2)))
    layers = _zero_fraction_per_layer(result.model, "row1x48")
    assert len(layers) == 12
    for zero, n in layers.values():
        assert abs(zero - 0.5 * n) <= 1


def test_fine_tuned_model_skips_the_dense_phase_and_ratios_apply(tmp_path, tiny_bert, sst2_dir):
    first = run_pruning(_config(tiny_bert, sst2_dir, method="magnitude", sparsity=0.0), tmp_path / "dense")
    assert first.report["phases"]["dense"]["steps"] == 6
    ratios = tmp_path / "ratios.yaml"
    ratios.write_text('"*.attention.self.query": 0.75\n"*.output.dense": 0.25\n')
    result = prune_model(_config(tmp_path / "dense", sst2_dir, method="magnitude-retrain", ratios=str(ratios)))
    assert result.report["phases"]["dense"] == {"skipped": "fine-tuned head in checkpoint"}
    assert result.report["metrics"]["dense"] == first.report["metrics"]["dense"]
    for name, (zero, n) in _zero_fraction_per_layer(result.model, "tile8").items():
        want = 0.75 if name.endswith("query") else 0.25 if name.endswith("output.dense") else 0.5
        assert abs(zero - want * n) <= 1, name


def test_checkpoints_resume_after_the_last_finished_phase(tmp_path, tiny_bert, sst2_dir):
    config = _config(tiny_bert, sst2_dir, checkpoint_dir=str(tmp_path / "ckpt"))
    first = prune_model(config)
    progress = json.loads((tmp_path / "ckpt" / "progress.json").read_text())
    assert progress["phases_done"] == ["dense", "bsp", "prune", "retrain"]
    again = prune_model(config)  # resumes after "retrain": no training, same weights
    assert again.report["resumed_after"] == "retrain" and "resumed_after" not in first.report
    for (k, v), (_, v2) in zip(first.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(v, v2), k
    assert again.report["metrics"] == first.report["metrics"]
    ckpt = tmp_path / "ckpt"
    (ckpt / "retrain.pt").write_bytes((ckpt / "retrain.pt").read_bytes()[:4096])   # damaged: start over
    fresh = prune_model(config)
    assert "resumed_after" not in fresh.report
    assert json.loads((ckpt / "progress.json").read_text())["phases_done"] == ["dense", "bsp", "prune", "retrain"]
    (ckpt / "progress.json").write_text('{"fingerprint": "')                        # truncated: ignored
    assert "resumed_after" not in prune_model(config).report


def test_cli_prune_and_evaluate(tmp_path, tiny_bert, sst2_dir, capsys):
    out = tmp_path / "cli_out"
    status = main(["prune", "--model", str(tiny_bert), "--task", f"sst2:{sst2_dir}", "--spec", "tile8",
                   "--sparsity", "0.5", "--method", "magnitude-retrain", "--epochs", "0.5", "0", "0.5",
                   "--batch-size", "16", "--max-length", "16", "--no-progress", "-o", str(out)])
    assert status == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["block_sparsity"] == 0.5 and summary["method"] == "magnitude-retrain"
    from blockforge.fsutil import new_dir_mode
    assert out.stat().st_mode & 0o777 == new_dir_mode()      # readable like any folder, not mkdtemp's 0700
    status = main(["evaluate", "--model", str(out), "--task", f"sst2:{sst2_dir}", "--spec", "tile8"])
    assert status == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["zero_block_fraction"] == 0.5
    assert ev["metrics"]["accuracy"] == pytest.approx(summary["metrics"]["final"]["accuracy"])


@pytest.mark.parametrize("extra,match", [
    (["--sparsity", "1.0"], "--sparsity: block sparsity must be a number in \\[0, 1\\)"),
    (["--sparsity", "-0.2"], "block sparsity must be a number"),
    (["--task", "sst2:/no/such/dir"], "no such GLUE data folder"),
    (["--spec", "/no/spec.yaml"], "no such spec file"),
    (["--ratios", "RATIOS"], "matches no prunable layer"),
    (["--model", "/no/such/model"], "no such model folder"),
    (["--regularizer", "paper", "--cap-margin", "0.1"], "--cap-margin: a prox switch"),
    (["--regularizer", "paper", "--method", "magnitude"], "applies to --method bsp only"),
    (["--cap-margin", "1.5"], "--cap-margin: a number in \\[0, 1\\] or 'none'"),
    (["--allocation", "global", "--ratios", "RATIOS"], "--allocation global and --ratios"),
    (["--lambda", "0.1", "--lambda-file", "RATIOS"], "--lambda and --lambda-file"),
    (["--no-distill", "--distill-hidden", "1"], "--distill-hidden: needs distillation"),
    (["--no-distill", "--distill-phases", "all"], "--distill-phases: needs distillation"),
    (["--distill-hidden", "-1"], "distill-hidden: must be a finite weight >= 0"),
])
def test_cli_bad_input_is_one_line_exit_2_and_no_output(tmp_path, tiny_bert, sst2_dir, capsys, extra, match):
    ratios = tmp_path / "r.yaml"
    ratios.write_text("bert.encoder.layer.9.output.dense: 0.5\n")
    extra = [str(ratios) if e == "RATIOS" else e for e in extra]
    args = ["prune", "--model", str(tiny_bert), "--task", f"sst2:{sst2_dir}", "--epochs", "0", "0", "0",
            "--no-progress", "-o", str(tmp_path / "out")]
    status = main(args + extra)
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith("blockforge: error:")
    import re
    assert re.search(match, err), err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_cli_prune_gradual_with_global_allocation(tmp_path, tiny_bert, sst2_dir, capsys):
    out = tmp_path / "gradual"
    status = main(["prune", "--model", str(tiny_bert), "--task", f"sst2:{sst2_dir}", "--spec", "tile8",
                   "--sparsity", "0.5", "--method", "magnitude-gradual", "--allocation", "global", "--device", "cpu",
                   "--epochs", "0.25", "0.25", "0.25", "--batch-size", "16", "--max-length", "16", "--no-progress",
                   "-o", str(out)])
    assert status == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["method"] == "magnitude-gradual" and summary["block_sparsity"] == 0.5
    report = json.loads((out / "pruning.json").read_text())
    assert report["allocation"]["mode"] == "global" and report["device"] == "cpu"
    assert set(report["metrics"]) >= {"after_ramp", "after_prune", "final"}


def test_spec_that_does_not_tile_the_model(tmp_path, tokenizer, sst2_dir, capsys):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2048, max_position_embeddings=72)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "wide")
    tokenizer.save_pretrained(tmp_path / "wide")
    status = main(["prune", "--model", str(tmp_path / "wide"), "--task", f"sst2:{sst2_dir}", "--epochs", "0", "0",
                   "0", "--no-progress", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "max_out_features" in err and "intermediate.dense" in err
    assert not (tmp_path / "out").exists()


def test_bad_config_values():
    with pytest.raises(UsageError, match="unknown method"):
        PruneConfig(method="random")
    with pytest.raises(UsageError, match="sparsity"):
        PruneConfig(sparsity=1.0)


def test_default_model_layers_and_exact_magnitude_prune():
    """The real all-MiniLM-L6-v2: 36 prunable linears, exact block counts under both default specs."""
    from blockforge.models import load_model
    from blockforge.prune.masking import hard_prune, zero_block_counts
    from blockforge.prune.schedule import resolve_ratios

    loaded = load_model("default", labels=("negative", "positive"))
    assert not loaded.head_from_checkpoint
    dense = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    for spec, ratio in (("tile8", 0.8), ("row1x48", 0.5)):
        loaded.model.load_state_dict(dense)
        layers = prunable_layers(loaded.model, load_spec(spec))
        assert len(layers) == 36
        hard_prune(layers, resolve_ratios([l.name for l in layers], ratio))
        zeros = zero_block_counts(layers)
        for layer in layers:
            assert abs(zeros[layer.name] - ratio * layer.layout.n_blocks) <= 1
