"""The clock rule: time figures use min(spec clock, achieved Fmax) when an FPGA build report exists."""

from __future__ import annotations

import json

import pytest

from blockforge.clock import REPORT_KIND, default_report_path, engine_clock, read_fpga_report, resolve_engine_clock
from blockforge.errors import UsageError
from blockforge.spec import load_spec


def report_for(spec, fmax: float) -> dict:
    return {"kind": REPORT_KIND, "spec": {"name": spec.name, "digest": spec.digest},
            "part": {"name": "LFE5U-85F-6CABGA381"}, "fmax_mhz": fmax}


def test_no_report_is_the_spec_clock():
    spec = load_spec("tile8")
    clock = engine_clock(spec)
    assert (clock.mhz, clock.source, clock.fmax_mhz) == (spec.clock_mhz, "spec", None)
    assert clock.describe() == f"{spec.clock_mhz:g} MHz, the spec clock (no FPGA build report)"


def test_a_missed_clock_uses_the_achieved_fmax():
    spec = load_spec("tile8")
    clock = engine_clock(spec, report_for(spec, 32.7))
    assert (clock.mhz, clock.source, clock.spec_mhz) == (32.7, "fmax", spec.clock_mhz)
    assert clock.describe() == (f"32.7 MHz, the Fmax achieved on LFE5U-85F-6CABGA381 (spec: {spec.clock_mhz:g} MHz, "
                                "not met)")


def test_a_met_clock_stays_the_spec_clock():
    spec = load_spec("tile8")
    clock = engine_clock(spec, report_for(spec, 251.3))
    assert (clock.mhz, clock.source, clock.fmax_mhz) == (spec.clock_mhz, "spec", 251.3)
    assert clock.describe() == f"{spec.clock_mhz:g} MHz, the spec clock, met on LFE5U-85F-6CABGA381 (Fmax 251.3 MHz)"


def test_a_report_of_another_spec_or_kind_is_refused():
    tile8, tile16 = load_spec("tile8"), load_spec("tile16")
    with pytest.raises(UsageError, match=r"built for spec 'tile16' .* \(digest mismatch\)"):
        engine_clock(tile8, report_for(tile16, 100.0))
    with pytest.raises(UsageError, match="not a blockforge hw build report"):
        engine_clock(tile8, {"fmax": 3})
    with pytest.raises(UsageError, match="no achieved Fmax"):
        engine_clock(tile8, report_for(tile8, None))


def test_resolve_reads_the_given_or_the_default_report(tmp_path):
    spec = load_spec("tile8")
    assert resolve_engine_clock(spec, build_root=tmp_path).source == "spec"
    default = default_report_path(spec, tmp_path)
    assert default == tmp_path / "tile8" / "report.json"
    default.parent.mkdir(parents=True)
    default.write_text(json.dumps(report_for(spec, 50.0)))
    clock = resolve_engine_clock(spec, build_root=tmp_path)
    assert (clock.mhz, clock.report) == (50.0, str(default))
    # A default report of another spec version is ignored; an explicit one is an error.
    default.write_text(json.dumps(report_for(load_spec("tile16"), 50.0)))
    assert resolve_engine_clock(spec, build_root=tmp_path).source == "spec"
    with pytest.raises(UsageError, match="digest mismatch"):
        resolve_engine_clock(spec, default)
    with pytest.raises(UsageError, match=r"nowhere\.json: cannot read the FPGA build report"):
        read_fpga_report(tmp_path / "nowhere.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UsageError, match=r"bad\.json: not a JSON FPGA build report"):
        read_fpga_report(tmp_path / "bad.json")


def test_estimate_layers_prices_time_at_the_clock_it_is_given():
    import numpy as np

    from blockforge.model_estimate import LayerShape, estimate_layers, format_table

    spec = load_spec("tile8")
    layers = [LayerShape("l0", np.eye(4, dtype=bool), 32, 32)]
    at_spec = estimate_layers(spec, layers, 16)
    slow = engine_clock(spec, report_for(spec, 50.0))
    at_fmax = estimate_layers(spec, layers, 16, clock=slow)
    assert at_fmax["totals"]["cycles"] == at_spec["totals"]["cycles"]
    assert at_spec["totals"]["time_us"] == at_spec["totals"]["cycles"] / spec.clock_mhz
    assert at_fmax["totals"]["time_us"] == at_fmax["totals"]["cycles"] / 50
    assert at_fmax["layers"][0]["time_us"] == at_fmax["layers"][0]["cycles"] / 50
    assert (at_fmax["totals"]["clock_mhz"], at_fmax["totals"]["clock_source"]) == (50.0, "fmax")
    assert "at 50.0 MHz, the Fmax achieved on LFE5U-85F-6CABGA381" in format_table(at_fmax)
    assert f"at {spec.clock_mhz:g} MHz, the spec clock (no FPGA build report)" in format_table(at_spec)
