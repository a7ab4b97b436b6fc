"""Simulation-speed post-passes over yosys-written Verilog (the logic is unchanged; a yosys
equivalence check in the tests proves it on the engine).

:func:`merge_partial_assigns` merges the slice assignments of one wire into a single continuous
assignment:

Yosys writes a wire that several cells drive in pieces as ``assign w[7:0] = a; assign w[15:8] = b;``.
Icarus Verilog models every such wire as a multi-driver net and resolves it bit by bit with strengths
on every change of any piece; on the engine's wide payload wires (531-bit jobs, 256-bit accumulator
rows) that was ~90% of simulation time. After this pass each piece drives its own exactly-sized wire and
the net gets one assignment of their concatenation, which is the same logic:

    wire [7:0] bf_piece_0;  assign bf_piece_0 = a;
    wire [7:0] bf_piece_1;  assign bf_piece_1 = b;
    assign w = {bf_piece_1, bf_piece_0};

Bits no piece drives stay undriven (``z``), as before. Only wires (not regs or ports declared as regs)
with two or more pieces are rewritten; anything the pass does not recognize is left as it was.

:func:`merge_clocked_blocks` gathers yosys's one-register-per-block flip-flops,

    always @(posedge clk)
      a <= \\$12 ;
    always @(posedge clk)
      b <= \\$13 ;

into one ``always @(posedge clk) begin a <= \\$12 ; b <= \\$13 ; end`` per clock and module. Non-blocking
assignments on one edge do not see each other, so grouping them is the same logic; Icarus then wakes
one process per clock edge instead of one per register (≈ 640 on the tile8 engine).

:func:`group_arithmetic` moves each module's arithmetic continuous assignments (``+``, ``-``, ``*``) into
one ``always @*`` block in dependency order, their wires becoming regs: Icarus evaluates a continuous
``assign s = a + b;`` as functors that add, sign-extend and concatenate bit by bit, procedural code with
word-level opcodes (one block per module: one process per assignment was slower). Two hazards of
event-driven simulation are handled. (1) A value computed in the block that comes back into it through
logic outside it — another assignment, an ``always @*`` block, an instance, or out of the module and in
again — changes while the block runs, and the block would miss that change: such expressions stay
continuous assignments. (2) An ``always @*`` block runs only when something it reads changes, and
Icarus does not count a declaration initializer (``reg x = 0``) as a change: the block also reads
``wire bf_arith_start = 1'h1``, a constant net whose value arrives as an event at time 0, so every value
is computed before the first clock even when its operands never change.

:func:`drop_unread_wires` removes each continuous assignment, with its wire, whose wire nothing in the
module reads and that is not a port: Amaranth names every field of a struct-typed signal (``assign
\\jobs__payload.tile[7][4] = jobs__payload[487:480];``) and yosys keeps those named wires, so Icarus
evaluated about a thousand assignments on the tile8 engine whose values went nowhere. Repeated until
nothing more goes (an intermediate that fed only removed wires goes too). Outputs are unchanged by
construction; a wave of such a Verilog lacks the removed names (the simulators keep them when waves
are on, :func:`blockforge_hw.verilog.engine_verilog`).
"""

from __future__ import annotations

import re

__all__ = ["drop_unread_wires", "group_arithmetic", "merge_clocked_blocks", "merge_partial_assigns"]

_IDENT = r"(?:\\\S+ |[A-Za-z_][A-Za-z0-9_$]*)"
_PIECE = re.compile(rf"^(?P<indent>\s*)assign\s+(?P<net>{_IDENT})\s*\[(?P<hi>\d+)(?::(?P<lo>\d+))?\]\s*=\s*(?P<expr>.+);\s*$")
_CLOCKED = re.compile(rf"^(?P<indent>\s*)always\s*@\(\s*posedge\s+(?P<clock>{_IDENT})\s*\)\s*$")
_NONBLOCKING = re.compile(rf"^\s*{_IDENT}\s*(?:\[[^\]]*\]\s*)*<=[^;]*;\s*$")
_DECL = re.compile(rf"^\s*(?P<kind>wire|reg|input|output|inout)\s+(?:signed\s+)?(?:\[(?P<hi>\d+):(?P<lo>\d+)\]\s+)?"
                   rf"(?P<net>{_IDENT})\s*(?:;|=)")


def _module_spans(lines: list[str]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith("module "):
            start = i
        elif stripped.startswith("endmodule") and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _per_module(verilog: str, rewrite) -> str:
    """``verilog`` with the lines of each module (``module`` … ``endmodule``) replaced by ``rewrite(lines)``."""
    lines = verilog.split("\n")
    out, previous = [], 0
    for start, end in _module_spans(lines):
        out.extend(lines[previous:start])
        out.extend(rewrite(lines[start:end + 1]))
        previous = end + 1
    out.extend(lines[previous:])
    return "\n".join(out)


def _rewrite_module(lines: list[str], counter: list[int]) -> list[str]:
    widths: dict[str, tuple[int, int]] = {}
    kinds: dict[str, set[str]] = {}
    pieces: dict[str, list[tuple[int, int, int, str]]] = {}
    for i, line in enumerate(lines):
        decl = _DECL.match(line)
        if decl:
            net = decl["net"].strip()
            kinds.setdefault(net, set()).add(decl["kind"])
            if decl["hi"] is not None:
                widths[net] = (int(decl["hi"]), int(decl["lo"]))
            continue
        piece = _PIECE.match(line)
        if piece:
            hi = int(piece["hi"])
            lo = int(piece["lo"]) if piece["lo"] is not None else hi
            pieces.setdefault(piece["net"].strip(), []).append((i, hi, lo, piece["expr"]))
    drop: set[int] = set()
    insert_at: dict[int, list[str]] = {}
    for net, parts in pieces.items():
        if len(parts) < 2 or net not in widths or "reg" in kinds.get(net, ()) or "inout" in kinds.get(net, ()):
            continue
        top, bottom = widths[net]
        if bottom != 0:
            continue
        covered = sorted((lo, hi) for _, hi, lo, _ in parts)
        if any(b[0] <= a[1] for a, b in zip(covered, covered[1:])) or covered[-1][1] > top:
            continue                                     # overlapping or out-of-range pieces: leave alone
        indent = re.match(r"\s*", lines[parts[0][0]]).group(0)
        body, names = [], {}
        for index, hi, lo, expr in parts:
            name = f"bf_piece_{counter[0]}"
            counter[0] += 1
            names[lo] = (name, hi - lo + 1)
            body.append(f"{indent}wire [{hi - lo}:0] {name};")
            body.append(f"{indent}assign {name} = {expr};")
            drop.add(index)
        fields, bit = [], 0
        for lo in sorted(names):
            if lo > bit:
                fields.append(f"{lo - bit}'bz")
            name, width = names[lo]
            fields.append(name)
            bit = lo + width
        if bit <= top:
            fields.append(f"{top + 1 - bit}'bz")
        target = net + " " if net.startswith("\\") else net
        body.append(f"{indent}assign {target} = {{ {', '.join(reversed(fields))} }};")
        insert_at.setdefault(max(p[0] for p in parts), []).extend(body)
    out = []
    for i, line in enumerate(lines):
        if i not in drop:
            out.append(line)
        out.extend(insert_at.get(i, ()))
    return out


def merge_partial_assigns(verilog: str) -> str:
    """``verilog`` with the slice assignments of each multiply-driven wire merged (see module docstring)."""
    counter = [0]
    return _per_module(verilog, lambda module: _rewrite_module(module, counter))


def _merge_module_clocks(lines: list[str]) -> list[str]:
    groups: dict[str, list[str]] = {}
    indent: dict[str, str] = {}
    out = []
    i = 0
    while i < len(lines):
        head = _CLOCKED.match(lines[i])
        if head and i + 1 < len(lines) and _NONBLOCKING.match(lines[i + 1]):
            clock = head["clock"].strip()
            groups.setdefault(clock, []).append(lines[i + 1].strip())
            indent.setdefault(clock, head["indent"])
            i += 2
            continue
        if lines[i].lstrip().startswith("endmodule"):
            for clock, statements in groups.items():
                target = clock + " " if clock.startswith("\\") else clock
                out.append(f"{indent[clock]}always @(posedge {target}) begin")
                out.extend(f"{indent[clock]}  {statement}" for statement in statements)
                out.append(f"{indent[clock]}end")
        out.append(lines[i])
        i += 1
    return out


def merge_clocked_blocks(verilog: str) -> str:
    """``verilog`` with each module's single-statement ``always @(posedge clk)`` blocks merged into one
    block per clock, placed before ``endmodule`` (see module docstring). Blocks with a condition, several
    statements or another event control are left where they are."""
    return _per_module(verilog, _merge_module_clocks)


# ------------------------------------------------------------------------------- arithmetic grouping

_WHOLE_ASSIGN = re.compile(rf"^\s*assign\s+(?P<net>{_IDENT})\s*=\s*(?P<expr>.+);\s*$")
_ANY_ASSIGN = re.compile(r"^\s*assign\s+(?P<lhs>.+?)\s*=(?!=)\s*(?P<rhs>.+);\s*$")
_WIRE = re.compile(rf"^(?P<indent>\s*)wire\s+(?P<shape>(?:signed\s+)?(?:\[\d+:\d+\]\s+)?)(?P<net>{_IDENT})\s*;\s*$")
_BLOCKING = re.compile(rf"^\s*(?P<net>{_IDENT})\s*(?:\[[^\]]*\]\s*)*=(?!=)")
_INSTANCE = re.compile(rf"^\s*{_IDENT}\s+{_IDENT}\s*\($")
_ARITHMETIC = re.compile(r"[-+*]")
_LITERAL = re.compile(r"\d*'[sS]?[hbdoHBDO][0-9a-fA-F_xzXZ?]+")
_START = "bf_arith_start"


def _names(text: str) -> set[str]:
    """The identifiers in a Verilog expression (escaped ones end at whitespace), literals left out."""
    return {name.strip() for name in re.findall(_IDENT, _LITERAL.sub(" ", text) + " ")} - {"signed"}


def _comb_nodes(lines: list[str]) -> tuple[list[tuple[set[str], set[str]]], dict[str, set[str]]]:
    """The module's combinational nodes as (reads, writes): every continuous assignment, every
    ``always @*`` block and, conservatively, every instance (each connected net both read and written);
    and the port names by direction."""
    nodes, ports = [], {"input": set(), "output": set(), "inout": set()}
    i = 0
    while i < len(lines):
        line = lines[i]
        decl = _DECL.match(line)
        if decl and decl["kind"] in ports:
            ports[decl["kind"]].add(decl["net"].strip())
        assign = _ANY_ASSIGN.match(line)
        if assign:
            nodes.append((_names(assign["rhs"]), _names(assign["lhs"])))
        elif re.match(r"^\s*always\s*@\*", line):
            indent = re.match(r"\s*", line).group(0)
            body, j = [line], i + 1
            if line.rstrip().endswith("begin"):
                while j < len(lines) and lines[j] != f"{indent}end":
                    body.append(lines[j])
                    j += 1
            else:
                body.append(lines[j])
            writes = {m["net"].strip() for m in map(_BLOCKING.match, body[1:]) if m}
            nodes.append((_names("\n".join(body[1:])), writes))
            i = j
        elif _INSTANCE.match(line):
            connected, j = set(), i + 1
            while j < len(lines) and not lines[j].strip().startswith(");"):
                port = re.match(r"^\s*\.\S+\((?P<expr>.*)\),?\s*$", lines[j])
                if port:
                    connected |= _names(port["expr"])
                j += 1
            nodes.append((connected, connected))
            i = j
        i += 1
    return nodes, ports


def _reach(starts: set[str], successors: dict[str, set[str]], stop: set[str]) -> set[str]:
    """Nets reachable from ``starts`` in one or more steps without passing through ``stop``."""
    seen, todo = set(), [n for s in starts for n in successors.get(s, ())]
    while todo:
        net = todo.pop()
        if net in seen or net in stop:
            continue
        seen.add(net)
        todo.extend(successors.get(net, ()))
    return seen


def _group_module(lines: list[str]) -> list[str]:
    if any(_START in line for line in lines):
        return lines                             # grouped already
    wires = {m["net"].strip(): i for i, m in enumerate(map(_WIRE.match, lines)) if m}
    nodes, ports = _comb_nodes(lines)
    drivers: dict[str, int] = {}
    successors: dict[str, set[str]] = {}
    for reads, writes in nodes:
        for net in writes:
            drivers[net] = drivers.get(net, 0) + 1
        for net in reads:
            successors.setdefault(net, set()).update(writes)
    chosen: dict[str, tuple[int, str, set[str]]] = {}
    for i, line in enumerate(lines):
        assign = _WHOLE_ASSIGN.match(line)
        if not assign or not _ARITHMETIC.search(_LITERAL.sub(" ", assign["expr"])) or "'bz" in assign["expr"]:
            continue
        net, inputs = assign["net"].strip(), _names(assign["expr"])
        if net in wires and drivers.get(net) == 1 and inputs and net not in inputs:
            chosen[net] = (i, assign["expr"], inputs)
    # An expression must not read a net that a grouped value reaches through logic outside the block:
    # that change would happen while the block runs, and the block would miss it. Leaving the module
    # counts as such a path when a grouped value reaches an output and the expression depends on an input.
    while chosen:
        group = set(chosen)
        outside = _reach(group, successors, group)
        if (outside | group) & (ports["output"] | ports["inout"]):
            outside |= ports["input"] | ports["inout"] | _reach(ports["input"] | ports["inout"], successors, group)
        unsafe = {net for net, (_, _, inputs) in chosen.items() if inputs & outside}
        if not unsafe:
            break
        for net in unsafe:
            del chosen[net]
    if not chosen:
        return lines
    order, state = [], {}

    def visit(net: str) -> None:                 # depth-first: every operand computed before its use
        if state.get(net) == "done":
            return
        if state.get(net) == "open":
            raise ValueError(f"combinational loop through {net}")
        state[net] = "open"
        for name in sorted(chosen[net][2] & set(chosen)):
            visit(name)
        state[net] = "done"
        order.append(net)

    for net in sorted(chosen):
        visit(net)
    out: list[str | None] = list(lines)
    for net, (i, _, _) in chosen.items():
        wire = _WIRE.match(lines[wires[net]])
        out[wires[net]] = f"{wire['indent']}reg {wire['shape']}{wire['net']};"
        out[i] = None
    block = [f"  wire {_START} = 1'h1;", "  always @* begin", f"    if ({_START}) begin end"]
    block += [f"    {net + ' ' if net.startswith(chr(92)) else net} = {chosen[net][1]};" for net in order]
    block.append("  end")
    return [line for line in out[:-1] if line is not None] + block + [lines[-1]]


def group_arithmetic(verilog: str) -> str:
    """``verilog`` with each module's arithmetic continuous assignments (``+``, ``-``, ``*``) of whole,
    singly driven wires moved into one ``always @*`` block in dependency order, leaving out any whose
    inputs a grouped value reaches through logic outside the block (see module docstring)."""
    return _per_module(verilog, _group_module)


# ------------------------------------------------------------------------------- unread wires

def _drop_unread_module(lines: list[str]) -> list[str]:
    while True:
        mentions: dict[str, int] = {}
        ports: set[str] = set()
        wires: dict[str, int] = {}
        for i, line in enumerate(lines):
            for name in re.findall(_IDENT, _LITERAL.sub(" ", line) + " "):
                mentions[name.strip()] = mentions.get(name.strip(), 0) + 1
            decl, wire = _DECL.match(line), _WIRE.match(line)
            if decl and decl["kind"] in ("input", "output", "inout"):
                ports.add(decl["net"].strip())
            if wire:
                wires[wire["net"].strip()] = i
        drop = set()
        for i, line in enumerate(lines):
            assign = _WHOLE_ASSIGN.match(line)
            if not assign:
                continue
            net = assign["net"].strip()
            # mentioned twice: its declaration and this assignment's left-hand side, nowhere else
            if net in wires and net not in ports and mentions.get(net) == 2:
                drop |= {i, wires[net]}
        if not drop:
            return lines
        lines = [line for i, line in enumerate(lines) if i not in drop]


def drop_unread_wires(verilog: str) -> str:
    """``verilog`` without the continuous assignments (and their wires) whose wire nothing reads and
    that are not ports, repeated until nothing more goes (see module docstring)."""
    return _per_module(verilog, _drop_unread_module)
