"""``blockforge sim``: run layers of a real ``.bfim`` image on the RTL engine (cocotb + Icarus/Verilator)
and check every output against the integer reference and the cycle counter against the estimator.

The RTL tooling lives in ``blockforge_sim`` (which imports the hardware package); this command imports
it only inside its handler, so the rest of the CLI stays light.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path

DEFAULT_WORK_DIR = Path("build/rtl")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sim", help="simulate layers of an image on the RTL engine, bit-exact checks")
    parser.add_argument("image", type=Path, help="a .bfim weight image")
    parser.add_argument("--spec", required=True, metavar="NAME|PATH", help="the spec the image was built for")
    parser.add_argument("--layer", default="all", metavar="NAME|all",
                        help="a layer name, a comma-separated list, or 'all' (default)")
    parser.add_argument("--tokens", type=int, default=None, metavar="N",
                        help="activation columns per layer (default: the spec's max_tokens)")
    parser.add_argument("--activations", type=Path, default=None, metavar="NPZ",
                        help="an .npz with one int8 (in, N) array per layer name; default: seeded random int8")
    parser.add_argument("--simulator", default="icarus", choices=("icarus", "verilator"))
    parser.add_argument("--seed", type=int, default=1, help="seed of the activations and stall injectors")
    parser.add_argument("--stall-weights", type=int, default=0, metavar="R",
                        help="stall the weight memory with probability R/256 per cycle")
    parser.add_argument("--stall-out", type=int, default=0, metavar="R",
                        help="drop output ready with probability R/256 per cycle")
    parser.add_argument("--workers", type=int, default=None, metavar="K",
                        help="simulator processes run in parallel, layers spread over them (default: one per "
                             "core; 1 with --waves)")
    parser.add_argument("--waves", action="store_true", help="write waves (FST) and print their path")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                        help=f"build products, memory files and waves (default {DEFAULT_WORK_DIR})")
    parser.add_argument("--json", action="store_true", help="one JSON object per layer, then a totals object")
    parser.set_defaults(handler=_sim)


def _select_layers(names: list[str], wanted: str, image: Path) -> list[str]:
    from blockforge.errors import UsageError

    if wanted == "all":
        return names
    chosen = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise UsageError(f"{image}: no layer named {unknown[0]!r} (the image has {len(names)} layers, e.g. "
                         f"{names[0]!r})")
    return chosen


def _activations(args, layer, n_tokens: int, rng):
    import numpy as np

    from blockforge.errors import UsageError

    if args.activations is None:
        return rng.integers(-128, 128, size=(layer.in_features, n_tokens), dtype=np.int64).astype(np.int8)
    try:
        with open(args.activations, "rb") as fh:      # our handle: closed even when numpy fails
            data = np.load(fh, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise UsageError(f"{args.activations}: expected an .npz archive of int8 arrays by layer name")
            with data:
                if layer.name not in data.files:
                    raise UsageError(f"{args.activations}: no array named {layer.name!r}")
                x = data[layer.name]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{args.activations}: cannot read activations: {str(exc)[:120]}") from None
    if x.ndim != 2 or x.shape[0] != layer.in_features or not np.issubdtype(x.dtype, np.integer):
        raise UsageError(f"{args.activations}: {layer.name}: expected integers of shape ({layer.in_features}, N), "
                         f"got {x.dtype} {x.shape}")
    return x


def _sim(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from blockforge.errors import UsageError
    from blockforge.image import read_image
    from blockforge.spec import load_spec
    from blockforge_sim.jobs import result_totals
    from blockforge_sim.simulator import RtlSimulator

    from .estimate import tokens_option

    spec = load_spec(args.spec)
    image = read_image(args.image, spec)
    n_tokens = tokens_option(spec, args.tokens)
    for flag, value in (("--stall-weights", args.stall_weights), ("--stall-out", args.stall_out)):
        if not 0 <= value <= 255:
            raise UsageError(f"{flag} must be in [0, 255], got {value}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    names = _select_layers(image.layer_names(), args.layer, args.image)
    layers = {name: image.layer(name) for name in names}
    given = {}                                   # the user's activations, read (and refused) before the build
    if args.activations is not None:
        given = {name: _activations(args, layers[name], n_tokens, None) for name in names}
        for name, x in given.items():
            spec.check_tokens(x.shape[1], what=f"{args.activations}: {name}: N")
    rtl = RtlSimulator(spec, simulator=args.simulator, work_dir=args.work_dir, waves=args.waves,
                       progress=not args.json)
    rtl.build()
    rng = np.random.default_rng(args.seed)
    jobs = [(name, given[name] if name in given else _activations(args, layers[name], n_tokens, rng))
            for name in names]
    stalls = bool(args.stall_weights or args.stall_out)
    rows, failed = [], 0
    if not args.json:
        print(f"{'layer':<48} {'N':>3} {'mismatch':>8} {'RTL cycles':>11} {'estimate':>10} {'MACs':>12} "
              f"{'util':>6} {'wall s':>7} {'cycles/s':>9}")
    started = time.perf_counter()
    with rtl.pool(workers=1 if args.waves else args.workers, seed=args.seed, stall_weights=args.stall_weights,
                  stall_out=args.stall_out) as pool:
        runs = pool.map(args.image, jobs, check_cycles=not stalls, layers=layers)
        bar = tqdm(runs, total=len(jobs), desc=f"RTL {args.simulator}", unit="layer",
                   disable=args.json or not sys.stderr.isatty())
        for (name, _), run in zip(jobs, bar):
            failed += _layer_row(args, spec, layers[name], run, rows)
    waves = rtl.waves_of(pool.servers[0].run_dir) if args.waves and pool.servers else None
    totals = {
        **result_totals(rows), "failed_layers": failed,
        "wall_seconds": round(time.perf_counter() - started, 2), "workers": pool.workers,
        "build_seconds": round(rtl.build_seconds, 2), "waves": str(waves) if waves else None,
    }
    if args.json:
        print(json.dumps({"totals": totals}, sort_keys=True))
    else:
        print(f"total: {totals['layers']} layers, {totals['elements']:,} outputs, {totals['mismatches']} mismatches, "
              f"RTL {totals['rtl_cycles']:,} cycles, estimate {totals['estimated_cycles']:,} "
              f"({totals['layers_cycles_equal']}/{totals['layers']} layers equal), {totals['wall_seconds']:.1f} s "
              f"on {pool.workers} simulator{'s' if pool.workers > 1 else ''}")
        if waves:
            print(f"waves: {waves}")
    return 1 if failed else 0


def _layer_row(args, spec, layer, run, rows) -> int:
    """Print a finished layer's line, append its row; 1 if it failed."""
    from blockforge.estimate import utilization
    from blockforge_sim.jobs import result_row

    name = layer.name
    r = run.results[0]
    row = {
        **result_row(r), "layer": name, "macs": r.macs, "utilization": utilization(spec, r.macs, r.cycles),
        "wall_seconds": round(run.wall_seconds, 3),
        "sim_cycles_per_second": round(r.cycles / r.sim_seconds) if r.sim_seconds else None,
        "seed": args.seed, "simulator": args.simulator,
    }
    if not r.ok:
        row["first_mismatches"] = r.first_mismatches
    rows.append(row)
    if args.json:
        print(json.dumps(row, sort_keys=True), flush=True)
        return int(not r.ok)
    state = "" if r.ok else ("  TIMEOUT" if r.timed_out else f"  {','.join(r.status_names)}" if r.status
                              else "  MISMATCH")
    print(f"{name:<48} {r.n_tokens:>3} {r.mismatches:>8} {r.cycles:>11,} {r.estimated_cycles:>10,} "
          f"{r.macs:>12,} {row['utilization']:>6.1%} {run.wall_seconds:>7.1f} "
          f"{row['sim_cycles_per_second'] or 0:>9,}{state}", flush=True)
    if not r.ok and r.first_mismatches:
        print("  " + r.describe_mismatches(run.seed))
    return int(not r.ok)
