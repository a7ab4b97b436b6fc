"""TileFetch: walks the block-sparse index and streams tiles from the weight memory.

Two independent walkers, both strictly sequential:

- the *weight walker* requests words 0, 1, … n_tiles·tile_words − 1 (tiles are stored contiguously
  in BCSR order), as fast as a credit counter allows: a word is requested only if the response FIFO
  has room for it, so responses (fixed latency after acceptance) are never dropped; the FIFO holds
  one tile plus the round trip, so tile loads overlap the MAC array's work on the previous tile;
- the *index walker* reads one index entry per cycle (no bubbles between rows).

Words leave the FIFO into the tile assembly slots (A, one word per cycle); a whole tile moves to the
offer register (B) as soon as B is free, and A starts on the next tile in the same cycle. When B holds
a tile and the current index entry is a tile, a job ``{tile, col, first, last, empty}`` is offered on
``jobs``; taking it frees B. A, B and the MAC array's tile register form a triple buffer, so the
handshake drives no wide enables (docs/engine.md "Schedule"). An empty block row is a job with
``empty`` = 1 and no tile.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (checked_geometry, EngineGeometry, ReadPortSignature, weight_request_signature,
                      weight_response_signature)

__all__ = ["TileFetch"]


class TileFetch(wiring.Component):
    """Index walker + weight walker + tile assembly.

    Ports: ``index`` (read port of the index memory), ``weight_req``/``weight_resp`` (the weight
    memory: a request is an address, the response its word ``read_latency`` cycles after the request
    is accepted), ``jobs`` (out), the layer's ``n_block_rows``, ``n_block_cols``, ``n_tiles`` and
    ``has_tiles`` (n_tiles > 0), ``n_tiles_m1`` and ``n_block_rows_m1`` (the counts minus one, signed: −1
    for 0; all held constant while running) and error flags ``index_overrun``, ``bad_column``, ``tile_overrun``
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
            "has_tiles": In(1),
            "n_tiles_m1": In(signed(len(Signal(range(g.max_tiles + 1))) + 1)),
            "n_block_rows_m1": In(signed(len(Signal(range(g.max_block_rows + 1))) + 1)),
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
        # "tiles left to request" and "credit left" are flip-flops set from the counters' next values
        # (no comparator behind the request's valid); a run with no tiles at all is told by ``has_tiles``
        more_tiles = Signal(init=1)                     # req_tile < n_tiles (n_tiles = 0: has_tiles)
        credit = Signal(init=1)                         # outstanding < fifo_depth
        accept = Signal()
        m.d.comb += [
            self.weight_req.payload.eq(req_addr),
            self.weight_req.valid.eq(more_tiles & credit & self.has_tiles),
            accept.eq(self.weight_req.valid & self.weight_req.ready),
            words_fifo.w_data.eq(self.weight_resp.payload),
            words_fifo.w_en.eq(self.weight_resp.valid),
            self.weight_resp.ready.eq(1),
        ]
        tile_done = Signal()
        m.d.comb += tile_done.eq(accept & (req_word == words - 1))
        m.d.sync += more_tiles.eq(Mux(tile_done, req_tile < self.n_tiles_m1, req_tile < self.n_tiles))
        with m.If(accept):
            m.d.sync += req_addr.eq(req_addr + 1)
            with m.If(req_word == words - 1):
                m.d.sync += [req_word.eq(0), req_tile.eq(req_tile + 1)]
            with m.Else():
                m.d.sync += req_word.eq(req_word + 1)

        # ---- tile assembly (A) and the offered tile (B) -----------------------------------------
        # Words leave the FIFO into the assembly slots, one per cycle, word i of a tile into slot i.
        # A whole tile moves to the offer register B as soon as B is free, and A starts on the next
        # tile in that same cycle. Every enable here comes from flip-flops (A full, B valid, the
        # FIFO's level), none from the job handshake, which only clears B's valid bit.
        slots = [Signal(g.bus_bits, name=f"slot{k}", reset_less=True) for k in range(words)]
        filled = Signal(range(words + 1))
        a_full = Signal()
        offer = Signal(words * g.bus_bits, reset_less=True)
        b_valid = Signal(attrs={"keep": 1})     # kept too: else yosys merges it into its copy below
        b_valid_copy = Signal(attrs={"keep": 1})    # for the wide enables; b_valid is in the handshake
        transfer = Signal()
        take_tile = Signal()
        pop = Signal()
        slot = Signal(range(words))
        m.d.comb += [
            transfer.eq(a_full & ~b_valid_copy),
            pop.eq(words_fifo.r_rdy & (~a_full | transfer)),
            words_fifo.r_en.eq(pop),
            slot.eq(Mux(transfer, 0, filled)),
        ]
        m.d.sync += [
            outstanding.eq(outstanding + accept - pop),
            credit.eq(Mux(accept & ~pop, outstanding < g.fifo_depth - 1, Mux(pop & ~accept, 1, credit))),
        ]
        # Slot k loads the FIFO's head whenever it is the next slot to fill and A may take a word, popped
        # or not: an unpopped head (or an empty FIFO's stale data) only lands in a slot that a later pop
        # overwrites before the tile moves on. So the 64-bit slot enables depend on A's own registers
        # alone, not on the FIFO's level through the pop decision.
        may_fill = Signal()
        m.d.comb += may_fill.eq(~a_full | transfer)
        for k in range(words):
            with m.If(may_fill & (slot == k)):
                m.d.sync += slots[k].eq(words_fifo.r_data)
        with m.If(transfer):
            m.d.sync += [offer.eq(Cat(*slots)), b_valid.eq(1), b_valid_copy.eq(1), filled.eq(pop),
                         a_full.eq(pop & (words == 1))]
        with m.Else():
            with m.If(pop):
                m.d.sync += [filled.eq(filled + 1), a_full.eq(filled == words - 1)]
            with m.If(take_tile):
                m.d.sync += [b_valid.eq(0), b_valid_copy.eq(0)]

        # ---- index walker: one entry per cycle ------------------------------------------------
        # The bounds (entries left in the index memory, block rows left, tiles left) are flip-flops.
        # Each counter's "stays" and "steps" outcomes (value and bound) are computed from registers
        # in parallel with the handshake, which then only selects one: no adder or comparator sits
        # behind the handshake.
        entry = self.index.data
        consume = Signal()
        ends_row = Signal()
        m.d.comb += [
            consume.eq(self.jobs.valid & self.jobs.ready),
            ends_row.eq(entry.last | entry.empty),
        ]

        def counter(name, shape, step, bound, bound_minus_one):
            """A counter that adds ``step`` (1 bit) and a flip-flop ``count < bound``; returns
            (count, the selected next count, the flag, the flag's next value). ``count + 1 < bound`` is
            compared as ``count < bound − 1`` (one carry chain, not an increment and a comparison)."""
            count, plus_one = Signal(shape, name=name), Signal(shape, name=f"{name}_plus_one")
            below, below_plus_one, flag = Signal(), Signal(), Signal(name=f"{name}_in_bound")
            m.d.comb += [plus_one.eq(count + 1), below.eq(count < bound),
                         below_plus_one.eq(count < bound_minus_one)]
            flag_next = Mux(step, below_plus_one, below)
            m.d.sync += [count.eq(Mux(step, plus_one, count)), flag.eq(flag_next)]
            return count, Mux(step, plus_one, count), flag, flag_next

        ptr, ptr_next, in_index, _ = counter("ptr", range(g.index_depth + 1), consume, g.index_depth,
                                             g.index_depth - 1)
        _, _, rows_left, rows_left_next = counter("rows_ended", range(g.max_block_rows + 1), consume & ends_row,
                                                  self.n_block_rows, self.n_block_rows_m1)
        _, _, tiles_left, _ = counter("tiles_seen", range(g.max_tiles + 1), consume & ~entry.empty, self.n_tiles,
                                      self.n_tiles_m1)
        row_start = Signal(init=1)
        m.d.comb += [
            self.index.en.eq(1),
            self.index.addr.eq(ptr_next),
        ]
        # ``wanted`` (walk on: primed, block rows left, no error) is one flip-flop, set from the next
        # values of what it stands for, so the job handshake starts from it rather than from an OR of
        # the error flags and the row bound
        wanted = Signal()
        raise_error = Signal()
        halted = Signal()                               # equals "an error flag is set"
        m.d.comb += raise_error.eq(wanted & (~in_index | (~entry.empty & ((entry.col >= self.n_block_cols)
                                                                          | ~tiles_left))))
        m.d.sync += [halted.eq(halted | raise_error), wanted.eq(rows_left_next & ~halted & ~raise_error)]
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
            self.jobs.valid.eq(entry_ok & (entry.empty | b_valid)),
            self.jobs.payload.tile.eq(offer),
            self.jobs.payload.col.eq(entry.col),
            self.jobs.payload.first.eq(row_start),
            self.jobs.payload.last.eq(ends_row),
            self.jobs.payload.empty.eq(entry.empty),
            take_tile.eq(consume & ~entry.empty),
        ]
        with m.If(consume):
            m.d.sync += row_start.eq(ends_row)
        return m
