"""``blockforge run`` and ``blockforge demo``: the main job end to end, resumable.

    blockforge run --spec tile8 --model default --task default --sparsity 0.5 -o out/run
    blockforge run --config run.yaml -o out/run          # the same settings from YAML (flags win)
    blockforge demo                                     # defaults, short schedule, into out/demo

The flow itself lives in ``blockforge_app.flow`` (it drives pruning, the image, the RTL and the
estimator); it is imported inside the handlers so the rest of the CLI stays light.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from blockforge.data import TASK_HELP
from blockforge.spec import DEFAULT_SPEC

DEMO_DIR = Path("out/demo")


def _add_settings(parser: argparse.ArgumentParser, *, demo: bool) -> None:
    parser.add_argument("--spec", default=None, help=f"spec name or path (default {DEFAULT_SPEC})")
    parser.add_argument("--model", default=None, help="'default', a HF model folder, or hub:NAME (Hugging Face Hub) (default: default)")
    parser.add_argument("--task", default=None, help=TASK_HELP)
    parser.add_argument("--sparsity", type=float, default=None, help="target block sparsity (default 0.5)")
    parser.add_argument("--method", default=None, choices=("bsp", "magnitude", "magnitude-retrain"))
    parser.add_argument("--preset", default=None, choices=("demo", "full"),
                        help="training schedule: demo (short, default) or full (DESIGN.md's baselines)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--simulator", default=None, choices=("auto", "icarus", "verilator"),
                        help="RTL simulator (default auto: Verilator when installed, else Icarus)")
    parser.add_argument("--tokens", type=int, default=None, help="activation columns per RTL pass")
    parser.add_argument("--rtl-eval-examples", type=int, default=None,
                        help="dev examples scored through the RTL (0 skips; default 64 on Verilator, 8 on Icarus)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--sim-workers", type=int, default=None,
                        help="simulator processes run in parallel by the RTL stages (default: one per core)")
    parser.add_argument("--config", type=Path, default=None, help="YAML file of run settings")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="no progress bars or build timers on stderr")
    if demo:
        parser.add_argument("-o", "--output", type=Path, default=DEMO_DIR, help=f"output folder (default {DEMO_DIR})")
    else:
        parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (resumable)")


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="the whole flow: prune, export, RTL-check, estimate, report (resumable)")
    _add_settings(run, demo=False)
    run.set_defaults(handler=_run)
    demo = subparsers.add_parser("demo", help="the main job on the default model, data and spec (short schedule)")
    _add_settings(demo, demo=True)
    demo.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from blockforge.fsutil import check_output
    from blockforge_app.flow import RunConfig, format_summary, run_flow

    overrides = {key: getattr(args, key) for key in ("spec", "model", "task", "sparsity", "method", "preset", "seed",
                                                      "simulator", "tokens", "rtl_eval_examples", "threads",
                                                      "sim_workers", "progress")}
    if args.config is not None:
        config = RunConfig.from_yaml(args.config, **overrides)
    else:
        config = RunConfig(**{k: v for k, v in overrides.items() if v is not None})
    check_output(args.output, folder=True)
    result = run_flow(config, args.output)
    print()
    print(format_summary(result.summary))
    s = result.summary
    return 0 if s["mismatches"] == 0 and s["estimate_equals_rtl"] and s["rtl_logits_identical"] is not False else 1
