"""WeightThrottle: the deterministic token bucket that limits the simulated weight memory to the
spec's ``memory.bandwidth_bytes_per_cycle`` (:class:`blockforge.estimate.BandwidthBucket` defines it:
``gain`` = tile_words units per cycle, ``cost`` = tile_load_cycles units per accepted word, at most
``capacity`` = cost + gain − 1 units). ``ok`` says a word may be accepted this cycle (the bucket holds
at least ``cost``); ``refill`` (the engine's start) fills the bucket, so every run starts the same way.
The Verilog simulation top (:mod:`.verilog`) carries the same bucket.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from blockforge.estimate import BandwidthBucket

from .layouts import reject

__all__ = ["WeightThrottle"]


class WeightThrottle(wiring.Component):
    """Ports: ``accept`` (in: a word was accepted this cycle), ``refill`` (in), ``ok`` (out)."""

    def __init__(self, bucket: BandwidthBucket):
        if not isinstance(bucket, BandwidthBucket):
            raise reject(self, f"WeightThrottle needs a BandwidthBucket, not {bucket!r}")
        self.bucket = bucket
        super().__init__({"accept": In(1), "refill": In(1), "ok": Out(1)})

    def elaborate(self, platform):
        b = self.bucket
        m = Module()
        credit = Signal(range(b.capacity + b.gain + 1), init=b.capacity)
        after = Signal.like(credit)
        m.d.comb += [
            self.ok.eq(credit >= b.cost),
            after.eq(credit + b.gain - Mux(self.accept, b.cost, 0)),
        ]
        with m.If(self.refill):
            m.d.sync += credit.eq(b.capacity)
        with m.Else():
            m.d.sync += credit.eq(Mux(after > b.capacity, b.capacity, after))
        return m
