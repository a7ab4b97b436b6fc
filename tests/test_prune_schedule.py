"""Sparsity ratios (global and per-layer YAML) and the phase schedule."""

from __future__ import annotations

import pytest

from blockforge.errors import UsageError
from blockforge.prune.schedule import Schedule, check_sparsity, load_ratios, phase_steps, resolve_ratios

NAMES = [f"bert.encoder.layer.{i}.{s}" for i in range(2)
         for s in ("attention.self.query", "attention.self.key", "intermediate.dense", "output.dense")]


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_sparsity_outside_0_1_is_rejected(bad):
    with pytest.raises(UsageError, match="sparsity"):
        check_sparsity(bad)


def test_ratios_file_with_globs_and_default(tmp_path):
    path = tmp_path / "ratios.yaml"
    path.write_text('default: 0.3\nratios:\n  "*.attention.self.*": 0.8\n  bert.encoder.layer.1.output.dense: 0.1\n')
    ratios = load_ratios(path, NAMES, 0.5)
    assert ratios["bert.encoder.layer.0.attention.self.query"] == 0.8
    assert ratios["bert.encoder.layer.1.attention.self.key"] == 0.8
    assert ratios["bert.encoder.layer.0.intermediate.dense"] == 0.3
    assert ratios["bert.encoder.layer.1.output.dense"] == 0.1


def test_flat_ratios_file_falls_back_to_the_global_sparsity(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("bert.encoder.layer.0.output.dense: 0.9\n")
    ratios = load_ratios(path, NAMES, 0.5)
    assert ratios["bert.encoder.layer.0.output.dense"] == 0.9
    assert sum(r == 0.5 for r in ratios.values()) == len(NAMES) - 1


@pytest.mark.parametrize("text,match", [
    ("bert.encoder.layer.7.output.dense: 0.5\n", "matches no prunable layer"),
    ("bert.encoder.layer.0.output.dense: 1.2\n", r"ratios\.bert.*\[0, 1\)"),
    ("ratios: [1, 2]\n", "expected a mapping"),
    ("ratios: {}\nextra: 1\n", "extra: unknown key"),
    ("{{{ not yaml", "invalid YAML"),
    ("", "expected a mapping"),
])
def test_bad_ratios_files(tmp_path, text, match):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=match):
        load_ratios(path, NAMES, 0.5)


def test_missing_ratios_file(tmp_path):
    with pytest.raises(UsageError, match="no such ratios file"):
        load_ratios(tmp_path / "none.yaml", NAMES, 0.5)


def test_resolve_ratios_global():
    assert set(resolve_ratios(NAMES, 0.25).values()) == {0.25}


def test_schedule_checks_and_steps():
    with pytest.raises(UsageError, match="bsp-epochs"):
        Schedule(bsp_epochs=-1)
    with pytest.raises(UsageError, match="reweight-period"):
        Schedule(reweight_period=0)
    assert phase_steps(0, 10) == 0 and phase_steps(0.01, 10) == 1 and phase_steps(1.5, 10) == 15


def test_recommended_schedule_lengthens_the_phases_above_5x():
    """2 + 2 + 2 epochs up to 80% block sparsity, 2 + 4 + 4 above it; what the caller gives wins."""
    from blockforge.prune import PruneConfig
    from blockforge.prune.schedule import LONG_SCHEDULE_ABOVE

    assert Schedule.recommended(0.5) == Schedule.recommended(LONG_SCHEDULE_ABOVE) == Schedule()
    long = Schedule.recommended(0.9)
    assert (long.dense_epochs, long.bsp_epochs, long.retrain_epochs) == (2.0, 4.0, 4.0)
    assert long.bsp_learning_rate == Schedule().bsp_learning_rate
    assert Schedule.recommended(0.9, retrain_epochs=1.0).retrain_epochs == 1.0
    with pytest.raises(UsageError, match="sparsity"):
        Schedule.recommended(1.0)
    # the Python API takes its default from the same place (the flow: test_flow; the CLI passes its
    # --epochs as overrides to Schedule.recommended)
    assert PruneConfig(sparsity=0.9).schedule == long and PruneConfig(sparsity=0.8).schedule == Schedule()
    assert PruneConfig(sparsity=0.9, schedule=Schedule()).schedule == Schedule()
