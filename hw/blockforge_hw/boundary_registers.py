"""BoundaryRegisters: the engine with a flip-flop on every port bit, for place and route out of context.

Out of context, nextpnr times register-to-register paths only: a path from an input port through the
engine's logic, or to an output port, is not timed at all. In a real system those ports are driven by
memories and registers (read data, the output consumer's ready). This wrapper puts one register on every
input and every output bit, standing for the memory output register or the consumer's input register on
the other side, so that every path through the engine — from a memory's read data to the job handshake,
from the handshake to a memory address — is timed, and the reported Fmax is the engine's in context.
It is for timing and utilization only (the registers shift every port by a cycle); simulation uses
:class:`~.engine.Engine` directly.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from blockforge.spec import Spec

from .engine import Engine
from .layouts import reject

__all__ = ["BoundaryRegisters"]


class BoundaryRegisters(wiring.Component):
    """The engine for ``spec`` (``options`` as :class:`~.engine.Engine`) with the same ports, each registered."""

    def __init__(self, spec: Spec, **options):
        if not isinstance(spec, Spec):
            raise reject(self, f"BoundaryRegisters needs a blockforge Spec, not {type(spec).__name__}")
        self.engine = Engine(spec, **options)
        super().__init__(dict(self.engine.signature.members))

    @property
    def boundary_bits(self) -> int:
        """Flip-flops the wrapper adds (one per port bit)."""
        return sum(Shape.cast(member.shape).width for _, member, _ in self.engine.signature.flatten(self.engine))

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        for (path, member, outer), (_, _, inner) in zip(self.signature.flatten(self),
                                                         self.engine.signature.flatten(engine)):
            registered = Signal.like(inner, name="boundary_" + "_".join(str(part) for part in path))
            if member.flow == In:
                m.d.sync += registered.eq(outer)
                m.d.comb += inner.eq(registered)
            else:
                m.d.sync += registered.eq(inner)
                m.d.comb += outer.eq(registered)
        return m
