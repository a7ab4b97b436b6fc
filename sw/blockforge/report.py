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
from typing import Mapping, Sequence

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
                 title: str = "blockforge report") -> list[Path]:
    """Write the HTML report and its PNGs; return the paths written.

    ``rows`` are the per-layer dicts of :func:`blockforge.perf.estimate_layers` (keys ``name``,
    ``cycles``, ``dense_cycles``, ``utilization``, ``block_sparsity``, ``speedup``), ``totals`` its
    whole-model dict; ``rtl_cycles`` maps layer names to simulated cycles where they exist.

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
    written.append(atomic_write(out_html, _html(title, spec, rows, totals, images, rtl_rows).encode()))
    return written


def _html(title, spec, rows, totals, images, rtl_rows) -> str:
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
    summary = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in totals.items())
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
img{{max-width:100%;display:block;margin:1em 0}}</style></head><body>
<h1>{esc(title)}</h1>
<p>Spec <b>{esc(spec.name)}</b>: {spec.block.rows}×{spec.block.cols} blocks, {spec.macs_per_cycle} MACs/cycle,
{spec.memory.weight_bus_bits}-bit weight bus, {spec.clock_mhz:g} MHz spec clock (digest {spec.digest[:12]}).
{esc("Times at " + totals["clock"] + ".") if "clock" in totals else ""}</p>
<h2>Totals</h2><table>{summary}</table>
<h2>Surviving blocks</h2>{img('blocks')}
<h2>Block sparsity</h2>{img('sparsity')}
<h2>Cycles</h2>{img('cycles')}
<h2>Utilization</h2>{img('utilization')}
{rtl}
<h2>Per layer</h2><table><tr><th>layer</th><th>block sparsity</th><th>cycles</th><th>dense cycles</th>
<th>speedup</th><th>utilization</th></tr>{table}</table>
</body></html>
"""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
