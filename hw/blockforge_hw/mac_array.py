"""MacArray: the tile-stationary BR×BC multiply-accumulate array and its token loop.

A job (one tile) is held in the tile register for N cycles; in cycle n the activation slice
x[c·BC:(c+1)·BC, n] arrives from the activation memory and meets the tile: BR×BC products, summed per
output channel, leave on ``partials`` one cycle later, tagged with the token, the accumulator bank
and whether this is the row's first tile (the bank then overwrites instead of adding) or its last
token (``row_end``). The activation address is issued one cycle ahead (the memory is synchronous),
so a new job starts the cycle after the previous job's last token: no bubble between tiles.

A job that starts a block row (``first`` or ``empty``) needs a free accumulator bank: the top says
so on ``row_slot_free``; ``row_start`` pulses when such a job is taken. An empty block row occupies
the array for one cycle and emits a single ``row_end`` partial with ``empty`` set.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import checked_geometry, EngineGeometry, ReadPortSignature

__all__ = ["MacArray", "tree_sum"]


def tree_sum(values):
    """A balanced adder tree (shallower logic than Python's left fold)."""
    values = list(values)
    if not values:
        raise ValueError("tree_sum of nothing")
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


class MacArray(wiring.Component):
    """Ports: ``jobs`` (in), ``act`` (activation memory read port), ``partials`` (out, no
    backpressure), ``n_tokens`` (held while running), ``row_slot_free`` (in), ``row_start`` (out)."""

    def __init__(self, geometry: EngineGeometry):
        self.geometry = g = checked_geometry(self, geometry)
        super().__init__({
            "jobs": In(stream.Signature(g.job_layout)),
            "act": Out(ReadPortSignature(g.act_addr_bits, g.act_layout)),
            "partials": Out(stream.Signature(g.partial_layout, always_ready=True)),
            "n_tokens": In(range(g.max_tokens + 1)),
            "row_slot_free": In(1),
            "row_start": Out(1),
        })

    def elaborate(self, platform):
        g = self.geometry
        m = Module()
        job = self.jobs.payload

        # ---- token loop (the "M" stage: tile register meets the activation slice) -------------
        busy = Signal()
        token = Signal(g.token_bits)
        col = Signal(g.col_bits)
        bank = Signal()
        next_bank = Signal()
        first = Signal()
        last_tile = Signal()
        empty = Signal()
        tile = Signal(g.tile_layout)

        finishing = Signal()
        starts_row = Signal()
        take = Signal()
        m.d.comb += [
            finishing.eq(~busy | empty | (token == self.n_tokens - 1)),
            starts_row.eq(job.first | job.empty),
            self.jobs.ready.eq(finishing & (~starts_row | self.row_slot_free)),
            take.eq(self.jobs.valid & self.jobs.ready),
            self.row_start.eq(take & starts_row),
        ]
        with m.If(take):
            m.d.sync += [
                busy.eq(1), token.eq(0), col.eq(job.col), first.eq(job.first),
                last_tile.eq(job.last), empty.eq(job.empty), tile.eq(job.tile),
                bank.eq(Mux(starts_row, next_bank, bank)),
            ]
            with m.If(starts_row):
                m.d.sync += next_bank.eq(~next_bank)
        with m.Elif(~finishing):
            m.d.sync += token.eq(token + 1)
        with m.Elif(finishing):
            m.d.sync += busy.eq(0)

        # The activation memory is read one cycle ahead: address of the token in stage M next cycle.
        stride_bits = g.token_bits
        m.d.comb += [
            self.act.en.eq(1),
            self.act.addr.eq(Mux(take, job.col << stride_bits, (col << stride_bits) | (token + 1))),
        ]

        # ---- multiply and reduce: BR lanes of BC products --------------------------------------
        x = self.act.data
        sums = [tree_sum(tile[i][j] * x[j] for j in range(g.cols)) for i in range(g.rows)]
        out = self.partials.payload
        m.d.sync += [
            self.partials.valid.eq(busy),
            out.token.eq(token),
            out.bank.eq(bank),
            out.first.eq(first),
            out.empty.eq(empty),
            out.row_end.eq(last_tile & (empty | (token == self.n_tokens - 1))),
        ]
        for i in range(g.rows):
            m.d.sync += out.sums[i].eq(sums[i])
        return m
