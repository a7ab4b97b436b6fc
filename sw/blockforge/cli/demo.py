"""``blockforge demo``: the main job on the embedded defaults, as far as the pipeline exists."""

from __future__ import annotations

import argparse

from ..spec import load_spec

DEFAULT_SPEC = "tile8"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the main job on the default model, data and spec")
    parser.add_argument("--spec", default=DEFAULT_SPEC, help=f"spec name or path (default {DEFAULT_SPEC})")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> None:
    spec = load_spec(args.spec)
    d = spec.derived()
    print(f"spec {spec.name}: {spec.block.rows}x{spec.block.cols} blocks, {d['macs_per_cycle']} MACs/cycle, "
          f"tile load {d['tile_load_cycles']} cycles, digest {d['digest'][:12]}")
    print("stages available in this build: spec. prune, image, RTL simulation and estimate are not built yet.")
