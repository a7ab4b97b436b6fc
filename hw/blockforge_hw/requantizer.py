"""Requantizer: BR lanes of ``y = fit(round_shift((acc + bias) · M, S))``, bit-exact with
:func:`blockforge.reference.requantize`.

Two pipeline stages that stall together (``i.ready`` = the pipeline moves):

1. ``v = acc + bias`` (one bit wider than the accumulator, so it never wraps) and ``p = v · M``;
2. the rounding shift and the fit into act_bits.

The shift is exact for every S in [0, 63]: for S at least the product width P all three rounding
modes give the same result as S = P (truncate: −1 or 0; half_up and half_even: 0), so the shifter is
only P+1 bits wide. Rounding (``floor`` = p >> s, ``rem`` = p − floor·2^s, ``half`` = 2^(s−1)):
half_up adds ``rem >= half``, half_even adds ``rem > half or (rem == half and floor odd)``,
truncate adds nothing; s = 0 is exact in every mode. Saturation clamps to [−2^(b−1), 2^(b−1)−1];
without it the low act_bits bits are kept (two's complement wrap).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from blockforge.hexfiles import SHIFT_BITS

from .layouts import reject

__all__ = ["Requantizer"]

ROUNDING_MODES = ("half_up", "half_even", "truncate")


class Requantizer(wiring.Component):
    """Ports: ``i`` stream of {acc[BR], bias[BR], multiplier[BR], shift[BR], last} and ``o`` stream
    of {y[BR] (signed act_bits), last}; ``last`` travels alongside untouched."""

    def __init__(self, *, lanes: int, acc_bits: int, multiplier_bits: int, act_bits: int = 8,
                 rounding: str = "half_up", saturate: bool = True):
        for name, value in (("lanes", lanes), ("acc_bits", acc_bits), ("multiplier_bits", multiplier_bits),
                            ("act_bits", act_bits)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise reject(self, f"{name} must be a positive integer, not {value!r}")
        if rounding not in ROUNDING_MODES:
            raise reject(self, f"rounding must be one of {', '.join(ROUNDING_MODES)}, not {rounding!r}")
        if not isinstance(saturate, bool):
            raise reject(self, f"saturate must be True or False, not {saturate!r}")
        if acc_bits + multiplier_bits + 1 > 64:
            raise reject(self, f"acc_bits + multiplier_bits + 1 = {acc_bits + multiplier_bits + 1} exceeds 64")
        if act_bits >= acc_bits:
            raise reject(self, f"act_bits {act_bits} must be narrower than acc_bits {acc_bits}")
        self.lanes, self.acc_bits, self.multiplier_bits = lanes, acc_bits, multiplier_bits
        self.act_bits, self.rounding, self.saturate = act_bits, rounding, saturate
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
            "i": In(stream.Signature(in_layout)),
            "o": Out(stream.Signature(out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        P = self.product_bits
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        # ---- stage 1: bias and multiplier ------------------------------------------------------
        valid1 = Signal()
        last1 = Signal()
        products = [Signal(signed(P), name=f"product{i}") for i in range(self.lanes)]
        shifts = [Signal(range(P + 1), name=f"shift{i}") for i in range(self.lanes)]
        with m.If(advance):
            m.d.sync += [valid1.eq(self.i.valid), last1.eq(self.i.payload.last)]
            for i in range(self.lanes):
                acc = self.i.payload.acc[i]
                biased = acc.as_signed() + self.i.payload.bias[i]
                s = self.i.payload.shift[i]
                m.d.sync += [
                    products[i].eq(biased * self.i.payload.multiplier[i].as_unsigned()),
                    shifts[i].eq(Mux(s > P, P, s)),
                ]

        # ---- stage 2: rounding shift and fit -----------------------------------------------------
        lo, hi = -(1 << (self.act_bits - 1)), (1 << (self.act_bits - 1)) - 1
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(valid1), self.o.payload.last.eq(last1)]
            for i in range(self.lanes):
                p, s = products[i], shifts[i]
                wide = Signal(signed(P + 2), name=f"wide{i}")
                floor = Signal(signed(P + 2), name=f"floor{i}")
                rem = Signal(unsigned(P + 1), name=f"rem{i}")
                half = Signal(unsigned(P + 1), name=f"half{i}")
                rounded = Signal(signed(P + 2), name=f"rounded{i}")
                m.d.comb += [
                    wide.eq(p),
                    floor.eq(wide >> s),
                    rem.eq(wide - (floor << s)),
                    half.eq((Const(1, 1) << s) >> 1),
                ]
                if self.rounding == "truncate":
                    m.d.comb += rounded.eq(floor)
                elif self.rounding == "half_up":
                    m.d.comb += rounded.eq(floor + ((s != 0) & (rem >= half)))
                else:
                    m.d.comb += rounded.eq(floor + ((s != 0) & ((rem > half) | ((rem == half) & floor[0]))))
                if self.saturate:
                    fitted = Mux(rounded > hi, hi, Mux(rounded < lo, lo, rounded))
                else:
                    fitted = rounded
                m.d.sync += self.o.payload.y[i].eq(fitted[:self.act_bits])
        return m
