"""StallInjector: a seeded 16-bit LFSR that asks for a stall in a given share of cycles.

``stall`` is high in a cycle when ``enable`` is high and the LFSR's low byte is below ``rate``
(so the stall probability is rate/256). The LFSR (x^16 + x^14 + x^13 + x^11 + 1, Fibonacci, shifting
towards bit 0) advances every cycle from ``seed`` (a zero seed is replaced by 0xACE1). The Verilog
simulation top carries the same generator (docs/engine.md "Stall injection").
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import reject

__all__ = ["StallInjector", "lfsr_next"]

DEFAULT_SEED = 0xACE1


def lfsr_next(state: int) -> int:
    """The LFSR's next state (Python model, for tests and documentation)."""
    bit = (state ^ (state >> 2) ^ (state >> 3) ^ (state >> 5)) & 1
    return (state >> 1) | (bit << 15)


class StallInjector(wiring.Component):
    """Ports: ``enable`` (in), ``rate`` (in, 0..256), ``stall`` (out)."""

    def __init__(self, seed: int):
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 1 << 16:
            raise reject(self, f"seed must be an integer in [0, 65535], not {seed!r}")
        self.seed = seed or DEFAULT_SEED
        super().__init__({"enable": In(1), "rate": In(range(257)), "stall": Out(1)})

    def elaborate(self, platform):
        m = Module()
        state = Signal(16, init=self.seed)
        feedback = state[0] ^ state[2] ^ state[3] ^ state[5]
        m.d.sync += state.eq(Cat(state[1:], feedback))
        m.d.comb += self.stall.eq(self.enable & (state[:8] < self.rate))
        return m
