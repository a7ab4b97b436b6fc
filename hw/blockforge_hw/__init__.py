"""blockforge_hw: the Amaranth block-sparse matmul engine.

``Engine(spec)`` is the engine; ``write_verilog(spec, dir)`` writes it with its simulation top;
``run_layer(spec, layer, x_q)`` simulates one layer in Amaranth's simulator. docs/engine.md describes
the architecture, the schedule and the memory layouts.
"""

from .engine import Engine
from .layouts import STATUS_BITS, EngineGeometry, status_names

__all__ = ["Engine", "EngineGeometry", "STATUS_BITS", "status_names"]
