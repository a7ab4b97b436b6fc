"""AccumulatorBank: two banks of BR×max_tokens accumulators in one memory.

Row r of the layer accumulates in bank (r mod 2) while the output stage drains the other bank, so
requantization and output overlap the next block row's MACs. One memory, BR·acc_bits wide,
2·max_tokens deep (address = bank·stride + token):

- read-modify-write in :data:`blockforge.estimate.ACCUMULATOR_STAGES` = 2 stages: a partial sum arrives
  in cycle t and addresses its accumulator row; the row's data is registered in t+1; in t+2 it is
  added and written back. The memory's read data is never used in the cycle it appears (its
  clock-to-out is slow on FPGAs). A partial for the same row one or two cycles behind a write (N ≤ 2,
  tiles W ≤ 2 words apart) would read a stale row, so the adder takes the row from the last or the
  one-before-last write instead (forwarding; the address comparisons are registered one cycle ahead).
  The row's first tile writes its sums without adding (no clearing pass is needed);
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
        update = mem.read_port()
        drain = mem.read_port()
        addr_bits = g.token_bits + 1

        # ---- t: the arriving partial sum addresses its accumulator row --------------------------
        p = self.partials.payload
        addr0 = Signal(addr_bits)
        m.d.comb += [
            addr0.eq((p.bank << g.token_bits) | p.token),
            update.addr.eq(addr0),
            update.en.eq(1),
        ]
        # data registers carry no reset (only the valid bits need one): a short reset net
        valid1 = Signal()
        held1, addr1 = Signal(g.partial_layout, reset_less=True), Signal(addr_bits, reset_less=True)
        m.d.sync += [valid1.eq(self.partials.valid), held1.eq(p), addr1.eq(addr0)]

        # ---- t+1: the row's data is registered; forwarding decided ---------------------------------
        valid2 = Signal()
        held2, addr2 = Signal(g.partial_layout, reset_less=True), Signal(addr_bits, reset_less=True)
        stored = Signal(g.acc_layout, reset_less=True)
        m.d.sync += [valid2.eq(valid1), held2.eq(held1), addr2.eq(addr1), stored.eq(update.data)]
        writing = Signal()
        m.d.comb += writing.eq(valid2 & ~held2.empty)
        last_en = Signal()
        last_addr, last_sum = Signal(addr_bits, reset_less=True), Signal(g.acc_layout, reset_less=True)
        prev_sum = Signal(g.acc_layout, reset_less=True)
        from_last, from_prev = Signal(), Signal()
        m.d.sync += [
            # the write in progress now is the "last" write when this partial adds in t+2; the one
            # before it committed in the same cycle this partial's read was issued (read-before-write)
            from_last.eq(writing & (addr2 == addr1)),
            from_prev.eq(last_en & (last_addr == addr1)),
            last_en.eq(writing), last_addr.eq(addr2), last_sum.eq(write.data), prev_sum.eq(last_sum),
        ]

        # ---- t+2: add and write back ----------------------------------------------------------------
        m.d.comb += [
            write.addr.eq(addr2),
            write.en.eq(writing),
        ]
        for i in range(g.rows):
            current = Mux(from_last, last_sum[i], Mux(from_prev, prev_sum[i], stored[i]))
            m.d.comb += write.data[i].eq(Mux(held2.first, 0, current) + held2.sums[i])
        m.d.comb += [
            self.rows_done.valid.eq(valid2 & held2.row_end),
            self.rows_done.payload.bank.eq(held2.bank),
            self.rows_done.payload.empty.eq(held2.empty),
        ]

        # ---- drain port -----------------------------------------------------------------------
        m.d.comb += [
            drain.addr.eq(self.drain.addr),
            drain.en.eq(self.drain.en),
            self.drain.data.eq(drain.data),
        ]
        return m
