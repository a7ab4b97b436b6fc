"""The Verilog post-pass that merges sliced wire assignments (a simulation-speed transform)."""

from __future__ import annotations

import subprocess

import pytest

from blockforge_hw.netmerge import merge_partial_assigns

SNIPPET = """module m(a, b, y, z);
  input [3:0] a;
  input [3:0] b;
  output [11:0] y;
  wire [11:0] y;
  output [7:0] z;
  reg [7:0] z;
  wire [4:0] \\$5 ;
  assign \\$5 = a + b;
  assign y[3:0] = a;
  assign y[8:4] = \\$5 ;
  assign y[11] = 1'h1;
  always @* begin z[3:0] = a; z[7:4] = b; end
endmodule
"""


def test_pieces_become_one_concatenation_and_regs_are_untouched():
    out = merge_partial_assigns(SNIPPET)
    assert "assign y[3:0]" not in out and "assign y[8:4]" not in out
    assert "assign y = { bf_piece_2, 2'bz, bf_piece_1, bf_piece_0 };" in out
    assert "wire [4:0] bf_piece_1;" in out and "assign bf_piece_1 = \\$5 ;" in out
    assert "z[3:0] = a; z[7:4] = b;" in out
    assert merge_partial_assigns(out) == out           # idempotent


def test_merged_verilog_computes_the_same(tmp_path):
    if subprocess.run(["which", "iverilog"], capture_output=True).returncode:
        pytest.skip("iverilog not installed")
    bench = """module tb; reg [3:0] a, b; wire [11:0] y; wire [7:0] z; m dut(a, b, y, z);
      integer i; initial begin for (i = 0; i < 256; i = i + 1) begin {a, b} = i; #1 $display("%b %b", y, z); end end
    endmodule"""
    outputs = []
    for name, text in (("orig", SNIPPET), ("merged", merge_partial_assigns(SNIPPET))):
        (tmp_path / f"{name}.v").write_text(text + bench)
        subprocess.run(["iverilog", "-o", str(tmp_path / name), str(tmp_path / f"{name}.v")], check=True)
        outputs.append(subprocess.run(["vvp", "-n", str(tmp_path / name)], capture_output=True, text=True,
                                      check=True).stdout)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 256
