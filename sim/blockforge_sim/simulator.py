"""Host side of RTL simulation: build the engine's Verilog once per spec and simulator, then run layer
jobs through the cocotb bench (:mod:`.tb_engine`) and read back results and outputs.

    rtl = RtlSimulator(load_spec("tile8"), work_dir="build/rtl")
    run = rtl.run_layers(image_path, [("bert.encoder.layer.0.attention.self.query", x_q)])
    run.results[0].mismatches  # 0

Build products, memory files and waves live under ``work_dir`` (default ``build/rtl``), never in the
source tree. A build is reused while the generated Verilog is unchanged.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import json
import os
import queue
import select
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from blockforge.hexfiles import read_outputs
from blockforge.image import read_image, write_image
from blockforge.layer import BlockSparseLayer
from blockforge.progress import elapsed
from blockforge.spec import Spec
from blockforge_hw.verilog import CLOCK_PERIOD_NS, CLOCKED_TOP_MODULE, SIM_TOP_MODULE, memory_plusargs, write_verilog

from . import runner
from .jobs import MEMORY_FORMAT, JobResult, LayerJob, Session, load_results

TEST_MODULE = "blockforge_sim.tb_engine"
# bf_sim_clocked on Verilator: its clock is an input toggled by blockforge's main (replacing cocotb's:
# cocotb's loop, plus a stretch without VPI calls while the bench's `quiet` input says it only waits on a
# timer; see the file and monitor.py), so no --timing scheduler runs on every edge. --no-public-flat-rw
# undoes the flag cocotb always passes, which makes every signal VPI-visible and keeps Verilator from
# optimizing the engine (only the clocked top's ports are public, by metacomment). Measured:
# docs/simulation.md.
VERILATOR_MAIN = Path(__file__).with_name("verilator_main.cpp")
VERILATOR_FREE_CLOCK_ARGS = ("--no-public-flat-rw", "+define+BF_CLOCK_FROM_MAIN",
                             "-CFLAGS", f"-DBF_CLOCK_HALF_PERIOD_NS={CLOCK_PERIOD_NS // 2}")


@dataclass
class SessionRun:
    """The outcome of one simulator process: per-job results and the RTL outputs of finished jobs."""

    results: list[JobResult]
    outputs: dict[str, np.ndarray]
    wall_seconds: float
    seed: int
    waves: Path | None = None
    log: Path | None = None

    @property
    def mismatches(self) -> int:
        return sum(r.mismatches for r in self.results)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def cycles(self) -> int:
        return sum(r.cycles for r in self.results)


class RtlSimulator:
    """One compiled simulation of ``bf_sim_top`` for ``spec`` on ``simulator``, inside ``bf_sim_clocked``
    (its clock runs in the simulator; the bench touches only reset, reload, start and done)."""

    def __init__(self, spec: Spec, *, simulator: str = "icarus", work_dir: str | Path = "build/rtl",
                 waves: bool = False, progress: bool = True, free_clock: bool = True):
        self.spec = spec
        self.simulator = simulator
        # free_clock=False: the previous bench (bf_sim_top clocked from cocotb, every signal public to
        # Verilator's VPI), kept so that bench/sim_speed.py can measure both side by side.
        self.free_clock = free_clock
        self.toplevel = CLOCKED_TOP_MODULE if free_clock else SIM_TOP_MODULE
        self.waves = waves
        self.progress = progress        # the compile (tens of seconds on Verilator) shows its elapsed time
        # Absolute: the simulator runs in the run folder, so relative paths would point elsewhere.
        self.work_dir = (Path(work_dir).resolve() /
                         f"{self.spec.name}-{self.spec.digest[:10]}-{simulator}{'' if free_clock else '-cocotb-clock'}")
        self._runner = None
        self._counter = itertools.count()
        self.build_seconds = 0.0

    # ---- build ----------------------------------------------------------------------------------
    def build(self):
        """Generate the Verilog and compile it (skipped when an identical build exists)."""
        if self._runner is not None:
            return self._runner
        t0 = time.perf_counter()
        rtl_dir = self.work_dir / "rtl"
        paths = write_verilog(self.spec, rtl_dir, keep_unread=self.waves)   # waves show every named wire
        sources = [paths["engine"], paths["sim_top"]] + ([paths["clocked_top"]] if self.free_clock else [])
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
        tool = runner.find_simulator(self.simulator)
        args = VERILATOR_FREE_CLOCK_ARGS if self.free_clock else ()
        main = VERILATOR_MAIN if self.free_clock else None
        # how it is compiled is part of the build too (flags, make overrides such as the C++ -O level, the main)
        digest += (f"-waves={self.waves}-args={tool.build_args + args}-make={tool.env.get('MAKEFLAGS', '')}"
                   f"-cpu={runner.cpu_model()}")
        if main is not None and tool.name == "verilator":
            digest += "-main=" + hashlib.sha256(main.read_bytes()).hexdigest()
        build_dir = self.work_dir / "build"
        stamp = build_dir / "blockforge.stamp"
        reuse = stamp.exists() and stamp.read_text() == digest
        with elapsed(f"{self.simulator} build of the {self.spec.name} engine", enabled=self.progress and not reuse):
            built = runner.build(sources, self.toplevel, build_dir, self.simulator, waves=self.waves, reuse=reuse,
                                 verilator_args=args, verilator_main=main)
        stamp.write_text(digest)
        self._runner = built
        self.build_seconds = time.perf_counter() - t0
        return built

    # ---- run --------------------------------------------------------------------------------------
    def run_layers(self, image: str | Path, jobs: Sequence[tuple[str, np.ndarray]], *, seed: int = 1,
                   stall_weights: int = 0, stall_out: int = 0, check_cycles: bool = True,
                   layers: dict[str, BlockSparseLayer] | None = None) -> SessionRun:
        """Simulate ``(layer name, x_q (in, N ≤ max_tokens))`` jobs on layers of ``image`` in one process.

        Returns every job's result; raises :class:`~.runner.SimError` only if the simulation itself
        failed to run (mismatches and error statuses are reported in the results, not raised).
        """
        built = self.build()
        run_dir = self._new_run_dir()
        layer_jobs = _prepare_jobs(run_dir, image, jobs, check_cycles)
        session = Session(self.spec.to_dict(), tuple(layer_jobs), str(run_dir / "hex"), str(run_dir / "results.json"),
                          seed=seed, stall_weights=stall_weights, stall_out=stall_out, spec_source=self.spec.source,
                          free_clock=self.free_clock)
        t0 = time.perf_counter()
        try:
            self._simulate(built, session, run_dir)
        except runner.SimError:
            if not Path(session.results).exists():
                raise
        wall = time.perf_counter() - t0
        results = load_results(session.results) if Path(session.results).exists() else []
        if len(results) != len(layer_jobs):
            raise runner.SimError(f"{self.simulator}: the bench finished {len(results)} of {len(layer_jobs)} jobs; "
                                  f"see {run_dir / 'sim.log'}")
        outputs = self._outputs(run_dir, image, layer_jobs, results, layers)
        waves = self.waves_of(run_dir) if self.waves else None
        return SessionRun(results, outputs, wall, seed, waves, run_dir / "sim.log")

    def serve(self, *, seed: int = 1, stall_weights: int = 0, stall_out: int = 0) -> "RtlServer":
        """A simulator process kept running for many calls (see :class:`RtlServer`)."""
        return RtlServer(self, seed=seed, stall_weights=stall_weights, stall_out=stall_out)

    def pool(self, *, workers: int | None = None, seed: int = 1, stall_weights: int = 0,
             stall_out: int = 0) -> "RtlPool":
        """Up to ``workers`` simulator processes (default: one per core) serving calls in parallel
        (see :class:`RtlPool`)."""
        return RtlPool(self, workers=workers, seed=seed, stall_weights=stall_weights, stall_out=stall_out)

    # ---- shared plumbing ----------------------------------------------------------------------------
    def _new_run_dir(self) -> Path:
        run_dir = self.work_dir / "runs" / f"{next(self._counter):04d}-{time.time_ns() % 10**9}"
        (run_dir / "hex").mkdir(parents=True, exist_ok=True)
        return run_dir

    def _simulate(self, built, session: Session, run_dir: Path) -> None:
        hexdir = Path(session.hexdir)
        session_path = session.save(run_dir / "session.json")
        plusargs = [f"+hexdir={hexdir}", *memory_plusargs(MEMORY_FORMAT), f"+out={hexdir / 'out.hex'}", f"+seed={session.seed}",
                    f"+stall_weights={session.stall_weights}", f"+stall_out={session.stall_out}"]
        runner.run(built, TEST_MODULE, self.toplevel, self.work_dir / "build", test_dir=run_dir,
                   plusargs=plusargs, extra_env={"BF_SESSION": str(session_path)}, waves=self.waves,
                   seed=session.seed)

    def waves_of(self, run_dir: Path) -> Path | None:
        """The wave file of the run (or server) in ``run_dir``, kept in that folder: Icarus writes
        ``<top>.fst`` into the build folder, where the next run would overwrite it, so it is moved next to
        the run's log. None when the run recorded no waves."""
        found = sorted(run_dir.glob("*.fst")) + sorted(run_dir.glob("*.vcd"))
        if found:
            return found[0]
        for suffix in (".fst", ".vcd"):
            built = self.work_dir / "build" / f"{self.toplevel}{suffix}"
            if built.exists():
                return Path(shutil.move(built, run_dir / built.name))
        return None

    def _outputs(self, run_dir: Path, image, layer_jobs, results, layers) -> dict[str, np.ndarray]:
        if layers is None:
            img = read_image(image, self.spec)
            layers = {job.layer: img.layer(job.layer) for job in layer_jobs}
        outputs = {}
        for job, result in zip(layer_jobs, results):
            out = run_dir / "hex" / f"out_{job.job_id}.hex"
            if result.status == 0 and not result.timed_out and out.exists():
                outputs[job.job_id] = read_outputs(out, layers[job.layer], self.spec, result.n_tokens)
                out.unlink()
        return outputs


def _prepare_jobs(run_dir: Path, image, jobs, check_cycles: bool, first: int = 0) -> list[LayerJob]:
    """Save each job's activations as .npy (no pickle) and describe it as a LayerJob."""
    layer_jobs = []
    for k, (name, x_q) in enumerate(jobs, first):
        x = np.asarray(x_q)
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
            raise runner.SimError(f"{name}: activations must be a 2-D integer array, got {x.dtype} {x.shape}")
        x_path = run_dir / f"x_{k:06d}.npy"
        np.save(x_path, x.astype(np.int8), allow_pickle=False)
        layer_jobs.append(LayerJob(f"{k:06d}", str(Path(image).resolve()), name, str(x_path), check_cycles))
    return layer_jobs


class RtlServer:
    """One simulator process that serves layer jobs until closed — no process start per call.

    Jobs go to the cocotb bench through a FIFO, one JSON line each, and results come back the same way;
    the simulator runs in a background thread. Use as a context manager::

        with rtl.serve() as server:
            run = server.run_layers(image, [(name, x_q), ...])
    """

    POLL_SECONDS = 0.5

    def __init__(self, rtl: RtlSimulator, *, seed: int, stall_weights: int, stall_out: int):
        import threading

        self.rtl = rtl
        built = rtl.build()
        self.run_dir = rtl._new_run_dir()
        self.seed = seed
        self._count = 0
        requests, responses = self.run_dir / "requests.fifo", self.run_dir / "responses.fifo"
        os.mkfifo(requests)
        os.mkfifo(responses)
        self.session = Session(rtl.spec.to_dict(), (), str(self.run_dir / "hex"), str(self.run_dir / "results.json"),
                               seed=seed, stall_weights=stall_weights, stall_out=stall_out,
                               requests=str(requests), responses=str(responses), spec_source=rtl.spec.source,
                               free_clock=rtl.free_clock)
        self._error: BaseException | None = None

        def simulate():
            try:
                rtl._simulate(built, self.session, self.run_dir)
            except BaseException as exc:  # reported to the caller by _check_alive
                self._error = exc

        self._thread = threading.Thread(target=simulate, name="blockforge-rtl-server", daemon=True)
        self._thread.start()
        self._requests = self._open(requests, os.O_WRONLY)
        self._responses = os.fdopen(self._open(responses, os.O_RDONLY), "r")
        self._requests = os.fdopen(self._requests, "w")

    def _check_alive(self) -> None:
        if not self._thread.is_alive():
            why = f" ({self._error})" if self._error else ""
            raise runner.SimError(f"{self.rtl.simulator}: the simulation server stopped{why}; "
                                  f"see {self.run_dir / 'sim.log'}")

    def _open(self, path: Path, flags: int) -> int:
        """Open a FIFO end without blocking forever if the simulator never comes up."""
        while True:
            try:
                fd = os.open(path, flags | os.O_NONBLOCK)
            except OSError as exc:          # ENXIO: no reader on the other end yet
                if exc.errno != errno.ENXIO:
                    raise
                self._check_alive()
                time.sleep(0.05)
                continue
            os.set_blocking(fd, True)
            return fd

    def _read_line(self) -> str:
        while True:
            ready, _, _ = select.select([self._responses], [], [], self.POLL_SECONDS)
            if ready:
                line = self._responses.readline()
                if line:
                    return line
            self._check_alive()

    def run_layers(self, image: str | Path, jobs: Sequence[tuple[str, np.ndarray]], *, check_cycles: bool = True,
                   layers: dict[str, BlockSparseLayer] | None = None) -> SessionRun:
        """Like :meth:`RtlSimulator.run_layers`, on the running simulator."""
        t0 = time.perf_counter()
        layer_jobs = _prepare_jobs(self.run_dir, image, jobs, check_cycles, self._count)
        self._count += len(layer_jobs)
        results = []
        for job in layer_jobs:
            self._check_alive()
            self._requests.write(json.dumps(dataclasses.asdict(job)) + "\n")
            self._requests.flush()
            results.append(JobResult(**json.loads(self._read_line())))
            Path(job.x).unlink(missing_ok=True)
        outputs = self.rtl._outputs(self.run_dir, image, layer_jobs, results, layers)
        return SessionRun(results, outputs, time.perf_counter() - t0, self.seed, None, self.run_dir / "sim.log")

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._requests.write("stop\n")
                self._requests.flush()
                self._requests.close()
            except OSError:
                pass
            self._thread.join(timeout=60)
        self._responses.close()

    def __enter__(self) -> "RtlServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def threaded_map(fn: Callable, items: Sequence, workers: int) -> Iterator:
    """``fn`` over ``items`` on ``workers`` threads, results in item order. When the caller stops early or
    ``fn`` raises, items not started yet are dropped (the error surfaces now, not after the rest ran)."""
    threads = ThreadPoolExecutor(workers, thread_name_prefix="blockforge-rtl")
    try:
        yield from threads.map(fn, items)
    finally:
        threads.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """One simulator per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class RtlPool:
    """Up to ``workers`` :class:`RtlServer` processes (default: one per core), started when calls need
    them; each serves one call at a time. :meth:`run_layers` may be called from several threads at once,
    :meth:`map` spreads single-layer jobs over the servers and yields their runs in job order.

    Server k uses seed + k, which only shapes random stalls: outputs, and cycle counts without stalls,
    do not depend on the server that ran a job, so results equal those of one server. Use as a context
    manager (:meth:`close` stops every server)."""

    def __init__(self, rtl: RtlSimulator, *, workers: int | None = None, seed: int = 1, stall_weights: int = 0,
                 stall_out: int = 0):
        self.rtl = rtl
        self.workers = max(1, workers or default_workers())
        self.seed = seed
        self._stalls = {"stall_weights": stall_weights, "stall_out": stall_out}
        self.servers: list[RtlServer] = []
        self._free: queue.Queue[RtlServer] = queue.Queue()
        self._lock = threading.Lock()

    def _acquire(self) -> "RtlServer":
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self.servers) < self.workers:
                server = self.rtl.serve(seed=self.seed + len(self.servers), **self._stalls)
                self.servers.append(server)
                return server
        return self._free.get()

    def run_layers(self, image: str | Path, jobs: Sequence[tuple[str, np.ndarray]], *, check_cycles: bool = True,
                   layers: dict[str, BlockSparseLayer] | None = None) -> SessionRun:
        """:meth:`RtlServer.run_layers` on the next free server (the jobs of one call stay on one server,
        so passes of one layer reload only their activations)."""
        server = self._acquire()
        try:
            return server.run_layers(image, jobs, check_cycles=check_cycles, layers=layers)
        finally:
            self._free.put(server)

    def map(self, image: str | Path, jobs: Sequence[tuple[str, np.ndarray]], *, check_cycles: bool = True,
            layers: dict[str, BlockSparseLayer] | None = None) -> Iterator[SessionRun]:
        """Run each ``(layer name, x_q)`` job as its own call on the servers; yields the runs in job order."""
        yield from threaded_map(lambda job: self.run_layers(image, [job], check_cycles=check_cycles, layers=layers),
                                jobs, self.workers)

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> "RtlPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class RtlBackend:
    """A ``blockforge.qmodel`` backend that computes every layer call on the RTL engine.

    The layers are written once into a real ``.bfim`` image that the bench reads; each call is split
    into blocks of at most ``max_tokens`` activation columns. An :class:`RtlPool` of up to ``workers``
    simulator processes (default one per core) serves every call until :meth:`close`; calls may come
    from several threads (one model forward per thread). Keeps per-layer statistics for reports.
    """

    rtl: RtlSimulator
    layers: Sequence[BlockSparseLayer]
    seed: int = 1
    workers: int | None = None
    stats: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self.image = self.rtl.work_dir / "backend" / "layers.bfim"
        self.image.parent.mkdir(parents=True, exist_ok=True)
        write_image(self.image, list(self.layers), self.rtl.spec)
        self._by_name = {layer.name: layer for layer in self.layers}
        self._pool = self.rtl.pool(workers=self.workers, seed=self.seed)
        self.workers = self._pool.workers
        self.__name__ = f"rtl_backend[{self.rtl.simulator}]"

    def close(self) -> None:
        """Stop the simulator processes (started by the first calls)."""
        self._pool.close()

    def __enter__(self) -> "RtlBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, layer: BlockSparseLayer, x_q: np.ndarray) -> np.ndarray:
        if layer.name not in self._by_name:
            raise runner.SimError(f"{layer.name}: not one of the backend's layers")
        n_max = self.rtl.spec.buffers.max_tokens
        total = x_q.shape[1]
        jobs = [(layer.name, x_q[:, lo:lo + n_max]) for lo in range(0, total, n_max)]
        run = self._pool.run_layers(self.image, jobs, layers=self._by_name)
        self.stats.append({"layer": layer.name, "tokens": total, "jobs": len(jobs), "cycles": run.cycles,
                           "estimated_cycles": sum(r.estimated_cycles for r in run.results),
                           "mismatches": run.mismatches, "ok": run.ok, "wall_seconds": run.wall_seconds})
        if not run.ok:
            bad = next(r for r in run.results if not r.ok)
            raise runner.SimError(f"RTL backend: {bad.describe_mismatches(run.seed)}; status {bad.status_names}")
        return np.concatenate([run.outputs[r.job_id] for r in run.results], axis=1)


def summarize(stats: Sequence[dict]) -> dict:
    """Totals of :attr:`RtlBackend.stats`."""
    return {
        "layer_calls": len(stats),
        "jobs": sum(s["jobs"] for s in stats),
        "cycles": sum(s["cycles"] for s in stats),
        "estimated_cycles": sum(s["estimated_cycles"] for s in stats),
        "mismatches": sum(s["mismatches"] for s in stats),
        "wall_seconds": round(sum(s["wall_seconds"] for s in stats), 2),
    }

