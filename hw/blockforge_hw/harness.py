"""Harness: the engine with Amaranth memory models, for Amaranth-simulator tests.

The same memories, with the same timing, as the Verilog simulation top (:mod:`.verilog`): index,
activations and parameters are synchronous read-only memories; the weight memory accepts a request
unless the weight stall injector says stall and returns the word ``read_latency`` cycles later; the
output stream's ``ready`` is low when the output stall injector says stall; each output word is
stored at the next address of the output memory. With ``memory.bandwidth_bytes_per_cycle`` set, a
:class:`~.weight_throttle.WeightThrottle` limits the requests the weight memory accepts. Contents come
from :func:`harness_images`, which uses the same packing as :mod:`blockforge.hexfiles`.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import memory

from blockforge.estimate import bandwidth_bucket
from blockforge.hexfiles import activation_words, layer_words
from blockforge.layer import BlockSparseLayer
from blockforge.spec import Spec

from .engine import Engine
from .stall_injector import StallInjector
from .weight_throttle import WeightThrottle

__all__ = ["Harness", "harness_images"]


def harness_images(layer: BlockSparseLayer, spec: Spec, x_q: np.ndarray) -> dict[str, list[int]]:
    """Memory contents for one layer and activations (int (in, N)), as lists of words: the words of
    :mod:`blockforge.hexfiles`, with bias, multiplier and shift joined into the one params word the
    harness's memory returns."""
    words = layer_words(layer, spec)
    act = activation_words(x_q, spec, in_features=layer.in_features, where=layer.name)
    lane_bits = spec.block.rows * spec.numerics.acc_bits
    mult_bits = spec.block.rows * spec.numerics.multiplier_bits
    params = [b | (m << lane_bits) | (s << (lane_bits + mult_bits))
              for b, m, s in zip(words["bias"], words["multiplier"], words["shift"])]
    return {
        "weights": words["weights"],
        "index": words["index"],
        "act": act,
        "params": params,
        "config": [np.asarray(x_q).shape[1], layer.n_block_rows, layer.n_block_cols, layer.nnz_blocks],
    }


class Harness(Elaboratable):
    """Engine + memories. ``images`` as from :func:`harness_images` (``config`` may be overridden);
    ``weight_stall``/``out_stall`` are stall rates in 256ths, seeded by ``seed``.

    Testbench-visible signals: ``start``, ``done``, ``busy``, ``status``, ``cycles``, ``out_count``,
    ``config`` (the four config words, initialized from ``images["config"]``); the memories are
    ``weight_mem``, ``index_mem``, ``act_mem``, ``params_mem`` (a testbench may rewrite them between
    runs, as the Verilog top's ``reload`` does) and the captured output words are in ``out_mem.data``.
    """

    def __init__(self, spec: Spec, images: dict[str, list[int]], *, weight_stall: int = 0, out_stall: int = 0,
                 seed: int = 1, weight_depth: int | None = None, index_depth: int | None = None,
                 out_depth: int | None = None, multipliers: str = "dsp", requantizer_multipliers: str = "dsp"):
        self.spec = spec
        self.images = images
        self.weight_depth = weight_depth or max(len(images["weights"]), spec.tile_words)
        self.index_depth = index_depth or max(len(images["index"]), 1)
        self.engine = Engine(spec, weight_depth=self.weight_depth, index_depth=self.index_depth,
                             multipliers=multipliers, requantizer_multipliers=requantizer_multipliers)
        g = self.engine.geometry
        self.out_depth = out_depth or g.max_block_rows * g.max_tokens
        self.weight_stall, self.out_stall, self.seed = weight_stall, out_stall, seed
        self.start = Signal()
        self.done = self.engine.ctrl.done
        self.busy = self.engine.ctrl.busy
        self.status = self.engine.ctrl.status
        self.cycles = self.engine.ctrl.cycles
        self.out_count = Signal(range(self.out_depth + 1))
        self.out_mem = memory.Memory(shape=g.out_layout.size, depth=self.out_depth, init=[])
        self.config = [Signal(32, init=word, name=f"config{i}") for i, word in enumerate(images["config"])]
        self.index_mem = memory.Memory(shape=g.index_layout.size, depth=self.index_depth,
                                       init=images["index"][:self.index_depth])
        self.act_mem = memory.Memory(shape=g.act_layout.size, depth=g.max_block_cols * g.act_stride,
                                     init=images["act"][:g.max_block_cols * g.act_stride])
        self.params_mem = memory.Memory(shape=g.params_layout.size, depth=g.max_block_rows,
                                        init=images["params"][:g.max_block_rows])
        self.weight_mem = memory.Memory(shape=g.bus_bits, depth=self.weight_depth,
                                        init=images["weights"][:self.weight_depth])

    def elaborate(self, platform):
        g = self.engine.geometry
        e = self.engine
        m = Module()
        m.submodules.engine = e
        m.submodules.out_mem = self.out_mem
        m.submodules.weight_stall = wstall = StallInjector(self.seed & 0xFFFF)
        m.submodules.out_stall = ostall = StallInjector((self.seed * 40503 + 1) & 0xFFFF)
        m.d.comb += [
            wstall.enable.eq(self.weight_stall > 0), wstall.rate.eq(self.weight_stall),
            ostall.enable.eq(self.out_stall > 0), ostall.rate.eq(self.out_stall),
        ]
        cfg = self.config
        m.d.comb += [
            e.ctrl.start.eq(self.start),
            e.config.n_tokens.eq(cfg[0]), e.config.n_block_rows.eq(cfg[1]),
            e.config.n_block_cols.eq(cfg[2]), e.config.n_tiles.eq(cfg[3]),
        ]

        def rom(name):
            mem = getattr(self, name)
            m.submodules[name] = mem
            return mem.read_port()

        index, act, params, weights = (rom(name) for name in ("index_mem", "act_mem", "params_mem", "weight_mem"))
        for port, bus in ((index, e.index), (act, e.act), (params, e.params)):
            m.d.comb += [port.addr.eq(bus.addr), port.en.eq(bus.en), bus.data.eq(port.data)]

        # Weight memory: accept unless stalled or out of bandwidth, answer read_latency cycles later.
        accept = Signal()
        bandwidth_ok = Signal(init=1)
        bucket = bandwidth_bucket(self.spec)
        if bucket is not None:
            m.submodules.weight_throttle = throttle = WeightThrottle(bucket)
            m.d.comb += [throttle.accept.eq(accept), throttle.refill.eq(self.start & ~e.ctrl.busy),
                         bandwidth_ok.eq(throttle.ok)]
        else:
            m.d.comb += bandwidth_ok.eq(1)
        m.d.comb += [
            e.weight_req.ready.eq(~wstall.stall & bandwidth_ok),
            accept.eq(e.weight_req.valid & e.weight_req.ready),
            weights.addr.eq(e.weight_req.payload), weights.en.eq(1),
        ]
        valid = Signal()
        m.d.sync += valid.eq(accept)
        word = weights.data
        for stage in range(g.read_latency - 1):
            delayed_valid, delayed_word = Signal(name=f"wvalid{stage}"), Signal(g.bus_bits, name=f"wword{stage}")
            m.d.sync += [delayed_valid.eq(valid), delayed_word.eq(word)]
            valid, word = delayed_valid, delayed_word
        m.d.comb += [e.weight_resp.valid.eq(valid), e.weight_resp.payload.eq(word)]

        # Output capture.
        write = self.out_mem.write_port()
        m.d.comb += [
            e.out.ready.eq(~ostall.stall),
            write.addr.eq(self.out_count), write.data.eq(e.out.payload.as_value()),
            write.en.eq(e.out.valid & e.out.ready),
        ]
        with m.If(self.start & ~e.ctrl.busy):
            m.d.sync += self.out_count.eq(0)
        with m.Elif(e.out.valid & e.out.ready):
            m.d.sync += self.out_count.eq(self.out_count + 1)
        return m
