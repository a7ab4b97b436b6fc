"""The run summary (``summary.json``) from the stage results, and the text a user reads."""

from __future__ import annotations

import json

from blockforge.clock import resolve_engine_clock

__all__ = ["format_summary", "summarize"]


def summarize(config, spec, simulator, n_tokens, pruned, exported, int8, rtl, rtl_eval, totals, out) -> dict:
    def primary(metrics):
        if not metrics:
            return None
        return next(iter(metrics.values())) if isinstance(metrics, dict) else metrics

    clock = resolve_engine_clock(spec)   # the spec clock, or the achieved Fmax of build/fpga/<spec>/report.json
    image_totals = json.loads((out / "manifest.json").read_text())["totals"]   # blockforge.image.manifest
    dense_params = image_totals["dense_int8_bytes"]                               # one int8 byte per weight
    kept_params = exported["nnz_blocks"] * spec.block.rows * spec.block.cols
    return {
        "model": config.model, "task": config.task, "spec": spec.name, "method": config.method,
        "target_sparsity": config.sparsity, "preset": config.preset, "seed": config.seed,
        "distill": config.resolved_distill,
        "dense_accuracy": primary(pruned["dense"]), "pruned_float_accuracy": primary(pruned["pruned"]),
        "int8_accuracy": primary(int8["int8"]), "dev_examples": int8["dev_examples"],
        "rtl_accuracy": rtl_eval["accuracy"] if rtl_eval else None,
        "rtl_eval_examples": rtl_eval["examples"] if rtl_eval else 0,
        "int8_accuracy_same_examples": rtl_eval["int8_accuracy_same_examples"] if rtl_eval else None,
        "rtl_logits_identical": rtl_eval["logits_identical_to_int8_path"] if rtl_eval else None,
        "block_sparsity": 1 - exported["nnz_blocks"] / exported["total_blocks"],
        "prunable_params_dense": dense_params, "prunable_params_kept": kept_params,
        "param_compression": dense_params / max(kept_params, 1),
        "image_bytes": exported["bytes"], "dense_fp32_bytes": image_totals["dense_fp32_bytes"],
        "byte_compression_vs_fp32": image_totals["compression_vs_fp32"],
        "n_tokens": n_tokens, "simulator": simulator,
        "estimated_cycles": totals["cycles"], "rtl_cycles": rtl["rtl_cycles"],
        "estimate_equals_rtl": rtl["layers_cycles_equal"] == rtl["layers"] and totals["cycles"] == rtl["rtl_cycles"],
        "dense_cycles": totals["dense_cycles"], "speedup_vs_dense": totals["speedup"],
        "utilization": totals["utilization"], "time_ms_at_clock": clock.time_us(totals["cycles"]) / 1e3,
        "clock_mhz": clock.mhz, "clock": clock.describe(),
        "rtl_layers": rtl["layers"], "rtl_elements_checked": rtl["elements"], "mismatches": rtl["mismatches"]
        + (rtl_eval["rtl_mismatches"] if rtl_eval else 0),
        "report": str(out / "report.html"),
    }


def format_summary(s: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    rows = [
        ("model / task / spec", f"{s['model']} / {s['task']} / {s['spec']} ({s['method']}, target {s['target_sparsity']:.0%}, "
                                f"{s['preset']} schedule, seed {s['seed']})"),
        ("dense accuracy", f"{pct(s['dense_accuracy'])}  (dev, {s['dev_examples']} examples)"),
        ("pruned float accuracy", pct(s["pruned_float_accuracy"])),
        ("int8 accuracy", pct(s["int8_accuracy"])),
        ("accuracy through the RTL", f"{pct(s['rtl_accuracy'])}  ({s['rtl_eval_examples']} examples; int8 path on the same: "
                                     f"{pct(s['int8_accuracy_same_examples'])}; logits identical: {s['rtl_logits_identical']})"),
        ("block sparsity", f"{s['block_sparsity']:.1%}"),
        ("compression", f"{s['param_compression']:.2f}x parameters ({s['prunable_params_kept']:,} of "
                        f"{s['prunable_params_dense']:,} prunable weights kept), {s['byte_compression_vs_fp32']:.2f}x bytes vs fp32"),
        ("image size", f"{s['image_bytes']:,} bytes"),
        ("cycles (N = %d)" % s["n_tokens"], f"estimated {s['estimated_cycles']:,}, simulated {s['rtl_cycles']:,} "
                                            f"({s['simulator']}), equal: {s['estimate_equals_rtl']}"),
        ("speedup vs dense", f"{s['speedup_vs_dense']:.2f}x on the same engine ({s['dense_cycles']:,} dense cycles), "
                             f"utilization {s['utilization']:.1%}, {s['time_ms_at_clock']:.2f} ms at "
                             f"{s.get('clock', 'the spec clock')}"),
        ("mismatches", f"{s['mismatches']} ({s['rtl_elements_checked']:,} outputs of {s['rtl_layers']} layers checked)"),
        ("report", s["report"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
