"""AccumulatorBank: two banks of BR×max_tokens accumulators in one memory.

Row r of the layer accumulates in bank (r mod 2) while the output stage drains the other bank, so
requantization and output overlap the next block row's MACs. One memory, BR·acc_bits wide,
2·max_tokens deep (address = bank·stride + token):

- read-modify-write in :data:`blockforge.estimate.ACCUMULATOR_STAGES` = W = 4 stages: a partial sum
  arrives in cycle t and addresses its accumulator row; the row's data is registered in t+1 (on an
  FPGA the block RAM's own output register, docs/fpga.md "Register packing") and again in t+2 beside
  the adder; t+3 adds; t+4 writes the registered sum back. Every stage between the RAM and the adder
  is a register of its own: the RAM sites are far from the adder on the die. A partial for the same
  row up to W cycles behind another (N ≤ 4, or tiles close together) would read a stale row (or
  collide with its write), so the adder takes the row from the most recent such write instead
  (forwarding from the last W written sums; the address comparisons are registered one cycle ahead).
  Hence the read data of a colliding read is never used, which lets the FPGA build declare such
  collisions undefined. The row's first tile writes its sums without adding (no clearing pass);
- ``rows_done`` pulses in the cycle the row's last write happens (or, for an empty row, the cycle its
  marker would have been written), so a drain read in the next cycle sees the final value;
- ``drain`` is a second, ordinary synchronous read port for the output stage.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from blockforge.estimate import ACCUMULATOR_STAGES

from .layouts import checked_geometry, EngineGeometry, ReadPortSignature

__all__ = ["AccumulatorBank"]


class AccumulatorBank(wiring.Component):
    """Ports: ``partials`` (in, no backpressure), ``rows_done`` (out, no backpressure),
    ``drain`` (read port: bank·stride + token → BR accumulators)."""

    def __init__(self, geometry: EngineGeometry, *, collision_data: int | None = None):
        #: None: a read that hits the row written in the same cycle returns the old row (the simulated
        #: RTL). An int: it returns that value instead, modelling the FPGA build, where such collisions
        #: are declared undefined (docs/fpga.md); the tests run the engine so to show it never matters.
        self.collision_data = collision_data
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
        # Stages (W = ACCUMULATOR_STAGES): t reads the row; its data is registered twice (t+1: the
        # RAM's own output register on an FPGA, t+2: a fabric register beside the adder); t+W-1 adds;
        # t+W writes the registered sum back. Every register stage on the way to and from the RAM
        # gets a cycle of its own: the RAM sites sit far from the adder on the die.
        W = ACCUMULATOR_STAGES
        p = self.partials.payload
        addr0 = Signal(addr_bits)
        m.d.comb += [
            addr0.eq((p.bank << g.token_bits) | p.token),
            update.addr.eq(addr0),
            update.en.eq(1),
        ]
        # the partial's tags and address ride along stage by stage; data registers carry no reset
        # (only the valid bits need one): a short reset net
        valid, held, addr = [self.partials.valid], [p], [addr0]
        for k in range(1, W + 1):
            v = Signal(name=f"valid{k}")
            h = Signal(g.partial_layout, name=f"held{k}", reset_less=True)
            a = Signal(addr_bits, name=f"addr{k}", reset_less=True)
            m.d.sync += [v.eq(valid[-1]), h.eq(held[-1]), a.eq(addr[-1])]
            valid.append(v), held.append(h), addr.append(a)
        stored = Signal(g.acc_layout, reset_less=True)      # t+1: the RAM's output register on an FPGA
        stored2 = Signal(g.acc_layout, reset_less=True)     # t+2: beside the adder
        m.d.sync += [stored.eq(self._read_data(m, update, write)), stored2.eq(stored)]

        # ---- forwarding --------------------------------------------------------------------------
        # A partial for the same row k = 1..W cycles ahead writes its sum in the cycle of this one's
        # read or later, so this read returns a stale row (or a collision): the adder takes the row
        # from that write instead, the most recent one winning. At the add cycle c the write of the
        # partial k ahead happens in c − (k − 1): the write history below holds its sum and address.
        # Whether to take it is decided one cycle ahead (registered flags).
        written = [Signal(g.acc_layout, name=f"written{j}", reset_less=True) for j in range(W)]
        written_addr = [Signal(addr_bits, name=f"written_addr{j}", reset_less=True) for j in range(W)]
        written_en = [Signal(name=f"written_en{j}") for j in range(W)]
        sum_reg = Signal(g.acc_layout, reset_less=True)     # t+W: the sum being written
        writing = Signal()
        m.d.comb += writing.eq(valid[W] & ~held[W].empty)
        # written[0] is the write in progress (sum_reg); written[j] the one j cycles before
        m.d.comb += [written[0].eq(sum_reg), written_addr[0].eq(addr[W]), written_en[0].eq(writing)]
        for j in range(1, W):
            m.d.sync += [written[j].eq(written[j - 1]), written_addr[j].eq(written_addr[j - 1]),
                         written_en[j].eq(written_en[j - 1])]
        # at cycle c − 1 (the partial in stage W − 2) the write that will be written[j] at c is the one
        # now in progress j − 1 cycles earlier (j ≥ 1: written[j − 1]), or, for j = 0, the partial now
        # in stage W − 1 (about to be registered into sum_reg)
        take = [Signal(name=f"from_write{j}") for j in range(W)]
        a_next = addr[W - 2]
        candidates = [(valid[W - 1] & ~held[W - 1].empty, addr[W - 1])] + \
                     [(written_en[j - 1], written_addr[j - 1]) for j in range(1, W)]
        for j, (en, a) in enumerate(candidates):
            m.d.sync += take[j].eq(en & (a == a_next))

        # ---- t+W−1: add; t+W: write the registered sum back --------------------------------------
        current = held[W - 1]
        for i in range(g.rows):
            row = stored2[i]
            for j in reversed(range(W)):     # the most recent write (smallest j) is applied last: it wins
                row = Mux(take[j], written[j][i], row)
            m.d.sync += sum_reg[i].eq(Mux(current.first, 0, row) + current.sums[i])
        m.d.comb += [
            write.addr.eq(addr[W]),
            write.en.eq(writing),
            write.data.eq(sum_reg),
            self.rows_done.valid.eq(valid[W] & held[W].row_end),
            self.rows_done.payload.bank.eq(held[W].bank),
            self.rows_done.payload.empty.eq(held[W].empty),
        ]

        # ---- drain port -----------------------------------------------------------------------
        m.d.comb += [
            drain.addr.eq(self.drain.addr),
            drain.en.eq(self.drain.en),
            self.drain.data.eq(self._read_data(m, drain, write)),
        ]
        return m

    def _read_data(self, m: Module, port, write):
        """The port's read data; with ``collision_data``, that value after a read that hit the row being
        written in the same cycle."""
        if self.collision_data is None:
            return port.data
        collided = Signal()
        m.d.sync += collided.eq(port.en & write.en & (port.addr == write.addr))
        return Mux(collided, self.collision_data, port.data)
