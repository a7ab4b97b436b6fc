"""The report a user looks at: one self-contained HTML file (plots embedded as PNG data URIs) plus the
PNGs beside it.

Inputs are the image's layers and the estimator's per-layer rows (``blockforge.estimate``), and
optionally RTL results (cycles per layer from ``blockforge sim``). Plots: which blocks survived (per-layer
heat maps), block sparsity per layer, cycles dense vs sparse per layer, MAC utilization per layer, and
estimated vs simulated cycles. matplotlib is imported lazily with the Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .fsutil import atomic_write
from .layer import BlockSparseLayer
from .spec import Spec


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(name: str) -> str:
    """encoder.layer.3.attention.self.query → L3.attn.query; ...layer.3.output.dense → L3.output."""
    parts = name.split(".")
    index = next((i for i, p in enumerate(parts) if p.isdigit()), None)
    tail = parts[index + 1:] if index is not None else parts[-2:]
    tail = ["attn" if p == "attention" else p for p in tail if p not in ("self", "dense", "weight")] or parts[-1:]
    return (f"L{parts[index]}." if index is not None else "") + ".".join(tail)


def _heatmaps(plt, layers: Sequence[BlockSparseLayer]):
    cols = min(6, len(layers))
    rows = -(-len(layers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, layer in zip(axes.flat, layers):
        ax.imshow(layer.block_mask(), cmap="Greys", interpolation="nearest", aspect="auto", vmin=0, vmax=1)
        ax.set_title(f"{_short(layer.name)}\n{100 * layer.block_density:.0f}% kept", fontsize=7)
    fig.suptitle("Surviving blocks (black) per layer: block rows down, block columns across", fontsize=9)
    fig.tight_layout()
    return fig


def _bars(plt, labels, series: Mapping[str, Sequence[float]], ylabel: str, title: str, log: bool = False):
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(labels)), 3.4))
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if log:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _scatter(plt, estimated: Sequence[int], simulated: Sequence[int]):
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(estimated, simulated, s=12)
    top = max(max(estimated), max(simulated)) * 1.05
    ax.plot([0, top], [0, top], linewidth=0.8, color="grey")
    ax.set_xlabel("estimated cycles")
    ax.set_ylabel("RTL cycles")
    ax.set_title("Estimator vs RTL (line: equal)", fontsize=9)
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_report(out_html: str | Path, spec: Spec, layers: Sequence[BlockSparseLayer],
                 rows: Sequence[Mapping], totals: Mapping, *, rtl_cycles: Mapping[str, int] | None = None,
                 title: str = "blockforge report", run: Mapping | None = None,
                 fpga: Mapping | None = None) -> list[Path]:
    """Write the HTML report and its PNGs; return the paths written.

    ``rows`` are the per-layer dicts of :func:`blockforge.model_estimate.estimate_layers` (keys ``name``,
    ``cycles``, ``dense_cycles``, ``utilization``, ``block_sparsity``, ``speedup``), ``totals`` its
    whole-model dict; ``rtl_cycles`` maps layer names to simulated cycles where they exist. ``run`` is the
    end-to-end run's summary (settings, accuracies, compression: the keys of ``blockforge run``'s
    summary.json) and ``fpga`` an FPGA build report (``blockforge hw build``); each adds its section
    at the top when given.

    Files appear atomically: a failure leaves no partial HTML behind.
    """
    plt = _pyplot()
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    stem = out_html.with_suffix("")
    labels = [_short(r["name"]) for r in rows]
    figures = {
        "blocks": _heatmaps(plt, layers),
        "sparsity": _bars(plt, labels, {"block sparsity": [r["block_sparsity"] for r in rows]},
                          "fraction of blocks pruned", "Block sparsity per layer"),
        "cycles": _bars(plt, labels, {"dense": [r["dense_cycles"] for r in rows],
                                      "block-sparse": [r["cycles"] for r in rows]},
                        "cycles", f"Cycles per layer on {spec.name}, dense vs block-sparse", log=True),
        "utilization": _bars(plt, labels, {"utilization": [r["utilization"] for r in rows]},
                             "useful MACs / (cycles × BR·BC)", "MAC utilization per layer"),
    }
    rtl_rows = []
    if rtl_cycles:
        rtl_rows = [(r["name"], r["cycles"], rtl_cycles[r["name"]]) for r in rows if r["name"] in rtl_cycles]
        if rtl_rows:
            figures["estimate_vs_rtl"] = _scatter(plt, [e for _, e, _ in rtl_rows], [s for _, _, s in rtl_rows])
    images: dict[str, bytes] = {}
    for key, fig in figures.items():
        images[key] = _png(fig)
        plt.close(fig)

    written = []
    for key, data in images.items():
        written.append(atomic_write(Path(f"{stem}_{key}.png"), data))
    page = _html(title, spec, rows, totals, images, rtl_rows, run or {}, fpga or {})
    written.append(atomic_write(out_html, page.encode()))
    return written


def _html(title, spec, rows, totals, images, rtl_rows, run, fpga) -> str:
    esc = html.escape

    def img(key: str) -> str:
        if key not in images:
            return ""
        data = base64.b64encode(images[key]).decode()
        return f'<img alt="{key}" src="data:image/png;base64,{data}">'

    table = "".join(
        f"<tr><td>{esc(r['name'])}</td><td>{r['block_sparsity']:.1%}</td><td>{r['cycles']:,}</td>"
        f"<td>{r['dense_cycles']:,}</td><td>{r['speedup']:.2f}×</td><td>{r['utilization']:.1%}</td></tr>"
        for r in rows)
    rtl = ""
    if rtl_rows:
        equal = sum(e == s for _, e, s in rtl_rows)
        rtl_table = "".join(f"<tr><td>{esc(n)}</td><td>{e:,}</td><td>{s:,}</td><td>{s - e:+,}</td></tr>"
                            for n, e, s in rtl_rows)
        rtl = (f"<h2>Estimator vs RTL</h2><p>{equal} of {len(rtl_rows)} simulated layers: estimate equals the "
               f"RTL cycle counter.</p>{img('estimate_vs_rtl')}<table><tr><th>layer</th><th>estimated</th>"
               f"<th>RTL</th><th>difference</th></tr>{rtl_table}</table>")
    summary = _table(_named_rows(TOTAL_NAMES, totals))
    headline = ""
    if run:
        headline += f"<h2>The run</h2>{_table(_named_rows(RUN_NAMES, run))}"
    if fpga:
        headline += f"<h2>FPGA build</h2>{_table(_fpga_rows(fpga))}"
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
img{{max-width:100%;display:block;margin:1em 0}}</style></head><body>
<h1>{esc(title)}</h1>
<p>Spec <b>{esc(spec.name)}</b>: {spec.block.rows}×{spec.block.cols} blocks, {spec.macs_per_cycle} MACs/cycle,
{spec.memory.weight_bus_bits}-bit weight bus, {spec.clock_mhz:g} MHz spec clock (digest {spec.digest[:12]}).
{esc("Times at " + totals["clock"] + ".") if "clock" in totals else ""}</p>
{headline}
<h2>Totals</h2>{summary}
<h2>Surviving blocks</h2>{img('blocks')}
<h2>Block sparsity</h2>{img('sparsity')}
<h2>Cycles</h2>{img('cycles')}
<h2>Utilization</h2>{img('utilization')}
{rtl}
<h2>Per layer</h2><table><tr><th>layer</th><th>block sparsity</th><th>cycles</th><th>dense cycles</th>
<th>speedup</th><th>utilization</th></tr>{table}</table>
</body></html>
"""


# --------------------------------------------------------------------------------------------------
# Human names and units for the figures the report shows (key -> label, formatter). Keys not listed
# are not shown; a missing or None value is skipped.

def _pct(v) -> str:
    return f"{100 * v:.1f}%"


def _times(v) -> str:
    return f"{v:.2f}×"


def _count(v) -> str:
    return f"{v:,}"


def _ms(v) -> str:
    return f"{v / 1e3:,.3f} ms"


def _text(v) -> str:
    return str(v)


TOTAL_NAMES: tuple[tuple[str, str, Callable], ...] = (
    ("layers", "layers", _count),
    ("n_tokens", "tokens per pass (N)", _count),
    ("cycles", "cycles, block-sparse", _count),
    ("dense_cycles", "cycles, the same engine dense", _count),
    ("speedup", "speedup vs dense", _times),
    ("time_us", "time, block-sparse", _ms),
    ("dense_time_us", "time, dense", _ms),
    ("clock", "clock used for times", _text),
    ("block_sparsity", "block sparsity", _pct),
    ("nnz_blocks", "blocks kept", _count),
    ("total_blocks", "blocks in all", _count),
    ("utilization", "MAC utilization (useful MACs / cycles × BR·BC)", _pct),
    ("no_skip_utilization", "MAC utilization without block skipping", _pct),
    ("roofline_efficiency", "fraction of the tile-streaming bound", _pct),
    ("weight_bytes", "weight bytes streamed", _count),
)

RUN_NAMES: tuple[tuple[str, str, Callable], ...] = (
    ("model", "model", _text),
    ("task", "task", _text),
    ("spec", "spec", _text),
    ("method", "pruning method", _text),
    ("target_sparsity", "target block sparsity", _pct),
    ("preset", "schedule", _text),
    ("distill", "distillation from the dense model", _text),
    ("seed", "seed", _text),
    ("dev_examples", "dev examples scored", _count),
    ("dense_accuracy", "accuracy, dense", _pct),
    ("pruned_float_accuracy", "accuracy, pruned (float)", _pct),
    ("int8_accuracy", "accuracy, int8 path", _pct),
    ("rtl_eval_examples", "examples scored through the RTL", _count),
    ("rtl_accuracy", "accuracy through the RTL", _pct),
    ("int8_accuracy_same_examples", "accuracy, int8 path on the same examples", _pct),
    ("rtl_logits_identical", "RTL logits identical to the int8 path", _text),
    ("block_sparsity", "block sparsity achieved", _pct),
    ("param_compression", "compression, prunable weights", _times),
    ("byte_compression_vs_fp32", "compression, image bytes vs fp32", _times),
    ("image_bytes", "image size (bytes)", _count),
    ("estimated_cycles", "cycles, estimated", _count),
    ("rtl_cycles", "cycles, simulated", _count),
    ("estimate_equals_rtl", "estimate equals RTL", _text),
    ("speedup_vs_dense", "speedup vs dense", _times),
    ("time_ms_at_clock", "time per pass (ms)", lambda v: f"{v:,.3f}"),
    ("clock", "clock used", _text),
    ("mismatches", "RTL output mismatches", _count),
    ("rtl_elements_checked", "RTL outputs checked", _count),
)


def _named_rows(names, values: Mapping) -> list[tuple[str, str]]:
    return [(label, fmt(values[key])) for key, label, fmt in names if values.get(key) is not None]


def _fpga_rows(report: Mapping) -> list[tuple[str, str]]:
    """The figures of a ``blockforge hw build`` report (docs/fpga.md) a reader needs: part, resources,
    Fmax and whether the spec clock is met."""
    part = report.get("part") or {}
    rows = [("part", str(part.get("name", "")) if isinstance(part, Mapping) else str(part))]
    for key, res in (report.get("utilization") or {}).items():
        if isinstance(res, Mapping) and "used" in res:
            share = f" of {res['available']:,} ({res['used'] / res['available']:.1%})" if res.get("available") else ""
            rows.append((f"{key} ({res.get('bel', '')})" if res.get("bel") else key, f"{res['used']:,}{share}"))
    if report.get("fmax_mhz") is not None:
        rows.append(("Fmax after place and route", f"{report['fmax_mhz']:.1f} MHz"))
    spec_clock = (report.get("spec") or {}).get("clock_mhz")
    if spec_clock is not None:
        verdict = "met" if report.get("meets_clock") else "not met"
        rows.append(("spec clock", f"{spec_clock:g} MHz, {verdict}"))
    return [r for r in rows if r[1]]


def _table(rows: Sequence[tuple[str, str]]) -> str:
    esc = html.escape
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows) + "</table>"
