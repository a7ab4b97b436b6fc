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
            "n_block_rows": In(32),
            "n_block_cols": In(32),
            "n_tiles": In(32),
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
        req_tile = Signal(32)
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
        assembly = Signal(words * g.bus_bits)
        assembled = Signal(range(words + 1))
        take_tile = Signal()
        pop = Signal()
        m.d.comb += [
            pop.eq(words_fifo.r_rdy & ((assembled < words) | take_tile)),
            words_fifo.r_en.eq(pop),
        ]
        m.d.sync += outstanding.eq(outstanding + (self.weight_req.valid & self.weight_req.ready) - pop)
        with m.If(pop):
            if words == 1:
                m.d.sync += assembly.eq(words_fifo.r_data)
            else:
                m.d.sync += assembly.eq(Cat(assembly[g.bus_bits:], words_fifo.r_data))
        with m.If(take_tile):
            m.d.sync += assembled.eq(pop)
        with m.Elif(pop):
            m.d.sync += assembled.eq(assembled + 1)

        # ---- index walker: one entry per cycle ------------------------------------------------
        ptr = Signal(range(g.index_depth + 1))
        primed = Signal()
        rows_ended = Signal(32)
        tiles_seen = Signal(32)
        row_start = Signal(init=1)
        entry = self.index.data
        consume = Signal()
        m.d.sync += primed.eq(1)
        m.d.comb += [
            consume.eq(self.jobs.valid & self.jobs.ready),
            self.index.en.eq(1),
            self.index.addr.eq(ptr + consume),
        ]
        errors = Signal()
        m.d.comb += errors.eq(self.index_overrun | self.bad_column | self.tile_overrun)
        wanted = Signal()
        m.d.comb += wanted.eq(primed & (rows_ended < self.n_block_rows) & ~errors)
        with m.If(wanted):
            with m.If(ptr >= g.index_depth):
                m.d.sync += self.index_overrun.eq(1)
            with m.Elif(~entry.empty & (entry.col >= self.n_block_cols)):
                m.d.sync += self.bad_column.eq(1)
            with m.Elif(~entry.empty & (tiles_seen >= self.n_tiles)):
                m.d.sync += self.tile_overrun.eq(1)
        entry_ok = Signal()
        m.d.comb += entry_ok.eq(wanted & (ptr < g.index_depth)
                                & (entry.empty | ((entry.col < self.n_block_cols) & (tiles_seen < self.n_tiles))))

        m.d.comb += [
            self.jobs.valid.eq(entry_ok & (entry.empty | (assembled == words))),
            self.jobs.payload.tile.eq(assembly),
            self.jobs.payload.col.eq(entry.col),
            self.jobs.payload.first.eq(row_start),
            self.jobs.payload.last.eq(entry.last | entry.empty),
            self.jobs.payload.empty.eq(entry.empty),
            take_tile.eq(consume & ~entry.empty),
        ]
        with m.If(consume):
            m.d.sync += [ptr.eq(ptr + 1), row_start.eq(entry.last | entry.empty)]
            with m.If(entry.last | entry.empty):
                m.d.sync += rows_ended.eq(rows_ended + 1)
            with m.If(~entry.empty):
                m.d.sync += tiles_seen.eq(tiles_seen + 1)
        return m
