"""Register packing for ECP5: move fabric flip-flops into the registers of the hard blocks they feed or
leave, in the yosys JSON netlist between synthesis and place and route.

Vendor tools do this on their own; yosys' ``synth_ecp5`` does not: it maps every DSP (``MULT18X18D``) and
block RAM (``DP16KD``) unregistered and keeps the engine's pipeline registers in the fabric, so a path
"flip-flop → routing → DSP multiplier → routing → flip-flop" carries the DSP's whole combinational delay
and a block RAM's read data leaves through its slow unregistered output (5.8 ns clock-to-out on speed
grade 6 in nextpnr's model). The engine is written so that these registers exist right next to the
blocks (docs/fpga.md "Register packing"); this pass moves them in:

* ``MULT18X18D`` input A (B): when every non-constant bit of the port comes from a *plain* flip-flop (no
  enable, no set/reset, the engine clock) that feeds nothing but this port, the flip-flops are removed and
  the DSP's input register takes their place (``REG_INPUTA_CLK = CLK0``); the output P likewise when every
  used bit of P feeds exactly one plain flip-flop and nothing else (``REG_OUTPUT_CLK = CLK0``);
* ``DP16KD`` (true dual port; the 36-bit pseudo-dual-port form is left alone) read port A (B): when every
  used data-out bit feeds exactly one plain flip-flop on the port's clock, with the output enable tied
  high and no read reset, the flip-flops become the block's output register (``REGMODE_B = OUTREG``);
  flip-flops that share a synchronous reset to 0 (``Mux(zero, 0, data)`` registered) move too, their
  reset becoming the port's ``RSTB`` in ``RESETMODE = SYNC``, which clears the output register.

Each move replaces a D flip-flop by the block's D flip-flop on the same clock, with no enable and no reset
either way, so the netlist's cycle behaviour is unchanged; only where the register sits changes. Power-on
values differ only for registers the engine never reads before writing (its data registers carry no
reset: ``reset_less``). The result counts what moved; :func:`pack_registers` edits the netlist in place.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping

__all__ = ["pack_registers"]

FF = "TRELLIS_FF"
DSP = "MULT18X18D"
BRAM = "DP16KD"


def _param(cell: Mapping[str, Any], name: str, default: str = "") -> str:
    value = cell.get("parameters", {}).get(name, default)
    return value.strip() if isinstance(value, str) else str(value)


def _width(cell: Mapping[str, Any], name: str) -> int:
    value = _param(cell, name, "0")
    try:
        return int(value, 2) if set(value) <= {"0", "1"} and len(value) > 8 else int(value)
    except ValueError:
        return 0


class _Netlist:
    """Drivers and sinks of every bit of one module."""

    def __init__(self, module: dict[str, Any]):
        self.module = module
        self.cells: dict[str, dict[str, Any]] = module["cells"]
        self.driver: dict[int, tuple[str, str]] = {}
        self.sinks: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for name, cell in self.cells.items():
            directions = cell.get("port_directions", {})
            for port, bits in cell["connections"].items():
                for bit in bits:
                    if isinstance(bit, int):
                        if directions.get(port) == "output":
                            self.driver[bit] = (name, port)
                        else:
                            self.sinks[bit].append((name, port))
        for port in module.get("ports", {}).values():
            if port["direction"] != "input":
                for bit in port["bits"]:
                    if isinstance(bit, int):
                        self.sinks[bit].append(("", "<module port>"))

    def plain_ff(self, name: str, clock: Any, *, sync_reset: bool = False) -> bool:
        """A flip-flop with clock ``clock``, no enable, and no set/reset (``sync_reset``: or a synchronous
        reset to 0, see :meth:`reset_of`)."""
        cell = self.cells.get(name)
        if cell is None or cell["type"] != FF:
            return False
        c = cell["connections"]
        enabled = _param(cell, "CEMUX", "CE") not in ("1",) and c.get("CE", ["1"]) != ["1"]
        reset = self.reset_of(name)
        if reset is not None and not (sync_reset and _param(cell, "REGSET", "RESET") == "RESET"):
            return False
        return (not enabled and c.get("CLK") == [clock] and _param(cell, "CLKMUX", "CLK") == "CLK"
                and (reset is None or _param(cell, "SRMODE", "LSR_OVER_CE") == "LSR_OVER_CE"))

    def reset_of(self, name: str) -> Any:
        """The bit driving flip-flop ``name``'s set/reset, or None if it has none."""
        cell = self.cells[name]
        lsr = cell["connections"].get("LSR", ["0"])
        if _param(cell, "LSRMUX", "LSR") not in ("LSR", "INV") or lsr == ["0"] and _param(cell, "LSRMUX") != "INV":
            return None
        return lsr[0]

    def remove(self, name: str) -> None:
        """Delete flip-flop ``name`` and forget its connections."""
        cell = self.cells.pop(name)
        for port, bits in cell["connections"].items():
            for bit in bits:
                if not isinstance(bit, int):
                    continue
                if self.driver.get(bit) == (name, port):
                    del self.driver[bit]
                elif (name, port) in self.sinks.get(bit, []):
                    self.sinks[bit].remove((name, port))

    def connect(self, cell_name: str, pin: str, bits: list, output: bool) -> None:
        """Point ``pin`` of ``cell_name`` at ``bits`` (as a driver if ``output``)."""
        cell = self.cells[cell_name]
        for bit in cell["connections"].get(pin, []):
            if isinstance(bit, int):
                if output and self.driver.get(bit) == (cell_name, pin):
                    del self.driver[bit]
                elif not output and (cell_name, pin) in self.sinks.get(bit, []):
                    self.sinks[bit].remove((cell_name, pin))
        cell["connections"][pin] = list(bits)
        for bit in bits:
            if isinstance(bit, int):
                if output:
                    self.driver[bit] = (cell_name, pin)
                else:
                    self.sinks[bit].append((cell_name, pin))


def _pack_dsp_input(net: _Netlist, name: str, port: str, clock: int) -> int:
    """Absorb the flip-flops feeding input ``port`` (A or B); returns how many moved (0: not packable)."""
    pins = [f"{port}{k}" for k in range(18)]
    dsp = net.cells[name]
    conns = dsp["connections"]
    feeding: dict[int, str] = {}
    for pin in pins:
        for bit in conns.get(pin, []):
            if not isinstance(bit, int):
                continue
            source = net.driver.get(bit)
            if source is None or source[1] != "Q" or not net.plain_ff(source[0], clock):
                return 0
            if any(not (net.cells.get(c) is dsp and p in pins) for c, p in net.sinks[bit]):
                return 0
            feeding[bit] = source[0]
    if not feeding:
        return 0
    new = {pin: [net.cells[feeding[b]]["connections"]["DI"][0] if isinstance(b, int) else b
                 for b in conns.get(pin, [])] for pin in pins if pin in conns}
    for ff in set(feeding.values()):
        net.remove(ff)
    for pin, bits in new.items():
        net.connect(name, pin, bits, output=False)
    dsp["parameters"][f"REG_INPUT{port}_CLK"] = "CLK0"
    dsp["parameters"][f"REG_INPUT{port}_CE"] = "CE0"
    dsp["parameters"][f"REG_INPUT{port}_RST"] = "RST0"
    return len(set(feeding.values()))


def _absorb_outputs(net: _Netlist, name: str, pins: list[str], clock: Any, *,
                    sync_reset: bool = False) -> tuple[int, Any]:
    """Replace each used output pin's single plain flip-flop by the pin itself; returns how many moved
    (0 if not packable) and the synchronous reset they share (``sync_reset``; None: no reset)."""
    conns = net.cells[name]["connections"]
    target: dict[str, str] = {}
    resets = set()
    for pin in pins:
        for bit in conns.get(pin, []):
            if not isinstance(bit, int) or not net.sinks.get(bit):
                continue
            sinks = net.sinks[bit]
            if len(sinks) != 1 or sinks[0][1] != "DI" or not net.plain_ff(sinks[0][0], clock, sync_reset=sync_reset):
                return 0, None
            target[pin] = sinks[0][0]
            resets.add(net.reset_of(sinks[0][0]))
    if not target or len(resets) != 1 or any(
            _param(net.cells[ff], "LSRMUX", "LSR") == "INV" for ff in target.values() if resets != {None}):
        return 0, None
    reset = resets.pop()
    for pin, ff in target.items():
        q = list(net.cells[ff]["connections"]["Q"])
        net.remove(ff)
        net.connect(name, pin, q, output=True)
    return len(target), reset


def pack_registers(netlist: dict[str, Any], top: str) -> dict[str, int]:
    """Move plain flip-flops into the DSPs' input/output registers and the block RAMs' output registers
    of module ``top`` (in place); returns the counts ``{"dsp_input_ffs", "dsp_output_ffs",
    "bram_output_ffs", "dsps", "brams"}`` (the last two: blocks with at least one register packed)."""
    module = netlist["modules"][top]
    counts = {"dsp_input_ffs": 0, "dsp_output_ffs": 0, "bram_output_ffs": 0, "dsps": 0, "brams": 0}
    net = _Netlist(module)
    for name in [n for n, c in module["cells"].items() if c["type"] in (DSP, BRAM)]:
        if module["cells"][name]["type"] == DSP:
            moved = _pack_dsp(net, name)
            if any(moved):
                counts["dsps"] += 1
            counts["dsp_input_ffs"] += moved[0]
            counts["dsp_output_ffs"] += moved[1]
        else:
            moved = _pack_bram(net, name)
            if moved:
                counts["brams"] += 1
            counts["bram_output_ffs"] += moved
    return counts


def _dsp_clock(net: _Netlist, dsp: dict[str, Any]) -> int | None:
    """The clock of the flip-flops around ``dsp`` (the one clock they share), or None."""
    clocks = set()
    conns = dsp["connections"]
    for pin, bits in conns.items():
        for bit in bits:
            if not isinstance(bit, int):
                continue
            source = net.driver.get(bit)
            if source and source[1] == "Q" and net.cells[source[0]]["type"] == FF:
                clocks.update(b for b in net.cells[source[0]]["connections"].get("CLK", []))
            for sink, port in net.sinks.get(bit, []):
                if port == "DI" and net.cells.get(sink, {}).get("type") == FF:
                    clocks.update(net.cells[sink]["connections"].get("CLK", []))
    return clocks.pop() if len(clocks) == 1 else None


def _pack_dsp(net: _Netlist, name: str) -> tuple[int, int]:
    dsp = net.cells[name]
    params = dsp.setdefault("parameters", {})
    if any(_param(dsp, f"REG_{r}_CLK", "NONE") != "NONE" for r in ("INPUTA", "INPUTB", "OUTPUT", "PIPELINE")):
        return 0, 0
    clock = _dsp_clock(net, dsp)
    if clock is None:
        return 0, 0
    inputs = _pack_dsp_input(net, name, "A", clock) + _pack_dsp_input(net, name, "B", clock)
    outputs, _ = _absorb_outputs(net, name, [f"P{k}" for k in range(36)], clock)
    if outputs:
        params["REG_OUTPUT_CLK"] = "CLK0"
        params["REG_OUTPUT_CE"] = "CE0"
        params["REG_OUTPUT_RST"] = "RST0"
    if inputs or outputs:
        dsp.setdefault("port_directions", {}).update(CLK0="input", CE0="input", RST0="input")
        for pin, bits in (("CLK0", [clock]), ("CE0", ["1"]), ("RST0", ["0"])):
            net.connect(name, pin, bits, output=False)
    return inputs, outputs


def _pack_bram(net: _Netlist, name: str) -> int:
    bram = net.cells[name]
    if _width(bram, "DATA_WIDTH_A") == 36 or _width(bram, "DATA_WIDTH_B") == 36:
        return 0        # pseudo dual port: one read port on both halves of the outputs; left as is
    conns = bram["connections"]
    moved = 0
    for port in ("A", "B"):
        if _param(bram, f"REGMODE_{port}", "NOREG") != "NOREG" or _param(bram, f"CLK{port}MUX", f"CLK{port}") != f"CLK{port}":
            continue
        other = "B" if port == "A" else "A"
        if conns.get(f"OCE{port}") != ["1"] or conns.get(f"RST{port}", ["0"]) != ["0"]:
            continue
        # a synchronous reset of the data registers becomes the port's RST, which resets its output
        # register on the clock edge (RESETMODE SYNC); only if the other port has no reset of its own
        sync_reset = conns.get(f"RST{other}", ["0"]) == ["0"]
        clock = conns.get(f"CLK{port}", [None])[0]
        n, reset = _absorb_outputs(net, name, [f"DO{port}{k}" for k in range(18)], clock, sync_reset=sync_reset)
        if n:
            bram["parameters"][f"REGMODE_{port}"] = "OUTREG"
            if reset is not None:
                bram["parameters"]["RESETMODE"] = "SYNC"
                bram["parameters"]["ASYNC_RESET_RELEASE"] = "SYNC"
                net.connect(name, f"RST{port}", [reset], output=False)
            moved += n
    return moved
