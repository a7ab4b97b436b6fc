"""The accelerator spec: one strict YAML file that drives pruning, quantization, the image, the engine
and the cycle model.

``load_spec(name_or_path)`` reads a shipped spec by name (``tile8``) or any YAML file by path and
returns a frozen :class:`Spec`. The schema lives here and only here: each dataclass field carries its
check and its documentation, and the loader walks the dataclasses, so docs/spec.md, the validator and
the error messages cannot drift apart. Every problem raises :class:`~blockforge.errors.SpecError` with
one line ``<file>: <key.path>: <what is wrong>``.

This module imports neither torch nor amaranth.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .errors import SpecError, UsageError
from .parts import DEVICES, FAMILIES, Part, find_device
from .yamlsafe import load_yaml, shown

__all__ = [
    "Block",
    "Buffers",
    "Memory",
    "Numerics",
    "Spec",
    "Target",
    "Tiling",
    "DEFAULT_SPEC",
    "MAX_SHIFT",
    "ROUNDING_MODES",
    "SUPPORTED_DATA_BITS",
    "load_spec",
    "shipped_spec_names",
    "spec_from_dict",
]

DEFAULT_SPEC = "tile8"   # the shipped spec every command uses when none is given
ROUNDING_MODES = ("half_up", "half_even", "truncate")
SUPPORTED_DATA_BITS = (8,)
ACC_BITS_RANGE = (16, 48)
MULTIPLIER_BITS_RANGE = (2, 31)
MAX_READ_LATENCY = 64
# Upper bounds: every accepted spec must be one the engine and the image format can be built for.
MAX_BLOCK_SIDE = 1024          # block.rows, block.cols
MAX_BLOCK_MACS = 4096          # block.rows · block.cols (MACs per cycle)
MAX_TOKENS = 65536             # buffers.max_tokens
MAX_FEATURES = 1 << 20         # buffers.max_in_features / max_out_features
MAX_BLOCK_COLUMNS = 65535      # padded in-features / block.cols: the image's 16-bit column index
MAX_BUS_BITS = 4096            # memory.weight_bus_bits
MAX_CLOCK_MHZ = 10000.0        # clock_mhz
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 4096          # description
_NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_NAME_CHARS - 1}}}")
#: Largest requantization shift S (docs/numerics.md "Requantization parameters"): the integer reference
#: divides in int64, where 2^62 is the largest power of two below half the range. quant chooses S in
#: [0, MAX_SHIFT], the image stores and checks it, the reference and the engine's shift width take it.
MAX_SHIFT = 62


# --------------------------------------------------------------------------------------------------
# Field checks. Each returns an error message (without the key path) or None.

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not _is_int(value) or not lo <= value <= hi:
            return f"expected an integer in [{lo}, {hi}], got {shown(value)}"
        return None
    return check


def _data_bits(value: Any) -> str | None:
    if not _is_int(value):
        return f"expected an integer, got {shown(value)}"
    if value not in SUPPORTED_DATA_BITS:
        supported = ", ".join(str(b) for b in SUPPORTED_DATA_BITS)
        return f"unsupported bit width {value} (supported: {supported})"
    return None


def _rounding(value: Any) -> str | None:
    if value not in ROUNDING_MODES:
        return f"unsupported rounding mode {shown(value)} (supported: {', '.join(ROUNDING_MODES)})"
    return None


def _boolean(value: Any) -> str | None:
    if not isinstance(value, bool):
        return f"expected true or false, got {shown(value)}"
    return None


def _number_in(lo: float, hi: float) -> Callable[[Any], str | None]:
    """A number in (lo, hi]: ints of any size are compared exactly, never converted to float first."""
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo < value <= hi:
            return f"expected a number in ({lo:g}, {hi:g}], got {shown(value)}"
        return None
    return check


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value is None else check(value)


def _bus_bits(value: Any) -> str | None:
    if not _is_int(value) or not 0 < value <= MAX_BUS_BITS:
        return f"expected a positive integer up to {MAX_BUS_BITS}, got {shown(value)}"
    if value % 8:
        return f"bus width must be a multiple of 8 bits, got {value}"
    return None


def _name(value: Any) -> str | None:
    # the name reaches file names, Verilog module names and work folders: an identifier, no path parts
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        return (f"expected a name of 1-{MAX_NAME_CHARS} letters, digits, '_', '.' or '-', not starting with "
                f"'.' or '-', got {shown(value)}")
    return None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a string, got {shown(value)}"
    if len(value) > MAX_TEXT_CHARS:
        return f"at most {MAX_TEXT_CHARS:,} characters, got {len(value):,}"
    return None


def _family(value: Any) -> str | None:
    if value not in FAMILIES:
        return f"unsupported FPGA family {shown(value)} (supported: {', '.join(FAMILIES)})"
    return None


def _optional_name(value: Any) -> str | None:
    return None if value is None else _name(value)


def _key(check: Callable[[Any], str | None], doc: str, unit: str = "", default: Any = dataclasses.MISSING):
    """A spec key: its check, its one-line documentation, its unit, and (if optional) its default."""
    meta = {"check": check, "doc": doc, "unit": unit}
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------------
# The schema.

@dataclass(frozen=True)
class Block:
    """The pruning granularity and the engine tile: BR output channels × BC input features."""

    rows: int = _key(_int_in(1, MAX_BLOCK_SIDE),
                     "output channels per block (BR); 1 = the paper's block_filter row segment")
    cols: int = _key(_int_in(1, MAX_BLOCK_SIDE), "input features per block (BC); 1 = the paper's block_column")


@dataclass(frozen=True)
class Numerics:
    """Integer arithmetic of the engine; docs/numerics.md gives the exact formulas."""

    weight_bits: int = _key(_data_bits, "bits of a quantized weight (signed, symmetric)", "bits")
    act_bits: int = _key(_data_bits, "bits of a quantized activation, input and output (signed)", "bits")
    acc_bits: int = _key(_int_in(*ACC_BITS_RANGE), "bits of a signed accumulator", "bits")
    multiplier_bits: int = _key(_int_in(*MULTIPLIER_BITS_RANGE),
                                "bits of the unsigned requantization multiplier M", "bits")
    rounding: str = _key(_rounding, "rounding of the requantization shift: half_up, half_even or truncate")
    saturate: bool = _key(_boolean, "clamp requantized outputs to the act_bits range (false: wrap)")


@dataclass(frozen=True)
class Memory:
    """The weight memory as the engine sees it."""

    weight_bus_bits: int = _key(_bus_bits, "width of one weight-memory word read per cycle", "bits")
    read_latency: int = _key(_int_in(1, MAX_READ_LATENCY),
                             "cycles from a weight-memory address to its data", "cycles")
    bandwidth_bytes_per_cycle: float | None = _key(
        _optional(_number_in(0, MAX_BUS_BITS // 8)),
        "optional sustained weight bandwidth; omitted = one bus word per cycle", "bytes/cycle", default=None)


@dataclass(frozen=True)
class Buffers:
    """On-chip buffer limits: the largest layer and token count one engine pass accepts."""

    max_tokens: int = _key(_int_in(1, MAX_TOKENS), "largest N (activation columns) in one pass", "tokens")
    max_in_features: int = _key(_int_in(1, MAX_FEATURES), "largest layer input width, after padding to BC",
                                "features")
    max_out_features: int = _key(_int_in(1, MAX_FEATURES), "largest layer output width, after padding to BR",
                                 "features")


@dataclass(frozen=True)
class Target:
    """The FPGA the engine is placed and routed on by ``blockforge hw build`` (docs/fpga.md)."""

    family: str = _key(_family, "FPGA family; ecp5 (Lattice ECP5, nextpnr-ecp5)")
    device: str = _key(_name, "device: Lattice name (LFE5U-85F) or nextpnr short name (85k)")
    speed: int = _key(_int_in(6, 8), "speed grade, 6 (slowest) to 8; the device must be sold in it")
    package: str | None = _key(_optional_name, "package (CABGA381, ...); omitted = the device's default",
                               default=None)


@dataclass(frozen=True)
class Tiling:
    """How an (out, in) weight matrix is laid over the spec's blocks.

    The padding rule: the matrix is zero-padded at the bottom to a multiple of BR rows and on the right
    to a multiple of BC columns. Padded weights are zero and padded output channels are dropped.
    """

    out_features: int
    in_features: int
    padded_out: int
    padded_in: int
    block_rows: int  # number of block rows = padded_out / BR
    block_cols: int  # number of block columns = padded_in / BC

    @property
    def pad_out(self) -> int:
        return self.padded_out - self.out_features

    @property
    def pad_in(self) -> int:
        return self.padded_in - self.in_features

    @property
    def n_blocks(self) -> int:
        return self.block_rows * self.block_cols

    @property
    def padding_fraction(self) -> float:
        """Share of the padded matrix that is padding."""
        return 1.0 - (self.out_features * self.in_features) / (self.padded_out * self.padded_in)


@dataclass(frozen=True)
class Spec:
    """A validated accelerator spec. Build it with :func:`load_spec` or :func:`spec_from_dict`."""

    name: str = _key(_name, "a short identifier, shown in reports")
    block: Block = _key(None, "the block / tile shape")
    numerics: Numerics = _key(None, "integer arithmetic")
    memory: Memory = _key(None, "weight memory")
    buffers: Buffers = _key(None, "buffer limits")
    clock_mhz: float = _key(_number_in(0, MAX_CLOCK_MHZ), "engine clock, used to turn cycles into time", "MHz")
    target: Target | None = _key(None, "optional FPGA part the clock is meant for (docs/fpga.md)", default=None)
    description: str = _key(_text, "optional free text", default="")
    source: str = field(default="<dict>", compare=False, metadata={"internal": True})

    # ---- derived figures -------------------------------------------------------------------------
    @property
    def macs_per_cycle(self) -> int:
        return self.block.rows * self.block.cols

    @property
    def tile_bits(self) -> int:
        return self.block.rows * self.block.cols * self.numerics.weight_bits

    @property
    def tile_bytes(self) -> int:
        return self.tile_bits // 8

    @property
    def bus_bytes(self) -> int:
        return self.memory.weight_bus_bits // 8

    @property
    def tile_words(self) -> int:
        """Weight-bus words per tile (a tile is always a whole number of words)."""
        return self.tile_bits // self.memory.weight_bus_bits

    @property
    def tile_load_cycles(self) -> int:
        """Cycles to stream one tile from weight memory at the sustained bandwidth (latency excluded)."""
        bandwidth = self.memory.bandwidth_bytes_per_cycle
        if bandwidth is None or bandwidth >= self.bus_bytes:
            return self.tile_words
        return math.ceil(self.tile_bytes / bandwidth)

    @property
    def acc_headroom(self) -> int:
        """Largest |Σ w·x| over ``max_in_features`` products; the bias gets the rest of the range."""
        return self.buffers.max_in_features * 2 ** (self.numerics.weight_bits - 1) * 2 ** (self.numerics.act_bits - 1)

    @property
    def bias_limit(self) -> int:
        """Largest |bias| that can never overflow the accumulator."""
        return 2 ** (self.numerics.acc_bits - 1) - 1 - self.acc_headroom

    @property
    def part(self) -> Part | None:
        """The resolved FPGA part of ``target`` (package defaulted), or None without a target."""
        if self.target is None:
            return None
        device = find_device(self.target.family, self.target.device)
        return Part(device, self.target.speed, self.target.package or device.default_package)

    @property
    def digest(self) -> str:
        """SHA-256 of the hardware contract (every key except ``name``, ``description`` and ``target``:
        the part the engine is placed on changes neither the RTL nor the image)."""
        payload = self.to_dict()
        payload.pop("name")
        payload.pop("description")
        payload.pop("target", None)
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (the YAML form, optional keys included; ``target`` only when set, so
        that the spec text embedded in images of target-less specs stays as it was)."""
        out = dataclasses.asdict(self)
        out.pop("source")
        if out["target"] is None:
            out.pop("target")
        return out

    def derived(self) -> dict[str, Any]:
        """Figures a hardware engineer reads off a spec."""
        return {
            "macs_per_cycle": self.macs_per_cycle,
            "tile_bytes": self.tile_bytes,
            "tile_words": self.tile_words,
            "tile_load_cycles": self.tile_load_cycles,
            "peak_gmacs": self.macs_per_cycle * self.clock_mhz / 1e3,
            "acc_headroom": self.acc_headroom,
            "bias_limit": self.bias_limit,
            "digest": self.digest,
        }

    # ---- shapes ----------------------------------------------------------------------------------
    def tiling(self, out_features: int, in_features: int, *, layer: str = "weight") -> Tiling:
        """Lay an (out, in) weight over the spec's blocks, or raise SpecError if the engine cannot take it."""
        for what, size in (("out_features", out_features), ("in_features", in_features)):
            if not _is_int(size) or size <= 0:
                raise SpecError(f"{self.source}: {layer}: {what} must be a positive integer, got {shown(size)}")
        br, bc = self.block.rows, self.block.cols
        padded_out = -(-out_features // br) * br
        padded_in = -(-in_features // bc) * bc
        if padded_in > self.buffers.max_in_features:
            raise SpecError(
                f"{self.source}: buffers.max_in_features: {layer} has {in_features} inputs "
                f"({padded_in} padded to {bc}), more than {self.buffers.max_in_features}")
        if padded_out > self.buffers.max_out_features:
            raise SpecError(
                f"{self.source}: buffers.max_out_features: {layer} has {out_features} outputs "
                f"({padded_out} padded to {br}), more than {self.buffers.max_out_features}")
        return Tiling(out_features, in_features, padded_out, padded_in, padded_out // br, padded_in // bc)

    def check_tokens(self, n_tokens: Any, *, what: str = "n_tokens") -> int:
        """``n_tokens`` as an int if one engine pass takes that many activation columns
        (1..``buffers.max_tokens``); otherwise UsageError naming ``what``."""
        limit = self.buffers.max_tokens
        integer = isinstance(n_tokens, numbers.Integral) and not isinstance(n_tokens, bool)   # numpy ints too
        if not integer or not 1 <= int(n_tokens) <= limit:
            kind = "" if integer else "an integer "
            raise UsageError(f"{what} must be {kind}in [1, {limit}] (buffers.max_tokens of spec {self.name}), "
                             f"got {shown(n_tokens)}")
        return int(n_tokens)

    def tiles(self, out_features: int, in_features: int) -> bool:
        """Whether an (out, in) weight fits this spec (after padding)."""
        try:
            self.tiling(out_features, in_features)
        except SpecError:
            return False
        return True


# --------------------------------------------------------------------------------------------------
# Loading.

def _build(cls: type, data: Any, path: str, source: str) -> Any:
    """Validate ``data`` against dataclass ``cls`` and construct it; ``path`` is the key path so far."""
    where = f"{source}: {path}" if path else source
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            known = ", ".join(fields)
            raise SpecError(f"{source}: {_join(path, key)}: unknown key (known keys: {known})")
    values = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING:
                raise SpecError(f"{source}: {key_path}: missing key")
            continue
        value = data[name]
        if cls is Spec and name in _SECTIONS and value is None and f.default is None:
            continue
        if cls is Spec and name in _SECTIONS:
            values[name] = _build(_SECTIONS[name], value, key_path, source)
            continue
        problem = f.metadata["check"](value)
        if problem:
            raise SpecError(f"{source}: {key_path}: {problem}")
        values[name] = value
    return cls(**values)


def _join(path: str, key: Any) -> str:
    text = key if isinstance(key, str) and len(key) <= 40 else shown(key, 40)
    return f"{path}.{text}" if path else text


_SECTIONS: dict[str, type] = {"block": Block, "numerics": Numerics, "memory": Memory, "buffers": Buffers,
                              "target": Target}


def _check_consistency(spec: Spec) -> None:
    """Rules that relate several keys."""
    src = spec.source
    if spec.bias_limit < 0:
        need = math.ceil(math.log2(spec.acc_headroom + 1)) + 2
        raise SpecError(
            f"{src}: numerics.acc_bits: {spec.numerics.acc_bits} bits cannot hold the sum of "
            f"{spec.buffers.max_in_features} products (buffers.max_in_features) plus a bias; need at least {need}")
    if spec.macs_per_cycle > MAX_BLOCK_MACS:
        raise SpecError(f"{src}: block: {spec.block.rows}x{spec.block.cols} = {spec.macs_per_cycle:,} MACs per "
                        f"cycle, more than the {MAX_BLOCK_MACS:,} an engine is built with")
    if spec.buffers.max_in_features // spec.block.cols > MAX_BLOCK_COLUMNS:
        raise SpecError(f"{src}: buffers.max_in_features: {spec.buffers.max_in_features:,} features are more than "
                        f"{MAX_BLOCK_COLUMNS:,} block columns of {spec.block.cols} (the image's 16-bit column index)")
    product_bits = spec.numerics.acc_bits + spec.numerics.multiplier_bits + 1
    if product_bits > 64:
        raise SpecError(
            f"{src}: numerics.multiplier_bits: acc_bits + multiplier_bits + 1 = {product_bits} exceeds 64, "
            f"the widest requantization product supported")
    if spec.tile_bits % spec.memory.weight_bus_bits:
        raise SpecError(
            f"{src}: memory.weight_bus_bits: a {spec.block.rows}x{spec.block.cols} tile of "
            f"{spec.numerics.weight_bits}-bit weights is {spec.tile_bits} bits, not a whole number of "
            f"{spec.memory.weight_bus_bits}-bit words")
    if spec.buffers.max_in_features % spec.block.cols:
        raise SpecError(
            f"{src}: buffers.max_in_features: {spec.buffers.max_in_features} is not a multiple of "
            f"block.cols = {spec.block.cols}")
    if spec.buffers.max_out_features % spec.block.rows:
        raise SpecError(
            f"{src}: buffers.max_out_features: {spec.buffers.max_out_features} is not a multiple of "
            f"block.rows = {spec.block.rows}")
    if spec.target is not None:
        _check_target(spec.target, src)


def _check_target(target: Target, src: str) -> None:
    device = find_device(target.family, target.device)
    if device is None:
        known = ", ".join(f"{d.name} ({d.short})" for d in DEVICES if d.family == target.family)
        raise SpecError(f"{src}: target.device: unknown {target.family} device {shown(target.device)} "
                        f"(known: {known})")
    if target.speed not in device.speeds:
        raise SpecError(f"{src}: target.speed: {device.name} has no speed grade {target.speed} "
                        f"(sold as {', '.join(map(str, device.speeds))})")
    if target.package is not None and target.package not in device.packages:
        raise SpecError(f"{src}: target.package: {device.name} does not come in {shown(target.package)} "
                        f"(packages: {', '.join(device.packages)})")


def spec_from_dict(data: Any, source: str = "<dict>") -> Spec:
    """Validate plain data (as parsed from YAML) into a :class:`Spec`."""
    spec = _build(Spec, data, "", source)
    spec = dataclasses.replace(spec, source=source)
    _check_consistency(spec)
    return spec


def _shipped_dir():
    return resources.files("blockforge") / "specs"


def shipped_spec_names() -> list[str]:
    """Names of the specs shipped with blockforge (``tile8``, ``tile16``, ...)."""
    return sorted(p.name[:-5] for p in _shipped_dir().iterdir() if p.name.endswith(".yaml"))


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """A spec file path for a path or a shipped spec name; SpecError if neither exists."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    shipped = _shipped_dir() / f"{name_or_path}.yaml"
    if isinstance(name_or_path, str) and "/" not in name_or_path and shipped.is_file():
        return Path(str(shipped))
    if candidate.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        raise SpecError(f"{name_or_path}: no such spec file")
    raise SpecError(
        f"{name_or_path}: not a spec file and not a shipped spec (shipped: {', '.join(shipped_spec_names())})")


def load_spec(name_or_path: str | Path) -> Spec:
    """Load and validate a spec by shipped name or file path (at the edge: the CLI, the flow, a bench)."""
    path = resolve_spec_path(name_or_path)
    source = str(name_or_path) if not Path(name_or_path).is_file() else str(path)
    data = load_yaml(path, error=SpecError, source=source, what="spec file")
    if data is None:
        raise SpecError(f"{source}: empty spec")
    return spec_from_dict(data, source)


def schema_rows() -> list[tuple[str, str, str, str]]:
    """(key path, unit, required/default, doc) for every spec key, in schema order (used by docs tests)."""
    rows = []

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            path = _join(prefix, f.name)
            if f.name in _SECTIONS:
                rows.append((path, "", "required" if f.default is dataclasses.MISSING else "optional",
                             f.metadata["doc"]))
                walk(_SECTIONS[f.name], path)
            else:
                need = "required" if f.default is dataclasses.MISSING else f"default {f.default!r}"
                rows.append((path, f.metadata["unit"], need, f.metadata["doc"]))

    walk(Spec, "")
    return rows
