"""Register packing (blockforge_hw.regpack) on hand-built ECP5 netlists: which flip-flops move into a DSP's
input/output registers or a block RAM's output register, how the connections are rewired, and which
flip-flops must stay (enables, resets, other loads, other clocks, the pseudo-dual-port BRAM form)."""

from __future__ import annotations

import copy

import pytest

from blockforge_hw.regpack import pack_registers

CLK, OTHER_CLK = 2, 3


def _ff(d, q, *, clk=CLK, ce=None, lsr=None, regset="RESET"):
    params = {"CEMUX": "CE" if ce is not None else "1 ", "CLKMUX": "CLK", "GSR": "DISABLED",
              "LSRMUX": "LSR", "REGSET": regset, "SRMODE": "LSR_OVER_CE"}
    conns = {"CLK": [clk], "DI": [d], "Q": [q], "LSR": [lsr] if lsr is not None else ["0"]}
    dirs = {"CLK": "input", "DI": "input", "LSR": "input", "Q": "output"}
    if ce is not None:
        conns["CE"], dirs["CE"] = [ce], "input"
    return {"type": "TRELLIS_FF", "parameters": params, "connections": conns, "port_directions": dirs}


def _dsp(a_bits, b_bits, p_bits):
    conns, dirs = {}, {}
    for port, bits, direction in (("A", a_bits, "input"), ("B", b_bits, "input"), ("P", p_bits, "output")):
        for k, bit in enumerate(bits):
            conns[f"{port}{k}"], dirs[f"{port}{k}"] = [bit], direction
    return {"type": "MULT18X18D", "parameters": {}, "connections": conns, "port_directions": dirs}


def _bram(do_bits, *, port="B", width=18, oce="1", rst="0"):
    conns = {f"DO{port}{k}": [bit] for k, bit in enumerate(do_bits)}
    dirs = {pin: "output" for pin in conns}
    for pin, value in (("CLKA", [CLK]), ("CLKB", [CLK]), ("OCEA", ["1"]), ("OCEB", [oce] if port == "B" else ["1"]),
                       ("RSTA", ["0"]), ("RSTB", [rst] if port == "B" else ["0"])):
        conns[pin], dirs[pin] = value, "input"
    params = {"DATA_WIDTH_A": "00000000000000000000000000010010", "DATA_WIDTH_B": f"{width:032b}",
              "REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "CLKAMUX": "CLKA", "CLKBMUX": "CLKB",
              "RESETMODE": "ASYNC", "ASYNC_RESET_RELEASE": "ASYNC"}
    return {"type": "DP16KD", "parameters": params, "connections": conns, "port_directions": dirs}


def _sink(bit, name="load"):
    return {"type": "LUT4", "parameters": {}, "connections": {"A": [bit], "Z": [9999]},
            "port_directions": {"A": "input", "Z": "output"}}


def _netlist(cells):
    return {"modules": {"top": {"ports": {}, "cells": cells, "netnames": {}}}}


def _multiplier(**ff_options):
    """DSP fed by flip-flops a0 (10→20), b0 (11→21), with P0 (30) registered into p0 (→40)."""
    return {"a0": _ff(10, 20), "b0": _ff(11, 21, **ff_options), "dsp": _dsp([20, 20], [21], [30]),
            "p0": _ff(30, 40), "use": _sink(40)}


def test_dsp_takes_its_input_and_output_registers():
    netlist = _netlist(_multiplier())
    counts = pack_registers(netlist, "top")
    assert counts == {"dsp_input_ffs": 2, "dsp_output_ffs": 1, "bram_output_ffs": 0, "dsps": 1, "brams": 0}
    cells = netlist["modules"]["top"]["cells"]
    assert set(cells) == {"dsp", "use"}
    dsp = cells["dsp"]
    # A0 and its sign extension A1 both read the flip-flop's D now; P0 drives what the flip-flop drove
    assert dsp["connections"]["A0"] == dsp["connections"]["A1"] == [10]
    assert dsp["connections"]["B0"] == [11] and dsp["connections"]["P0"] == [40]
    assert dsp["connections"]["CLK0"] == [CLK] and dsp["connections"]["CE0"] == ["1"]
    assert dsp["connections"]["RST0"] == ["0"]
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert dsp["parameters"][reg] == "CLK0"


@pytest.mark.parametrize("change", [{"ce": 7}, {"lsr": 8}])   # b0 has an enable / a reset
def test_dsp_inputs_with_enable_or_reset_stay(change):
    netlist = _netlist(_multiplier(**change))
    pack_registers(netlist, "top")
    cells = netlist["modules"]["top"]["cells"]
    assert "b0" in cells and "a0" not in cells
    assert cells["dsp"]["connections"]["B0"] == [21]
    assert "REG_INPUTB_CLK" not in cells["dsp"]["parameters"]


def test_shared_or_foreign_flip_flops_stay():
    cells = _multiplier()
    cells["other"] = _sink(20)                          # a0 also feeds a LUT
    cells["p1"] = _ff(30, 41)                           # P0 feeds two flip-flops
    netlist = _netlist(cells)
    counts = pack_registers(netlist, "top")
    assert counts["dsp_input_ffs"] == 1 and counts["dsp_output_ffs"] == 0
    assert {"a0", "p0", "p1"} <= set(netlist["modules"]["top"]["cells"])


def test_two_clocks_leave_the_dsp_alone():
    cells = _multiplier()
    cells["p0"] = _ff(30, 40, clk=OTHER_CLK)
    netlist = _netlist(cells)
    before = copy.deepcopy(netlist)
    assert pack_registers(netlist, "top")["dsps"] == 0
    assert netlist == before


def test_bram_output_register_and_its_synchronous_reset():
    cells = {"ram": _bram([50, 51]), "d0": _ff(50, 60, lsr=5), "d1": _ff(51, 61, lsr=5), "use": _sink(60)}
    netlist = _netlist(cells)
    counts = pack_registers(netlist, "top")
    assert counts["bram_output_ffs"] == 2 and counts["brams"] == 1
    ram = netlist["modules"]["top"]["cells"]["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG" and ram["parameters"]["REGMODE_A"] == "NOREG"
    assert ram["connections"]["DOB0"] == [60] and ram["connections"]["DOB1"] == [61]
    assert ram["connections"]["RSTB"] == [5] and ram["parameters"]["RESETMODE"] == "SYNC"
    assert set(netlist["modules"]["top"]["cells"]) == {"ram", "use"}


@pytest.mark.parametrize("cells", [
    {"ram": _bram([50, 51], width=36), "d0": _ff(50, 60), "d1": _ff(51, 61)},            # pseudo dual port
    {"ram": _bram([50, 51], oce="0"), "d0": _ff(50, 60), "d1": _ff(51, 61)},             # output enable off
    {"ram": _bram([50, 51]), "d0": _ff(50, 60, lsr=5), "d1": _ff(51, 61, lsr=6)},        # two resets
    {"ram": _bram([50, 51]), "d0": _ff(50, 60, lsr=5), "d1": _ff(51, 61, lsr=5, regset="SET")},   # a set
    {"ram": _bram([50, 51]), "d0": _ff(50, 60), "x": _sink(51)},                        # data bit into a LUT
])
def test_bram_cases_left_alone(cells):
    netlist = _netlist(cells)
    before = copy.deepcopy(netlist)
    assert pack_registers(netlist, "top")["brams"] == 0
    assert netlist == before
