"""AccumulatorBank: two banks of BR×max_tokens accumulators in one memory.

Row r of the layer accumulates in bank (r mod 2) while the output stage drains the other bank, so
requantization and output overlap the next block row's MACs. One memory, BR·acc_bits wide,
2·max_tokens deep (address = bank·stride + token):

- read-modify-write in :data:`blockforge.estimate.ACCUMULATOR_STAGES` = W = 4 stages: a partial sum
  arrives in cycle t and addresses its accumulator row; the row's data is registered in t+1 (on an
  FPGA the block RAM's own output register, docs/fpga.md "Register packing"); t+2 registers the row
  again beside the adder; t+3 adds; t+4 writes the registered sum back. Every hop between the RAM and
  the adder has a cycle of its own: the RAM sites are far from the adder on the die. A partial for the
  same row up to W cycles behind another (small N, or tiles close together) would read a stale row (or
  collide with its write), so the row is taken from the most recent such write instead (forwarding:
  writes already made by t+2 are chosen into the t+2 register, the write in progress at t+3 at the
  adder; the address comparisons are registered a cycle ahead). Hence a colliding read's data is never
  used, which lets the FPGA build declare such collisions undefined. The row's first tile writes its
  sums without adding (no clearing pass);
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
        # Stages (W = ACCUMULATOR_STAGES = 4): t reads the row; t+1 registers its data (on an FPGA the
        # RAM's own output register); t+2 registers it again beside the adder, or instead the row of a
        # write it would miss (forwarding, below); t+3 adds; t+4 writes the registered sum back. Each
        # hop between the RAM and the adder has a cycle of its own: the RAM sites are far away.
        W = ACCUMULATOR_STAGES
        if W != 4:
            raise AssertionError("AccumulatorBank is built for blockforge.estimate.ACCUMULATOR_STAGES = 4")
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
        m.d.sync += stored.eq(self._read_data(m, update, write))

        # ---- forwarding --------------------------------------------------------------------------
        # A partial for the same row k = 1..W cycles ahead writes its sum in the cycle of this one's
        # read or later, so the read returns a stale row (or collides with the write): the adder takes
        # the row from that write instead, the most recent one winning. At the add cycle c the write of
        # the partial j + 1 ahead happens in c − j (j = 0..W−1). Writes j ≥ 1 have happened by c − 1, so
        # their choice is made into the t+2 register (``older``) with flags registered at t+1; only the
        # write in progress at c (j = 0, the sum register itself) is chosen at the adder.
        written = [Signal(g.acc_layout, name=f"written{j}", reset_less=True) for j in range(W - 1)]
        written_addr = [Signal(addr_bits, name=f"written_addr{j}", reset_less=True) for j in range(W - 1)]
        written_en = [Signal(name=f"written_en{j}") for j in range(W - 1)]
        sum_reg = Signal(g.acc_layout, reset_less=True)     # t+W: the sum being written
        writing = Signal()
        m.d.comb += writing.eq(valid[W] & ~held[W].empty)
        # written[0] is the write in progress (sum_reg); written[j] the one j cycles before
        m.d.comb += [written[0].eq(sum_reg), written_addr[0].eq(addr[W]), written_en[0].eq(writing)]
        for j in range(1, W - 1):
            m.d.sync += [written[j].eq(written[j - 1]), written_addr[j].eq(written_addr[j - 1]),
                         written_en[j].eq(written_en[j - 1])]
        adding = valid[W - 1] & ~held[W - 1].empty          # the partial in the add stage writes next
        # flags for ``older``, with this partial at t+1: the write at c − j is the partial now in the
        # add stage (j = 1) or written[j − 2] (j ≥ 2)
        from_write = [Signal(name=f"from_write{j}") for j in range(1, W)]
        for j, flag in enumerate(from_write, start=1):
            en, a = (adding, addr[W - 1]) if j == 1 else (written_en[j - 2], written_addr[j - 2])
            m.d.sync += flag.eq(en & (a == addr[1]))
        # t+2: the row as of the write at c − 1 (written[j − 1] at t+2 is the write at c − j)
        older = Signal(g.acc_layout, reset_less=True)
        for i in range(g.rows):
            row = stored[i]
            for j in reversed(range(1, W)):  # the most recent write (smallest j) is applied last: it wins
                row = Mux(from_write[j - 1], written[j - 1][i], row)
            m.d.sync += older[i].eq(row)
        # with this partial at t+2: does the partial in the add stage (writing at c) hit the same row?
        from_sum = Signal()
        m.d.sync += from_sum.eq(adding & (addr[W - 1] == addr[W - 2]))

        # ---- t+W−1: add; t+W: write the registered sum back --------------------------------------
        current = held[W - 1]
        for i in range(g.rows):
            row = Mux(from_sum, sum_reg[i], older[i])
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
