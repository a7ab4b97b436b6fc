"""``blockforge export`` (quantize a Hugging Face model into a ``.bfim`` image) and ``blockforge inspect``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from blockforge.data import TASK_HELP
from blockforge.export import DEFAULT_CALIB
from blockforge.spec import DEFAULT_SPEC


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export", help="quantize a (pruned or dense) Hugging Face model to int8 and write a .bfim image",
        description="Calibrate activation scales on real text, quantize every prunable linear of the encoder "
                    "to int8 block-sparse form for the spec, and write the weight image atomically. "
                    "All-zero blocks are not stored.")
    export.add_argument("--model", default="default",
                        help="model folder (e.g. the output of `blockforge prune`), or 'default' (all-MiniLM-L6-v2)")
    export.add_argument("--spec", default=DEFAULT_SPEC, help=f"spec name or YAML path (default {DEFAULT_SPEC})")
    export.add_argument("-o", "--output", required=True, type=Path, help="the .bfim file to write")
    export.add_argument("--calib", type=int, default=DEFAULT_CALIB, metavar="N",
                        help=f"calibration examples from the task's train split (default {DEFAULT_CALIB})")
    export.add_argument("--calibrator", default=None, metavar="NAME[/NAME]",
                        help="activation-scale calibrator: mse, percentile or max for all scales, or "
                             "INPUTS/OUTPUTS (default mse/percentile; see docs/numerics.md)")
    export.add_argument("--percentile", type=float, default=None,
                        help="percentile used by the percentile calibrator (default 99.99)")
    export.add_argument("--task", default="default",
                        help="where calibration text comes from: " + TASK_HELP)
    export.add_argument("--max-length", type=int, default=64, help="tokens per example (default 64)")
    export.add_argument("--batch-size", type=int, default=32, help="calibration batch size (default 32)")
    export.add_argument("--manifest", type=Path, default=None, help="also write a JSON manifest here")
    export.add_argument("--hex", type=Path, default=None, metavar="DIR",
                        help="also write $readmemh files for the RTL memories, one folder per layer")
    export.set_defaults(handler=_export)

    inspect = subparsers.add_parser("inspect", help="describe a .bfim image: layers, sparsity, bytes, compression")
    inspect.add_argument("image", type=Path, help="a .bfim file")
    inspect.add_argument("--spec", default=None, help="also check that the image was built for this spec")
    inspect.add_argument("--json", action="store_true", help="print the manifest as JSON")
    inspect.set_defaults(handler=_inspect)


def _positive(value: int, flag: str) -> None:
    from blockforge.errors import UsageError

    if value <= 0:
        raise UsageError(f"{flag} must be a positive integer, got {value}")


def _export(args: argparse.Namespace) -> None:
    from blockforge.errors import UsageError
    from blockforge.fsutil import check_output
    from blockforge.image import manifest, read_image, write_manifest
    from blockforge.quant import DEFAULT_CALIBRATOR, DEFAULT_PERCENTILE, parse_calibrator
    from blockforge.spec import load_spec

    for value, flag in ((args.calib, "--calib"), (args.max_length, "--max-length"), (args.batch_size, "--batch-size")):
        _positive(value, flag)
    calibrator = args.calibrator or DEFAULT_CALIBRATOR
    recipe = parse_calibrator(calibrator)                  # validates before the model is loaded
    if args.percentile is not None and "percentile" not in recipe:
        raise UsageError(f"--percentile only applies when the calibrator uses percentile, not {calibrator!r}")
    percentile = args.percentile if args.percentile is not None else DEFAULT_PERCENTILE
    if not 0 < percentile <= 100:
        raise UsageError(f"--percentile must be in (0, 100], got {percentile}")
    spec = load_spec(args.spec)
    if args.output.is_dir():
        raise UsageError(f"{args.output}: is a directory; give the .bfim file to write")
    if not args.output.parent.exists():
        raise UsageError(f"{args.output.parent}: no such directory")
    if args.manifest is not None:
        check_output(args.manifest, flag="--manifest")
    if args.hex is not None:
        check_output(args.hex, folder=True, flag="--hex")

    started = time.perf_counter()
    from blockforge.data import load_task
    from blockforge.export import export_model

    task = load_task(args.task)
    result = export_model(args.model, spec, task, calib=args.calib, calibrator=calibrator, percentile=percentile,
                          max_length=args.max_length, batch_size=args.batch_size, output=args.output,
                          model_source=str(args.model))
    path, examples = result.path, task.train[: args.calib]
    image = read_image(path, spec)
    if args.manifest is not None:
        write_manifest(args.manifest, image)
    hex_dirs = 0
    if args.hex is not None:
        from blockforge.hexfiles import write_hex

        for layer in image.layers:
            write_hex(layer, spec, args.hex / layer.name)
            hex_dirs += 1
    totals = manifest(image)["totals"]
    print(f"wrote {path}: {totals['layers']} layers, {totals['nnz_blocks']}/{totals['total_blocks']} blocks stored "
          f"({totals['block_sparsity']:.1%} block sparsity), {image.file_size:,} bytes "
          f"({totals['compression_vs_fp32']:.2f}x smaller than dense fp32, "
          f"{totals['compression_vs_int8']:.2f}x than dense int8); calibrator {calibrator} on {len(examples)} "
          f"examples; {time.perf_counter() - started:.1f} s")
    if args.hex is not None:
        print(f"hex files for {hex_dirs} layers under {args.hex}")


def _inspect(args: argparse.Namespace) -> None:
    from blockforge.image import manifest, read_image
    from blockforge.spec import load_spec

    image = read_image(args.image, load_spec(args.spec) if args.spec else None)
    data = manifest(image)
    if args.json:
        json.dump(data, sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
        return
    totals = data["totals"]
    spec = data["spec"]
    print(f"{args.image}: bfim v{data['format_version']}, {data['file_bytes']:,} bytes, spec {spec['name']} "
          f"({spec['block'][0]}x{spec['block'][1]} blocks, {spec['weight_bus_bits']}-bit bus, "
          f"digest {spec['digest'][:12]})")
    width = max([len(entry["name"]) for entry in data["layers"]] + [5])
    print(f"{'layer':<{width}}  {'shape':>11}  {'blocks':>13}  {'sparsity':>8}  {'bytes':>10}  {'s_x':>9}  {'s_y':>9}")
    for entry in data["layers"]:
        shape = f"{entry['out_features']}x{entry['in_features']}"
        blocks = f"{entry['nnz_blocks']}/{entry['total_blocks']}"
        print(f"{entry['name']:<{width}}  {shape:>11}  {blocks:>13}  {entry['block_sparsity']:>8.1%}  "
              f"{entry['bytes']['total']:>10,}  {entry['scale_in']:>9.3g}  {entry['scale_out']:>9.3g}")
    print(f"total: {totals['layers']} layers, {totals['nnz_blocks']}/{totals['total_blocks']} blocks "
          f"({totals['block_sparsity']:.1%} block sparsity); image {data['file_bytes']:,} bytes vs dense fp32 "
          f"{totals['dense_fp32_bytes']:,} ({totals['compression_vs_fp32']:.2f}x) and dense int8 "
          f"{totals['dense_int8_bytes']:,} ({totals['compression_vs_int8']:.2f}x)")
