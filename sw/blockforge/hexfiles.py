"""The engine's memory files (``$readmemh`` text or ``$fread`` bytes), and the reader of its captured outputs.

The memory layouts are facts of the engine (docs/engine.md "Memories and hex files" is the
normative text); this module is their one writer so that the image exporter, the RTL benches and the
tests agree. numpy only: no amaranth, no torch.

Files written by :func:`write_hex` (one hex word per line, lowest address first):

- ``weights.hex``  ``weight_bus_bits`` per word: :func:`blockforge.layer.pack_tile_words` order
  (tile k occupies words k·tile_words … k·tile_words + tile_words − 1).
- ``index.hex``    18-bit entries ``{empty[17], last[16], col[15:0]}``, one per stored tile in BCSR
  order; the last tile of a block row has ``last`` = 1; a block row with no tiles is one entry with
  ``empty`` = 1 (and ``last`` = 1). So the entries end exactly ``n_block_rows`` rows.
- ``bias.hex``, ``multiplier.hex``, ``shift.hex``  one word per block row, lane i (output channel
  r·BR + i) in bits [i·w, (i+1)·w) with w = acc_bits (two's complement), multiplier_bits, 6.
- ``act.hex``      (only with activations) BC bytes per word, byte j (bits [8j, 8j+8)) = x[c·BC + j, n]
  at word c·stride + n, stride = the next power of two ≥ max_tokens; padding rows are zero.
- ``config.hex``   four 32-bit words: n_tokens, n_block_rows, n_block_cols, n_tiles.

The same memories as ``$fread`` files (``fmt="bin"``: ``weights.bin`` …, what the RTL benches load): the
same words, each as its ⌈width/8⌉ bytes, most significant byte first (docs/engine.md, normative).

The engine emits, per block row r and token n in that order, one word of BR int8 lanes
(lane i = y[r·BR + i, n]); the simulation top stores word r·N + n of ``out.hex``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import ImageError, UsageError
from .layer import BlockSparseLayer, pack_tile_words, tile_bytes
from .spec import MAX_SHIFT, Spec

__all__ = [
    "CONFIG_WORD_BITS", "INDEX_COL_BITS", "INDEX_ENTRY_BITS", "SHIFT_BITS", "HEX_FILES", "MEMORY_FORMATS",
    "activation_lanes", "activation_stride", "activation_words", "default_depths", "index_entries", "layer_words", "pack_lanes",
    "write_hex", "write_inputs", "check_memory_format",
    "write_activations", "write_config", "read_hex", "read_outputs", "unpack_outputs",
]

CONFIG_WORD_BITS = 32
INDEX_COL_BITS = 16
INDEX_ENTRY_BITS = INDEX_COL_BITS + 2
SHIFT_BITS = MAX_SHIFT.bit_length()     # the shift memory's lane width (6 bits for S ≤ 62)
HEX_FILES = ("weights", "index", "bias", "multiplier", "shift", "config", "act")
#: The formats of the memory files: ``$readmemh`` text, or the bytes ``$fread`` loads (module docstring).
MEMORY_FORMATS = ("hex", "bin")


def activation_stride(max_tokens: int) -> int:
    """Words between block columns in the activation memory: the next power of two ≥ max_tokens."""
    return 1 << max(0, (int(max_tokens) - 1).bit_length())


def default_depths(spec: Spec) -> dict[str, int]:
    """Memory depths (words) that hold the largest layer the spec accepts, fully dense."""
    max_rows = spec.buffers.max_out_features // spec.block.rows
    max_cols = spec.buffers.max_in_features // spec.block.cols
    return {
        "weights": max_rows * max_cols * spec.tile_words,
        "index": max_rows * max_cols,
        "params": max_rows,
        "act": max_cols * activation_stride(spec.buffers.max_tokens),
        "out": max_rows * spec.buffers.max_tokens,
    }


def index_entries(layer: BlockSparseLayer) -> np.ndarray:
    """The index memory of a layer as int64 entries (module docstring gives the bit layout)."""
    entries: list[int] = []
    for r in range(layer.n_block_rows):
        lo, hi = int(layer.row_ptr[r]), int(layer.row_ptr[r + 1])
        if lo == hi:
            entries.append(3 << INDEX_COL_BITS)          # empty | last
            continue
        for k in range(lo, hi):
            col = int(layer.col_idx[k])
            entries.append(col | (int(k == hi - 1) << INDEX_COL_BITS))
    return np.asarray(entries, dtype=np.int64)


def pack_lanes(values: np.ndarray, lane_bits: int) -> list[int]:
    """Pack rows of signed/unsigned ints (rows, lanes) into one word per row, lane 0 lowest."""
    values = np.asarray(values, dtype=np.int64)
    mask = (1 << lane_bits) - 1
    words = []
    for row in values:
        word = 0
        for i, v in enumerate(row.tolist()):
            word |= (int(v) & mask) << (i * lane_bits)
        words.append(word)
    return words


def _write_words(path: Path, words: Iterable[int], bits: int, fmt: str = "hex") -> Path:
    """Words of ``bits`` bits as ``$readmemh`` text (``fmt`` "hex") or as ``$fread`` bytes ("bin")."""
    if fmt == "bin":
        size = -(-bits // 8)
        return _write_file(path, b"".join(int(w).to_bytes(size, "big") for w in words))
    digits = -(-bits // 4)
    text = "".join(f"{int(w):0{digits}x}\n" for w in words)
    return _write_file(path, text or f"{0:0{digits}x}\n")   # $readmemh needs at least one word


def _write_lanes(path: Path, lanes: np.ndarray, fmt: str = "hex") -> Path:
    """Byte lanes (words, bytes), lane 0 lowest, as ``$readmemh`` text or ``$fread`` bytes (each word's
    most significant byte first)."""
    if fmt == "bin":
        return _write_file(path, np.ascontiguousarray(lanes[:, ::-1]).tobytes())
    return _write_file(path, _hex_lines(lanes))


def _write_file(path: Path, data: str | bytes) -> Path:
    """Write through a temporary name, so that a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    tmp.replace(path)
    return path


def check_memory_format(fmt: str) -> str:
    """``fmt`` if it is one of :data:`MEMORY_FORMATS`, else UsageError."""
    if fmt not in MEMORY_FORMATS:
        raise UsageError(f"memory file format must be one of {', '.join(MEMORY_FORMATS)}, got {fmt!r}")
    return fmt


def activation_lanes(x_q: np.ndarray, spec: Spec, *, in_features: int | None = None,
                     where: str = "activations") -> np.ndarray:
    """The activation memory for int8 activations (in, N) as bytes: (words, BC) uint8, lane 0 first
    (module docstring layout).

    Raises UsageError, naming ``where``, for a non-integer or out-of-range array or N outside
    1..max_tokens."""
    x = np.asarray(x_q)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        raise UsageError(f"{where}: activations must be a 2-D integer array (in, N), got {x.shape} {x.dtype}")
    if in_features is not None and x.shape[0] != in_features:
        raise UsageError(f"{where}: activations have {x.shape[0]} rows, the layer takes {in_features}")
    if x.size and (x.min() < -128 or x.max() > 127):
        raise UsageError(f"{where}: activations outside the int8 range [{x.min()}, {x.max()}]")
    n_tokens = spec.check_tokens(x.shape[1], what=f"{where}: N")
    bc = spec.block.cols
    stride = activation_stride(spec.buffers.max_tokens)
    n_cols = -(-x.shape[0] // bc)
    lanes = np.zeros((n_cols * bc, stride), dtype=np.uint8)
    lanes[: x.shape[0], :n_tokens] = x.astype(np.int8).view(np.uint8)
    return lanes.reshape(n_cols, bc, stride).transpose(0, 2, 1).reshape(n_cols * stride, bc)


def activation_words(x_q: np.ndarray, spec: Spec, *, in_features: int | None = None,
                     where: str = "activations") -> list[int]:
    """The activation memory as one int per word (see :func:`activation_lanes`)."""
    lanes = activation_lanes(x_q, spec, in_features=in_features, where=where)
    return [int.from_bytes(row.tobytes(), "little") for row in lanes]


def _hex_lines(lanes: np.ndarray) -> str:
    """``$readmemh`` text of byte lanes (words, lanes), lane 0 lowest: one word per line (one zero word
    for no words: $readmemh needs at least one)."""
    digits = 2 * lanes.shape[1]
    if not len(lanes):
        return "0" * digits + "\n"
    hexed = np.frombuffer(np.ascontiguousarray(lanes[:, ::-1]).tobytes().hex().encode("ascii"), dtype=np.uint8)
    lines = np.full((len(lanes), digits + 1), ord("\n"), dtype=np.uint8)
    lines[:, :digits] = hexed.reshape(len(lanes), digits)
    return lines.tobytes().decode("ascii")


def write_activations(x_q: np.ndarray, spec: Spec, path: str | Path, *, in_features: int | None = None) -> Path:
    """Write int8 activations (in, N) as the activation memory (module docstring layout)."""
    lanes = activation_lanes(x_q, spec, in_features=in_features, where=str(path))
    return _write_lanes(Path(path), lanes, _format_of(path))


def write_config(path: str | Path, *, n_tokens: int, n_block_rows: int, n_block_cols: int, n_tiles: int) -> Path:
    """Write the four-word layer configuration the simulation top feeds the engine."""
    return _write_words(Path(path), [n_tokens, n_block_rows, n_block_cols, n_tiles], CONFIG_WORD_BITS,
                        _format_of(path))


def _format_of(path: str | Path) -> str:
    """A single memory file's format, from its name: ``.bin`` is ``$fread`` bytes, anything else hex text."""
    return "bin" if Path(path).suffix == ".bin" else "hex"


def _check_layer(layer: BlockSparseLayer, spec: Spec) -> None:
    if (layer.block_rows, layer.block_cols) != (spec.block.rows, spec.block.cols):
        raise UsageError(f"{layer.name}: layer has {layer.block_rows}x{layer.block_cols} blocks, spec "
                         f"{spec.name} has {spec.block.rows}x{spec.block.cols}")
    spec.tiling(layer.out_features, layer.in_features, layer=layer.name)
    if np.any(layer.shift < 0) or np.any(layer.shift > MAX_SHIFT):
        raise UsageError(f"{layer.name}: requantization shifts must lie in [0, {MAX_SHIFT}]")
    if np.any(layer.multiplier < 0) or np.any(layer.multiplier >= 1 << spec.numerics.multiplier_bits):
        raise UsageError(f"{layer.name}: multipliers must lie in [0, 2^{spec.numerics.multiplier_bits})")


def _parameter_words(layer: BlockSparseLayer, spec: Spec) -> dict[str, list[int]]:
    br, nb = spec.block.rows, spec.numerics
    return {
        "index": index_entries(layer).tolist(),
        "bias": pack_lanes(layer.bias.reshape(-1, br), nb.acc_bits),
        "multiplier": pack_lanes(layer.multiplier.reshape(-1, br), nb.multiplier_bits),
        "shift": pack_lanes(layer.shift.reshape(-1, br), SHIFT_BITS),
    }


def layer_words(layer: BlockSparseLayer, spec: Spec) -> dict[str, list[int]]:
    """The words of a layer's memories: ``weights``, ``index``, ``bias``, ``multiplier``, ``shift``
    (module docstring layouts). Raises UsageError if the layer was built for another block shape, does
    not fit the spec, or has a multiplier or shift the engine cannot hold."""
    _check_layer(layer, spec)
    return {"weights": [int(w) for w in pack_tile_words(layer.tiles, spec.memory.weight_bus_bits)],
            **_parameter_words(layer, spec)}


def write_hex(layer: BlockSparseLayer, spec: Spec, out_dir: str | Path, x_q: np.ndarray | None = None,
              *, n_tokens: int | None = None, fmt: str = "hex") -> dict[str, Path]:
    """Write the memory files of one layer (and its activations, if given) into ``out_dir``:
    ``$readmemh`` text ``NAME.hex`` (``fmt`` "hex", the default) or ``$fread`` bytes ``NAME.bin``
    ("bin", see the module docstring).

    Returns {name: path} for weights, index, bias, multiplier, shift, config (and act with ``x_q``).
    The config carries N = x_q.shape[1], else ``n_tokens``, else 0 (the engine then refuses to
    start with status ``bad_tokens`` until a config with N is written by :func:`write_config`).
    Raises UsageError if the layer was built for another block shape.
    """
    check_memory_format(fmt)
    _check_layer(layer, spec)
    words = _parameter_words(layer, spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    br, nb = spec.block.rows, spec.numerics
    widths = {"index": INDEX_ENTRY_BITS, "bias": br * nb.acc_bits, "multiplier": br * nb.multiplier_bits,
              "shift": br * SHIFT_BITS}
    paths = {"weights": _write_lanes(out / f"weights.{fmt}", tile_bytes(layer.tiles, spec.memory.weight_bus_bits),
                                     fmt)}
    paths.update({name: _write_words(out / f"{name}.{fmt}", words[name], bits, fmt) for name, bits in widths.items()})
    if x_q is not None:
        return {**paths, **write_inputs(layer, spec, out, x_q, fmt=fmt)}
    paths["config"] = write_config(out / f"config.{fmt}", n_tokens=n_tokens or 0, n_block_rows=layer.n_block_rows,
                                   n_block_cols=layer.n_block_cols, n_tiles=layer.nnz_blocks)
    return paths


def write_inputs(layer: BlockSparseLayer, spec: Spec, out_dir: str | Path, x_q: np.ndarray,
                 *, fmt: str = "hex") -> dict[str, Path]:
    """Write only what changes between passes of one layer: the activations and the config (N =
    x_q.shape[1]), as ``act.FMT`` and ``config.FMT``; the weights, index and parameters written by
    :func:`write_hex` stay."""
    check_memory_format(fmt)
    out = Path(out_dir)
    return {"act": write_activations(x_q, spec, out / f"act.{fmt}", in_features=layer.in_features),
            "config": write_config(out / f"config.{fmt}", n_tokens=np.asarray(x_q).shape[1],
                                   n_block_rows=layer.n_block_rows, n_block_cols=layer.n_block_cols,
                                   n_tiles=layer.nnz_blocks)}


def read_hex(path: str | Path) -> list[int]:
    """Words of a ``$readmemh``/``$writememh`` file (comments and blank lines skipped).

    Raises ImageError naming the file and line for unknown (x/z) or malformed words; ``@addr``
    jumps are not supported in outputs and raise too.
    """
    words = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.split("//", 1)[0].strip()
        if not text:
            continue
        for token in text.split():
            try:
                if token.startswith("@"):
                    raise ValueError
                words.append(int(token.replace("_", ""), 16))
            except ValueError:
                raise ImageError(f"{path}: line {lineno}: not a hex word: {token!r}") from None
    return words


def unpack_outputs(words: Sequence[int], layer: BlockSparseLayer, spec: Spec, n_tokens: int) -> np.ndarray:
    """The engine's output words (block row-major, token-minor; BR int8 lanes each) → y (out_features, N)."""
    br = spec.block.rows
    y = np.zeros((layer.padded_out, n_tokens), dtype=np.int64)
    for k, word in enumerate(words[: layer.n_block_rows * n_tokens]):
        r, n = divmod(k, n_tokens)
        for i in range(br):
            byte = (word >> (8 * i)) & 0xFF
            y[r * br + i, n] = byte - 256 if byte >= 128 else byte
    return y[: layer.out_features]


def read_outputs(path: str | Path, layer: BlockSparseLayer, spec: Spec, n_tokens: int) -> np.ndarray:
    """Reassemble the engine's output words (``out.hex``) into y (out_features, N), int64.

    A plain dump (one full-width hex word per line, as both simulators write it) is decoded as bytes in
    one step; anything else goes through :func:`read_hex`, which names the line of a bad word."""
    need = layer.n_block_rows * n_tokens
    br = spec.block.rows
    tokens = Path(path).read_text().split()
    words = lanes = None
    try:
        if any(len(t) != 2 * br for t in tokens):
            raise ValueError
        lanes = np.frombuffer(bytes.fromhex("".join(tokens)), dtype=np.uint8).reshape(-1, br)
    except ValueError:
        words = read_hex(path)
    found = len(words if lanes is None else lanes)
    if found < need:
        raise ImageError(f"{path}: {found} output words, expected {need}")
    if lanes is None:
        return unpack_outputs(words, layer, spec, n_tokens)
    y = lanes[:need, ::-1].view(np.int8).reshape(layer.n_block_rows, n_tokens, br).transpose(0, 2, 1)
    return y.reshape(layer.padded_out, n_tokens)[: layer.out_features].astype(np.int64)
