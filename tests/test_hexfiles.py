"""Memory files for the engine ($readmemh text, $fread bytes): layouts decode back to the layer."""

from __future__ import annotations

import numpy as np
import pytest

from blockforge.errors import ImageError, UsageError
from blockforge.hexfiles import (CONFIG_WORD_BITS, INDEX_COL_BITS, INDEX_ENTRY_BITS, SHIFT_BITS, activation_stride,
                                 activation_words, index_entries, pack_lanes, read_hex, read_outputs, unpack_outputs,
                                 write_activations, write_hex, write_inputs)
from blockforge.layer import BlockSparseLayer, pack_tile_words
from blockforge_hw.testing import random_activations, random_layer, small_spec


def test_index_entries_decode_to_bcsr():
    spec = small_spec(2, 4)
    rng = np.random.default_rng(11)
    mask = rng.random((8, 8)) < 0.3
    mask[3] = False
    layer = random_layer(spec, rng, 16, 32, block_mask=mask)
    row_ptr, col_idx = [0], []
    for entry in index_entries(layer).tolist():
        empty, last = entry >> (INDEX_COL_BITS + 1) & 1, entry >> INDEX_COL_BITS & 1
        if not empty:
            col_idx.append(entry & ((1 << INDEX_COL_BITS) - 1))
        if last or empty:
            row_ptr.append(len(col_idx))
    assert np.array_equal(row_ptr, layer.row_ptr), "seed 11"
    assert np.array_equal(col_idx, layer.col_idx), "seed 11"


def test_write_hex_files(tmp_path):
    spec = small_spec(2, 4, bus_bits=32)
    rng = np.random.default_rng(12)
    layer = random_layer(spec, rng, 6, 10, density=0.6)
    x = random_activations(rng, 10, 3)
    paths = write_hex(layer, spec, tmp_path, x)
    assert set(paths) == {"weights", "index", "bias", "multiplier", "shift", "act", "config"}
    assert read_hex(paths["weights"]) == [int(w) for w in pack_tile_words(layer.tiles, 32)] or layer.nnz_blocks == 0
    assert read_hex(paths["config"]) == [3, layer.n_block_rows, layer.n_block_cols, layer.nnz_blocks]
    bias_words = read_hex(paths["bias"])
    lane1 = (bias_words[0] >> 32) & 0xFFFFFFFF
    assert lane1 - (1 << 32 if lane1 >> 31 else 0) == layer.bias[1]
    act = read_hex(paths["act"])
    stride = activation_stride(spec.buffers.max_tokens)
    # x[4 + j, n] is byte j of word 1·stride + n
    for n in range(3):
        for j in range(4):
            byte = act[stride + n] >> (8 * j) & 0xFF
            assert byte - (256 if byte > 127 else 0) == x[4 + j, n]
    assert act[2 * stride + 0] >> 16 == 0       # padded rows 10, 11 are zero


def test_byte_files_hold_the_hex_words(tmp_path):
    """``fmt="bin"``: every memory holds the words of its hex file, ⌈width/8⌉ bytes each, most significant first."""
    spec = small_spec(2, 4, bus_bits=32)
    rng = np.random.default_rng(14)
    layer = random_layer(spec, rng, 6, 10, density=0.6)
    x = random_activations(rng, 10, 3)
    hexes = write_hex(layer, spec, tmp_path / "hex", x)
    bins = write_hex(layer, spec, tmp_path / "bin", x, fmt="bin")
    assert set(bins) == set(hexes) and all(path.suffix == ".bin" for path in bins.values())
    br, nb = spec.block.rows, spec.numerics
    widths = {"weights": 32, "index": INDEX_ENTRY_BITS, "bias": br * nb.acc_bits, "multiplier": br * nb.multiplier_bits,
              "shift": br * SHIFT_BITS, "act": 8 * spec.block.cols, "config": CONFIG_WORD_BITS}
    for name, bits in widths.items():
        size = -(-bits // 8)
        data = bins[name].read_bytes()
        words = [int.from_bytes(data[i:i + size], "big") for i in range(0, len(data), size)]
        assert len(data) % size == 0, name
        assert words == read_hex(hexes[name]) or (name == "weights" and layer.nnz_blocks == 0), name
    assert write_inputs(layer, spec, tmp_path / "bin", x[:, :2], fmt="bin")["config"].read_bytes()[:4] == bytes([0, 0, 0, 2])
    with pytest.raises(UsageError, match="format"):
        write_hex(layer, spec, tmp_path / "bad", x, fmt="mem")


def test_read_outputs_roundtrip(tmp_path):
    spec = small_spec(2, 4)
    layer = random_layer(spec, np.random.default_rng(13), 3, 8)
    words = ["00ff", "7f80", "0102", "0304"]        # 2 block rows × 2 tokens
    (tmp_path / "out.hex").write_text("\n".join(words) + "\n")
    y = read_outputs(tmp_path / "out.hex", layer, spec, 2)
    assert y.tolist() == [[-1, -128], [0, 127], [2, 4]]
    (tmp_path / "bad.hex").write_text("00xx\n")
    with pytest.raises(ImageError, match="bad.hex: line 1"):
        read_outputs(tmp_path / "bad.hex", layer, spec, 2)


@pytest.mark.parametrize("shape", [(2, 4), (4, 2), (8, 8), (1, 16)])
def test_byte_fast_paths_equal_the_word_definitions(tmp_path, shape):
    """Activations are written and outputs read as bytes in one step; both equal the per-word layout
    (pack_lanes / unpack_outputs), for every lane count, padded rows and N < max_tokens."""
    spec = small_spec(*shape, bus_bits=64, features=64)
    rng = np.random.default_rng(15)
    br, bc = shape
    layer = random_layer(spec, rng, 3 * br, 3 * bc)
    x = random_activations(rng, 3 * bc - 1, 3)                 # a padded last column block
    words = activation_words(x, spec)
    stride = activation_stride(spec.buffers.max_tokens)
    padded = np.zeros((3 * bc, 3), dtype=np.int64)
    padded[: x.shape[0]] = x
    expected = np.zeros((3, stride), dtype=object)
    expected[:, :3] = np.array(pack_lanes(padded.reshape(3, bc, 3).transpose(0, 2, 1).reshape(-1, bc), 8),
                               dtype=object).reshape(3, 3)
    assert words == expected.reshape(-1).tolist()
    text = write_activations(x, spec, tmp_path / "act.hex").read_text()
    assert text == "".join(f"{w:0{2 * bc}x}\n" for w in words)
    out = [int.from_bytes(rng.bytes(br), "little") for _ in range(3 * 2 + 4)]   # 3 block rows × 2 tokens + rest
    (tmp_path / "out.hex").write_text("".join(f"{w:0{2 * br}x}\n" for w in out))
    y = read_outputs(tmp_path / "out.hex", layer, spec, 2)
    assert y.dtype == np.int64 and np.array_equal(y, unpack_outputs(out, layer, spec, 2))
    (tmp_path / "odd.hex").write_text("// dumped\n" + "".join(f"{w:x} " for w in out))    # the careful path
    assert np.array_equal(read_outputs(tmp_path / "odd.hex", layer, spec, 2), y)
    (tmp_path / "short.hex").write_text("".join(f"{w:0{2 * br}x}\n" for w in out[:5]))
    with pytest.raises(ImageError, match="short.hex: 5 output words, expected 6"):
        read_outputs(tmp_path / "short.hex", layer, spec, 2)


def test_bad_inputs(tmp_path):
    spec = small_spec(2, 4)
    layer = random_layer(spec, np.random.default_rng(14), 4, 8)
    with pytest.raises(UsageError, match=r"N must be in \[1, 8\] .*got 9"):
        write_hex(layer, spec, tmp_path, np.zeros((8, 9), dtype=np.int64))
    with pytest.raises(UsageError, match="int8 range"):
        write_hex(layer, spec, tmp_path, np.full((8, 2), 200))
    with pytest.raises(UsageError, match="blocks"):
        write_hex(layer, small_spec(1, 8), tmp_path)
    too_far = BlockSparseLayer(**{**layer.__dict__, "shift": np.full(4, 63)})     # fits 6 bits, not the numerics
    with pytest.raises(UsageError, match=r"shifts must lie in \[0, 62\]"):
        write_hex(too_far, spec, tmp_path)
