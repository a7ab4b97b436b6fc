"""Benchmark: the cycle model on whole BERT-base and BERT-large sized images (synthetic block masks at
50% block sparsity), for tile8 and row1x96. Prints one JSON line: per image and spec, block rows,
seconds for the sparse cycle counts alone (``layer_cycles`` per layer) and for the full report
(``model_estimate.estimate_layers``: sparse + dense baseline + derived figures), best of ``--repeat``.

    .venv/bin/python bench/estimator_speed.py [--repeat 5] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from blockforge.estimate import layer_cycles
from blockforge.model_estimate import LayerShape, estimate_layers
from blockforge.spec import load_spec

MODELS = {"bert-base": (12, 768, 3072), "bert-large": (24, 1024, 4096)}


def synthetic_image(spec, layers: int, hidden: int, ffn: int, density: float, seed: int) -> list[LayerShape]:
    rng = np.random.default_rng(seed)
    shapes = []
    for i in range(layers):
        for role, (out_f, in_f) in (("q", (hidden, hidden)), ("k", (hidden, hidden)), ("v", (hidden, hidden)),
                                    ("o", (hidden, hidden)), ("ffn1", (ffn, hidden)), ("ffn2", (hidden, ffn))):
            # block counts only (the cycle model needs no buffer-limit check; BERT's FFN exceeds the
            # shipped specs' max features, which a real deployment would split)
            mask = rng.random((-(-out_f // spec.block.rows), -(-in_f // spec.block.cols))) < density
            shapes.append(LayerShape(f"layer{i}.{role}", mask, out_f, in_f))
    return shapes


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--density", type=float, default=0.5)
    args = parser.parse_args()
    figures = {"bench": "estimator_speed", "n_tokens": args.tokens, "block_density": args.density, "runs": []}
    for model, (layers, hidden, ffn) in MODELS.items():
        for name in ("tile8", "row1x96"):
            spec = load_spec(name)
            image = synthetic_image(spec, layers, hidden, ffn, args.density, seed=0)
            nnz = [layer.nnz_per_row() for layer in image]
            sparse_s, cycles = best_of(args.repeat, lambda: sum(layer_cycles(spec, k, args.tokens) for k in nnz))
            full_s, report = best_of(args.repeat, lambda: estimate_layers(spec, image, args.tokens))
            assert report["totals"]["cycles"] == cycles
            figures["runs"].append({
                "model": model, "spec": name, "layers": len(image), "block_rows": int(sum(k.size for k in nnz)),
                "cycles": cycles, "layer_cycles_ms": round(sparse_s * 1e3, 2),
                "estimate_layers_ms": round(full_s * 1e3, 2)})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
