"""AccumulatorBank: two banks of BR×max_tokens accumulators in one memory.

Row r of the layer accumulates in bank (r mod 2) while the output stage drains the other bank, so
requantization and output overlap the next block row's MACs. One memory, BR·acc_bits wide,
2·max_tokens deep (address = bank·stride + token):

- read-modify-write: a partial sum arrives in cycle t (the accumulator row is addressed then), is
  added in cycle t+1 and written back in t+1. The read port is transparent to the write port, so a
  token that comes back one cycle later (N = 1) sees its own previous write. The row's first tile
  writes its sums without adding (no clearing pass is needed);
- ``rows_done`` pulses in the cycle the row's last write happens (or, for an empty row, the cycle its
  marker would have been written), so a drain read in the next cycle sees the final value;
- ``drain`` is a second, ordinary synchronous read port for the output stage.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import checked_geometry, EngineGeometry, ReadPortSignature

__all__ = ["AccumulatorBank"]


class AccumulatorBank(wiring.Component):
    """Ports: ``partials`` (in, no backpressure), ``rows_done`` (out, no backpressure),
    ``drain`` (read port: bank·stride + token → BR accumulators)."""

    def __init__(self, geometry: EngineGeometry):
        self.geometry = g = checked_geometry(self, geometry)
        super().__init__({
            "partials": In(stream.Signature(g.partial_layout, always_ready=True)),
            "rows_done": Out(stream.Signature(g.row_done_layout, always_ready=True)),
            "drain": In(ReadPortSignature(g.token_bits + 1, g.acc_layout)),
        })

    def elaborate(self, platform):
        g = self.geometry
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=g.acc_layout, depth=2 * g.act_stride, init=[])
        write = mem.write_port()
        update = mem.read_port(transparent_for=(write,))
        drain = mem.read_port()

        # ---- read the accumulator row the arriving partial sum belongs to ----------------------
        p = self.partials.payload
        m.d.comb += [
            update.addr.eq((p.bank << g.token_bits) | p.token),
            update.en.eq(1),
        ]
        valid = Signal()
        held = Signal(g.partial_layout)
        m.d.sync += [valid.eq(self.partials.valid), held.eq(p)]

        # ---- add and write back ---------------------------------------------------------------
        m.d.comb += [
            write.addr.eq((held.bank << g.token_bits) | held.token),
            write.en.eq(valid & ~held.empty),
        ]
        for i in range(g.rows):
            m.d.comb += write.data[i].eq(Mux(held.first, 0, update.data[i]) + held.sums[i])
        m.d.comb += [
            self.rows_done.valid.eq(valid & held.row_end),
            self.rows_done.payload.bank.eq(held.bank),
            self.rows_done.payload.empty.eq(held.empty),
        ]

        # ---- drain port -----------------------------------------------------------------------
        m.d.comb += [
            drain.addr.eq(self.drain.addr),
            drain.en.eq(self.drain.en),
            self.drain.data.eq(drain.data),
        ]
        return m
