"""Figures in docs/ that come from code are checked against the code, so they cannot drift (the schema
table is checked the same way in test_spec.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from blockforge.errors import SpecError
from blockforge.spec import load_spec, shipped_spec_names

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _table_rows(text: str, first_header: str) -> dict[str, list[str]]:
    """Rows of the markdown table whose header starts with ``| first_header |``, keyed by first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _number(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_numerics_bias_limit_table_matches_every_shipped_spec():
    rows = _table_rows((DOCS / "numerics.md").read_text(), "spec | max_in_features")
    assert set(rows) == set(shipped_spec_names())
    for name, (max_in, headroom, limit) in rows.items():
        spec = load_spec(name)
        assert _number(max_in) == spec.buffers.max_in_features, name
        assert _number(headroom) == spec.acc_headroom, name
        assert _number(limit) == spec.bias_limit, name


def test_spec_doc_accumulator_rule_figures_match_the_validator():
    from blockforge.spec import spec_from_dict

    text = " ".join((DOCS / "spec.md").read_text().split())      # line breaks are the editor's
    tile8 = load_spec("tile8")
    bits = tile8.numerics
    assert (bits.weight_bits, bits.act_bits, bits.acc_bits, tile8.block.cols) == (8, 8, 32, 8)
    unaligned = (2 ** (bits.acc_bits - 1) - 1) // 2 ** (bits.weight_bits - 1 + bits.act_bits - 1)
    aligned = unaligned - unaligned % tile8.block.cols
    assert f"up to {unaligned:,}" in text and f"{aligned:,} for 8-wide blocks" in text

    data = _spec_dict("tile8")
    data["buffers"]["max_in_features"] = aligned
    assert spec_from_dict(data).bias_limit >= 0
    data["buffers"]["max_in_features"] = aligned + tile8.block.cols
    with pytest.raises(SpecError, match="acc_bits"):
        spec_from_dict(data)
    assert unaligned // tile8.block.cols <= 65535       # the block-column bound does not cut in first


def _spec_dict(name: str) -> dict:
    import yaml

    from blockforge.spec import resolve_spec_path

    return yaml.safe_load(resolve_spec_path(name).read_text())


def test_results_headline_matches_the_generated_demo_table():
    """The hand-written headline of results.md repeats figures of the generated demo_summary table."""
    text = (DOCS / "results.md").read_text()
    table = {k: v[0] for k, v in _table_rows(text.split("### demo_summary", 1)[1], "figure").items()}
    headline = next(line for line in text.splitlines() if line.startswith("| the main job"))
    pct = lambda key: f"{100 * float(table[key]):.1f}%"   # noqa: E731
    assert f"dense {pct('dense_accuracy')} → pruned {pct('pruned_float_accuracy')} → int8 {pct('int8_accuracy')}" \
        in headline
    assert f"on {table['dev_examples']} dev tweets" in headline
    assert f"{table['rtl_eval_examples']} dev tweets through the RTL: {pct('rtl_accuracy')}" in headline
    cycles = next(line for line in text.splitlines() if line.startswith("| cycles, all"))
    assert f"estimated {table['estimated_cycles']} = simulated {table['rtl_cycles']}" in cycles
    assert f"all {table['rtl_layers']} layers at N = {table['n_tokens']}" in cycles
    image = next(line for line in text.splitlines() if line.startswith("| image |"))
    assert f"= {float(table['byte_compression_vs_fp32']):.2f}× smaller than dense fp32" in image


def test_pruning_doc_points_at_the_demo_figures_instead_of_restating_them():
    text = (DOCS / "pruning.md").read_text()
    assert "results.md#headline" in text
    assert not re.search(r"demo[^.]*: dense 0\.\d+ → ", text)


def _accuracy_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("accuracy_bench", DOCS.parent / "bench" / "accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_accuracy_bench_budget_per_cell_is_the_recommended_schedule():
    """Without --prune-epochs / --bsp-epochs each cell gets the steps `blockforge prune` would use at its
    sparsity (the 10x rows twice the 5x ones); the flags override every cell, and the keys of the
    committed runs (pe4b2 at 80%, pe8b4 at 90%) are what the defaults produce."""
    import argparse

    bench = _accuracy_bench()
    args = argparse.Namespace(seeds=[0], specs=["tile8"], sparsities=[0.8, 0.9], methods=["bsp", "magnitude-retrain"],
                              allocation="uniform", prune_epochs=None, bsp_epochs=None, no_distill=False,
                              distill_phases="all", distill_hidden=1.0)
    tasks = {t["key"]: (t["prune_epochs"], t["bsp_epochs"]) for t in bench.task_list(args) if t["method"] != "dense"}
    assert tasks == {"tile8_80_bsp_pe4b2_kdall_hid1_seed0": (4.0, 2.0),
                     "tile8_80_magnitude-retrain_pe4_hid1_seed0": (4.0, 2.0),
                     "tile8_90_bsp_pe8b4_kdall_hid1_seed0": (8.0, 4.0),
                     "tile8_90_magnitude-retrain_pe8_hid1_seed0": (8.0, 4.0)}
    args.prune_epochs, args.bsp_epochs = 2.0, 1.0
    assert {t["prune_epochs"] for t in bench.task_list(args) if t["method"] != "dense"} == {2.0}
    args.bsp_epochs = 3.0
    with pytest.raises(SystemExit, match="must not exceed"):
        bench.task_list(args)


def test_accuracy_table_is_the_report_of_the_committed_runs():
    """docs/results/accuracy.json (and the table made with it) is bench/accuracy.py's report of the
    committed per-run rows, and no row of the table counts a seed twice (runs of different recipes, e.g.
    another sparsifying share of the same steps, get their own row)."""
    import json

    bench = _accuracy_bench()
    summary = bench.aggregate(bench.load_rows(DOCS / "results" / "accuracy-runs"))
    committed = json.loads((DOCS / "results" / "accuracy.json").read_text())

    def cells(rows):
        return [(r["spec"], r["sparsity"], r["method"], r["seeds"], r["accuracy"]) for r in rows]

    assert cells(committed["rows"]) == cells(summary["rows"])
    assert committed["dense"]["accuracy"] == summary["dense"]["accuracy"]
    for row in summary["rows"]:
        assert len(set(row["seeds"])) == len(row["seeds"]), row["method"]
