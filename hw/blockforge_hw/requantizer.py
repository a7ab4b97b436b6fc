"""Requantizer: BR lanes of ``y = fit(round_shift((acc + bias) · M, S))``, bit-exact with
:func:`blockforge.reference.requantize`, as a free-running pipeline that meets the FPGA clock.

An input with ``valid`` in cycle t leaves on ``o`` with ``valid`` in cycle t + :attr:`latency`; there is
no backpressure (the output stage keeps credit for the words in flight). The stages, one register each
(P = the exact product width, acc_bits + multiplier_bits + 2):

1. **bias**      ``v = acc + bias``, one bit wider than the accumulator so it never wraps;
2. **operands**  each multiplier's own copy of its operands in flip-flops (``multipliers="dsp"``: v
   split into 17-bit chunks, the lower ones unsigned, the top one signed, and a copy of M per chunk);
3. **product**   ``p = v · M`` (P bits) in :func:`blockforge.estimate.product_levels` stages: with DSPs,
   one 18×18 product per chunk registered at the DSP's output, then their sum (then copies up to the
   stage count); with ``multipliers="lut"`` (the FPGA build), shift-and-add: v·2^k for each set bit k
   of M, one adder-tree level per stage;
4. **shift 8s**  ``w = 2p`` shifted right by the multiple of 8 in S' = min(S, P);
5. **shift 1s**  the rest of the shift: ``t = w >> S' = p >> (S' − 1)`` (arithmetic), so ``t >> 1`` is
   ``floor = p >> S'`` and ``t[0]`` is the bit just below it; for half_even the bits shifted out below
   that one are OR-ed into ``sticky`` over the two steps;
6. **round**     ``rounded = floor + inc`` — half_up: ``inc = t[0]`` (``rem >= half``), half_even:
   ``inc = t[0] & (sticky | floor[0])``, truncate: 0. S' = 0 gives ``t[0] = 0``: exact in every mode;
7. **fit**       saturate to [−2^(b−1), 2^(b−1)−1] (all bits above b−1 equal the sign ⇒ in range), or
   keep the low act_bits bits (two's complement wrap) without saturation.

:attr:`latency` = :func:`blockforge.estimate.requantizer_stages` (10 for a 16-bit M).
Clamping S at P is exact: for S ≥ P every mode gives the same result as S = P (truncate −1 or 0,
half_up and half_even 0). Every stage is at most one DSP, one carry chain or about three LUT levels.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from blockforge.estimate import product_levels, requantizer_stages
from blockforge.hexfiles import SHIFT_BITS
from blockforge.spec import ROUNDING_MODES

from .layouts import reject

__all__ = ["Requantizer", "CHUNK_BITS"]

CHUNK_BITS = 17   # an unsigned 17-bit chunk and a 17-bit multiplier both fit an 18×18 signed DSP


class Requantizer(wiring.Component):
    """Ports: ``i`` stream of {acc[BR], bias[BR], multiplier[BR], shift[BR], last} and ``o`` stream of
    {y[BR] (signed act_bits), last}; both always ready; ``last`` travels alongside untouched."""

    def __init__(self, *, lanes: int, acc_bits: int, multiplier_bits: int, act_bits: int = 8,
                 rounding: str = "half_up", saturate: bool = True, multipliers: str = "dsp"):
        for name, value in (("lanes", lanes), ("acc_bits", acc_bits), ("multiplier_bits", multiplier_bits),
                            ("act_bits", act_bits)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise reject(self, f"{name} must be a positive integer, not {value!r}")
        if rounding not in ROUNDING_MODES:
            raise reject(self, f"rounding must be one of {', '.join(ROUNDING_MODES)}, not {rounding!r}")
        if not isinstance(saturate, bool):
            raise reject(self, f"saturate must be True or False, not {saturate!r}")
        if multipliers not in ("dsp", "lut"):
            raise reject(self, f"multipliers must be 'dsp' or 'lut', not {multipliers!r}")
        if acc_bits + multiplier_bits + 1 > 64:
            raise reject(self, f"acc_bits + multiplier_bits + 1 = {acc_bits + multiplier_bits + 1} exceeds 64")
        if act_bits >= acc_bits:
            raise reject(self, f"act_bits {act_bits} must be narrower than acc_bits {acc_bits}")
        self.lanes, self.acc_bits, self.multiplier_bits = lanes, acc_bits, multiplier_bits
        self.act_bits, self.rounding, self.saturate = act_bits, rounding, saturate
        self.multipliers = multipliers
        self.latency = requantizer_stages(multiplier_bits)
        self.product_bits = acc_bits + 1 + multiplier_bits + 1
        in_layout = data.StructLayout({
            "acc": data.ArrayLayout(signed(acc_bits), lanes),
            "bias": data.ArrayLayout(signed(acc_bits), lanes),
            "multiplier": data.ArrayLayout(unsigned(multiplier_bits), lanes),
            "shift": data.ArrayLayout(unsigned(SHIFT_BITS), lanes),
            "last": 1,
        })
        out_layout = data.StructLayout({"y": data.ArrayLayout(signed(act_bits), lanes), "last": 1})
        super().__init__({
            "i": In(stream.Signature(in_layout, always_ready=True)),
            "o": Out(stream.Signature(out_layout, always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        P = self.product_bits
        stages = [Signal(2, name=f"stage{k}") for k in range(1, self.latency + 1)]   # {valid, last}
        m.d.sync += stages[0].eq(Cat(self.i.valid, self.i.payload.last))
        for before, after in zip(stages, stages[1:]):
            m.d.sync += after.eq(before)
        m.d.comb += [self.o.valid.eq(stages[-1][0]), self.o.payload.last.eq(stages[-1][1])]
        for i in range(self.lanes):
            m.d.comb += self.o.payload.y[i].eq(self._lane(m, i, P))
        return m

    def _lane(self, m: Module, i: int, P: int):
        """The stages of lane ``i``; returns its registered act_bits result."""
        payload = self.i.payload

        def reg(shape, name, value):
            s = Signal(shape, name=f"{name}{i}", reset_less=True)
            m.d.sync += s.eq(value)
            return s

        def carried(value, name, count):
            """``value`` delayed by ``count`` registers (parameters riding along the pipeline)."""
            for k in range(count):
                value = reg(value.shape(), f"{name}_d{k + 1}_", value)
            return value

        # 1. bias
        biased = reg(signed(self.acc_bits + 1), "biased", payload.acc[i].as_signed() + payload.bias[i])
        multiplier = reg(unsigned(self.multiplier_bits), "mult", payload.multiplier[i])
        shift = reg(range(P + 1), "shift", Mux(payload.shift[i] > P, P, payload.shift[i]))

        # 2. operands, 3. the product in ``product_levels`` stages
        levels = product_levels(self.multiplier_bits)
        if self.multipliers == "dsp":
            # each DSP's own copy of its 17-bit chunk of v and of M; the DSP outputs; their sum
            width = self.acc_bits + 1
            chunks = []
            for lo in range(0, width, CHUNK_BITS):
                hi = min(lo + CHUNK_BITS, width)
                chunk = reg(unsigned(hi - lo) if hi < width else signed(hi - lo), f"operand{lo}_", biased[lo:hi])
                factor = Signal(unsigned(self.multiplier_bits), name=f"factor{lo}_{i}", attrs={"keep": 1},
                                reset_less=True)
                m.d.sync += factor.eq(multiplier)         # kept: one copy per DSP (docs/fpga.md "Replicas")
                chunks.append((lo, reg(signed(hi - lo + self.multiplier_bits + 1), f"chunk{lo}_",
                                       chunk * factor)))
            product = reg(signed(P), "product", sum(value << lo for lo, value in chunks))
            product = carried(product, "product_pad", levels - 2)
        else:
            # shift-and-add: v·2^k for every set bit k of M, one adder-tree level per stage
            operand = reg(signed(self.acc_bits + 1), "operand", biased)
            factor = reg(unsigned(self.multiplier_bits), "factor", multiplier)
            terms = [Mux(factor[k], operand << k, 0) for k in range(self.multiplier_bits)]
            for level in range(levels):
                terms = [reg(signed(P), f"level{level}_{k}_", terms[2 * k] + terms[2 * k + 1]
                             if 2 * k + 1 < len(terms) else terms[2 * k]) for k in range((len(terms) + 1) // 2)]
            product = terms[0]
        shift = carried(shift, "shift_m", 1 + levels)

        # 4. shift by the multiple of 8, 5. shift by the rest (w = 2p, so t = p >> (S - 1))
        wide = Cat(0, product).as_signed()              # P + 1 bits
        coarse_by = shift[3:]
        coarse = reg(signed(P + 1), "coarse", wide >> (coarse_by << 3))
        fine_by = reg(unsigned(3), "fine", shift[:3])
        t = reg(signed(P + 1), "t", coarse >> fine_by)
        sticky = None
        if self.rounding == "half_even":
            # The bits shifted out below t[0], i.e. p's bits below S − 1 (w[0] is 0).
            below = [wide[:8 * k].any() if k else 0 for k in range(len(wide) // 8 + 1)]
            sticky_coarse = reg(1, "sticky_c", Array(below)[coarse_by])
            mask = Signal(8, name=f"fine_mask{i}")
            m.d.comb += mask.eq((Const(1, 9) << fine_by) - 1)
            sticky = reg(1, "sticky", sticky_coarse | (coarse[:8] & mask).any())

        # 6. round
        floor = t[1:].as_signed()
        if self.rounding == "truncate":
            increment = 0
        elif self.rounding == "half_up":
            increment = t[0]
        else:
            increment = t[0] & (sticky | floor[0])
        rounded = reg(signed(P + 1), "rounded", floor + increment)

        # 7. fit
        b = self.act_bits
        if not self.saturate:
            return reg(signed(b), "y", rounded[:b])
        # Whether ``rounded`` fits b bits is decided from ``floor`` beside the rounding adder (so the fit
        # stage is one mux): it fits if floor does (all bits from b−1 up equal), unless the increment
        # carries floor = 2^(b−1) − 1 out, or carries floor = −2^(b−1) − 1 in; out of range, its sign
        # is floor's.
        upper = floor[b - 1:]
        low_ones = floor[:b - 1].all()
        at_max = ~upper.any() & low_ones
        below_min = floor[b:].all() & ~floor[b - 1] & low_ones
        fits = reg(1, "fits", Mux(increment, ((upper.all() | ~upper.any()) & ~at_max) | below_min,
                                  upper.all() | ~upper.any()))
        negative = reg(1, "negative", floor[-1])
        lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
        return reg(signed(b), "y", Mux(fits, rounded[:b], Mux(negative, lo, hi)))
