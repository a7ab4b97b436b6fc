"""Image codec and reference throughput; prints one JSON line.

- write/read MB/s of a BERT-base-sized image (12 encoder layers: 4 × 768×768 + 768×3072 + 3072×768 per
  layer, synthetic int8 weights, 50% of 8×8 blocks stored), median of ``--repeats`` runs (best also reported; the
  1-minute load average is printed because the machine is shared). Writing
  includes the fsync and rename; reading includes every CRC and structural check.
- decoding the whole image vs one layer of it (``decode_image_layer``, what a simulator serving a job
  does) from the same bytes in memory, alternated, medians.
- reference ``linear`` MACs/s on a 768×768 layer at N = 128 tokens, dense and at 50% block sparsity
  (useful MACs, i.e. stored tiles only), and the dense-equivalent rate of the sparse layer.

Goals (issue 4): ≥ 200 MB/s write, ≥ 500 MB/s read.

    .venv/bin/python bench/image_io.py [--repeats 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from blockforge import reference
from blockforge.image import decode_image, decode_image_layer, read_image, read_image_bytes, write_image
from blockforge.layer import BlockSparseLayer
from blockforge.spec import load_spec, spec_from_dict

SEED = 2026


def bert_base_spec():
    base = load_spec("tile8").to_dict()
    base["name"] = "tile8-bert-base"
    base["buffers"] = {"max_tokens": 128, "max_in_features": 3072, "max_out_features": 3072}
    return spec_from_dict(base, "bench:tile8-bert-base")


def synthetic_layer(name, out_features, in_features, density, spec, rng):
    br, bc = spec.block.rows, spec.block.cols
    keep = rng.random((out_features // br, in_features // bc)) < density
    weight = rng.integers(-127, 128, size=(out_features, in_features), dtype=np.int8)
    weight *= np.kron(keep, np.ones((br, bc), dtype=np.int8))
    bias = rng.integers(-2 ** 20, 2 ** 20, size=out_features)
    multiplier = rng.integers(2 ** 15, 2 ** 16, size=out_features)
    shift = rng.integers(20, 30, size=out_features)
    return BlockSparseLayer.from_dense(name, weight, bias, multiplier, shift, spec, scale_in=0.02, scale_out=0.05,
                                       weight_scale=rng.random(out_features) / 100)


def bert_base_layers(spec, rng, density=0.5):
    shapes = [("attention.self.query", 768, 768), ("attention.self.key", 768, 768),
              ("attention.self.value", 768, 768), ("attention.output.dense", 768, 768),
              ("intermediate.dense", 3072, 768), ("output.dense", 768, 3072)]
    return [synthetic_layer(f"bert.encoder.layer.{i}.{name}", o, n, density, spec, rng)
            for i in range(12) for name, o, n in shapes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the image (default: a temp dir)")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    spec = bert_base_spec()
    layers = bert_base_layers(spec, rng)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "bert_base.bfim"
        write_s, read_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            write_image(path, layers, spec, {"bench": "image_io", "seed": SEED})
            write_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            image = read_image(path, spec)
            read_s.append(time.perf_counter() - t0)
        size = path.stat().st_size
        data = read_image_bytes(path)
        one = layers[len(layers) // 2].name
        decode_all_s, decode_one_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            decode_image(data, spec)
            decode_all_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            decode_image_layer(data, one, spec)
            decode_one_s.append(time.perf_counter() - t0)
    assert all(np.array_equal(a.tiles, b.tiles) for a, b in zip(layers, image.layers))

    numerics = dataclasses.replace(spec.numerics)
    macs = {}
    for label, density in (("dense", 1.0), ("sparse50", 0.5)):
        layer = synthetic_layer("l", 768, 768, density, spec, rng)
        x = rng.integers(-128, 128, size=(768, 128)).astype(np.int8)
        reference.linear(layer, x, numerics)
        times = []
        for _ in range(max(3, args.repeats)):
            t0 = time.perf_counter()
            reference.linear(layer, x, numerics)
            times.append(time.perf_counter() - t0)
        useful, dense = reference.layer_macs(layer, 128)
        macs[label] = (useful, dense, statistics.median(times))

    nnz = sum(layer.nnz_blocks for layer in layers)
    total = sum(layer.total_blocks for layer in layers)
    print(json.dumps({
        "bench": "image_io",
        "seed": SEED,
        "layers": len(layers),
        "weights": sum(layer.out_features * layer.in_features for layer in layers),
        "block_density": round(nnz / total, 4),
        "image_bytes": size,
        "write_mb_s": round(size / 1e6 / statistics.median(write_s), 1),
        "read_mb_s": round(size / 1e6 / statistics.median(read_s), 1),
        "write_mb_s_best": round(size / 1e6 / min(write_s), 1),
        "read_mb_s_best": round(size / 1e6 / min(read_s), 1),
        "decode_all_layers_ms": round(1000 * statistics.median(decode_all_s), 2),
        "decode_one_layer_ms": round(1000 * statistics.median(decode_one_s), 2),
        "write_s": [round(t, 3) for t in write_s],
        "read_s": [round(t, 3) for t in read_s],
        "reference_768x768_n128_dense_macs_s": round(macs["dense"][0] / macs["dense"][2]),
        "reference_768x768_n128_sparse50_useful_macs_s": round(macs["sparse50"][0] / macs["sparse50"][2]),
        "reference_768x768_n128_sparse50_dense_equiv_macs_s": round(macs["sparse50"][1] / macs["sparse50"][2]),
        "goals": {"write_mb_s": 200, "read_mb_s": 500},
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
