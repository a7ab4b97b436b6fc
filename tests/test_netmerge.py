"""The Verilog post-pass that merges sliced wire assignments (a simulation-speed transform)."""

from __future__ import annotations

import re
import subprocess

import pytest

from blockforge_hw.netmerge import drop_unread_wires, group_arithmetic, merge_clocked_blocks, merge_partial_assigns

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


def _icarus_outputs(tmp_path, bench: str, *designs: str) -> list[str]:
    """What ``bench`` prints around each design under Icarus (skips the test without iverilog)."""
    if subprocess.run(["which", "iverilog"], capture_output=True).returncode:
        pytest.skip("iverilog not installed")
    outputs = []
    for k, text in enumerate(designs):
        source, program = tmp_path / f"d{k}.v", tmp_path / f"d{k}"
        source.write_text(text + bench)
        subprocess.run(["iverilog", "-o", str(program), str(source)], check=True)
        outputs.append(subprocess.run(["vvp", "-n", str(program)], capture_output=True, text=True, check=True).stdout)
    return outputs


def test_pieces_become_one_concatenation_and_regs_are_untouched():
    out = merge_partial_assigns(SNIPPET)
    assert "assign y[3:0]" not in out and "assign y[8:4]" not in out
    assert "assign y = { bf_piece_2, 2'bz, bf_piece_1, bf_piece_0 };" in out
    assert "wire [4:0] bf_piece_1;" in out and "assign bf_piece_1 = \\$5 ;" in out
    assert "z[3:0] = a; z[7:4] = b;" in out
    assert merge_partial_assigns(out) == out           # idempotent


def test_merged_verilog_computes_the_same(tmp_path):
    bench = """module tb; reg [3:0] a, b; wire [11:0] y; wire [7:0] z; m dut(a, b, y, z);
      integer i; initial begin for (i = 0; i < 256; i = i + 1) begin {a, b} = i; #1 $display("%b %b", y, z); end end
    endmodule"""
    before, after = _icarus_outputs(tmp_path, bench, SNIPPET, merge_partial_assigns(SNIPPET))
    assert before == after and before.count("\n") == 256


CLOCKED = """module c(clk, d, q, r, s);
  input clk;
  input [3:0] d;
  output [3:0] q;
  reg [3:0] q;
  output [3:0] r;
  reg [3:0] r;
  output [3:0] s;
  reg [3:0] s;
  reg [3:0] \\r$1 ;
  always @(posedge clk)
    q <= d;
  always @(posedge clk)
    \\r$1  <= q;
  always @(posedge clk) begin
    if (d[0])
      s <= q;
  end
  always @*
    r = \\r$1 ;
endmodule
"""


def test_clocked_blocks_become_one_process_per_clock():
    out = merge_clocked_blocks(CLOCKED)
    assert out.count("always @(posedge clk)") == 2               # the merged one and the conditional one
    assert "always @(posedge clk) begin\n    q <= d;\n    \\r$1  <= q;\n  end\nendmodule" in out
    assert "if (d[0])\n      s <= q;" in out                       # a block with a condition stays as it was
    statements = lambda text: sorted(line.strip() for line in text.splitlines() if "<=" in line)
    assert statements(out) == statements(CLOCKED)                  # every register assignment, once
    assert merge_clocked_blocks(out) == out                        # idempotent


def test_merged_clocked_blocks_compute_the_same(tmp_path):
    bench = """module tb; reg clk = 0; reg [3:0] d = 0; wire [3:0] q, r, s; c dut(clk, d, q, r, s);
      integer i; initial begin for (i = 0; i < 64; i = i + 1) begin d = i * 7; #1 clk = 1; #1 clk = 0;
      $display("%b %b %b", q, r, s); end end
    endmodule"""
    before, after = _icarus_outputs(tmp_path, bench, CLOCKED, merge_clocked_blocks(CLOCKED))
    assert before == after and before.count("\n") == 64


ARITH = """module s(clk, a, b, y, z);
  input clk;
  input [7:0] a;
  input [7:0] b;
  output [17:0] y;
  reg [17:0] y;
  output [8:0] z;
  reg [8:0] z;
  reg [3:0] level = 4'h3;
  wire [4:0] \\$1 ;
  wire [15:0] \\$2 ;
  wire [16:0] \\$3 ;
  wire [8:0] \\$4 ;
  wire [8:0] w;
  wire [8:0] \\$5 ;
  wire [17:0] \\$6 ;
  assign \\$6  = \\$3  + \\$1 ;
  assign \\$3  = \\$2  + \\$4 ;
  assign \\$2  = $signed(a) * $signed(b);
  assign \\$4  = a - b;
  assign \\$1  = level + 1'h1;
  assign w = ~ \\$4 ;
  assign \\$5  = w + 1'h1;
  always @(posedge clk) begin
    y <= \\$6 ;
    z <= \\$5 ;
  end
endmodule
"""


def test_arithmetic_moves_into_one_block_in_dependency_order():
    out = group_arithmetic(ARITH)
    block = out[out.index("always @* begin"):]
    position = {net: block.index(f"{net}  =") for net in ("\\$1", "\\$2", "\\$3", "\\$4", "\\$6")}
    assert position["\\$2"] < position["\\$3"] < position["\\$6"] and position["\\$4"] < position["\\$3"]
    assert position["\\$1"] < position["\\$6"]
    assert "reg [17:0] \\$6 ;" in out and "reg [15:0] \\$2 ;" in out and "wire bf_arith_start = 1'h1;" in out
    assert "if (bf_arith_start) begin end" in block
    # \$5 reads w, which a grouped value (\$4) reaches through a continuous assignment outside the
    # block: grouping it would let the block miss w's change, so it stays an assignment
    assert "assign \\$5  = w + 1'h1;" in out and "assign w = ~ \\$4 ;" in out
    assert group_arithmetic(out) == out                                     # idempotent


def test_arithmetic_reaching_an_output_keeps_input_dependent_expressions_continuous():
    # y leaves the module combinationally; the parent may feed it back into a or b, so nothing that
    # reads an input may join the block (what only reads internal registers still may)
    text = ARITH.replace("  reg [17:0] y;\n", "  wire [17:0] y;\n").replace("    y <= \\$6 ;\n", "") \
        .replace("endmodule", "  assign y = \\$6  + 1'h1;\nendmodule")
    out = group_arithmetic(text)
    assert "assign \\$2  = $signed(a) * $signed(b);" in out and "assign y = \\$6  + 1'h1;" in out
    assert "\\$1  = level + 1'h1;" in out[out.index("always @* begin"):]


def test_grouped_arithmetic_computes_the_same_from_time_zero(tmp_path):
    # \$1 = level + 1 depends only on a register that never changes after its initializer: the block
    # must still compute it at time 0
    bench = """module tb; reg clk = 0; reg [7:0] a, b; wire [17:0] y; wire [8:0] z; s dut(clk, a, b, y, z);
      integer i; initial begin a = 0; b = 0; #1 $display("%d", dut.\\$1 );
      for (i = 0; i < 300; i = i + 1) begin {a, b} = i * 211; #1 clk = 1; #1 clk = 0; $display("%b %b", y, z); end
      end
    endmodule"""
    before, after = _icarus_outputs(tmp_path, bench, ARITH, group_arithmetic(ARITH))
    assert before == after and before.count("\n") == 301 and before.splitlines()[0].strip() == "4"


UNREAD = """module u(clk, a, y, q);
  input clk;
  input [7:0] a;
  output [7:0] y;
  wire [7:0] y;
  output [3:0] q;
  reg [3:0] q;
  wire [3:0] \\a.low ;
  wire [3:0] \\a.high ;
  wire [4:0] \\$3 ;
  wire [4:0] \\$4 ;
  wire [3:0] used;
  assign \\a.low  = a[3:0];
  assign \\a.high  = a[7:4];
  assign \\$3  = a[3:0] + 1'h1;
  assign \\$4  = \\$3  + 1'h1;
  assign used = a[7:4];
  assign y = { used, \\a.low  };
  always @(posedge clk)
    q <= used;
endmodule
"""


def test_unread_wires_go_with_what_fed_only_them():
    out = drop_unread_wires(UNREAD)
    for gone in ("\\a.high ", "\\$3 ", "\\$4 "):        # \$3 fed only \$4, which nothing reads
        assert gone not in out
    for kept in ("assign \\a.low  = a[3:0];", "assign used = a[7:4];", "assign y = { used, \\a.low  };",
                 "output [7:0] y;", "q <= used;"):
        assert kept in out
    assert drop_unread_wires(out) == out                 # idempotent


def test_dropping_unread_wires_computes_the_same(tmp_path):
    bench = """module tb; reg clk = 0; reg [7:0] a; wire [7:0] y; wire [3:0] q; u dut(clk, a, y, q);
      integer i; initial begin for (i = 0; i < 256; i = i + 1) begin a = i; #1 clk = 1; #1 clk = 0;
      $display("%b %b", y, q); end end
    endmodule"""
    before, after = _icarus_outputs(tmp_path, bench, UNREAD, drop_unread_wires(UNREAD))
    assert before == after and before.count("\n") == 256


EQUIVALENCE = """
read_verilog {raw}
hierarchy -top bf_engine
proc; memory; flatten; opt_clean
rename bf_engine gold
design -stash gold
read_verilog {passed}
hierarchy -top bf_engine
proc; memory; flatten; opt_clean
rename bf_engine gate
design -stash gate
design -copy-from gold -as gold gold
design -copy-from gate -as gate gate
equiv_make gold gate equiv
hierarchy -top equiv
equiv_struct
equiv_simple
equiv_status -assert
"""


@pytest.mark.slow
def test_engine_verilog_after_the_simulation_passes_is_equivalent_to_amaranths(tmp_path):
    """The proof the passes change nothing: yosys equivalence of the default spec's engine as Amaranth
    writes it and as the simulators get it (every register and output proven; ≈ 4 min)."""
    from blockforge.spec import load_spec
    from blockforge_hw.synth import yosys_command
    from blockforge_hw.verilog import engine_verilog, raw_engine_verilog

    spec = load_spec("tile8")
    (tmp_path / "raw.v").write_text(raw_engine_verilog(spec))
    (tmp_path / "passed.v").write_text(engine_verilog(spec))
    (tmp_path / "equiv.ys").write_text(EQUIVALENCE.format(raw="raw.v", passed="passed.v"))
    run = subprocess.run([*yosys_command(), "-s", "equiv.ys"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-2000:]
    status = re.search(r"Of those cells (\d+) are proven and (\d+) are unproven", run.stdout)
    assert status and int(status[1]) > 10_000 and int(status[2]) == 0, run.stdout[-2000:]
    assert "Equivalence successfully proven!" in run.stdout


def test_the_simulators_leave_unread_wires_out_unless_waves_need_their_names():
    from blockforge.spec import load_spec
    from blockforge_hw.verilog import engine_verilog

    spec = load_spec("tile8")
    fast, named = engine_verilog(spec), engine_verilog(spec, keep_unread=True)
    field = "\\jobs__payload.tile[7][4] "                 # Amaranth's name of a struct field, read by nothing
    assert field not in fast and f"assign {field}" in named
    assert fast.count("assign ") < named.count("assign ") - 500
