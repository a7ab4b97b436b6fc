"""The pruning modes beyond the default recipe, on a tiny random BERT: paper-faithful group Lasso,
one-factor switches of the prox regularizer, global (overall) block-budget allocation, the cubic
gradual ramp, distillation and device selection. Every test asserts on exact block sparsity / masks."""

from __future__ import annotations


import pytest
import torch

from blockforge.errors import UsageError
from blockforge.prune.criterion import block_norms
from blockforge.prune.masking import pruned_block_counts
from blockforge.prune.pattern import prunable_layers
from blockforge.prune.pipeline import PruneConfig, prune_model, resolve_device
from blockforge.prune.schedule import PAPER_LAMBDA, Schedule, cubic_sparsity, global_ratios, load_lambdas
from blockforge.spec import load_spec

TINY = Schedule(dense_epochs=1, bsp_epochs=2, retrain_epochs=1, learning_rate=1e-3, bsp_learning_rate=1e-3,
                retrain_learning_rate=1e-3, reweight_period=2)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    from blockforge.models import load_tokenizer

    tokenizer = load_tokenizer("default")
    path = tmp_path_factory.mktemp("tiny_bert")
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=72, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    BertForSequenceClassification(config).bert.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _config(model, task, **kw):
    base = dict(model=str(model), task=f"sst2:{task}", spec="tile8", sparsity=0.5, schedule=TINY,
                batch_size=16, max_length=16, progress=False, seed=0)
    config = {**base, **kw}
    return PruneConfig(**{**config, "spec": load_spec(config["spec"])})


def _zero_blocks(model) -> dict[str, tuple[int, int]]:
    return {l.name: (int((block_norms(l.weight.detach(), l.layout) == 0).sum()), l.layout.n_blocks)
            for l in prunable_layers(model, load_spec("tile8"))}


def _assert_exact(result, ratios=None):
    """Every layer's all-zero blocks equal its pruned count, and the masks say the same."""
    zeros = _zero_blocks(result.model)
    for name, (zero, n) in zeros.items():
        keep = result.block_masks[name]
        assert int((~keep).sum()) == zero, name
        expected = round((ratios or result.report["ratios"])[name] * n)
        assert zero == expected, name


# ------------------------------------------------------------------------------------------ paper mode

def test_paper_mode_penalizes_in_the_loss_with_fixed_lambda_and_epoch_milestones(tiny_bert, sst2_dir):
    result = prune_model(_config(tiny_bert, sst2_dir, regularizer="paper"))
    bsp = result.report["bsp"]
    assert bsp["regularizer"] == "paper"
    assert set(bsp["lambda"]["per_layer"].values()) == {PAPER_LAMBDA}
    assert bsp["reweight_milestones_steps"] == [0, 6]  # 96 examples / 16 = 6 steps per epoch, 2 epochs
    assert "cap_margin" not in bsp and "budget" not in bsp
    _assert_exact(result)
    assert result.report["block_sparsity"]["pruned_blocks"] == sum(
        pruned_block_counts(prunable_layers(result.model, load_spec("tile8")), result.report["ratios"]).values())


def test_paper_lambda_file_sets_lambda_per_layer(tiny_bert, sst2_dir, tmp_path):
    lam = tmp_path / "lambda.yaml"
    lam.write_text("'bert.encoder.layer.0.attention.self.query': 5.0\n'*.output.dense': 0\n")
    result = prune_model(_config(tiny_bert, sst2_dir, regularizer="paper", lambda_file=str(lam)))
    per_layer = result.report["bsp"]["lambda"]["per_layer"]
    assert per_layer["bert.encoder.layer.0.attention.self.query"] == 5.0
    assert per_layer["bert.encoder.layer.1.output.dense"] == 0.0
    assert per_layer["bert.encoder.layer.1.attention.self.key"] == PAPER_LAMBDA
    assert result.report["bsp"]["lambda"]["file"] == str(lam)
    _assert_exact(result)


def test_lambda_file_errors_name_the_file_and_key(tmp_path):
    names = ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.output.dense"]
    path = tmp_path / "lam.yaml"
    path.write_text("bert.encoder.layer.9.output.dense: 1e-4\n")
    with pytest.raises(UsageError, match=r"lam\.yaml: bert\.encoder\.layer\.9\.output\.dense: matches no prunable"):
        load_lambdas(path, names)
    path.write_text("'*.query': -1\n")
    with pytest.raises(UsageError, match=r"lam\.yaml: \*\.query: lambda must be a number in \[0, 1000\], got -1"):
        load_lambdas(path, names)
    path.write_text("'*.query': 2e-4\ndefault: 1e-5\n")
    assert load_lambdas(path, names) == {names[0]: 2e-4, names[1]: 1e-5}
    with pytest.raises(UsageError, match="no such lambda file|cannot read lambda file"):
        load_lambdas(tmp_path / "missing.yaml", names)


@pytest.mark.parametrize("kw, match", [
    (dict(method="magnitude", regularizer="paper"), "applies to --method bsp only"),
    (dict(method="magnitude-retrain", lambda_file="x.yaml"), "applies to --method bsp only"),
    (dict(regularizer="l1"), "unknown regularizer 'l1'"),
    (dict(allocation="greedy"), "unknown allocation"),
    (dict(device="tpu"), "unknown device 'tpu'"),
    (dict(allocation="global", ratios="r.yaml"), "ratios file already fixes"),
    (dict(lambda_file="x.yaml", schedule=Schedule(lam=1e-4)), "not both"),
])
def test_contradictory_or_unknown_options_are_usage_errors(kw, match):
    with pytest.raises(UsageError, match=match) as info:
        PruneConfig(**kw)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ prox one-factor switches

@pytest.mark.parametrize("switch", [dict(budget=False), dict(cap_margin=None), dict(preconditioned=False)])
def test_each_prox_switch_changes_one_factor_and_keeps_exact_sparsity(tiny_bert, sst2_dir, switch):
    schedule = Schedule(**{**TINY.__dict__, **switch})
    result = prune_model(_config(tiny_bert, sst2_dir, schedule=schedule))
    bsp = result.report["bsp"]
    defaults = {"budget": True, "cap_margin": 0.25, "preconditioned": True}
    for key, default in defaults.items():
        assert bsp[key] == switch.get(key, default), key
    _assert_exact(result)


# -------------------------------------------------------------------------------------- global allocation

def test_global_ratios_rank_normalized_norms_over_all_layers(tiny_bert):
    from blockforge.models import load_model

    model = load_model(str(tiny_bert), labels=(0, 1)).model
    layers = prunable_layers(model, load_spec("tile8"))
    flat, spread = layers[0], layers[1]
    with torch.no_grad():
        flat.weight.fill_(0.5)                    # every block the same norm: normalized score 1
        spread.weight.mul_(100.0)                 # scale alone must not matter ...
        spread.weight[: spread.weight.shape[0] // 2] *= 0.01  # ... the spread does
    ratios = global_ratios(layers, 0.5)
    total = sum(l.layout.n_blocks for l in layers)
    counts = pruned_block_counts(layers, ratios)
    assert sum(counts.values()) == round(0.5 * total)
    assert ratios[spread.name] >= 0.5 > ratios[flat.name]
    assert all(counts[l.name] < l.layout.n_blocks for l in layers)


def test_global_allocation_hits_the_overall_target_exactly(tiny_bert, sst2_dir):
    result = prune_model(_config(tiny_bert, sst2_dir, allocation="global", sparsity=0.6))
    report = result.report
    overall = report["block_sparsity"]
    assert overall["pruned_blocks"] == round(0.6 * overall["blocks"])
    assert report["allocation"]["mode"] == "global"
    layer_ratios = {v["target_ratio"] for v in report["layers"].values()}
    assert len(layer_ratios) > 1  # the budget is not spread evenly
    for name, layer in report["layers"].items():
        assert layer["target_ratio"] == report["ratios"][name]
        assert layer["pruned_blocks"] == layer["zero_blocks"] == round(layer["target_ratio"] * layer["blocks"])
    _assert_exact(result)


# ----------------------------------------------------------------------------------------- gradual ramp

def test_cubic_ramp():
    assert [round(cubic_sparsity(s, 4, 0.8), 4) for s in range(4)] == [
        round(0.8 * (1 - (1 - t / 4) ** 3), 4) for t in range(1, 5)]
    assert cubic_sparsity(3, 4, 0.8) == 0.8 and cubic_sparsity(0, 0, 0.8) == 0.8
    values = [cubic_sparsity(s, 10, 1.0) for s in range(10)]
    assert values == sorted(values) and values[0] > 0.25  # fast early, slow late


def test_gradual_magnitude_ramps_to_the_target_and_keeps_pruned_blocks_zero(tiny_bert, sst2_dir):
    result = prune_model(_config(tiny_bert, sst2_dir, method="magnitude-gradual", sparsity=0.75))
    ramp = result.report["ramp"]
    fractions = [h["fraction_of_target"] for h in ramp["history"]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 6  # 12 steps / 2
    assert result.report["phases"]["ramp"]["steps"] == 12
    assert set(result.report["metrics"]) == {"dense", "after_ramp", "after_prune", "final"}
    assert result.report["overlap_with_magnitude"] is not None
    _assert_exact(result)


# -------------------------------------------------------------------------------------- distillation

def test_distillation_from_the_dense_teacher_changes_retraining_not_the_masks(tiny_bert, sst2_dir):
    plain = prune_model(_config(tiny_bert, sst2_dir, method="magnitude-retrain", distill=False))
    distilled = prune_model(_config(tiny_bert, sst2_dir, method="magnitude-retrain", distill=True))
    for name, mask in plain.block_masks.items():
        assert torch.equal(mask, distilled.block_masks[name]), name
    assert distilled.report["phases"]["retrain"]["mean_loss"] != plain.report["phases"]["retrain"]["mean_loss"]
    _assert_exact(distilled)


def test_distillation_in_every_phase_and_of_hidden_states(tiny_bert, sst2_dir):
    base = prune_model(_config(tiny_bert, sst2_dir, distill_phases="retrain", distill_hidden=0.0))
    every = prune_model(_config(tiny_bert, sst2_dir, distill_phases="all", distill_hidden=0.0))
    hidden = prune_model(_config(tiny_bert, sst2_dir))                 # the default recipe
    assert (hidden.report["hyperparameters"]["distill_phases"], hidden.report["hyperparameters"]["distill_hidden"]) \
        == ("all", 1.0)
    # the dense phase is untouched (no teacher yet), the group-Lasso phase now sees the teacher
    assert every.report["phases"]["dense"]["mean_loss"] == base.report["phases"]["dense"]["mean_loss"]
    assert every.report["phases"]["bsp"]["mean_loss"] != base.report["phases"]["bsp"]["mean_loss"]
    assert hidden.report["phases"]["bsp"]["mean_loss"] > every.report["phases"]["bsp"]["mean_loss"]
    for result in (every, hidden):
        _assert_exact(result)


def test_hidden_state_loss_is_relative_and_ignores_padding():
    from blockforge.prune.training import hidden_state_loss

    torch.manual_seed(0)
    teacher = tuple(torch.randn(2, 5, 4) for _ in range(3))
    assert hidden_state_loss(teacher, teacher).item() == 0.0
    student = (teacher[0] + 1,) + tuple(2 * t for t in teacher[1:])      # embeddings (index 0) are not compared
    assert hidden_state_loss(student, teacher).item() == pytest.approx(1.0)
    assert hidden_state_loss(tuple(10 * t for t in student), tuple(10 * t for t in teacher)).item() == \
        pytest.approx(1.0)                                                # scale-free
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[:, 3:] = 0
    padded = tuple(s.clone() for s in teacher)
    for s in padded[1:]:
        s[:, 3:] += 100.0                                                # garbage on padding only
    assert hidden_state_loss(padded, teacher, mask).item() == 0.0


@pytest.mark.parametrize("kw, message", [
    (dict(distill_phases="sometimes"), r"distill-phases: unknown value 'sometimes' \(known: retrain, all\)"),
    (dict(distill_hidden=-1.0), r"distill-hidden: must be a finite weight >= 0"),
])
def test_distillation_options_are_checked(tiny_bert, sst2_dir, kw, message):
    with pytest.raises(UsageError, match=message):
        _config(tiny_bert, sst2_dir, **kw)


# ------------------------------------------------------------------------------------------ devices

def test_device_selection(monkeypatch, tiny_bert, sst2_dir):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(UsageError, match="cuda requested but no CUDA device is available"):
        resolve_device("cuda")
    with pytest.raises(UsageError, match="cuda requested"):
        prune_model(_config(tiny_bert, sst2_dir, device="cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda"
    assert resolve_device("cpu") == "cpu"
    monkeypatch.undo()
    result = prune_model(_config(tiny_bert, sst2_dir, method="magnitude", device="cpu"))
    assert result.report["device"] == "cpu"
    _assert_exact(result)
