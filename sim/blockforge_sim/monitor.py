"""Monitor: waits, without touching every cycle from Python, for the engine to finish, then samples
its control outputs. The output stream itself is captured by the simulation top into ``out_mem`` and
dumped with ``$writememh`` when ``done`` rises; the checker reads that file.
"""

from __future__ import annotations

from dataclasses import dataclass

from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer


@dataclass(frozen=True)
class Completion:
    cycles: int
    status: int
    out_count: int
    timed_out: bool


class CompletionMonitor:
    def __init__(self, dut, clock_ns: int):
        self.dut = dut
        self.clock_ns = clock_ns
        self.quiet = getattr(dut, "quiet", None)     # bf_sim_clocked's input; bf_sim_top has none

    async def wait_done(self, timeout_cycles: int, quiet_cycles: int = 0) -> Completion:
        """Wait for ``done`` (at most ``timeout_cycles``), then sample the control outputs.

        The first ``quiet_cycles`` are waited out with a bare Timer: no value-change callback is armed, so
        the simulator runs them without calling into the VPI at every time step. ``done`` is a level
        (high until the next start) and ``cycles`` is the engine's own counter, so a job that finishes
        inside the quiet stretch is still seen, and counted, exactly."""
        dut = self.dut
        quiet = min(quiet_cycles, timeout_cycles)
        if quiet > 0:
            # bf_sim_clocked's `quiet` input tells blockforge's Verilator main that nothing but this timer
            # is armed, so it may run the clock edges up to it without calling into the VPI.
            if self.quiet is not None:
                self.quiet.value = 1
            try:
                await Timer(quiet * self.clock_ns, unit="ns")
            finally:                             # never left high while another trigger is armed
                if self.quiet is not None:
                    self.quiet.value = 0
        timed_out = False
        if not int(dut.done.value):
            # A Timer, not ClockCycles: ClockCycles wakes Python on every edge and slows the run ~30x.
            timer = Timer((timeout_cycles - quiet) * self.clock_ns, unit="ns")
            fired = await First(RisingEdge(dut.done), timer)
            timed_out = fired is timer
        # Two more edges: the top dumps the outputs on the edge after done rises.
        await ClockCycles(dut.clk, 2)
        await FallingEdge(dut.clk)
        return Completion(int(dut.cycles.value), int(dut.status.value), int(dut.out_count.value), timed_out)
