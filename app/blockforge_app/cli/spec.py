"""``blockforge spec show|check|list``: inspect and validate accelerator specs."""

from __future__ import annotations

import argparse
import json

import yaml

from blockforge.spec import load_spec, resolve_spec_path, shipped_spec_names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("spec", help="show, check or list accelerator specs")
    sub = parser.add_subparsers(dest="spec_command", metavar="ACTION")
    sub.required = True

    show = sub.add_parser("show", help="print a validated spec and its derived figures")
    show.add_argument("spec", metavar="NAME|PATH", help="a shipped spec name (e.g. tile8) or a YAML file")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_show)

    check = sub.add_parser("check", help="validate a spec file; exit 2 with one line if it is invalid")
    check.add_argument("spec", metavar="NAME|PATH")
    check.set_defaults(handler=_check)

    listing = sub.add_parser("list", help="list the shipped specs")
    listing.set_defaults(handler=_list)


def _show(args: argparse.Namespace) -> None:
    spec = load_spec(args.spec)
    if args.json:
        print(json.dumps({"spec": spec.to_dict(), "derived": spec.derived(),
                          "source": str(resolve_spec_path(args.spec))}, sort_keys=True))
        return
    print(f"# {spec.name} ({resolve_spec_path(args.spec)})")
    print(yaml.safe_dump(spec.to_dict(), sort_keys=False).rstrip())
    d = spec.derived()
    print("# derived")
    print(f"macs_per_cycle: {d['macs_per_cycle']}        # BR x BC multiply-accumulates per cycle")
    print(f"peak_gmacs: {d['peak_gmacs']:g}            # at clock_mhz")
    print(f"tile_bytes: {d['tile_bytes']}")
    print(f"tile_words: {d['tile_words']}             # weight-bus words per tile")
    print(f"tile_load_cycles: {d['tile_load_cycles']}       # at the sustained weight bandwidth")
    print(f"bias_limit: {d['bias_limit']}   # largest |int bias| that cannot overflow the accumulator")
    print(f"digest: {d['digest']}")


def _check(args: argparse.Namespace) -> None:
    spec = load_spec(args.spec)
    print(f"{resolve_spec_path(args.spec)}: ok ({spec.name}, {spec.block.rows}x{spec.block.cols} blocks, "
          f"digest {spec.digest[:12]})")


def _list(args: argparse.Namespace) -> None:
    for name in shipped_spec_names():
        spec = load_spec(name)
        print(f"{name:10s} {spec.block.rows}x{spec.block.cols:<3d} bus {spec.memory.weight_bus_bits:4d} bits  "
              f"{spec.description}")
