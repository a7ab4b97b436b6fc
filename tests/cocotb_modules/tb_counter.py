"""A self-check for the runner: a free-running 16-bit counter counts clock edges."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge


@cocotb.test()
async def counts(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 1000)
    await FallingEdge(dut.clk)
    assert int(dut.count.value) == 1000, int(dut.count.value)
