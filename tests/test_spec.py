"""The accelerator spec: every validation rule, with its exact one-line message."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from blockforge.errors import SpecError
from blockforge.spec import Spec, load_spec, resolve_spec_path, schema_rows, shipped_spec_names, spec_from_dict

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "name": "t",
    "block": {"rows": 8, "cols": 8},
    "numerics": {"weight_bits": 8, "act_bits": 8, "acc_bits": 32, "multiplier_bits": 16,
                 "rounding": "half_up", "saturate": True},
    "memory": {"weight_bus_bits": 64, "read_latency": 1},
    "buffers": {"max_tokens": 64, "max_in_features": 1536, "max_out_features": 1536},
    "clock_mhz": 200,
}


def write_spec(tmp_path: Path, data: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def with_value(path: str, value) -> dict:
    data = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[leaf] = value
    return data


def without(path: str) -> dict:
    data = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    del node[leaf]
    return data


def error_of(tmp_path: Path, data: dict) -> str:
    path = write_spec(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    prefix = f"{path}: "
    assert message.startswith(prefix), message
    return message[len(prefix):]


def test_shipped_specs_load_and_have_expected_shapes():
    assert shipped_spec_names() == ["row1x48", "row1x96", "tile16", "tile8"]
    shapes = {n: (load_spec(n).block.rows, load_spec(n).block.cols) for n in shipped_spec_names()}
    assert shapes == {"tile8": (8, 8), "tile16": (16, 16), "row1x48": (1, 48), "row1x96": (1, 96)}


def test_spec_resolves_by_path_and_by_name_to_the_same_contract():
    by_name = load_spec("tile8")
    by_path = load_spec(REPO / "specs" / "tile8.yaml")
    assert by_name == by_path
    assert by_name.digest == by_path.digest


def test_spec_is_frozen():
    spec = load_spec("tile8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.block.rows = 4  # type: ignore[misc]


def test_derived_figures():
    spec = load_spec("tile16")
    assert spec.macs_per_cycle == 256
    assert spec.tile_bytes == 256
    assert spec.tile_words == 16
    assert spec.tile_load_cycles == 16
    assert spec.acc_headroom == 1536 * 128 * 128
    assert spec.bias_limit == 2**31 - 1 - 1536 * 128 * 128


def test_bandwidth_limit_stretches_tile_load():
    spec = spec_from_dict(with_value("memory.bandwidth_bytes_per_cycle", 3))
    assert spec.tile_load_cycles == 22  # ceil(64 bytes / 3 bytes per cycle)
    spec = spec_from_dict(with_value("memory.bandwidth_bytes_per_cycle", 100))
    assert spec.tile_load_cycles == 8   # capped by the bus: 64 bytes / 8 bytes per word


def test_digest_ignores_name_and_description_but_not_hardware():
    a = spec_from_dict(BASE)
    b = spec_from_dict({**BASE, "name": "other", "description": "same hardware"})
    c = spec_from_dict(with_value("numerics.rounding", "half_even"))
    assert a.digest == b.digest
    assert a.digest != c.digest


NAME_RULE = "name: expected a name of 1-64 letters, digits, '_', '.' or '-', not starting with '.' or '-', got "


@pytest.mark.parametrize("path, value, message", [
    ("block.rows", 0, "block.rows: expected an integer in [1, 1024], got 0"),
    ("block.cols", -8, "block.cols: expected an integer in [1, 1024], got -8"),
    ("block.rows", 8.0, "block.rows: expected an integer in [1, 1024], got 8.0"),
    ("block.rows", True, "block.rows: expected an integer in [1, 1024], got True"),
    ("block.cols", "8", "block.cols: expected an integer in [1, 1024], got '8'"),
    ("numerics.weight_bits", 4, "numerics.weight_bits: unsupported bit width 4 (supported: 8)"),
    ("numerics.act_bits", 16, "numerics.act_bits: unsupported bit width 16 (supported: 8)"),
    ("numerics.act_bits", "8", "numerics.act_bits: expected an integer, got '8'"),
    ("numerics.acc_bits", 8, "numerics.acc_bits: expected an integer in [16, 48], got 8"),
    ("numerics.multiplier_bits", 40, "numerics.multiplier_bits: expected an integer in [2, 31], got 40"),
    ("numerics.rounding", "nearest",
     "numerics.rounding: unsupported rounding mode 'nearest' (supported: half_up, half_even, truncate)"),
    ("numerics.saturate", "yes", "numerics.saturate: expected true or false, got 'yes'"),
    ("memory.weight_bus_bits", 60, "memory.weight_bus_bits: bus width must be a multiple of 8 bits, got 60"),
    ("memory.weight_bus_bits", 0, "memory.weight_bus_bits: expected a positive integer up to 4096, got 0"),
    ("memory.read_latency", 0, "memory.read_latency: expected an integer in [1, 64], got 0"),
    ("memory.bandwidth_bytes_per_cycle", -1,
     "memory.bandwidth_bytes_per_cycle: expected a number in (0, 512], got -1"),
    ("buffers.max_tokens", 0, "buffers.max_tokens: expected an integer in [1, 65536], got 0"),
    ("buffers.max_in_features", -1, "buffers.max_in_features: expected an integer in [1, 1048576], got -1"),
    ("buffers.max_out_features", None, "buffers.max_out_features: expected an integer in [1, 1048576], got None"),
    ("clock_mhz", 0, "clock_mhz: expected a number in (0, 10000], got 0"),
    ("clock_mhz", float("inf"), "clock_mhz: expected a number in (0, 10000], got inf"),
    ("name", "", NAME_RULE + "''"),
    ("name", "../../escaped", NAME_RULE + "'../../escaped'"),
    ("name", "x\nmodule evil; endmodule", NAME_RULE + "'x\\nmodule evil; endmodule'"),
    ("name", "a" * 65, NAME_RULE + repr("a" * 65)[:57] + "..."),
    ("buffers.max_tokens", 10 ** 38, "buffers.max_tokens: expected an integer in [1, 65536], got "
     "100000000000000000000000000000000000000"),
    ("block.rows", 2 ** 60, "block.rows: expected an integer in [1, 1024], got 1152921504606846976"),
    ("clock_mhz", 10 ** 400, "clock_mhz: expected a number in (0, 10000], got " + repr(10 ** 400)[:57] + "..."),
    ("description", "x" * 5000, "description: at most 4,096 characters, got 5,000"),
    ("description", 3, "description: expected a string, got 3"),
    ("block", [8, 8], "block: expected a mapping, got list"),
])
def test_field_rules(tmp_path, path, value, message):
    assert error_of(tmp_path, with_value(path, value)) == message


@pytest.mark.parametrize("path", ["name", "block", "block.rows", "numerics.rounding", "memory.read_latency",
                                  "buffers.max_tokens", "clock_mhz"])
def test_missing_keys(tmp_path, path):
    assert error_of(tmp_path, without(path)) == f"{path}: missing key"


def test_unknown_keys_name_their_path(tmp_path):
    assert error_of(tmp_path, with_value("numerics.rounding_mode", "half_up")) == (
        "numerics.rounding_mode: unknown key (known keys: weight_bits, act_bits, acc_bits, multiplier_bits, "
        "rounding, saturate)")
    assert error_of(tmp_path, {**BASE, "clock": 100}).startswith("clock: unknown key (known keys: name, ")


def test_accumulator_too_narrow_for_max_in_features(tmp_path):
    data = with_value("numerics.acc_bits", 20)
    assert error_of(tmp_path, data) == (
        "numerics.acc_bits: 20 bits cannot hold the sum of 1536 products (buffers.max_in_features) "
        "plus a bias; need at least 27")
    # 27 bits is indeed enough: 1536·2^14 < 2^25, leaving bias room below 2^26.
    spec_from_dict(with_value("numerics.acc_bits", 27))


def test_requant_product_must_fit_64_bits(tmp_path):
    data = with_value("numerics.acc_bits", 40)
    data["numerics"]["multiplier_bits"] = 31
    assert error_of(tmp_path, data) == (
        "numerics.multiplier_bits: acc_bits + multiplier_bits + 1 = 72 exceeds 64, "
        "the widest requantization product supported")


def test_tile_must_be_whole_bus_words(tmp_path):
    data = with_value("memory.weight_bus_bits", 24)
    assert error_of(tmp_path, data) == (
        "memory.weight_bus_bits: a 8x8 tile of 8-bit weights is 512 bits, not a whole number of 24-bit words")


def test_buffer_limits_must_be_block_multiples(tmp_path):
    assert error_of(tmp_path, with_value("buffers.max_in_features", 100)) == (
        "buffers.max_in_features: 100 is not a multiple of block.cols = 8")
    assert error_of(tmp_path, with_value("buffers.max_out_features", 100)) == (
        "buffers.max_out_features: 100 is not a multiple of block.rows = 8")


def test_yaml_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nblock: {rows: 8, cols: 8\n")
    with pytest.raises(SpecError, match=re.escape(f"{bad}: line ") + r"\d+, column \d+: invalid YAML: "):
        load_spec(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text(yaml.safe_dump(BASE) + "clock_mhz: 100\n")
    with pytest.raises(SpecError, match=re.escape(f"{dup}: line ") + r"\d+: duplicate key 'clock_mhz'$"):
        load_spec(dup)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(SpecError, match=re.escape(f"{empty}: empty spec")):
        load_spec(empty)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match=re.escape(f"{listing}: expected a mapping, got list")):
        load_spec(listing)
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("name: !!python/object:os.system x\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(tagged)


def test_unknown_names_and_missing_files():
    with pytest.raises(SpecError, match=r"^tile7: not a spec file and not a shipped spec \(shipped: row1x48, "):
        load_spec("tile7")
    with pytest.raises(SpecError, match=r"^nowhere/x\.yaml: no such spec file$"):
        resolve_spec_path("nowhere/x.yaml")


def test_tiling_pads_and_rejects():
    spec = load_spec("tile8")
    t = spec.tiling(30, 20)
    assert (t.padded_out, t.padded_in, t.block_rows, t.block_cols, t.pad_out, t.pad_in) == (32, 24, 4, 3, 2, 4)
    assert t.n_blocks == 12
    assert t.padding_fraction == pytest.approx(1 - 600 / 768)
    assert spec.tiles(384, 1536)
    assert not spec.tiles(384, 1537)
    with pytest.raises(SpecError) as info:
        spec.tiling(384, 3072, layer="encoder.layer.0.output.dense")
    assert str(info.value) == (f"{spec.source}: buffers.max_in_features: encoder.layer.0.output.dense has 3072 "
                               "inputs (3072 padded to 8), more than 1536")
    with pytest.raises(SpecError, match="buffers.max_out_features: w has 1537 outputs"):
        spec.tiling(1537, 8, layer="w")
    with pytest.raises(SpecError, match="w: out_features must be a positive integer, got 0"):
        spec.tiling(0, 8, layer="w")


def test_row_segment_specs_tile_their_models():
    # row1x48 targets 384-wide MiniLM, row1x96 768-wide BERT-base (including the 3072-wide FFN).
    assert load_spec("row1x48").tiles(1536, 384) and load_spec("row1x48").tiles(384, 1536)
    assert load_spec("row1x96").tiles(3072, 768) and load_spec("row1x96").tiles(768, 3072)


def test_docs_spec_md_documents_every_key():
    text = (REPO / "docs" / "spec.md").read_text()
    for key_path, *_ in schema_rows():
        assert f"`{key_path}`" in text, f"docs/spec.md does not document {key_path}"


def test_round_trip_through_to_dict():
    spec = load_spec("row1x96")
    again = spec_from_dict(spec.to_dict())
    assert again == spec and isinstance(again, Spec)


TARGET = {"family": "ecp5", "device": "LFE5U-85F", "speed": 6}


def test_target_is_optional_resolves_its_part_and_leaves_the_digest_alone():
    plain = spec_from_dict(BASE)
    assert plain.target is None and plain.part is None
    placed = spec_from_dict({**BASE, "target": {**TARGET, "device": "85k"}})
    assert placed.part.name == "LFE5U-85F-6CABGA381"
    assert placed.digest == plain.digest   # the part changes neither the RTL nor the image
    assert spec_from_dict(placed.to_dict()) == placed
    assert spec_from_dict({**BASE, "target": {**TARGET, "package": "CABGA756", "speed": 8}}).part.name == (
        "LFE5U-85F-8CABGA756")
    for name in shipped_spec_names():
        assert load_spec(name).part is not None, name


@pytest.mark.parametrize("target, message", [
    ({**TARGET, "family": "ice40"}, "target.family: unsupported FPGA family 'ice40' (supported: ecp5)"),
    ({**TARGET, "device": "LFE5U-99F"}, "target.device: unknown ecp5 device 'LFE5U-99F' (known: LFE5U-12F (12k), "),
    ({**TARGET, "device": ""}, "target.device: " + NAME_RULE[len("name: "):] + "''"),
    ({**TARGET, "speed": 9}, "target.speed: expected an integer in [6, 8], got 9"),
    ({**TARGET, "speed": "6"}, "target.speed: expected an integer in [6, 8], got '6'"),
    ({**TARGET, "device": "LFE5UM5G-85F"}, "target.speed: LFE5UM5G-85F has no speed grade 6 (sold as 8)"),
    ({**TARGET, "package": "TQFP144"},
     "target.package: LFE5U-85F does not come in 'TQFP144' (packages: CABGA381, CABGA554, CABGA756, CSFBGA285)"),
    ({"family": "ecp5", "device": "85k"}, "target.speed: missing key"),
    ({**TARGET, "grade": 6}, "target.grade: unknown key (known keys: family, device, speed, package)"),
    ("LFE5U-85F", "target: expected a mapping, got str"),
])
def test_target_rules(tmp_path, target, message):
    assert error_of(tmp_path, {**BASE, "target": target}).startswith(message)
