"""Compile the generated Verilog with Icarus Verilog and run one layer from hex files (plain vvp).

The cocotb benches drive ``bf_sim_top`` themselves; this is the no-Python-in-the-loop path used by
tests and the quick checks: ``bf_tb`` resets, starts, waits for done and prints one result line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from blockforge.errors import UsageError

from .verilog import memory_plusargs

__all__ = ["IcarusResult", "compile_icarus", "run_icarus"]

_RESULT = re.compile(r"BF_RESULT status=(\d+) cycles=(\d+) outputs=(\d+) timeout=(\d)")


@dataclass(frozen=True)
class IcarusResult:
    status: int
    cycles: int
    outputs: int
    timed_out: bool
    log: str


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise UsageError(f"{name} not found on PATH (install Icarus Verilog 11, Debian package iverilog)")
    return found


def compile_icarus(rtl_dir: str | Path, out: str | Path, *, top: str = "bf_tb") -> tuple[Path, str]:
    """Compile ``bf_engine.v``, ``bf_sim_top.v`` (and ``bf_tb.v``) from ``rtl_dir`` into ``out``.
    Returns (vvp file, compiler messages); UsageError if iverilog fails."""
    rtl = Path(rtl_dir)
    sources = [rtl / "bf_engine.v", rtl / "bf_sim_top.v"] + ([rtl / "bf_tb.v"] if top == "bf_tb" else [])
    run = subprocess.run([_tool("iverilog"), "-g2012", "-o", str(out), "-s", top, *map(str, sources)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise UsageError(f"iverilog failed: {(run.stderr or run.stdout).strip().splitlines()[:1]}")
    return Path(out), run.stdout + run.stderr


def run_icarus(vvp_file: str | Path, hex_dir: str | Path, out_hex: str | Path, *, stall_weights: int = 0,
               stall_out: int = 0, seed: int = 1, timeout_cycles: int = 10_000_000, fmt: str = "hex") -> IcarusResult:
    """Run one layer: memories from ``hex_dir`` (files of blockforge.hexfiles.write_hex in format ``fmt``),
    outputs to ``out_hex``."""
    run = subprocess.run(
        [_tool("vvp"), "-n", str(vvp_file), f"+hexdir={hex_dir}", *memory_plusargs(fmt),
         f"+out={out_hex}",
         f"+stall_weights={stall_weights}", f"+stall_out={stall_out}", f"+seed={seed}",
         f"+timeout={timeout_cycles}"], capture_output=True, text=True)
    match = _RESULT.search(run.stdout)
    if run.returncode != 0 or not match:
        lines = (run.stderr + run.stdout).strip().splitlines()
        fatal = [line for line in lines if line.startswith(("FATAL", "ERROR"))]
        raise UsageError(f"vvp failed: {(fatal or lines or ['no output'])[-1].strip()}")
    status, cycles, outputs, timed_out = (int(v) for v in match.groups())
    return IcarusResult(status, cycles, outputs, bool(timed_out), run.stdout + run.stderr)
