"""``blockforge estimate`` and ``blockforge report``: cycles, utilization and speedup from the cycle model,
for an image or straight from a model folder, and the HTML report a user looks at."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    est = subparsers.add_parser(
        "estimate", help="cycles, utilization and speedup of an image (or a model folder) on the engine")
    est.add_argument("source", help="a .bfim image, a Hugging Face model folder, or 'default'")
    est.add_argument("--spec", default=None, metavar="NAME|PATH",
                     help="the spec (required; for a model folder the spec whose blocks are counted)")
    est.add_argument("--tokens", type=int, default=None, metavar="N",
                     help="activation columns per pass (default: the spec's max_tokens)")
    est.add_argument("--sweep-spec", nargs="+", default=None, metavar="SPEC",
                     help="compare block shapes on the same model: one line per spec (model folders only)")
    est.add_argument("--what-if-sparsity", type=float, default=None, metavar="S",
                     help="with --sweep-spec: first block-magnitude prune every layer to sparsity S under each "
                          "spec's blocks (no retraining), so block shapes are compared at equal sparsity")
    est.add_argument("--fpga-report", type=Path, default=None, metavar="JSON",
                     help="an FPGA build report (blockforge hw build): times at min(spec clock, its Fmax); "
                          "default: build/fpga/<spec>/report.json when it exists")
    est.add_argument("--json", action="store_true", help="machine-readable output")
    est.set_defaults(handler=_estimate)

    rep = subparsers.add_parser("report", help="write an HTML report (plots embedded) and PNGs for an image")
    rep.add_argument("image", type=Path, help="a .bfim image")
    rep.add_argument("--spec", required=True, metavar="NAME|PATH")
    rep.add_argument("-o", "--output", type=Path, required=True, metavar="HTML", help="report file to write")
    rep.add_argument("--tokens", type=int, default=None, metavar="N", help="default: the spec's max_tokens")
    rep.add_argument("--fpga-report", type=Path, default=None, metavar="JSON",
                     help="an FPGA build report: times at min(spec clock, its Fmax) (default: "
                          "build/fpga/<spec>/report.json when it exists)")
    rep.add_argument("--rtl", type=Path, default=None, metavar="JSONL",
                     help="output of 'blockforge sim --json', to plot estimated vs simulated cycles")
    rep.set_defaults(handler=_report)


def tokens_option(spec, tokens: int | None) -> int:
    """``--tokens``, default the spec's max_tokens, checked by the spec."""
    return spec.check_tokens(spec.buffers.max_tokens if tokens is None else tokens, what="--tokens")


def _is_image(source: str) -> bool:
    path = Path(source)
    return path.is_file()


def load_for_estimate(source: str):
    """The model of a folder (or 'default') whose prunable linears are priced."""
    from blockforge.models import load_model

    return load_model(source, labels=None, num_labels=2).model


def model_block_shapes(model, spec, what_if_sparsity: float | None = None) -> list:
    """The cycle model's view of a model's prunable linears under ``spec``: which blocks hold a non-zero
    weight, after first block-magnitude pruning each layer to ``what_if_sparsity`` (no retraining) if
    given — with the pruning package's own criterion and masking."""
    import torch

    from blockforge.model_estimate import LayerShape
    from blockforge.prune.criterion import block_norms
    from blockforge.prune.masking import lowest_blocks_mask
    from blockforge.prune.pattern import prunable_layers

    shapes = []
    with torch.no_grad():
        for layer in prunable_layers(model, spec):
            norms = block_norms(layer.weight.detach().double(), layer.layout)   # float64: no underflow to 0
            keep = norms != 0
            if what_if_sparsity is not None:
                keep &= lowest_blocks_mask(norms, int(round(what_if_sparsity * layer.layout.n_blocks)))
            shapes.append(LayerShape(layer.name, keep.numpy(), *layer.weight.shape))
    return shapes


def _estimate(args: argparse.Namespace) -> None:
    from blockforge.clock import resolve_engine_clock
    from blockforge.errors import UsageError
    from blockforge.image import read_image
    from blockforge.model_estimate import estimate_layers, format_table
    from blockforge.prune.schedule import check_sparsity
    from blockforge.spec import load_spec

    if args.sweep_spec:
        if _is_image(args.source):
            raise UsageError(f"{args.source}: --sweep-spec compares block shapes on a model folder; an image is "
                             "bound to the spec it was built for")
        if args.what_if_sparsity is not None:
            check_sparsity(args.what_if_sparsity, "--what-if-sparsity")
        if args.fpga_report is not None:
            raise UsageError("--fpga-report names one spec's build; with --sweep-spec each spec uses its "
                             "build/fpga/<spec>/report.json when it exists")
        specs = [load_spec(s) for s in args.sweep_spec]
        model = load_for_estimate(args.source)
        lines = [estimate_layers(spec, model_block_shapes(model, spec, args.what_if_sparsity),
                                 tokens_option(spec, args.tokens), clock=resolve_engine_clock(spec))["totals"]
                 for spec in specs]
        if args.json:
            print(json.dumps({"source": args.source, "what_if_sparsity": args.what_if_sparsity, "specs": lines},
                             sort_keys=True))
            return
        print(f"{'spec':<12} {'block':>6} {'N':>3} {'sparsity':>8} {'cycles':>12} {'dense':>12} {'speedup':>7} "
              f"{'util':>6} {'ms':>8} {'MHz':>7}")
        for t in lines:
            print(f"{t['spec']:<12} {t['block']:>6} {t['n_tokens']:>3} {t['block_sparsity']:>8.1%} {t['cycles']:>12,} "
                  f"{t['dense_cycles']:>12,} {t['speedup']:>6.2f}x {t['utilization']:>6.1%} {t['time_us'] / 1e3:>8.3f} "
                  f"{t['clock_mhz']:>7.1f}{'' if t['clock_source'] == 'spec' else ' (Fmax)'}")
        return
    if args.spec is None:
        raise UsageError("--spec is required")
    if args.what_if_sparsity is not None:
        raise UsageError("--what-if-sparsity goes with --sweep-spec")
    spec = load_spec(args.spec)
    n_tokens = tokens_option(spec, args.tokens)
    if _is_image(args.source):
        layers = read_image(args.source, spec).layers
    else:
        layers = model_block_shapes(load_for_estimate(args.source), spec)
    result = estimate_layers(spec, layers, n_tokens, clock=resolve_engine_clock(spec, args.fpga_report))
    if args.json:
        print(json.dumps({"source": args.source, **result}, sort_keys=True))
    else:
        print(format_table(result))


def read_rtl_cycles(path: Path, layer_names: set[str] | None = None) -> dict[str, int]:
    """Layer → simulated cycles from the JSON lines of ``blockforge sim --json`` (rows with a ``layer``;
    the totals line has none). Every line must be a JSON object; ``rtl_cycles`` an integer ≥ 0; a layer
    named once and, given ``layer_names``, one of the image's. UsageError naming the file and line."""
    from blockforge.errors import UsageError
    from blockforge.yamlsafe import shown

    cycles: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not text (expected the JSON lines of blockforge sim --json)") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise UsageError(f"{where}: not JSON") from None
        if not isinstance(row, dict):
            raise UsageError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if "layer" not in row:
            continue                                   # the totals line
        layer, value = row["layer"], row.get("rtl_cycles")
        if not isinstance(layer, str):
            raise UsageError(f"{where}: layer must be a string, got {shown(layer)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"{where}: rtl_cycles must be an integer >= 0, got {shown(value)}")
        if layer_names is not None and layer not in layer_names:
            raise UsageError(f"{where}: layer {shown(layer)} is not in the image")
        if layer in cycles:
            raise UsageError(f"{where}: layer {shown(layer)} appears twice")
        cycles[layer] = value
    return cycles


def _report(args: argparse.Namespace) -> None:
    from blockforge.clock import read_fpga_report, resolve_engine_clock
    from blockforge.fsutil import check_output
    from blockforge.image import read_image
    from blockforge.model_estimate import estimate_layers
    from blockforge.report import write_report
    from blockforge.spec import load_spec

    check_output(args.output)
    spec = load_spec(args.spec)
    image = read_image(args.image, spec)
    clock = resolve_engine_clock(spec, args.fpga_report)
    result = estimate_layers(spec, image.layers, tokens_option(spec, args.tokens), clock=clock)
    rtl = read_rtl_cycles(args.rtl, {layer.name for layer in image.layers}) if args.rtl else None
    paths = write_report(args.output, spec, image.layers, result["layers"], result["totals"], rtl_cycles=rtl,
                         title=f"blockforge report: {args.image.name} on {spec.name}",
                         fpga=read_fpga_report(clock.report) if clock.report else None)
    for path in paths:
        print(path)
