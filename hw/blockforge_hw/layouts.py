"""Data layouts, port signatures and derived widths shared by the engine's components.

:class:`EngineGeometry` turns a :class:`~blockforge.spec.Spec` plus the sizes of the memories around
the engine into every width the RTL needs, and checks them (``ValueError`` naming the value). The
memory layouts these widths describe are documented in docs/engine.md and written by
:mod:`blockforge.hexfiles`; the numbers that both sides must agree on (index entry bits, activation
row stride) are defined in :mod:`blockforge.hexfiles` and imported here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from blockforge.hexfiles import (CONFIG_WORD_BITS, INDEX_COL_BITS, SHIFT_BITS, activation_stride,
                                 default_depths)
from blockforge.spec import Spec

__all__ = [
    "EngineGeometry", "reject", "ReadPortSignature", "ControlSignature", "ConfigSignature",
    "STATUS_BITS", "status_names", "checked_geometry",
]

# Status bits (docs/engine.md "Status"). A start with any of them set ends with done=1 and no hang.
STATUS_BITS = {
    "bad_tokens": 0,     # N == 0 or N > buffers.max_tokens
    "bad_shape": 1,      # block rows/cols == 0 or beyond buffers.max_out/in_features
    "weights_overrun": 2,  # n_tiles * tile_words words do not fit the weight memory
    "index_overrun": 3,  # the index runs past the index memory before every block row ended
    "bad_column": 4,     # an index entry names a block column >= n_block_cols
    "tile_overrun": 5,   # the index names more tiles than n_tiles (past the loaded weights)
}


def status_names(status: int) -> list[str]:
    """Names of the status bits set in ``status``."""
    return [name for name, bit in STATUS_BITS.items() if status >> bit & 1]


def reject(component, message: str) -> ValueError:
    """The ValueError for a bad constructor argument; silences Amaranth's "created but never used"
    warning for the half-built component (it was registered before ``__init__`` ran)."""
    component._MustUse__silence = True
    return ValueError(message)


def checked_geometry(component, geometry) -> "EngineGeometry":
    """``geometry`` after its checks, for a component's constructor (ValueError naming the problem)."""
    if not isinstance(geometry, EngineGeometry):
        raise reject(component, f"{type(component).__name__} needs an EngineGeometry, not {geometry!r}")
    try:
        geometry.check()
    except ValueError as exc:
        raise reject(component, str(exc)) from None
    return geometry


REQUANT_CHUNK_BITS = 17   # an unsigned 17-bit chunk times a ≤ 17-bit multiplier fits an 18×18 signed DSP


def _positive(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


@dataclass(frozen=True)
class EngineGeometry:
    """Every width and size of one engine instance, derived from a spec and memory depths."""

    rows: int               # BR
    cols: int               # BC
    bus_bits: int
    tile_words: int
    read_latency: int
    max_tokens: int
    max_block_rows: int
    max_block_cols: int
    acc_bits: int
    multiplier_bits: int
    act_bits: int
    weight_bits: int
    rounding: str
    saturate: bool
    weight_depth: int       # words in the weight memory
    index_depth: int        # entries in the index memory
    # MAC products: "dsp" as multiplications; "lut" shift-and-add in LUTs; an int k: the first k products
    # (row-major over the BR×BC tile) as multiplications, the rest in LUTs (a part with too few DSPs)
    multipliers: str | int = "dsp"
    requantizer_multipliers: str = "dsp"   # the requantizer's (acc + bias)·M, likewise

    @classmethod
    def from_spec(cls, spec: Spec, *, weight_depth: int | None = None, index_depth: int | None = None,
                  multipliers: str | int = "dsp", requantizer_multipliers: str = "dsp") -> "EngineGeometry":
        depths = default_depths(spec)
        geometry = cls(
            rows=spec.block.rows, cols=spec.block.cols, bus_bits=spec.memory.weight_bus_bits,
            tile_words=spec.tile_words, read_latency=spec.memory.read_latency,
            max_tokens=spec.buffers.max_tokens,
            max_block_rows=spec.buffers.max_out_features // spec.block.rows,
            max_block_cols=spec.buffers.max_in_features // spec.block.cols,
            acc_bits=spec.numerics.acc_bits, multiplier_bits=spec.numerics.multiplier_bits,
            act_bits=spec.numerics.act_bits, weight_bits=spec.numerics.weight_bits,
            rounding=spec.numerics.rounding, saturate=spec.numerics.saturate,
            weight_depth=depths["weights"] if weight_depth is None else weight_depth,
            index_depth=depths["index"] if index_depth is None else index_depth)
        geometry = dataclasses.replace(geometry, multipliers=multipliers,
                                       requantizer_multipliers=requantizer_multipliers)
        part = spec.part
        if part is not None and geometry.requantizer_dsps > part.device.dsps:
            raise ValueError(f"the requantizer needs {geometry.requantizer_dsps} DSP multipliers, "
                             f"the target {part.device.name} has {part.device.dsps}")
        geometry.check()
        return geometry

    def check(self) -> None:
        for name in ("rows", "cols", "bus_bits", "tile_words", "read_latency", "max_tokens",
                     "max_block_rows", "max_block_cols", "acc_bits", "multiplier_bits", "act_bits",
                     "weight_bits", "weight_depth", "index_depth"):
            _positive(name, getattr(self, name))
        if self.act_bits != 8 or self.weight_bits != 8:
            raise ValueError(f"the engine takes 8-bit weights and activations, not "
                             f"{self.weight_bits}/{self.act_bits}")
        if self.rows * self.cols * 8 != self.tile_words * self.bus_bits:
            raise ValueError(f"a {self.rows}x{self.cols} tile is not {self.tile_words} words of "
                             f"{self.bus_bits} bits")
        if self.max_block_cols > 1 << INDEX_COL_BITS:
            raise ValueError(f"max_block_cols {self.max_block_cols} exceeds the {INDEX_COL_BITS}-bit "
                             f"index column field")
        if self.weight_depth < self.tile_words:
            raise ValueError(f"weight_depth {self.weight_depth} holds less than one tile "
                             f"({self.tile_words} words)")
        if isinstance(self.multipliers, int) and not isinstance(self.multipliers, bool):
            if not 0 <= self.multipliers <= self.rows * self.cols:
                raise ValueError(f"multipliers: {self.multipliers} DSP products is not in 0..{self.rows * self.cols}")
        elif self.multipliers not in ("dsp", "lut"):
            raise ValueError(f"multipliers must be 'dsp', 'lut' or a count of DSP products, not {self.multipliers!r}")
        for name in ("requantizer_multipliers",):
            if getattr(self, name) not in ("dsp", "lut"):
                raise ValueError(f"{name} must be 'dsp' or 'lut', not {getattr(self, name)!r}")
        if self.rounding not in ("half_up", "half_even", "truncate"):
            raise ValueError(f"rounding must be half_up, half_even or truncate, not {self.rounding!r}")
        if self.product_bits > 64:
            raise ValueError(f"acc_bits + multiplier_bits + 1 = {self.product_bits} exceeds 64")

    @property
    def mac_dsps(self) -> int:
        """MAC products built as multiplications (DSPs on an FPGA)."""
        if isinstance(self.multipliers, int):
            return self.multipliers
        return self.rows * self.cols if self.multipliers == "dsp" else 0

    @property
    def requantizer_dsps(self) -> int:
        """DSP multipliers of the requantizer: one per 17-bit chunk of (acc + bias) and of M, per lane."""
        return self.rows * -(-(self.acc_bits + 1) // REQUANT_CHUNK_BITS) * -(-self.multiplier_bits // REQUANT_CHUNK_BITS)

    # ---- derived widths -------------------------------------------------------------------------
    @property
    def max_tiles(self) -> int:
        """The most tiles a run can load (whole tiles in the weight memory)."""
        return self.weight_depth // self.tile_words

    @property
    def act_stride(self) -> int:
        return activation_stride(self.max_tokens)

    @property
    def token_bits(self) -> int:
        return ceil_log2(self.act_stride) if self.act_stride > 1 else 1

    @property
    def col_bits(self) -> int:
        return bits_for(self.max_block_cols - 1) if self.max_block_cols > 1 else 1

    @property
    def act_addr_bits(self) -> int:
        return ceil_log2(self.max_block_cols * self.act_stride) or 1

    @property
    def row_addr_bits(self) -> int:
        return ceil_log2(self.max_block_rows) or 1

    @property
    def weight_addr_bits(self) -> int:
        return ceil_log2(self.weight_depth) or 1

    @property
    def index_addr_bits(self) -> int:
        return ceil_log2(self.index_depth) or 1

    @property
    def product_bits(self) -> int:
        """Width of (acc + bias) · M: the requantizer's exact product."""
        return self.acc_bits + 1 + self.multiplier_bits + 1

    @property
    def partial_bits(self) -> int:
        """Width of one lane's tile sum: BC products of two int8 values."""
        return 2 * 8 + bits_for(self.cols)

    @property
    def fifo_depth(self) -> int:
        """Weight-word FIFO depth: one tile plus the request round trip, so loads never starve."""
        return self.tile_words + self.read_latency + 3

    # ---- layouts --------------------------------------------------------------------------------
    @property
    def tile_layout(self) -> data.ArrayLayout:
        """BR rows of BC signed weights; element (i, j) is byte i·BC + j of the packed tile."""
        return data.ArrayLayout(data.ArrayLayout(signed(8), self.cols), self.rows)

    @property
    def act_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(signed(8), self.cols)

    @property
    def index_layout(self) -> data.StructLayout:
        return data.StructLayout({"col": unsigned(INDEX_COL_BITS), "last": 1, "empty": 1})

    @property
    def job_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "tile": self.tile_layout, "col": unsigned(INDEX_COL_BITS),
            "first": 1, "last": 1, "empty": 1})

    @property
    def partial_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "sums": data.ArrayLayout(signed(self.partial_bits), self.rows),
            "token": unsigned(self.token_bits), "bank": 1, "first": 1, "row_end": 1, "empty": 1})

    @property
    def acc_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(signed(self.acc_bits), self.rows)

    @property
    def row_done_layout(self) -> data.StructLayout:
        return data.StructLayout({"bank": 1, "empty": 1})

    @property
    def params_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "bias": data.ArrayLayout(signed(self.acc_bits), self.rows),
            "multiplier": data.ArrayLayout(unsigned(self.multiplier_bits), self.rows),
            "shift": data.ArrayLayout(unsigned(SHIFT_BITS), self.rows)})

    @property
    def out_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(signed(8), self.rows)


def ReadPortSignature(addr_bits: int, data_shape) -> wiring.Signature:
    """A synchronous memory read port seen from the reader: ``data`` in cycle t+1 holds the row
    ``addr`` named in cycle t if ``en`` was high in cycle t (otherwise ``data`` keeps its value)."""
    return wiring.Signature({"addr": Out(addr_bits), "en": Out(1), "data": In(data_shape)})


def ControlSignature() -> wiring.Signature:
    """Host side of the engine's control: pulse ``start``; ``done`` stays high until the next start."""
    return wiring.Signature({
        "start": Out(1), "busy": In(1), "done": In(1), "status": In(8), "cycles": In(32)})


def ConfigSignature() -> wiring.Signature:
    """Host side of the layer configuration, sampled when ``start`` is seen; the words must be stable from
    the cycle before ``start`` (the engine registers their checks)."""
    return wiring.Signature({name: Out(CONFIG_WORD_BITS) for name in
                             ("n_tokens", "n_block_rows", "n_block_cols", "n_tiles")})


def weight_request_signature(geometry: EngineGeometry) -> stream.Signature:
    return stream.Signature(unsigned(geometry.weight_addr_bits))


def weight_response_signature(geometry: EngineGeometry) -> stream.Signature:
    """Weight words from memory. The engine holds ``ready`` high: it only requests words it has
    room for, so the memory never has to wait."""
    return stream.Signature(unsigned(geometry.bus_bits))
