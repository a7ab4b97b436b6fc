"""TileFetch: walks the block-sparse index and streams tiles from the weight memory.

Two independent walkers, both strictly sequential:

- the *weight walker* requests words 0, 1, … n_tiles·tile_words − 1 (tiles are stored contiguously
  in BCSR order), as fast as a credit counter allows: a word is requested only if the response FIFO
  has room for it, so responses (fixed latency after acceptance) are never dropped; the FIFO holds
  one tile plus the round trip, so tile loads overlap the MAC array's work on the previous tile;
- the *index walker* reads one index entry per cycle (no bubbles between rows).

Words leave the FIFO into the tile assembly register (a shift register of tile_words words); when it
holds a whole tile and the current index entry is a tile, a job ``{tile, col, first, last, empty}``
is offered on ``jobs``. While the MAC array accepts that job, the first word of the next tile may
already shift in: that register and the MAC array's tile register form the double buffer.
An empty block row is a job with ``empty`` = 1 and no tile.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (checked_geometry, EngineGeometry, ReadPortSignature, weight_request_signature,
                      weight_response_signature)

__all__ = ["TileFetch"]


class TileFetch(wiring.Component):
    """Index walker + weight walker + tile assembly.

    Ports: ``index`` (read port of the index memory), ``weight_req``/``weight_resp`` (the weight
    memory: a request is an address, the response its word ``read_latency`` cycles after the request
    is accepted), ``jobs`` (out), the layer's ``n_block_rows``, ``n_block_cols``, ``n_tiles`` (held
    constant while running) and error flags ``index_overrun``, ``bad_column``, ``tile_overrun``
    (sticky until reset; the walker stops at the offending entry).
    """

    def __init__(self, geometry: EngineGeometry):
        self.geometry = g = checked_geometry(self, geometry)
        super().__init__({
            "index": Out(ReadPortSignature(g.index_addr_bits, g.index_layout)),
            "weight_req": Out(weight_request_signature(g)),
            "weight_resp": In(weight_response_signature(g)),
            "jobs": Out(stream.Signature(g.job_layout)),
            "n_block_rows": In(range(g.max_block_rows + 1)),
            "n_block_cols": In(range(g.max_block_cols + 1)),
            "n_tiles": In(range(g.max_tiles + 1)),
            "index_overrun": Out(1),
            "bad_column": Out(1),
            "tile_overrun": Out(1),
        })

    def elaborate(self, platform):
        g = self.geometry
        m = Module()
        words = g.tile_words

        # ---- weight walker: sequential requests under a credit limit --------------------------
        m.submodules.words = words_fifo = fifo.SyncFIFO(width=g.bus_bits, depth=g.fifo_depth)
        outstanding = Signal(range(g.fifo_depth + 1))      # requested, not yet popped from the FIFO
        req_tile = Signal(range(g.max_tiles + 1))
        req_word = Signal(range(words))
        req_addr = Signal(g.weight_addr_bits)
        m.d.comb += [
            self.weight_req.payload.eq(req_addr),
            self.weight_req.valid.eq((req_tile < self.n_tiles) & (outstanding < g.fifo_depth)),
            words_fifo.w_data.eq(self.weight_resp.payload),
            words_fifo.w_en.eq(self.weight_resp.valid),
            self.weight_resp.ready.eq(1),
        ]
        with m.If(self.weight_req.valid & self.weight_req.ready):
            m.d.sync += req_addr.eq(req_addr + 1)
            with m.If(req_word == words - 1):
                m.d.sync += [req_word.eq(0), req_tile.eq(req_tile + 1)]
            with m.Else():
                m.d.sync += req_word.eq(req_word + 1)

        # ---- tile assembly: a shift register filled one word per cycle ------------------------
        # ``full`` (the register holds a whole tile) is a flip-flop, not a comparison, so the job
        # handshake starts from flip-flops.
        assembly = Signal(words * g.bus_bits)
        assembled = Signal(range(words + 1))
        full = Signal()
        take_tile = Signal()
        pop = Signal()
        m.d.comb += [
            pop.eq(words_fifo.r_rdy & (~full | take_tile)),
            words_fifo.r_en.eq(pop),
        ]
        m.d.sync += outstanding.eq(outstanding + (self.weight_req.valid & self.weight_req.ready) - pop)
        with m.If(pop):
            if words == 1:
                m.d.sync += assembly.eq(words_fifo.r_data)
            else:
                m.d.sync += assembly.eq(Cat(assembly[g.bus_bits:], words_fifo.r_data))
        with m.If(take_tile):
            m.d.sync += [assembled.eq(pop), full.eq(pop & (words == 1))]
        with m.Elif(pop):
            m.d.sync += [assembled.eq(assembled + 1), full.eq(assembled == words - 1)]

        # ---- index walker: one entry per cycle ------------------------------------------------
        # The bounds (entries left in the index memory, block rows left, tiles left) are kept as
        # flip-flops computed from the counters' next values.
        ptr = Signal(range(g.index_depth + 1))
        ptr_next = Signal.like(ptr)
        primed = Signal()
        rows_ended = Signal(range(g.max_block_rows + 1))
        rows_ended_next = Signal.like(rows_ended)
        tiles_seen = Signal(range(g.max_tiles + 1))
        tiles_seen_next = Signal.like(tiles_seen)
        in_index, rows_left, tiles_left = Signal(), Signal(), Signal()
        row_start = Signal(init=1)
        entry = self.index.data
        consume = Signal()
        ends_row = Signal()
        m.d.sync += primed.eq(1)
        m.d.comb += [
            consume.eq(self.jobs.valid & self.jobs.ready),
            ends_row.eq(entry.last | entry.empty),
            ptr_next.eq(ptr + consume),
            rows_ended_next.eq(rows_ended + (consume & ends_row)),
            tiles_seen_next.eq(tiles_seen + (consume & ~entry.empty)),
            self.index.en.eq(1),
            self.index.addr.eq(ptr_next),
        ]
        m.d.sync += [
            ptr.eq(ptr_next), rows_ended.eq(rows_ended_next), tiles_seen.eq(tiles_seen_next),
            in_index.eq(ptr_next < g.index_depth),
            rows_left.eq(rows_ended_next < self.n_block_rows),
            tiles_left.eq(tiles_seen_next < self.n_tiles),
        ]
        errors = Signal()
        m.d.comb += errors.eq(self.index_overrun | self.bad_column | self.tile_overrun)
        wanted = Signal()
        m.d.comb += wanted.eq(primed & rows_left & ~errors)
        with m.If(wanted):
            with m.If(~in_index):
                m.d.sync += self.index_overrun.eq(1)
            with m.Elif(~entry.empty & (entry.col >= self.n_block_cols)):
                m.d.sync += self.bad_column.eq(1)
            with m.Elif(~entry.empty & ~tiles_left):
                m.d.sync += self.tile_overrun.eq(1)
        # A tile with a bad column may still be handed over in the cycle its error is found: the
        # run stops in the next cycle with bad_column set, and its outputs are never used.
        entry_ok = Signal()
        m.d.comb += entry_ok.eq(wanted & in_index & (entry.empty | tiles_left))

        m.d.comb += [
            self.jobs.valid.eq(entry_ok & (entry.empty | full)),
            self.jobs.payload.tile.eq(assembly),
            self.jobs.payload.col.eq(entry.col),
            self.jobs.payload.first.eq(row_start),
            self.jobs.payload.last.eq(ends_row),
            self.jobs.payload.empty.eq(entry.empty),
            take_tile.eq(consume & ~entry.empty),
        ]
        with m.If(consume):
            m.d.sync += row_start.eq(ends_row)
        return m
