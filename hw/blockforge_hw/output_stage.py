"""OutputStage: drains finished block rows through the requantizer onto the output stream.

For every finished block row (in order; ``rows_done`` events are queued) it reads the row's bank
token by token, adds the row's bias, requantizes and emits one output word per token: BR int8 lanes,
lane i = y[r·BR + i, n]. Output order: block row 0 tokens 0..N−1, block row 1 tokens 0..N−1, …
An empty block row reads no accumulators: its outputs are requantized bias alone.

Pipeline: D0 addresses the accumulator and parameter memories (synchronous reads), D1 holds their
data, D2 registers it (memory clock-to-out is slow on FPGAs), then the requantizer's free-running
stages, then an output FIFO whose registered head is ``out``. Nothing after D0 ever stalls: D0 issues
a token only while the words in flight (issued, not yet taken from ``out``) leave room in the FIFO, so
backpressure on ``out`` stops D0 alone and never fans out over the pipeline. With ``out.ready`` held
high a token issued in cycle c is on ``out`` in cycle c + :func:`blockforge.estimate.drain_latency`
and a token is issued every cycle.
``row_free`` pulses when the last read of a bank has been issued (the bank may be overwritten from
the next cycle); ``finished`` pulses with the handshake of the layer's last output word.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from blockforge.estimate import drain_latency

from .layouts import checked_geometry, EngineGeometry, ReadPortSignature
from .requantizer import Requantizer

__all__ = ["OutputStage"]

FIFO_LATENCY = 2   # SyncFIFOBuffered: a word written in cycle t is at the registered head in t + 2


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
            "n_block_rows": In(range(g.max_block_rows + 1)),
            "row_free": Out(1),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        g = self.geometry
        m = Module()
        m.submodules.queue = queue = fifo.SyncFIFO(width=2, depth=2)
        m.submodules.requantizer = requant = Requantizer(
            lanes=g.rows, acc_bits=g.acc_bits, multiplier_bits=g.multiplier_bits, act_bits=g.act_bits,
            rounding=g.rounding, saturate=g.saturate, multipliers=g.requantizer_multipliers)
        latency = 2 + requant.latency + FIFO_LATENCY
        if latency != drain_latency(g.multiplier_bits):
            raise AssertionError("the output pipeline no longer matches blockforge.estimate.drain_latency")
        # Words issued by D0 and not yet taken from out; the loop is latency + 1 cycles long, so that
        # much credit keeps one token per cycle flowing when out is always ready.
        capacity = latency + 1
        m.submodules.words = words = fifo.SyncFIFOBuffered(width=g.out_layout.size + 1,
                                                            depth=capacity)
        m.d.comb += [
            queue.w_en.eq(self.rows_done.valid),
            queue.w_data.eq(self.rows_done.payload.as_value()),
        ]
        in_flight = Signal(range(capacity + 1))
        advance = Signal()
        issue = Signal()
        taken = Signal()
        m.d.comb += advance.eq(in_flight < capacity)

        # ---- D0: walk the tokens of the row at the head of the queue -----------------------------
        valid0 = Signal()
        token0 = Signal(g.token_bits)
        bank0 = Signal()
        empty0 = Signal()
        row0 = Signal(range(g.max_block_rows + 1))
        next_row = Signal(range(g.max_block_rows + 1))
        # ``row_last_token`` (token0 is the row's last token) is a flip-flop set one step ahead, from
        # local copies of the configuration (registered from the held inputs; rows arrive much later).
        row_last_token = Signal()
        row_last = Signal()
        one_token = Signal(reset_less=True)
        second_last = Signal(g.token_bits, reset_less=True)
        last_row = Signal.like(row0, reset_less=True)
        m.d.sync += [one_token.eq(self.n_tokens == 1), second_last.eq(self.n_tokens - 2),
                     last_row.eq(self.n_block_rows - 1)]
        m.d.comb += queue.r_en.eq(advance & (~valid0 | row_last_token))
        with m.If(advance):
            with m.If(valid0 & ~row_last_token):
                m.d.sync += [token0.eq(token0 + 1), row_last_token.eq(token0 == second_last)]
            with m.Elif(queue.r_rdy):
                m.d.sync += [
                    valid0.eq(1), token0.eq(0), row0.eq(next_row), next_row.eq(next_row + 1),
                    bank0.eq(queue.r_data[0]), empty0.eq(queue.r_data[1]), row_last_token.eq(one_token),
                    row_last.eq(next_row == last_row),
                ]
            with m.Else():
                m.d.sync += valid0.eq(0)
        m.d.comb += [
            issue.eq(advance & valid0),
            self.row_free.eq(issue & row_last_token),
            self.acc.addr.eq((bank0 << g.token_bits) | token0),
            self.acc.en.eq(1),
            self.params.addr.eq(row0),
            self.params.en.eq(1),
        ]
        m.d.sync += in_flight.eq(in_flight + issue - taken)

        # ---- D1: memory data; D2: registered, meets the requantizer --------------------------------
        valid1 = Signal()
        empty1 = Signal()
        last1 = Signal()
        m.d.sync += [
            valid1.eq(issue), empty1.eq(empty0),
            last1.eq(issue & row_last_token & row_last),
        ]
        d2 = Signal.like(requant.i.payload, reset_less=True)
        valid2 = Signal()
        m.d.sync += [
            valid2.eq(valid1),
            d2.bias.eq(self.params.data.bias),
            d2.multiplier.eq(self.params.data.multiplier),
            d2.shift.eq(self.params.data.shift),
            d2.last.eq(last1),
        ]
        for i in range(g.rows):
            m.d.sync += d2.acc[i].eq(Mux(empty1, 0, self.acc.data[i]))
        m.d.comb += [requant.i.valid.eq(valid2), requant.i.payload.eq(d2)]

        # ---- emit --------------------------------------------------------------------------------
        m.d.comb += [
            words.w_en.eq(requant.o.valid),
            words.w_data.eq(Cat(requant.o.payload.y, requant.o.payload.last)),
            self.out.valid.eq(words.r_rdy),
            self.out.payload.eq(words.r_data[:-1]),
            words.r_en.eq(self.out.ready),
            taken.eq(words.r_rdy & self.out.ready),
            self.finished.eq(taken & words.r_data[-1]),
        ]
        return m
