"""The seven stages of the flow and :func:`run_flow`, which runs them through the resume store.

torch, transformers and the simulators are imported inside the stage bodies: ``blockforge --help``, a
config error and a fully resumed run do not pay their start-up (seconds)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from blockforge.clock import read_fpga_report, resolve_engine_clock
from blockforge.data import load_task, tweets_csv_path
from blockforge.fsutil import atomic_write, write_json
from blockforge.image import read_image, write_manifest
from blockforge.model_estimate import estimate_layers
from blockforge.report import write_report
from blockforge.resume import contents, fingerprint
from blockforge.spec import load_spec
from blockforge_sim.jobs import result_row, result_totals
from blockforge_sim.runner import available_simulators, find_simulator
from blockforge_sim.simulator import RtlBackend, RtlSimulator, threaded_map
from blockforge_sim.simulator import summarize as summarize_stats
from tqdm.auto import tqdm

from .config import RunConfig
from .store import Stages
from .summary import summarize

__all__ = ["FlowResult", "run_flow"]

RTL_EVAL_PASSES = 8     # engine passes per layer and rtl_eval batch (one weight load serves them all)


def _input_files(config: RunConfig, spec) -> list[Path]:
    """The files a run reads, whose content (not only name) decides whether its stages are up to date:
    the spec file, a local model folder, and the task's data files or folder."""
    files = [Path(spec.source)] if Path(spec.source).is_file() else []
    if config.model != "default" and Path(config.model).exists():
        files.append(Path(config.model))
    fmt, _, where = config.task.partition(":")
    where = where.split("?", 1)[0]
    if fmt.lower() in ("default", "tweets") and not where:
        where = str(tweets_csv_path())
    if where and Path(where).exists():
        files.append(Path(where))
    return files


@dataclass
class FlowResult:
    summary: dict
    out_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _choose_simulator(config: RunConfig) -> str:
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
    rtl_examples = config.resolved_rtl_eval_examples(simulator)
    sched = config.schedule_values()
    stages = Stages(out, log)
    (out / "run.yaml").write_text(yaml.safe_dump({**dataclasses.asdict(config), "resolved": {
        "simulator": simulator, "tokens": n_tokens, "rtl_eval_examples": rtl_examples, **sched}}, sort_keys=False))
    common = {"spec": spec.digest, "model": config.model, "task": config.task, "seed": config.seed,
              "input_files": fingerprint(contents(_input_files(config, spec)))[:16],
              "max_length": config.max_length, "train_size": sched["train_size"], "dev_size": sched["dev_size"]}
    pruned_dir, image_path = out / "pruned", out / "model.bfim"

    # 1. fine-tune dense → reweighted group Lasso → hard prune → masked retrain
    def prune() -> dict:
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
        from blockforge.batches import tokenize
        from blockforge.prune.training import evaluate_model
        from blockforge.qmodel import integer_model

        model, tokenizer, layers, task = _integer_parts(pruned_dir, image_path, spec, config, sched)
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
        return _rtl_eval(pruned_dir, image_path, spec, config, sched, simulator, rtl_examples, out, log)
    rtl_eval_result = None
    if rtl_examples:
        rtl_eval_result = stages.run("rtl_eval", {"simulator": simulator, "examples": rtl_examples},
                                     [], rtl_eval, after=("export",))

    # 6. the cycle model for the same image and N, compared with the RTL
    def estimate() -> dict:
        result = estimate_layers(spec, read_image(image_path, spec).layers, n_tokens)
        write_json(out / "estimate.json", result)
        return result["totals"]
    totals = stages.run("estimate", {"tokens": n_tokens}, [out / "estimate.json"], estimate, after=("export",))

    # 7. the HTML report: the run's headline (settings, accuracies, compression, time at the clock used,
    # the FPGA build when there is one), then cycles, utilization and estimate vs RTL
    summary = summarize(config, spec, simulator, n_tokens, pruned, exported, int8, rtl, rtl_eval_result, totals, out)

    def report() -> dict:
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
    write_json(out / "summary.json", summary)
    return FlowResult(summary, out, stages.ran, stages.skipped)


def _task(config: RunConfig, sched: dict):
    return load_task(config.task, train_size=sched["train_size"], dev_size=sched["dev_size"])


def _integer_parts(pruned_dir: Path, image_path: Path, spec, config: RunConfig, sched: dict):
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

    from blockforge.batches import tokenize
    from blockforge.qmodel import Recorder, integer_model

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
    rtl = RtlSimulator(spec, simulator=simulator, work_dir=out / "rtl", progress=config.progress)
    rtl.build()                       # before the bar: a Verilator compile shows its own elapsed time
    rows = []
    by_name = {layer.name: layer for layer in layers}
    with rtl.pool(workers=config.sim_workers, seed=config.seed + 1) as pool:
        runs = pool.map(image_path, jobs, layers=by_name)
        for run in tqdm(runs, total=len(jobs), desc=f"RTL {simulator}", unit="layer", leave=False,
                        disable=not config.progress):
            r = run.results[0]
            rows.append({**result_row(r), "sim_seconds": round(r.sim_seconds, 3)})
    atomic_write(target, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode())
    totals = result_totals(rows)
    seconds = sum(r["sim_seconds"] for r in rows)
    return {**totals, "failed": sum(bool(r["status"]) or r["timed_out"] for r in rows), "simulator": simulator,
            "n_tokens": n_tokens, "activation_examples": example, "sim_seconds": round(seconds, 1),
            "cycles_per_second": round(totals["rtl_cycles"] / seconds) if seconds else None}


def _rtl_eval(pruned_dir, image_path, spec, config, sched, simulator, examples, out, log) -> dict:
    """Score dev examples with every prunable linear computed by the RTL engine; the logits must equal
    the integer PyTorch path's exactly. Examples are sorted by length and packed into batches of at most
    RTL_EVAL_PASSES engine passes of ``max_tokens`` columns: short sentences share a pass (the engine is
    token-parallel), and each layer's weights are read into the simulated memory once per batch, the
    following passes reloading only their activations. Batches run in parallel, one per simulator process
    (``sim_workers``, default one per core)."""
    import torch

    from blockforge.batches import pack_by_tokens, tokenize
    from blockforge.qmodel import integer_model

    model, tokenizer, layers, task = _integer_parts(pruned_dir, image_path, spec, config, sched)
    count = min(examples, len(task.dev))
    split = tokenize(tokenizer, task.dev[:count], config.max_length)
    rtl = RtlSimulator(spec, simulator=simulator, work_dir=out / "rtl", progress=config.progress)
    rtl.build()
    reference_model = integer_model(model, layers, spec)
    groups = pack_by_tokens([len(f["input_ids"]) for f in split.features],
                            spec.buffers.max_tokens * RTL_EVAL_PASSES)
    identical, tokens, columns = True, 0, 0
    rtl_predictions: dict[int, float] = {}
    int8_predictions: dict[int, float] = {}
    pick = (lambda t: t.squeeze(-1).tolist()) if task.is_regression else (lambda t: t.argmax(-1).tolist())
    started = time.perf_counter()
    with RtlBackend(rtl, layers, seed=config.seed + 1, workers=config.sim_workers) as backend, \
            tqdm(total=count, desc=f"RTL eval ({simulator})", unit="example", leave=False,
                 disable=not config.progress) as bar:
        rtl_model = integer_model(model, layers, spec, backend=backend)

        def score(group: list[int]):
            # one batch, in one of the backend's threads (grad mode is per thread, so no_grad is set here);
            # torch ops and the simulators release the GIL
            with torch.no_grad():
                batch = split.collate(group, task.is_regression)
                batch.pop("labels")
                return group, batch, reference_model(**batch).logits, rtl_model(**batch).logits

        for group, batch, expected, got in threaded_map(score, groups, backend.workers):
            tokens += int(batch["attention_mask"].sum())
            columns += int(batch["input_ids"].numel())
            identical &= bool(torch.equal(expected, got))
            rtl_predictions.update(zip(group, pick(got)))
            int8_predictions.update(zip(group, pick(expected)))
            bar.update(len(group))
    wall = time.perf_counter() - started
    rtl_predictions = [rtl_predictions[i] for i in range(count)]
    int8_predictions = [int8_predictions[i] for i in range(count)]
    labels = list(split.labels)
    accuracy = None if task.is_regression else float(np.mean([p == int(y) for p, y in zip(rtl_predictions, labels)]))
    int8_accuracy = None if task.is_regression else float(np.mean([p == int(y) for p, y in zip(int8_predictions, labels)]))
    return {"examples": count, "tokens": tokens, "columns": columns, "batches": len(groups),
            "sim_workers": backend.workers,
            "logits_identical_to_int8_path": identical, "accuracy": accuracy,
            "int8_accuracy_same_examples": int8_accuracy, "wall_seconds": round(wall, 1),
            "examples_per_second": round(count / wall, 2) if wall else None,
            **{f"rtl_{k}": v for k, v in summarize_stats(backend.stats).items()}}
