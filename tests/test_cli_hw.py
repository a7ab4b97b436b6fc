"""``blockforge hw verilog|synth`` from the command line."""

from __future__ import annotations

import json

import pytest

from blockforge_app.cli import main


def test_hw_verilog_writes_engine_and_sim_top(tmp_path, capsys):
    assert main(["hw", "verilog", "--spec", "row1x48", "-o", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == ["bf_engine.v", "bf_sim_top.v", "bf_sim_clocked.v", "bf_tb.v",
                                                          "bf_manifest.json"]
    manifest = json.loads((tmp_path / "bf_manifest.json").read_text())
    assert manifest["block"] == [1, 48] and manifest["spec"] == "row1x48"
    assert "module bf_engine" in (tmp_path / "bf_engine.v").read_text()


def test_hw_verilog_bad_spec_is_one_line(tmp_path, capsys):
    assert main(["hw", "verilog", "--spec", "nosuchspec", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nosuchspec" in err


@pytest.mark.slow
def test_hw_synth_tile8_json(capsys):
    assert main(["hw", "synth", "--spec", "tile8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["multipliers_by_width"]["8x8"] == 64          # the 8x8 MAC array
    assert report["multipliers_by_width"]["33x17"] == 8         # one requantizer lane per output row
    assert report["memory_bits"] >= 2 * 64 * 8 * 32             # two accumulator banks
    assert report["flip_flops"] > 64 * 8                        # at least the tile register
