"""Benchmark: what the simulation-speed passes of ``bf_engine.v`` buy under Icarus, side by side.

The same layer (tile8 384×384, 50% blocks, N = 32 by default) runs on plain ``vvp`` (no Python in the
loop) with Amaranth's Verilog as written (``raw_engine_verilog``), after each pass of
:mod:`blockforge_hw.netmerge` in turn — sliced assignments merged, flip-flops grouped per clock, then
the arithmetic grouped per module too, unread wires kept (what a simulation with waves gets) — and with
the Verilog the simulators get (``engine_verilog``: all of those, unread wires left out);
rounds alternate so the machine's drift hits every variant. Outputs must be byte-identical and exact against the
reference. Prints one JSON line.

    .venv/bin/python bench/verilog_passes.py [--spec tile8] [--rounds 3] [--tokens 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from blockforge.hexfiles import read_outputs, write_hex
from blockforge.reference import linear
from blockforge_hw.icarus import compile_icarus, run_icarus
from blockforge_hw.netmerge import merge_clocked_blocks, merge_partial_assigns
from blockforge_hw.verilog import ENGINE_MODULE, engine_verilog, raw_engine_verilog, write_verilog
from engine_icarus import add_layer_arguments, make_layer     # bench/ is on sys.path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_layer_arguments(parser, tokens=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spec, layer, x = make_layer(args)
    expected, _ = linear(layer, x, spec.numerics)
    raw = raw_engine_verilog(spec)
    variants = {"raw": raw, "slices_merged": merge_partial_assigns(raw),
                "registers_grouped": merge_clocked_blocks(merge_partial_assigns(raw)),
                "unread_kept": engine_verilog(spec, keep_unread=True), "passes": None}
    seconds: dict[str, list[float]] = {variant: [] for variant in variants}
    outputs: dict[str, bytes] = {}
    cycles = None
    with tempfile.TemporaryDirectory(prefix="bf_passes_") as tmp:
        root = Path(tmp)
        write_hex(layer, spec, root / "hex", x)
        programs = {}
        for variant in seconds:
            rtl = root / variant
            write_verilog(spec, rtl)
            if variants[variant] is not None:          # else write_verilog's own engine_verilog
                (rtl / f"{ENGINE_MODULE}.v").write_text(variants[variant])
            programs[variant], _ = compile_icarus(rtl, root / f"{variant}.vvp")
        for _ in range(args.rounds):
            for variant, program in programs.items():
                out = root / f"out_{variant}.hex"
                t0 = time.perf_counter()
                result = run_icarus(program, root / "hex", out)
                seconds[variant].append(time.perf_counter() - t0)
                y = read_outputs(out, layer, spec, args.tokens)
                if result.status or result.timed_out or not np.array_equal(y, expected):
                    raise SystemExit(f"{variant}: status {result.status}, timed out {result.timed_out}, "
                                     f"exact {np.array_equal(y, expected)}")
                if cycles is not None and result.cycles != cycles:
                    raise SystemExit(f"{variant}: {result.cycles} cycles, the other variant took {cycles}")
                cycles = result.cycles
                outputs[variant] = out.read_bytes()
    median = {variant: statistics.median(values) for variant, values in seconds.items()}
    print(json.dumps({
        "bench": "verilog_passes", "simulator": "icarus (plain vvp)", "spec": spec.name,
        "layer": [args.out, args.in_features], "block_density": args.density, "n_tokens": args.tokens,
        "rtl_cycles": cycles, "rounds": args.rounds, "outputs_identical": len(set(outputs.values())) == 1,
        "seconds": {k: [round(v, 2) for v in values] for k, values in seconds.items()},
        "cycles_per_s": {k: round(cycles / median[k]) for k in median},
        "speedup_median": {"passes_vs_raw": round(median["raw"] / median["passes"], 3),
                           "register_merge": round(median["slices_merged"] / median["registers_grouped"], 3),
                           "arithmetic_grouping": round(median["registers_grouped"] / median["unread_kept"], 3),
                           "unread_dropped": round(median["unread_kept"] / median["passes"], 3)},
        "per_round": {"register_merge": [round(a / b, 3) for a, b in zip(seconds["slices_merged"],
                                                                          seconds["registers_grouped"])],
                      "arithmetic_grouping": [round(a / b, 3) for a, b in zip(seconds["registers_grouped"],
                                                                               seconds["unread_kept"])],
                      "unread_dropped": [round(a / b, 3) for a, b in zip(seconds["unread_kept"], seconds["passes"])]},
    }))


if __name__ == "__main__":
    main()
