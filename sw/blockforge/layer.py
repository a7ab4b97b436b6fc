"""The in-memory block-sparse integer layer shared by the reference, the image codec, the estimator
and the RTL benches.

A :class:`BlockSparseLayer` is one quantized linear layer ``y_q = requant(W_q x_q + b_q)`` stored as
block-CSR over the spec's BR×BC blocks (DESIGN.md "Numerics" and "Weight image"):

- ``row_ptr``   int64, shape (block_rows + 1,): non-zero tiles of block row r are ``row_ptr[r]:row_ptr[r+1]``
- ``col_idx``   int64, shape (nnz,): block column of each stored tile, strictly increasing within a row
- ``tiles``     int8,  shape (nnz, BR, BC): the tile payload; tile element (i, j) is W[r*BR+i, c*BC+j]
- ``bias``      int64, shape (padded_out,): int32 bias b_q (padded channels 0)
- ``multiplier``int64, shape (padded_out,): unsigned requantization multiplier M (padded channels 0)
- ``shift``     int64, shape (padded_out,): requantization shift S (padded channels 0)

All-zero tiles are never stored. Arrays are indexed over the *padded* output channels so that the
engine, which works in whole block rows, sees the same data; :attr:`out_features` says how many are
real. This module imports neither torch nor amaranth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SpecError
from .spec import Spec, Tiling


@dataclass(frozen=True, eq=False)
class BlockSparseLayer:
    """One block-sparse int8 linear layer (see module docstring for array contracts)."""

    name: str
    out_features: int
    in_features: int
    block_rows: int   # BR
    block_cols: int   # BC
    row_ptr: np.ndarray
    col_idx: np.ndarray
    tiles: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    # Float scales kept for dequantization and manifests; not used by the integer path.
    scale_in: float = 1.0
    scale_out: float = 1.0
    weight_scale: np.ndarray | None = field(default=None)

    # ---- shape ----------------------------------------------------------------------------------
    @property
    def padded_out(self) -> int:
        return self.n_block_rows * self.block_rows

    @property
    def padded_in(self) -> int:
        return -(-self.in_features // self.block_cols) * self.block_cols

    @property
    def n_block_rows(self) -> int:
        return len(self.row_ptr) - 1

    @property
    def n_block_cols(self) -> int:
        return self.padded_in // self.block_cols

    @property
    def nnz_blocks(self) -> int:
        return int(self.row_ptr[-1])

    @property
    def total_blocks(self) -> int:
        return self.n_block_rows * self.n_block_cols

    @property
    def block_density(self) -> float:
        return self.nnz_blocks / self.total_blocks

    @property
    def block_sparsity(self) -> float:
        return 1.0 - self.block_density

    def nnz_per_row(self) -> np.ndarray:
        return np.diff(self.row_ptr)

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dense(cls, name: str, weight_q: np.ndarray, bias_q: np.ndarray, multiplier: np.ndarray,
                   shift: np.ndarray, spec: Spec, **scales) -> "BlockSparseLayer":
        """Build from a dense int8 weight (out, in) and per-channel int arrays of length ``out``.

        The weight is zero-padded to the spec's block grid; all-zero tiles are dropped.
        Raises SpecError if the shape does not fit the spec.
        """
        weight_q = np.asarray(weight_q)
        if weight_q.ndim != 2:
            raise SpecError(f"{name}: weight must be 2-D (out, in), got shape {weight_q.shape}")
        out_features, in_features = weight_q.shape
        tiling = spec.tiling(out_features, in_features, layer=name)
        br, bc = spec.block.rows, spec.block.cols
        padded = np.zeros((tiling.padded_out, tiling.padded_in), dtype=np.int8)
        padded[:out_features, :in_features] = weight_q
        blocks = padded.reshape(tiling.block_rows, br, tiling.block_cols, bc).transpose(0, 2, 1, 3)
        nonzero = blocks.any(axis=(2, 3))                       # (block_rows, block_cols)
        row_ptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))]).astype(np.int64)
        rows, cols = np.nonzero(nonzero)                        # row-major: BCSR order
        tiles = np.ascontiguousarray(blocks[rows, cols])
        return cls(name, out_features, in_features, br, bc, row_ptr, cols.astype(np.int64), tiles,
                   _pad_channels(bias_q, tiling), _pad_channels(multiplier, tiling),
                   _pad_channels(shift, tiling), **scales)

    def to_dense(self) -> np.ndarray:
        """The int8 weight, shape (out_features, in_features)."""
        br, bc = self.block_rows, self.block_cols
        blocks = np.zeros((self.n_block_rows, self.n_block_cols, br, bc), dtype=np.int8)
        rows = np.repeat(np.arange(self.n_block_rows), self.nnz_per_row())
        blocks[rows, self.col_idx] = self.tiles
        dense = blocks.transpose(0, 2, 1, 3).reshape(self.padded_out, self.padded_in)
        return dense[: self.out_features, : self.in_features].copy()

    def block_mask(self) -> np.ndarray:
        """bool (block_rows, block_cols): which tiles are stored."""
        mask = np.zeros((self.n_block_rows, self.n_block_cols), dtype=bool)
        rows = np.repeat(np.arange(self.n_block_rows), self.nnz_per_row())
        mask[rows, self.col_idx] = True
        return mask


def _pad_channels(values: np.ndarray, tiling: Tiling) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if values.shape[0] != tiling.out_features:
        raise SpecError(f"per-channel array has {values.shape[0]} entries, expected {tiling.out_features}")
    out = np.zeros(tiling.padded_out, dtype=np.int64)
    out[: tiling.out_features] = values
    return out


def pack_tile_words(tiles: np.ndarray, bus_bits: int) -> np.ndarray:
    """The weight-bus words of a layer's tiles, in the order the engine reads them.

    Tiles follow BCSR order; within a tile the BR×BC int8 elements are taken row-major (element
    (i, j) is byte i·BC + j) and packed little-endian into ``bus_bits``-wide words: byte b of the tile
    lands in word b // (bus_bits/8), bits [8·(b mod bus_bytes), +8). Returns an object array of Python
    ints (words may exceed 64 bits), length nnz · tile_words.
    """
    return np.array([int.from_bytes(row.tobytes(), "little") for row in tile_bytes(tiles, bus_bits)], dtype=object)


def tile_bytes(tiles: np.ndarray, bus_bits: int) -> np.ndarray:
    """The bytes of :func:`pack_tile_words`' bus words: (words, bus_bits/8) uint8, byte 0 the lowest."""
    bus_bytes = bus_bits // 8
    flat = np.ascontiguousarray(tiles, dtype=np.int8).view(np.uint8).reshape(-1)
    if flat.size % bus_bytes:
        raise ValueError(f"tile payload of {flat.size} bytes is not a whole number of {bus_bits}-bit words")
    return flat.reshape(-1, bus_bytes)
