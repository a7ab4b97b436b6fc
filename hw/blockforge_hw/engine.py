"""Engine: the block-sparse matmul engine for one quantized linear layer.

    index, weights ──► TileFetch ──jobs──► MacArray ──partials──► AccumulatorBank ──rows_done──►
        OutputStage (bias, requantize) ──► out

The top latches the layer configuration at ``start`` (the words stable from the cycle before: their
checks are registered), checks it (status bits instead of a hang),
clears the datapath, counts cycles while running and raises ``done`` after the last output word's
handshake or at the first runtime error. It also enforces the two-bank rule: at most two block rows
between "MAC array took the row's first job" and "output stage issued the row's last bank read".

Cycle count: ``cycles`` counts the cycles from the one after the start pulse to the one holding the
last output handshake, inclusive; :func:`blockforge.estimate.layer_cycles` gives it exactly.
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from blockforge.spec import Spec

from .accumulator_bank import AccumulatorBank
from .fetch import TileFetch
from .layouts import (STATUS_BITS, ConfigSignature, ControlSignature, EngineGeometry, ReadPortSignature, reject,
                      weight_request_signature, weight_response_signature)
from .mac_array import MacArray
from .output_stage import OutputStage

__all__ = ["Engine"]


class Engine(wiring.Component):
    """The engine for ``spec``; ``weight_depth``/``index_depth`` size the address ports (default: the
    largest dense layer the spec accepts); ``multipliers`` (the MAC's products) and
    ``requantizer_multipliers``: "dsp" (multiplications, mapped to DSPs; the simulated RTL) or "lut"
    (shift-and-add in LUTs); ``multipliers`` may also be a count k: the first k products as
    multiplications, the rest in LUTs (the FPGA build on a part with too few DSPs: docs/fpga.md). The
    same integers and cycles in every form. Raises ValueError for sizes the spec cannot take.

    Ports: ``ctrl`` (start/busy/done/status/cycles), ``config`` (n_tokens, n_block_rows, n_block_cols,
    n_tiles), ``index``/``act``/``params`` (synchronous read ports), ``weight_req``/``weight_resp``
    (fixed-latency weight memory with request backpressure), ``out`` (BR int8 lanes, valid/ready).
    """

    def __init__(self, spec: Spec, *, weight_depth: int | None = None, index_depth: int | None = None,
                 multipliers: str | int = "dsp", requantizer_multipliers: str = "dsp"):
        if not isinstance(spec, Spec):
            raise reject(self, f"Engine needs a blockforge Spec, not {spec!r}")
        self.spec = spec
        try:
            self.geometry = g = EngineGeometry.from_spec(spec, weight_depth=weight_depth, index_depth=index_depth,
                                                         multipliers=multipliers,
                                                         requantizer_multipliers=requantizer_multipliers)
        except ValueError as exc:
            raise reject(self, str(exc)) from None
        super().__init__({
            "ctrl": In(ControlSignature()),
            "config": In(ConfigSignature()),
            "index": Out(ReadPortSignature(g.index_addr_bits, g.index_layout)),
            "weight_req": Out(weight_request_signature(g)),
            "weight_resp": In(weight_response_signature(g)),
            "act": Out(ReadPortSignature(g.act_addr_bits, g.act_layout)),
            "params": Out(ReadPortSignature(g.row_addr_bits, g.params_layout)),
            "out": Out(stream.Signature(g.out_layout)),
        })

    def elaborate(self, platform):
        g = self.geometry
        m = Module()
        clear = Signal()
        fetch = TileFetch(g)
        mac = MacArray(g)
        bank = AccumulatorBank(g)
        drain = OutputStage(g)
        m.submodules.fetch = ResetInserter(clear)(fetch)
        m.submodules.mac_array = ResetInserter(clear)(mac)
        m.submodules.accumulator_bank = ResetInserter(clear)(bank)
        m.submodules.output_stage = ResetInserter(clear)(drain)

        # ---- configuration, latched at start ----------------------------------------------------
        # latched narrow: a run only starts when every value lies within the geometry
        n_tokens = Signal(range(g.max_tokens + 1))
        n_block_rows = Signal(range(g.max_block_rows + 1))
        n_block_cols = Signal(range(g.max_block_cols + 1))
        n_tiles = Signal(range(g.max_tiles + 1))
        has_tiles = Signal()
        n_tiles_m1 = Signal.like(fetch.n_tiles_m1)
        n_block_rows_m1 = Signal.like(fetch.n_block_rows_m1)
        cfg = self.config
        config_errors = Signal(8)
        m.d.comb += [
            config_errors[STATUS_BITS["bad_tokens"]].eq((cfg.n_tokens == 0) | (cfg.n_tokens > g.max_tokens)),
            config_errors[STATUS_BITS["bad_shape"]].eq(
                (cfg.n_block_rows == 0) | (cfg.n_block_rows > g.max_block_rows)
                | (cfg.n_block_cols == 0) | (cfg.n_block_cols > g.max_block_cols)),
            config_errors[STATUS_BITS["weights_overrun"]].eq(cfg.n_tiles > g.max_tiles),
        ]
        # The checks (32-bit comparisons) are registered: at start the verdict on the words as they stood
        # in the cycle before is used, so the words must be stable from the cycle before start (as a
        # host writing its registers before the start bit has them); the comparisons then stay out of
        # the start decision's path, which fans out to the whole datapath.
        checked = Signal(8, reset_less=True)      # samples during reset too: valid right after it
        m.d.sync += checked.eq(config_errors)

        # ---- control: idle → run → (stop) → done -----------------------------------------------------
        # The datapath idles in reset (clear), but the memory around it does not: a word requested
        # before a run must never reach the next run's FIFO. So requests are only issued while running,
        # and a run cut short by an error waits (stopping) until its requested words have arrived and
        # been dropped before it reports done and accepts the next start.
        running = Signal()
        stopping = Signal()
        busy = Signal()
        runtime_errors = Signal(8)
        weights_in_flight = Signal(range(g.read_latency + 2))    # accepted, word not yet returned
        request_accepted = Signal()
        m.d.comb += [
            runtime_errors[STATUS_BITS["index_overrun"]].eq(fetch.index_overrun),
            runtime_errors[STATUS_BITS["bad_column"]].eq(fetch.bad_column),
            runtime_errors[STATUS_BITS["tile_overrun"]].eq(fetch.tile_overrun),
            busy.eq(running | stopping),
            self.ctrl.busy.eq(busy),
            request_accepted.eq(self.weight_req.valid & self.weight_req.ready),
        ]
        m.d.sync += weights_in_flight.eq(weights_in_flight + request_accepted - self.weight_resp.valid)
        m.d.comb += clear.eq(~running)      # the datapath idles in reset
        with m.If(self.ctrl.start & ~busy):
            m.d.sync += [
                n_tokens.eq(cfg.n_tokens), n_block_rows.eq(cfg.n_block_rows),
                n_block_cols.eq(cfg.n_block_cols), n_tiles.eq(cfg.n_tiles), has_tiles.eq(cfg.n_tiles != 0),
                n_tiles_m1.eq(cfg.n_tiles[:len(n_tiles)] - 1), n_block_rows_m1.eq(cfg.n_block_rows[:len(n_block_rows)] - 1),
                self.ctrl.cycles.eq(0), self.ctrl.status.eq(checked),
                running.eq(checked == 0), self.ctrl.done.eq(checked != 0),
            ]
        with m.Elif(running):
            m.d.sync += self.ctrl.cycles.eq(self.ctrl.cycles + 1)
            with m.If(runtime_errors != 0):
                m.d.sync += [running.eq(0), stopping.eq(1), self.ctrl.status.eq(runtime_errors)]
            with m.Elif(drain.finished):
                m.d.sync += [running.eq(0), self.ctrl.done.eq(1)]
        with m.Elif(stopping & (weights_in_flight == 0)):
            m.d.sync += [stopping.eq(0), self.ctrl.done.eq(1)]

        # ---- two-bank rule ------------------------------------------------------------------------
        rows_in_flight = Signal(range(3))
        with m.If(clear):
            m.d.sync += rows_in_flight.eq(0)
        with m.Else():
            m.d.sync += rows_in_flight.eq(rows_in_flight + mac.row_start - drain.row_free)

        # ---- datapath: fetch → multiply → accumulate → requantize → emit ---------------------------
        run_tokens = n_tokens[:len(mac.n_tokens)]
        m.d.comb += [
            fetch.n_block_rows.eq(n_block_rows), fetch.n_block_cols.eq(n_block_cols), fetch.n_tiles.eq(n_tiles),
            fetch.has_tiles.eq(has_tiles), fetch.n_tiles_m1.eq(n_tiles_m1), fetch.n_block_rows_m1.eq(n_block_rows_m1),
            mac.n_tokens.eq(run_tokens), mac.row_slot_free.eq(rows_in_flight < 2),
            drain.n_tokens.eq(run_tokens), drain.n_block_rows.eq(n_block_rows),
        ]
        connect(m, wiring.flipped(self.index), fetch.index)
        connect(m, wiring.flipped(self.weight_resp), fetch.weight_resp)
        m.d.comb += [
            self.weight_req.payload.eq(fetch.weight_req.payload),
            self.weight_req.valid.eq(fetch.weight_req.valid & running),
            fetch.weight_req.ready.eq(self.weight_req.ready & running),
        ]
        connect(m, fetch.jobs, mac.jobs)
        connect(m, wiring.flipped(self.act), mac.act)
        connect(m, mac.partials, bank.partials)
        connect(m, bank.rows_done, drain.rows_done)
        connect(m, drain.acc, bank.drain)
        connect(m, wiring.flipped(self.params), drain.params)
        connect(m, drain.out, wiring.flipped(self.out))
        return m
