"""Driver: puts transactions on the simulation top's control interface (reset, reload, start, and the
clock when the top has none of its own).

Inputs are driven on the falling edge so the design samples them cleanly at the next rising edge.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

CLOCK_NS = 10      # blockforge_hw.verilog.CLOCK_PERIOD_NS (not imported: that module loads Amaranth)


class EngineDriver:
    def __init__(self, dut):
        self.dut = dut

    def start_clock(self, free_running: bool = False) -> None:
        """Drive the clock from cocotb, unless the top generates it (``bf_sim_clocked``): then the
        simulator runs free and Python is only woken at job boundaries."""
        if not free_running:
            cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())

    async def reset(self, cycles: int = 3) -> None:
        self.dut.start.value = 0
        self.dut.reload.value = 0
        self.dut.reload_inputs.value = 0
        quiet = getattr(self.dut, "quiet", None)    # bf_sim_clocked's hint to the Verilator main (monitor.py)
        if quiet is not None:
            quiet.value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def _pulse(self, signal) -> None:
        """One cycle high, from one falling edge to the next."""
        await FallingEdge(self.dut.clk)
        signal.value = 1
        await FallingEdge(self.dut.clk)
        signal.value = 0

    async def reload(self) -> None:
        """Re-read every memory from its file (the sim top's ``reload`` pulse)."""
        await self._pulse(self.dut.reload)

    async def reload_inputs(self) -> None:
        """Re-read only the activations and the config word (the sim top's ``reload_inputs`` pulse)."""
        await self._pulse(self.dut.reload_inputs)

    async def start(self) -> None:
        """One-cycle ``start`` pulse: the engine reads its config and runs the layer."""
        await self._pulse(self.dut.start)
