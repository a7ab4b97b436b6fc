"""The main job end to end: fine-tune → BSP prune → int8 export → RTL simulation with bit-exact checks →
cycle estimate (equal to the RTL) → report, with a summary a user reads.

    blockforge run --spec tile8 --model default --task default -o out/run [--config run.yaml]
    blockforge demo                          # the same with the short demo schedule into out/demo

Every stage writes its outputs atomically under OUTDIR and records a fingerprint of its inputs in
``OUTDIR/.stages/<stage>.json``; a rerun skips each stage whose fingerprint and outputs are unchanged,
so an interrupted run resumes where it stopped and a changed setting reruns what depends on it.

This module sits at the top of the import stack (it drives software, hardware and simulation).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from blockforge.clock import resolve_engine_clock
from blockforge.errors import UsageError
from blockforge.fsutil import atomic_write
from blockforge.resume import fingerprint, read_record, write_record
from blockforge.spec import DEFAULT_SPEC, load_spec
from blockforge.yamlsafe import load_yaml, shown

# Data sizes per preset; the training schedule comes from blockforge.prune (its one owner).
PRESETS = {
    # The demo: a short schedule that fits ~20 minutes on 2 CPU cores (docs/quickstart.md):
    # prune.DEMO_SCHEDULE (one epoch per phase) on 2,000 training / 500 dev tweets.
    "demo": {"train_size": 2000, "dev_size": 500},
    # The full schedule (prune.Schedule defaults) on the task's own sizes (tweets: 4,000 / 2,000).
    "full": {"train_size": None, "dev_size": None},
}
STAGES = ("prune", "export", "int8_eval", "rtl_layers", "rtl_eval", "estimate", "report")


_CHECKED_FIELDS = (   # (field, accepted types, lower bound): the YAML and the flags are checked alike
    ("model", (str,), None), ("task", (str,), None), ("spec", (str,), None), ("method", (str,), None),
    ("preset", (str,), None), ("simulator", (str,), None), ("sparsity", (int, float), 0),
    ("seed", (int,), 0), ("train_size", (int,), 1), ("dev_size", (int,), 1), ("dense_epochs", (int, float), 0),
    ("bsp_epochs", (int, float), 0), ("retrain_epochs", (int, float), 0), ("distill", (bool,), None),
    ("max_length", (int,), 8), ("calib", (int,), 1), ("tokens", (int,), 1), ("rtl_eval_examples", (int,), 0),
    ("threads", (int,), 1), ("progress", (bool,), None))
_OPTIONAL_FIELDS = {"train_size", "dev_size", "dense_epochs", "bsp_epochs", "retrain_epochs", "distill", "tokens",
                    "threads"}


@dataclass(frozen=True)
class RunConfig:
    """Everything the flow depends on; from a YAML file (``--config``) and/or command-line flags."""

    model: str = "default"
    task: str = "default"
    spec: str = DEFAULT_SPEC
    sparsity: float = 0.5
    method: str = "bsp"
    preset: str = "demo"
    seed: int = 0
    train_size: int | None = None      # None: the preset's
    dev_size: int | None = None
    dense_epochs: float | None = None
    bsp_epochs: float | None = None
    retrain_epochs: float | None = None
    distill: bool | None = None        # None: on for the full preset (the measured recipe), off for demo
    max_length: int = 64
    calib: int = 256
    tokens: int | None = None          # N per RTL pass; None: max_tokens on Verilator, 16 on Icarus
    simulator: str = "auto"            # auto | icarus | verilator
    rtl_eval_examples: int = 8         # dev examples scored through the RTL, one at a time (0: skip)
    threads: int | None = None
    progress: bool = True              # progress bars and build timers on stderr

    def __post_init__(self) -> None:
        for key, kinds, lo in _CHECKED_FIELDS:
            value = getattr(self, key)
            if value is None and key in _OPTIONAL_FIELDS:
                continue
            if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds) \
                    or (lo is not None and not value >= lo):
                need = " or ".join(k.__name__ for k in kinds) + (f" >= {lo}" if lo is not None else "")
                raise UsageError(f"{key}: expected {need}, got {shown(value)}")
        if self.preset not in PRESETS:
            raise UsageError(f"preset: unknown preset {self.preset!r} (known: {', '.join(PRESETS)})")
        if self.simulator not in ("auto", "icarus", "verilator"):
            raise UsageError(f"simulator: expected auto, icarus or verilator, got {self.simulator!r}")
        if self.rtl_eval_examples < 0:
            raise UsageError(f"rtl_eval_examples: must be >= 0, got {self.rtl_eval_examples}")

    @property
    def resolved_distill(self) -> bool:
        return self.distill if self.distill is not None else self.preset == "full"

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "RunConfig":
        data = load_yaml(path, error=UsageError, what="run config")
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a mapping of run settings")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise UsageError(f"{path}: {key if isinstance(key, str) and len(key) <= 40 else shown(key, 40)}: unknown key (known keys: {', '.join(sorted(known))})")
        try:
            return cls(**{**data, **{k: v for k, v in overrides.items() if v is not None}})
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None

    def schedule_values(self) -> dict:
        """Data sizes and the pruning schedule (as plain data) this run uses."""
        from blockforge.prune.pipeline import DEMO_SCHEDULE
        from blockforge.prune.schedule import Schedule

        values = dict(PRESETS[self.preset])
        for key in ("train_size", "dev_size"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        schedule = DEMO_SCHEDULE if self.preset == "demo" else Schedule()
        epochs = {k: getattr(self, k) for k in ("dense_epochs", "bsp_epochs", "retrain_epochs")
                  if getattr(self, k) is not None}
        values.update(dataclasses.asdict(dataclasses.replace(schedule, **epochs)))
        return values


# --------------------------------------------------------------------------------------------------
# Resumable stages.

def _write_json(path: Path, data: Any) -> Path:
    return atomic_write(path, json.dumps(data, indent=1, sort_keys=True, default=float).encode())


def _file_digest(path: Path) -> dict:
    """Size and SHA-256 of a file (what a stage wrote, or a data file it read)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def _contents(paths: list[Path]) -> dict[str, dict | None]:
    """Content fingerprints of files, and of every file under folders (None: missing)."""
    out: dict[str, dict | None] = {}
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() and ".stages" not in p.parts):
                out[str(child)] = _file_digest(child)
        else:
            out[str(path)] = _file_digest(path) if path.is_file() else None
    return out


def _input_files(config: "RunConfig", spec) -> list[Path]:
    """The files a run reads, whose content (not only name) decides whether its stages are up to date:
    the spec file, a local model folder, and the task's data files or folder."""
    files = [Path(spec.source)] if Path(spec.source).is_file() else []
    if config.model != "default" and Path(config.model).exists():
        files.append(Path(config.model))
    fmt, _, where = config.task.partition(":")
    where = where.split("?", 1)[0]
    if fmt.lower() in ("default", "tweets") and not where:
        from blockforge.data import tweets_csv_path
        where = str(tweets_csv_path())
    if where and Path(where).exists():
        files.append(Path(where))
    return files


class Stages:
    """Runs stages in order; skips a stage whose input fingerprint is unchanged and whose outputs are the
    very files it wrote (size and SHA-256 recorded in its stamp): a truncated, deleted or replaced output
    reruns that stage and, through the fingerprints, everything after it."""

    def __init__(self, out_dir: Path, log: Callable[[str], None]):
        self.out = out_dir
        self.dir = out_dir / ".stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.fingerprints: dict[str, str] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def run(self, name: str, inputs: dict, outputs: list[Path], body: Callable[[], Any],
            after: tuple[str, ...] = ()) -> Any:
        digest = fingerprint({"inputs": inputs, "after": [self.fingerprints[a] for a in after]})[:16]
        self.fingerprints[name] = digest
        stamp = self.dir / f"{name}.json"
        recorded = read_record(stamp, digest) if all(p.exists() for p in outputs) else None
        if recorded is not None and recorded.get("contents") == _contents(outputs):
            self.fingerprints[name] = fingerprint({"fingerprint": digest, "contents": recorded["contents"]})[:16]
            self.log(f"[{name}] up to date, skipped")
            self.skipped.append(name)
            return recorded.get("result")
        stamp.unlink(missing_ok=True)
        self.log(f"[{name}] running")
        started = time.perf_counter()
        result = body()
        seconds = round(time.perf_counter() - started, 1)
        contents = _contents(outputs)
        self.fingerprints[name] = fingerprint({"fingerprint": digest, "contents": contents})[:16]
        write_record(stamp, {"fingerprint": digest, "seconds": seconds, "result": result,
                             "outputs": [str(p) for p in outputs], "contents": contents})
        self.log(f"[{name}] done in {seconds:.1f} s")
        self.ran.append(name)
        return result


# --------------------------------------------------------------------------------------------------
# The flow.

@dataclass
class FlowResult:
    summary: dict
    out_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _choose_simulator(config: RunConfig) -> str:
    from blockforge_sim.runner import available_simulators, find_simulator

    if config.simulator != "auto":
        find_simulator(config.simulator)
        return config.simulator
    available = available_simulators()
    if not available:
        find_simulator("icarus")       # raises with the install hint
    return "verilator" if "verilator" in available else "icarus"


def run_flow(config: RunConfig, out_dir: str | Path, *, log: Callable[[str], None] = print) -> FlowResult:
    """Run (or resume) the whole job into ``out_dir``; returns the summary (also in summary.json)."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = load_spec(config.spec)
    simulator = _choose_simulator(config)
    n_tokens = config.tokens if config.tokens is not None else (
        spec.buffers.max_tokens if simulator == "verilator" else min(16, spec.buffers.max_tokens))
    spec.check_tokens(n_tokens, what="tokens")
    sched = config.schedule_values()
    stages = Stages(out, log)
    (out / "run.yaml").write_text(yaml.safe_dump({**dataclasses.asdict(config), "resolved": {
        "simulator": simulator, "tokens": n_tokens, **sched}}, sort_keys=False))
    common = {"spec": spec.digest, "model": config.model, "task": config.task, "seed": config.seed,
              "input_files": fingerprint(_contents(_input_files(config, spec)))[:16],
              "max_length": config.max_length, "train_size": sched["train_size"], "dev_size": sched["dev_size"]}
    pruned_dir, image_path = out / "pruned", out / "model.bfim"

    # 1. fine-tune dense → reweighted group Lasso → hard prune → masked retrain
    def prune() -> dict:
        import shutil

        from blockforge.prune import PruneConfig, run_pruning
        from blockforge.prune.schedule import Schedule

        if pruned_dir.exists():
            shutil.rmtree(pruned_dir)
        schedule = Schedule(**{f.name: sched[f.name] for f in dataclasses.fields(Schedule)})
        result = run_pruning(PruneConfig(model=config.model, task=config.task, spec=spec, sparsity=config.sparsity,
                                         method=config.method, schedule=schedule, seed=config.seed,
                                         max_length=config.max_length, train_size=sched["train_size"],
                                         dev_size=sched["dev_size"], distill=config.resolved_distill,
                                         threads=config.threads, progress=config.progress),
                             pruned_dir)
        metrics = result.report["metrics"]
        return {"dense": metrics.get("dense"), "pruned": metrics.get("final"),
                "block_sparsity": result.report.get("block_sparsity"),
                "overlap_with_magnitude": result.report.get("overlap_with_magnitude"),
                "bsp": result.report.get("bsp")}
    pruned = stages.run("prune", {**common, "sparsity": config.sparsity, "method": config.method, "sched": sched,
                                  "distill": config.resolved_distill}, [pruned_dir], prune)

    # 2. calibrate, quantize to int8 and write the image
    def export() -> dict:
        from blockforge.export import export_model
        from blockforge.image import read_image, write_manifest

        export_model(pruned_dir, spec, _task(config, sched), calib=config.calib,
                     max_length=config.max_length, output=image_path, model_source=str(pruned_dir))
        image = read_image(image_path, spec)
        write_manifest(out / "manifest.json", image)
        return {"layers": len(image.layers), "bytes": image.file_size,
                "nnz_blocks": sum(layer.nnz_blocks for layer in image.layers),
                "total_blocks": sum(layer.total_blocks for layer in image.layers)}
    exported = stages.run("export", {"calib": config.calib}, [image_path, out / "manifest.json"], export,
                          after=("prune",))

    # 3. accuracy of the integer path (the golden reference computes every prunable linear)
    def int8_eval() -> dict:
        from blockforge.prune.training import evaluate_model, tokenize

        model, tokenizer, layers, task = _integer_parts(pruned_dir, image_path, spec, config, sched)
        from blockforge.qmodel import integer_model

        qmodel = integer_model(model, layers, spec)
        metrics = evaluate_model(qmodel, tokenize(tokenizer, task.dev, config.max_length), task, batch_size=32,
                                 progress=config.progress, desc="int8 eval")
        return {"int8": metrics, "dev_examples": len(task.dev)}
    int8 = stages.run("int8_eval", {}, [], int8_eval, after=("export",))

    # 4. every layer of the image on the RTL, on real activations, bit-exact and cycle-checked
    rtl_layers_path = out / "rtl_layers.jsonl"

    def rtl_layers() -> dict:
        return _rtl_layers(pruned_dir, image_path, spec, config, sched, simulator, n_tokens, out, rtl_layers_path, log)
    rtl = stages.run("rtl_layers", {"simulator": simulator, "tokens": n_tokens}, [rtl_layers_path], rtl_layers,
                     after=("export",))

    # 5. task accuracy measured through the RTL (every prunable linear on the engine)
    def rtl_eval() -> dict:
        return _rtl_eval(pruned_dir, image_path, spec, config, sched, simulator, out, log)
    rtl_eval_result = None
    if config.rtl_eval_examples:
        rtl_eval_result = stages.run("rtl_eval", {"simulator": simulator, "examples": config.rtl_eval_examples},
                                     [], rtl_eval, after=("export",))

    # 6. the cycle model for the same image and N, compared with the RTL
    def estimate() -> dict:
        from blockforge.image import read_image
        from blockforge.perf import estimate_layers

        result = estimate_layers(spec, read_image(image_path, spec).layers, n_tokens)
        _write_json(out / "estimate.json", result)
        return result["totals"]
    totals = stages.run("estimate", {"tokens": n_tokens}, [out / "estimate.json"], estimate, after=("export",))

    # 7. the HTML report: the run's headline (settings, accuracies, compression, time at the clock used,
    # the FPGA build when there is one), then cycles, utilization and estimate vs RTL
    summary = _summary(config, spec, simulator, n_tokens, pruned, exported, int8, rtl, rtl_eval_result, totals, out)

    def report() -> dict:
        from blockforge.clock import read_fpga_report
        from blockforge.image import read_image
        from blockforge.report import write_report

        image = read_image(image_path, spec)
        result = json.loads((out / "estimate.json").read_text())
        rtl_cycles = {row["layer"]: row["rtl_cycles"] for row in _read_jsonl(rtl_layers_path)}
        clock = resolve_engine_clock(spec)
        paths = write_report(out / "report.html", spec, image.layers, result["layers"], result["totals"],
                             rtl_cycles=rtl_cycles, title=f"blockforge run: {config.model} on {spec.name}",
                             run=summary, fpga=read_fpga_report(clock.report) if clock.report else None)
        return {"files": [str(p) for p in paths]}
    stages.run("report", {"summary": fingerprint(summary)[:16]}, [out / "report.html"], report,
               after=("estimate", "rtl_layers"))
    _write_json(out / "summary.json", summary)
    return FlowResult(summary, out, stages.ran, stages.skipped)


def _task(config: RunConfig, sched: dict):
    from blockforge.data import load_task

    return load_task(config.task, train_size=sched["train_size"], dev_size=sched["dev_size"])


def _integer_parts(pruned_dir: Path, image_path: Path, spec, config: RunConfig, sched: dict):
    from blockforge.image import read_image
    from blockforge.models import load_model, load_tokenizer

    task = _task(config, sched)
    model = load_model(pruned_dir, labels=task.labels).model.eval()
    tokenizer = load_tokenizer(pruned_dir)
    layers = read_image(image_path, spec).layers
    return model, tokenizer, layers, task


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rtl_layers(pruned_dir, image_path, spec, config, sched, simulator, n_tokens, out, target, log) -> dict:
    """Record the real int8 activations each layer sees on dev text, then run every layer on the RTL."""
    import torch

    from blockforge.prune.training import tokenize
    from blockforge.qmodel import Recorder, integer_model

    from blockforge_sim.jobs import result_row, result_totals
    from blockforge_sim.session import RtlSimulator

    model, tokenizer, layers, task = _integer_parts(pruned_dir, image_path, spec, config, sched)
    recorder = Recorder()
    qmodel = integer_model(model, layers, spec, recorder=recorder)
    split = tokenize(tokenizer, task.dev, config.max_length)
    columns = {layer.name: 0 for layer in layers}
    example = 0
    with torch.no_grad():
        while min(columns.values()) < n_tokens and example < len(split):
            batch = split.collate([example], task.is_regression)
            batch.pop("labels")
            qmodel(**batch)
            for name in columns:
                columns[name] = sum(c.x_q.shape[1] for c in recorder.for_layer(name))
            example += 1
    jobs = []
    for layer in layers:
        x = np.concatenate([c.x_q for c in recorder.for_layer(layer.name)], axis=1)[:, :n_tokens]
        jobs.append((layer.name, x))
    from tqdm.auto import tqdm

    rtl = RtlSimulator(spec, simulator=simulator, work_dir=out / "rtl", progress=config.progress)
    rtl.build()                       # before the bar: a Verilator compile shows its own elapsed time
    rows = []
    by_name = {layer.name: layer for layer in layers}
    with rtl.serve(seed=config.seed + 1) as server:
        for job in tqdm(jobs, desc=f"RTL {simulator}", unit="layer", leave=False, disable=not config.progress):
            r = server.run_layers(image_path, [job], layers=by_name).results[0]
            rows.append({**result_row(r), "sim_seconds": round(r.sim_seconds, 3)})
    atomic_write(target, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode())
    totals = result_totals(rows)
    seconds = sum(r["sim_seconds"] for r in rows)
    return {**totals, "failed": sum(bool(r["status"]) or r["timed_out"] for r in rows), "simulator": simulator,
            "n_tokens": n_tokens, "activation_examples": example, "sim_seconds": round(seconds, 1),
            "cycles_per_second": round(totals["rtl_cycles"] / seconds) if seconds else None}


def _rtl_eval(pruned_dir, image_path, spec, config, sched, simulator, out, log) -> dict:
    """Score dev examples with every prunable linear computed by the RTL engine; the logits must equal
    the integer PyTorch path's exactly. Examples go one at a time (no padding columns to simulate)."""
    import torch
    from tqdm.auto import tqdm

    from blockforge.prune.training import tokenize
    from blockforge.qmodel import integer_model

    from blockforge_sim.session import RtlBackend, RtlSimulator, summarize

    model, tokenizer, layers, task = _integer_parts(pruned_dir, image_path, spec, config, sched)
    count = min(config.rtl_eval_examples, len(task.dev))
    split = tokenize(tokenizer, task.dev[:count], config.max_length)
    rtl = RtlSimulator(spec, simulator=simulator, work_dir=out / "rtl", progress=config.progress)
    rtl.build()
    reference_model = integer_model(model, layers, spec)
    identical, rtl_predictions, int8_predictions, tokens = True, [], [], 0
    started = time.perf_counter()
    with torch.no_grad(), RtlBackend(rtl, layers, seed=config.seed + 1) as backend:
        rtl_model = integer_model(model, layers, spec, backend=backend)
        for i in tqdm(range(count), desc=f"RTL eval ({simulator})", unit="example", leave=False,
                      disable=not config.progress):
            batch = split.collate([i], task.is_regression)
            batch.pop("labels")
            tokens += int(batch["input_ids"].numel())
            expected = reference_model(**batch).logits
            got = rtl_model(**batch).logits
            identical &= bool(torch.equal(expected, got))
            pick = (lambda t: float(t.squeeze())) if task.is_regression else (lambda t: int(t.argmax(-1)))
            rtl_predictions.append(pick(got))
            int8_predictions.append(pick(expected))
    wall = time.perf_counter() - started
    labels = list(split.labels)
    accuracy = None if task.is_regression else float(np.mean([p == int(y) for p, y in zip(rtl_predictions, labels)]))
    int8_accuracy = None if task.is_regression else float(np.mean([p == int(y) for p, y in zip(int8_predictions, labels)]))
    return {"examples": count, "tokens": tokens, "logits_identical_to_int8_path": identical, "accuracy": accuracy,
            "int8_accuracy_same_examples": int8_accuracy, "wall_seconds": round(wall, 1),
            **{f"rtl_{k}": v for k, v in summarize(backend.stats).items()}}


def _summary(config, spec, simulator, n_tokens, pruned, exported, int8, rtl, rtl_eval, totals, out) -> dict:
    def primary(metrics):
        if not metrics:
            return None
        return next(iter(metrics.values())) if isinstance(metrics, dict) else metrics

    clock = resolve_engine_clock(spec)   # the spec clock, or the achieved Fmax of build/fpga/<spec>/report.json
    image_totals = json.loads((out / "manifest.json").read_text())["totals"]   # blockforge.image.manifest
    dense_params = image_totals["dense_int8_bytes"]                               # one int8 byte per weight
    kept_params = exported["nnz_blocks"] * spec.block.rows * spec.block.cols
    return {
        "model": config.model, "task": config.task, "spec": spec.name, "method": config.method,
        "target_sparsity": config.sparsity, "preset": config.preset, "seed": config.seed,
        "distill": config.resolved_distill,
        "dense_accuracy": primary(pruned["dense"]), "pruned_float_accuracy": primary(pruned["pruned"]),
        "int8_accuracy": primary(int8["int8"]), "dev_examples": int8["dev_examples"],
        "rtl_accuracy": rtl_eval["accuracy"] if rtl_eval else None,
        "rtl_eval_examples": rtl_eval["examples"] if rtl_eval else 0,
        "int8_accuracy_same_examples": rtl_eval["int8_accuracy_same_examples"] if rtl_eval else None,
        "rtl_logits_identical": rtl_eval["logits_identical_to_int8_path"] if rtl_eval else None,
        "block_sparsity": 1 - exported["nnz_blocks"] / exported["total_blocks"],
        "prunable_params_dense": dense_params, "prunable_params_kept": kept_params,
        "param_compression": dense_params / max(kept_params, 1),
        "image_bytes": exported["bytes"], "dense_fp32_bytes": image_totals["dense_fp32_bytes"],
        "byte_compression_vs_fp32": image_totals["compression_vs_fp32"],
        "n_tokens": n_tokens, "simulator": simulator,
        "estimated_cycles": totals["cycles"], "rtl_cycles": rtl["rtl_cycles"],
        "estimate_equals_rtl": rtl["layers_cycles_equal"] == rtl["layers"] and totals["cycles"] == rtl["rtl_cycles"],
        "dense_cycles": totals["dense_cycles"], "speedup_vs_dense": totals["speedup"],
        "utilization": totals["utilization"], "time_ms_at_clock": clock.time_us(totals["cycles"]) / 1e3,
        "clock_mhz": clock.mhz, "clock": clock.describe(),
        "rtl_layers": rtl["layers"], "rtl_elements_checked": rtl["elements"], "mismatches": rtl["mismatches"]
        + (rtl_eval["rtl_mismatches"] if rtl_eval else 0),
        "report": str(out / "report.html"),
    }


def format_summary(s: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    rows = [
        ("model / task / spec", f"{s['model']} / {s['task']} / {s['spec']} ({s['method']}, target {s['target_sparsity']:.0%}, "
                                f"{s['preset']} schedule, seed {s['seed']})"),
        ("dense accuracy", f"{pct(s['dense_accuracy'])}  (dev, {s['dev_examples']} examples)"),
        ("pruned float accuracy", pct(s["pruned_float_accuracy"])),
        ("int8 accuracy", pct(s["int8_accuracy"])),
        ("accuracy through the RTL", f"{pct(s['rtl_accuracy'])}  ({s['rtl_eval_examples']} examples; int8 path on the same: "
                                     f"{pct(s['int8_accuracy_same_examples'])}; logits identical: {s['rtl_logits_identical']})"),
        ("block sparsity", f"{s['block_sparsity']:.1%}"),
        ("compression", f"{s['param_compression']:.2f}x parameters ({s['prunable_params_kept']:,} of "
                        f"{s['prunable_params_dense']:,} prunable weights kept), {s['byte_compression_vs_fp32']:.2f}x bytes vs fp32"),
        ("image size", f"{s['image_bytes']:,} bytes"),
        ("cycles (N = %d)" % s["n_tokens"], f"estimated {s['estimated_cycles']:,}, simulated {s['rtl_cycles']:,} "
                                            f"({s['simulator']}), equal: {s['estimate_equals_rtl']}"),
        ("speedup vs dense", f"{s['speedup_vs_dense']:.2f}x on the same engine ({s['dense_cycles']:,} dense cycles), "
                             f"utilization {s['utilization']:.1%}, {s['time_ms_at_clock']:.2f} ms at "
                             f"{s.get('clock', 'the spec clock')}"),
        ("mismatches", f"{s['mismatches']} ({s['rtl_elements_checked']:,} outputs of {s['rtl_layers']} layers checked)"),
        ("report", s["report"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
