"""The .bfim codec: exact round trips, the golden bytes of docs/image-format.md, every kind of bad file,
atomic writes, and fuzzing (only ImageError may escape the reader)."""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockforge import image as bfim
from blockforge.errors import ImageError
from blockforge.image import (HEADER_SIZE, LAYER_SECTIONS, TABLE_ENTRY_SIZE, decode_image, decode_image_layer,
                              encode_image, read_image, read_image_layer, write_image, write_manifest)
from blockforge.layer import BlockSparseLayer, pack_tile_words
from blockforge.spec import load_spec, shipped_spec_names, spec_from_dict

from test_reference import random_layer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "image-format.md"
SPECS = shipped_spec_names()

# --------------------------------------------------------------------------------------------------
# The golden image: a tiny spec and one fixed 3x6 layer (docs/image-format.md shows the same bytes).

GOLDEN_SPEC = {
    "name": "golden",
    "description": "2x4 tiles on a 32-bit bus (image-format golden test)",
    "block": {"rows": 2, "cols": 4},
    "numerics": {"weight_bits": 8, "act_bits": 8, "acc_bits": 32, "multiplier_bits": 16,
                 "rounding": "half_up", "saturate": True},
    "memory": {"weight_bus_bits": 32, "read_latency": 1},
    "buffers": {"max_tokens": 4, "max_in_features": 8, "max_out_features": 4},
    "clock_mhz": 100,
}


def golden_layer(spec) -> BlockSparseLayer:
    weight = np.array([[1, -2, 3, -4, 0, 0],
                       [5, 6, 7, 8, 0, 0],
                       [0, 0, 0, 0, 127, -127]], dtype=np.int8)
    return BlockSparseLayer.from_dense("enc.0.q", weight, np.array([100, -200, 7]),
                                       np.array([32768, 40000, 65535]), np.array([15, 20, 62]), spec,
                                       scale_in=0.5, scale_out=0.25, weight_scale=np.array([0.125, 0.0625, 1.0]))


def golden_bytes() -> bytes:
    spec = spec_from_dict(GOLDEN_SPEC, "golden")
    return encode_image([golden_layer(spec)], spec, {"model": "golden"})


def doc_hexdump() -> bytes:
    """The bytes of the hexdump block in docs/image-format.md (``offset: hex bytes  |ascii|`` lines)."""
    text = DOCS.read_text(encoding="utf-8")
    block = text.split("<!-- golden-hexdump -->")[1].split("```")[1]
    data = bytearray()
    for line in block.strip().splitlines()[1:] if block.startswith("text") else block.strip().splitlines():
        match = re.match(r"^([0-9a-f]{8}):((?: [0-9a-f]{2})+)", line.strip())
        if match:
            assert int(match.group(1), 16) == len(data), f"hexdump line out of order: {line}"
            data.extend(bytes.fromhex(match.group(2)))
    return bytes(data)


def test_golden_bytes_match_the_documented_hexdump():
    data = golden_bytes()
    assert data == doc_hexdump(), "docs/image-format.md's hexdump no longer matches encode_image"
    assert len(data) % 64 == 0 and data[:8] == b"BFIM\r\n\x1a\n"


def test_golden_fields_at_documented_offsets():
    data = golden_bytes()
    spec = spec_from_dict(GOLDEN_SPEC, "golden")
    magic, version, count, digest, size, bus, flags = struct.unpack_from("<8sII32sQII", data, 0)
    assert (version, count, digest.hex(), size, bus, flags) == (1, 1, spec.digest, len(data), 32, 0)
    assert struct.unpack_from("<I", data, 124)[0] == zlib.crc32(data[:124])
    table_offset, table_size, table_crc = struct.unpack_from("<QQI", data, 64)
    assert (table_offset, table_size) == (128, 192)
    entry = struct.unpack_from("<12I", data, table_offset)
    assert entry == (0, 7, 3, 6, 2, 4, 4, 8, 2, 2, 2, 1)
    # The tiles section holds the bus words of pack_tile_words, little-endian, back to back.
    tiles_offset, tiles_size, _ = struct.unpack_from("<QQI", data, table_offset + 48 + 2 * 20)
    words = pack_tile_words(golden_layer(spec).tiles, 32)
    assert data[tiles_offset:tiles_offset + tiles_size] == b"".join(int(w).to_bytes(4, "little") for w in words)


# --------------------------------------------------------------------------------------------------
# Round trips.

def assert_same_layer(a: BlockSparseLayer, b: BlockSparseLayer, where: str) -> None:
    for name in ("name", "out_features", "in_features", "block_rows", "block_cols", "scale_in", "scale_out"):
        assert getattr(a, name) == getattr(b, name), f"{where}: {name}"
    for name in ("row_ptr", "col_idx", "tiles", "bias", "multiplier", "shift"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and np.array_equal(x, y), f"{where}: {name}"
    assert b.tiles.dtype == np.int8
    if a.weight_scale is None:
        assert b.weight_scale is None, where
    else:
        assert np.array_equal(np.asarray(a.weight_scale), b.weight_scale), f"{where}: weight_scale"


def layer_zoo(spec, rng):
    """Random layers: ragged shapes, empty block rows, fully dense, fully empty."""
    br, bc = spec.block.rows, spec.block.cols
    return [
        random_layer(spec, rng, 3 * br + 1, 4 * bc - 3, 0.5, empty_rows=2, name="ragged"),
        random_layer(spec, rng, 2 * br, 2 * bc, 1.0, name="dense"),
        random_layer(spec, rng, br, bc, 0.0, name="empty"),
        random_layer(spec, rng, 5, 7, 0.7, name="tiny"),
        random_layer(spec, rng, 4 * br, 3 * bc, 0.3, name="no-weight-scale.λ"),
    ]


@pytest.mark.parametrize("spec_name", SPECS)
def test_round_trip_is_exact_for_every_shipped_spec(spec_name, tmp_path):
    seed = 500 + SPECS.index(spec_name)
    rng = np.random.default_rng(seed)
    spec = load_spec(spec_name)
    layers = layer_zoo(spec, rng)
    layers[-1] = BlockSparseLayer(**{**layers[-1].__dict__, "weight_scale": None})
    metadata = {"seed": seed, "calibrator": "mse", "nested": {"list": [1, 2.5, None, "x"]}}
    path = write_image(tmp_path / "m.bfim", layers, spec, metadata)
    image = read_image(path, spec)
    assert image.spec == spec and image.spec_digest == spec.digest
    assert image.metadata == metadata
    assert image.layer_names() == [layer.name for layer in layers]
    for layer in layers:
        assert_same_layer(layer, image.layer(layer.name), f"seed {seed}, {spec_name}, {layer.name}")
    assert image.layer("empty").nnz_blocks == 0 and image.layer("dense").block_sparsity == 0.0
    assert os.path.getsize(path) == image.file_size and image.file_size % 64 == 0
    assert all(s.offset % 64 == 0 for s in image.sections)
    with pytest.raises(ImageError, match="no layer named 'nope'"):
        image.layer("nope")
    for layer in layers:                        # one layer alone, as a simulator serving a job reads it
        assert_same_layer(layer, read_image_layer(path, layer.name, spec), f"{spec_name}, alone: {layer.name}")
    with pytest.raises(ImageError, match=r"m.bfim: no layer named 'nope'"):
        read_image_layer(path, "nope", spec)


def test_empty_image_round_trips(tmp_path):
    spec = load_spec("tile8")
    image = decode_image(encode_image([], spec))
    assert image.layers == () and image.metadata == {}


def test_manifest_describes_the_image(tmp_path):
    spec = load_spec("tile16")
    layers = layer_zoo(spec, np.random.default_rng(9))
    path = write_image(tmp_path / "m.bfim", layers, spec)
    out = write_manifest(tmp_path / "m.json", read_image(path))
    data = json.loads(out.read_text())
    assert data["spec"]["digest"] == spec.digest and data["file_bytes"] == os.path.getsize(path)
    by_name = {entry["name"]: entry for entry in data["layers"]}
    assert by_name["empty"]["nnz_blocks"] == 0 and by_name["empty"]["block_sparsity"] == 1.0
    assert by_name["ragged"]["empty_block_rows"] >= 2
    assert by_name["dense"]["bytes"]["tiles"] == layers[1].nnz_blocks * spec.tile_bytes
    assert data["totals"]["nnz_blocks"] == sum(layer.nnz_blocks for layer in layers)
    assert data["totals"]["dense_fp32_bytes"] == 4 * data["totals"]["dense_int8_bytes"]


# --------------------------------------------------------------------------------------------------
# Bad files.

def small_image() -> tuple[bytes, object]:
    spec = load_spec("tile8")
    rng = np.random.default_rng(77)
    layers = [random_layer(spec, rng, 16, 24, 0.6, name="a"), random_layer(spec, rng, 9, 8, 1.0, name="b")]
    return encode_image(layers, spec, {"k": "v"}), spec


def test_truncation_at_every_offset_names_the_offset():
    data, _ = small_image()
    for size in range(len(data)):
        with pytest.raises(ImageError, match=f"truncated at offset {size}") as info:
            decode_image(data[:size], source="t.bfim")
        assert str(info.value).startswith("t.bfim: ") and "\n" not in str(info.value)


def test_every_single_bit_flip_is_detected_and_names_its_section():
    data, _ = small_image()
    image = decode_image(data)
    owner = {}
    for s in image.sections:
        for offset in range(s.offset, s.offset + s.size):
            owner[offset] = s
    rng = np.random.default_rng(5)
    for offset in range(len(data)):
        corrupt = bytearray(data)
        corrupt[offset] ^= 1 << int(rng.integers(8))
        with pytest.raises(ImageError) as info:
            decode_image(bytes(corrupt))
        message = str(info.value)
        if offset < HEADER_SIZE:
            continue                      # magic / version / header CRC / sizes: checked below
        section = owner.get(offset)
        if section is None:
            assert "padding" in message or "after the last section" in message, f"offset {offset}: {message}"
        else:
            expected = f"section '{section.name}'" + (f" of layer '{section.layer}'" if section.layer else "")
            assert f"CRC mismatch in {expected}" in message, f"offset {offset}: {message}"


def test_one_layer_read_verifies_everything_it_returns():
    """decode_image_layer checks the header, table, names, info and every section of its layer (each bit
    flip there is an ImageError naming the section); another layer's contents are not read, so a flip
    there leaves the returned layer intact."""
    data, spec = small_image()
    image = decode_image(data)
    own = {offset for s in image.sections if s.layer in (None, "a") for offset in range(s.offset, s.offset + s.size)}
    other = {offset for s in image.sections if s.layer == "b" for offset in range(s.offset, s.offset + s.size)}
    rng = np.random.default_rng(6)
    for offset in range(len(data)):
        corrupt = bytearray(data)
        corrupt[offset] ^= 1 << int(rng.integers(8))
        if offset in other:
            assert_same_layer(image.layer("a"), decode_image_layer(bytes(corrupt), "a", spec), f"offset {offset}")
        elif offset in own or offset < HEADER_SIZE:
            with pytest.raises(ImageError):
                decode_image_layer(bytes(corrupt), "a", spec)
    for size in range(len(data)):
        with pytest.raises(ImageError, match=f"truncated at offset {size}"):
            decode_image_layer(data[:size], "b", spec)


def test_wrong_magic_version_and_trailing_bytes():
    data, _ = small_image()
    with pytest.raises(ImageError, match="not a blockforge image"):
        decode_image(b"PK\x03\x04" + data[4:])
    with pytest.raises(ImageError, match="not a blockforge image"):
        decode_image(b"GIF8")
    future = bytearray(data)
    struct.pack_into("<I", future, 8, 2)
    with pytest.raises(ImageError, match="unsupported format version 2"):
        decode_image(bytes(future))
    with pytest.raises(ImageError, match="trailing bytes"):
        decode_image(data + b"\0" * 64)


def test_spec_mismatch_is_rejected(tmp_path):
    data, spec = small_image()
    path = tmp_path / "x.bfim"
    path.write_bytes(data)
    assert read_image(path, load_spec("tile8")).spec == spec
    with pytest.raises(ImageError, match=r"x\.bfim: built for spec 'tile8' .* not for 'tile16'"):
        read_image(path, load_spec("tile16"))


def test_writer_rejects_layers_that_do_not_fit(tmp_path):
    tile8, tile16 = load_spec("tile8"), load_spec("tile16")
    layer = random_layer(tile8, np.random.default_rng(3), 16, 16, 1.0, name="l")
    with pytest.raises(ImageError, match="block shape 8x8 differs"):
        encode_image([layer], tile16)
    with pytest.raises(ImageError, match="two layers are named 'l'"):
        encode_image([layer, layer], tile8)
    with pytest.raises(ImageError, match="not plain JSON"):
        encode_image([layer], tile8, {"x": float("nan")})
    bad = BlockSparseLayer(**{**layer.__dict__, "shift": np.full(16, 63)})
    with pytest.raises(ImageError, match="shift outside"):
        encode_image([bad], tile8)
    bad = BlockSparseLayer(**{**layer.__dict__, "scale_in": float("inf")})
    with pytest.raises(ImageError, match="scale_in"):
        encode_image([bad], tile8)
    zero_tile = layer.tiles.copy()
    zero_tile[0] = 0
    with pytest.raises(ImageError, match="all-zero tile"):
        encode_image([BlockSparseLayer(**{**layer.__dict__, "tiles": zero_tile})], tile8)


def test_write_is_atomic(tmp_path, monkeypatch):
    spec = load_spec("tile8")
    good = random_layer(spec, np.random.default_rng(1), 16, 16, 1.0, name="l")
    path = tmp_path / "m.bfim"
    write_image(path, [good], spec)
    before = path.read_bytes()
    bad = BlockSparseLayer(**{**good.__dict__, "block_rows": 4})
    with pytest.raises(ImageError):
        write_image(path, [bad], spec)

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(bfim.os, "fsync", failing_fsync)
    with pytest.raises(ImageError, match="No space left on device"):
        write_image(path, [good], spec, {"new": True})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bfim"], "temporary file left behind"
    with pytest.raises(ImageError, match="cannot write"):
        write_image(tmp_path / "missing" / "m.bfim", [good], spec)


def test_read_errors_are_one_line(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "absent.bfim")


def test_no_pickle_in_the_codec():
    source = Path(bfim.__file__).read_text(encoding="utf-8")
    assert "pickle" not in source.replace("No pickle", "")


# --------------------------------------------------------------------------------------------------
# Fuzzing: random bytes, mutated images, and mutated images whose CRCs are re-sealed (so that the
# semantic checks behind the CRCs are exercised too).

def reseal(data: bytearray) -> None:
    """Recompute every CRC (sections, then table, then header) after a mutation."""
    count = struct.unpack_from("<I", data, 12)[0]
    table_offset = struct.unpack_from("<Q", data, 64)[0]
    for i in range(count):
        base = table_offset + i * TABLE_ENTRY_SIZE
        if base + TABLE_ENTRY_SIZE > len(data):
            break
        for k in range(len(LAYER_SECTIONS)):
            at = base + 48 + 20 * k
            offset, size, _ = struct.unpack_from("<QQI", data, at)
            if offset + size <= len(data):
                struct.pack_into("<I", data, at + 16, zlib.crc32(data[offset:offset + size]))
    for k in range(3):
        at = 64 + 20 * k
        offset, size, _ = struct.unpack_from("<QQI", data, at)
        if offset + size <= len(data):
            struct.pack_into("<I", data, at + 16, zlib.crc32(data[offset:offset + size]))
    struct.pack_into("<I", data, 124, zlib.crc32(data[:124]))


FUZZ_BASE, _ = small_image()
# More examples for a long soak: BLOCKFORGE_FUZZ_SCALE=20 pytest tests/test_image.py -k fuzz
FUZZ_SCALE = int(os.environ.get("BLOCKFORGE_FUZZ_SCALE", "1"))


@settings(max_examples=300 * FUZZ_SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data):
    for candidate in (data, bfim.MAGIC + data, FUZZ_BASE[:HEADER_SIZE] + data):
        try:
            decode_image(candidate)
        except ImageError:
            pass


@settings(max_examples=400 * FUZZ_SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(FUZZ_BASE) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.booleans(), st.integers(0, len(FUZZ_BASE)))
def test_fuzz_mutated_images(edits, resealed, cut):
    data = bytearray(FUZZ_BASE)
    for offset, value in edits:
        data[offset] = value
    if resealed:
        reseal(data)
    data = data[:cut] if cut < len(data) and not resealed else data
    try:
        image = decode_image(bytes(data))
    except ImageError:
        return
    # A resealed mutation that still decodes must still be a self-consistent image.
    assert encode_image(image.layers, image.spec, image.metadata) == bytes(data)


@settings(max_examples=300 * FUZZ_SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 11), st.sampled_from([0, 1, 2, 3, 7, 8, 9, 255, 2 ** 16, 2 ** 31, 2 ** 32 - 1]),
       st.integers(0, 1))
def test_fuzz_table_fields_resealed(field_index, value, layer_index):
    """Every layer-table field set to a hostile value, CRCs fixed up: ImageError, or the same image."""
    data = bytearray(FUZZ_BASE)
    struct.pack_into("<I", data, HEADER_SIZE + layer_index * TABLE_ENTRY_SIZE + 4 * field_index, value)
    reseal(data)
    try:
        image = decode_image(bytes(data))
    except ImageError:
        return
    assert encode_image(image.layers, image.spec, image.metadata) == bytes(data)


def test_light_modules_do_not_import_torch_or_amaranth():
    import subprocess
    import sys
    code = ("import sys, blockforge.image, blockforge.reference, blockforge.quant, blockforge_app.cli.image; "
            "heavy = [m for m in ('torch', 'amaranth', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
