"""Task accuracy of the int8 integer path vs the float model; prints one JSON line.

For each ``--model`` folder (a fine-tuned, optionally pruned, sequence-classification model, e.g. the
output of ``blockforge prune``): evaluate the float model on the task's dev split, then for each
calibrator quantize every prunable linear (calibrating on the first ``--calib`` training examples),
swap in the integer layers (reference backend) and evaluate again. Also reports the share of dev
examples whose predicted class changed, and checks on one batch that every recorded int8 call replays
bit-exactly through ``reference.linear_dense``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/qmodel_accuracy.py --model build/h2/dense build/h2/mag50
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from blockforge import reference
from blockforge.data import load_task
from blockforge.models import load_model, load_tokenizer
from blockforge.batches import tokenize
from blockforge.prune.training import evaluate_model
from blockforge.qmodel import Recorder, integer_model, quantize_model
from blockforge.spec import load_spec


def predictions(model, split, task, batch_size):
    """Predicted classes on the split, in split order (same bucketing as evaluate_model)."""
    order = sorted(range(len(split)), key=lambda i: len(split.features[i]["input_ids"]))
    out = np.zeros(len(split), dtype=np.int64)
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            chunk = order[i:i + batch_size]
            batch = split.collate(chunk, task.is_regression)
            batch.pop("labels")
            out[chunk] = model(**batch).logits.argmax(dim=-1).numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True)
    parser.add_argument("--spec", default="tile8")
    parser.add_argument("--task", default="default")
    parser.add_argument("--calib", type=int, default=256)
    parser.add_argument("--calibrators", default="mse/percentile,percentile,mse,max",
                        help="comma-separated recipes: NAME or INPUTS/OUTPUTS")
    parser.add_argument("--dev-size", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = load_spec(args.spec)
    task = load_task(args.task, dev_size=args.dev_size)
    results = []
    for model_dir in args.model:
        started = time.perf_counter()
        model = load_model(model_dir, labels=task.labels).model.eval()
        tokenizer = load_tokenizer(model_dir)
        dev = tokenize(tokenizer, task.dev, args.max_length)
        calib = tokenize(tokenizer, task.train[: args.calib], args.max_length)
        order = sorted(range(len(calib)), key=lambda i: len(calib.features[i]["input_ids"]))
        batches = [calib.collate(order[i:i + 32], task.is_regression) for i in range(0, len(order), 32)]
        labels = np.array(dev.labels, dtype=np.int64)
        float_pred = predictions(model, dev, task, args.batch_size)
        entry = {"model": model_dir, "float_accuracy": float((float_pred == labels).mean()), "int8": {}}
        for calibrator in args.calibrators.split(","):
            t0 = time.perf_counter()
            quantized = quantize_model(model, spec, batches, calibrator=calibrator)
            qmodel = integer_model(model, quantized)
            int_pred = predictions(qmodel, dev, task, args.batch_size)
            entry["int8"][calibrator] = {
                "accuracy": float((int_pred == labels).mean()),
                "changed_predictions": float((int_pred != float_pred).mean()),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        # Exactness: the recorded int8 traffic of one batch replays through the dense reference.
        recorder = Recorder()
        with torch.no_grad():
            qmodel_rec = integer_model(model, quantized, recorder=recorder)
            batch = dev.collate(list(range(min(16, len(dev)))), task.is_regression)
            batch.pop("labels")
            qmodel_rec(**batch)
        mismatches = sum(
            int(not np.array_equal(reference.linear_dense(quantized.layer(c.layer), c.x_q, spec.numerics)[0], c.y_q))
            for c in recorder.calls)
        entry["replayed_calls"] = len(recorder.calls)
        entry["replay_mismatches"] = mismatches
        entry["block_sparsity"] = 1 - sum(l.nnz_blocks for l in quantized.layers) / sum(l.total_blocks for l in quantized.layers)
        entry["seconds"] = round(time.perf_counter() - started, 1)
        results.append(entry)
    # compute_metrics is what evaluate_model uses; cross-check the float figure once.
    check = evaluate_model(load_model(args.model[0], labels=task.labels).model, tokenize(
        load_tokenizer(args.model[0]), task.dev, args.max_length), task, batch_size=args.batch_size)["accuracy"]
    print(json.dumps({"bench": "qmodel_accuracy", "spec": spec.name, "task": task.name, "dev_examples": len(task.dev),
                      "calibration_examples": args.calib, "results": results,
                      "float_accuracy_via_evaluate_model": check}))


if __name__ == "__main__":
    main()
