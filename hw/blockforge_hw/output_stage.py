"""OutputStage: drains finished block rows through the requantizer onto the output stream.

For every finished block row (in order; ``rows_done`` events are queued) it reads the row's bank
token by token, adds the row's bias, requantizes and emits one output word per token: BR int8 lanes,
lane i = y[r·BR + i, n]. Output order: block row 0 tokens 0..N−1, block row 1 tokens 0..N−1, …
An empty block row reads no accumulators: its outputs are requantized bias alone.

Pipeline (all stages stall together when ``out.ready`` is low): D0 addresses the accumulator and
parameter memories (synchronous reads, enables tied to the pipeline), D1 holds their data and is the
requantizer's input, then the requantizer's two stages; the last stage is ``out``.
``row_free`` pulses when the last read of a bank has been issued (the bank may be overwritten from
the next cycle); ``finished`` pulses with the handshake of the layer's last output word.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import checked_geometry, EngineGeometry, ReadPortSignature
from .requantizer import Requantizer

__all__ = ["OutputStage"]


class OutputStage(wiring.Component):
    """Ports: ``rows_done`` (in, no backpressure; at most two outstanding), ``acc`` (read port of the
    accumulator bank), ``params`` (read port of the per-row bias/M/S memory), ``out`` (BR int8 lanes,
    valid/ready), ``n_tokens``/``n_block_rows`` (held while running), ``row_free``, ``finished``."""

    def __init__(self, geometry: EngineGeometry):
        self.geometry = g = checked_geometry(self, geometry)
        super().__init__({
            "rows_done": In(stream.Signature(g.row_done_layout, always_ready=True)),
            "acc": Out(ReadPortSignature(g.token_bits + 1, g.acc_layout)),
            "params": Out(ReadPortSignature(g.row_addr_bits, g.params_layout)),
            "out": Out(stream.Signature(g.out_layout)),
            "n_tokens": In(range(g.max_tokens + 1)),
            "n_block_rows": In(32),
            "row_free": Out(1),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        g = self.geometry
        m = Module()
        m.submodules.queue = queue = fifo.SyncFIFO(width=2, depth=2)
        m.submodules.requantizer = requant = Requantizer(
            lanes=g.rows, acc_bits=g.acc_bits, multiplier_bits=g.multiplier_bits, act_bits=g.act_bits,
            rounding=g.rounding, saturate=g.saturate)
        m.d.comb += [
            queue.w_en.eq(self.rows_done.valid),
            queue.w_data.eq(self.rows_done.payload.as_value()),
        ]
        advance = requant.i.ready

        # ---- D0: walk the tokens of the row at the head of the queue -----------------------------
        valid0 = Signal()
        token0 = Signal(g.token_bits)
        bank0 = Signal()
        empty0 = Signal()
        row0 = Signal(32)
        next_row = Signal(32)
        row_last_token = Signal()
        m.d.comb += row_last_token.eq(token0 == self.n_tokens - 1)
        m.d.comb += queue.r_en.eq(advance & (~valid0 | row_last_token))
        with m.If(advance):
            with m.If(valid0 & ~row_last_token):
                m.d.sync += token0.eq(token0 + 1)
            with m.Elif(queue.r_rdy):
                m.d.sync += [
                    valid0.eq(1), token0.eq(0), row0.eq(next_row), next_row.eq(next_row + 1),
                    bank0.eq(queue.r_data[0]), empty0.eq(queue.r_data[1]),
                ]
            with m.Else():
                m.d.sync += valid0.eq(0)
        m.d.comb += [
            self.row_free.eq(advance & valid0 & row_last_token),
            self.acc.addr.eq((bank0 << g.token_bits) | token0),
            self.acc.en.eq(advance),
            self.params.addr.eq(row0),
            self.params.en.eq(advance),
        ]

        # ---- D1: memory data meets the requantizer -------------------------------------------------
        valid1 = Signal()
        empty1 = Signal()
        last1 = Signal()
        with m.If(advance):
            m.d.sync += [
                valid1.eq(valid0), empty1.eq(empty0),
                last1.eq(valid0 & row_last_token & (row0 == self.n_block_rows - 1)),
            ]
        m.d.comb += [
            requant.i.valid.eq(valid1),
            requant.i.payload.bias.eq(self.params.data.bias),
            requant.i.payload.multiplier.eq(self.params.data.multiplier),
            requant.i.payload.shift.eq(self.params.data.shift),
            requant.i.payload.last.eq(last1),
        ]
        for i in range(g.rows):
            m.d.comb += requant.i.payload.acc[i].eq(Mux(empty1, 0, self.acc.data[i]))

        # ---- emit ------------------------------------------------------------------------------
        m.d.comb += [
            self.out.valid.eq(requant.o.valid),
            self.out.payload.eq(requant.o.payload.y),
            requant.o.ready.eq(self.out.ready),
            self.finished.eq(requant.o.valid & requant.o.ready & requant.o.payload.last),
        ]
        return m
