"""Cost of a reweighted group-Lasso training step relative to a plain fine-tuning step.

Default model (all-MiniLM-L6-v2) on the default task, batch 32, seq ≤ 64, AdamW. Plain and reweighted
steps are interleaved on the same batches (A B B A ...) so machine noise hits both alike; a reweighted
step is a plain step plus what the pipeline's bsp phase adds: the per-block Adam-metric factors, the
proximal group soft-threshold over every prunable layer, and α (with the cap quantile) recomputed every
``reweight_period`` steps (counted in, amortized as in training). Prints one JSON line
with the median step times and their ratio (goal ≤ 1.15).

    python bench/prune_overhead.py --spec tile8 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="tile8")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each kind")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reweight-period", type=int, default=16)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from blockforge.data import load_task
    from blockforge.models import load_model, load_tokenizer
    from blockforge.prune.pattern import prunable_layers
    from blockforge.prune.regularizer import ReweightedGroupLasso, adam_block_scale
    from blockforge.batches import Batches, tokenize
    from blockforge.spec import load_spec

    task = load_task("default", train_size=2000, dev_size=2)
    model = load_model("default", labels=task.labels).model
    split = tokenize(load_tokenizer("default"), task.train, 64)
    layers = prunable_layers(model, load_spec(args.spec))
    # as in the pipeline's bsp phase: capped penalty, budget, proximal step in Adam's metric
    regularizer = ReweightedGroupLasso(layers, lam=1e-3, epsilon=1e-3, cap={l.name: 0.625 for l in layers},
                                       budget={l.name: l.layout.n_blocks // 2 for l in layers})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batches = list(Batches(len(split), args.batch_size, seed=0).steps(0, 2 * args.steps + 2))
    model.train()

    def step(indices, reweighted: bool, index: int) -> float:
        t0 = time.perf_counter()
        if reweighted and index % args.reweight_period == 0:
            regularizer.reweight()
        batch = split.collate(indices, False)
        labels = batch.pop("labels")
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if reweighted:
            scale = {l.name: adam_block_scale(l.weight, l.layout, optimizer) for l in layers}
            regularizer.proximal_step(1e-5, scale)
        return time.perf_counter() - t0

    step(batches[0], False, 1)  # warm-up
    step(batches[1], True, 1)
    plain, reweighted = [], []
    for i in range(args.steps):
        indices = batches[2 + i]  # the same batch (same padded length) for both kinds, order alternating
        for kind in ((False, True) if i % 2 == 0 else (True, False)):
            (reweighted if kind else plain).append(step(indices, kind, i))
    prox_only = []
    with torch.no_grad():
        for _ in range(10):
            t0 = time.perf_counter()
            scale = {l.name: adam_block_scale(l.weight, l.layout, optimizer) for l in layers}
            regularizer.proximal_step(1e-5, scale)
            prox_only.append(time.perf_counter() - t0)
    plain_s, rew_s = statistics.median(plain), statistics.median(reweighted)
    print(json.dumps({"bench": "prune_overhead", "spec": args.spec, "model": "all-MiniLM-L6-v2",
                      "batch_size": args.batch_size, "max_length": 64, "threads": args.threads,
                      "steps_each": args.steps, "layers": len(layers),
                      "plain_step_s": round(plain_s, 4), "reweighted_step_s": round(rew_s, 4),
                      "ratio": round(rew_s / plain_s, 4),
                      "ratio_of_means": round(statistics.fmean(reweighted) / statistics.fmean(plain), 4),
                      "proximal_step_s": round(statistics.median(prox_only), 4), "goal": 1.15}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
