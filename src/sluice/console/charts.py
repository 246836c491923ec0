"""Server-drawn SVG plots for the pages (no script, no external library)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

__all__ = ["PALETTE", "bars", "stacked_timeline"]

PALETTE = (
    "#4e79a7",
    "#e15759",
    "#f28e2b",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
"""Series colours (Tableau 10)."""
MAX_SERIES = 8
"""Series drawn; the rest are summed as ``other``."""


def _series(series: dict[str, list[int]]) -> list[tuple[str, list[int]]]:
    ranked = sorted(series.items(), key=lambda kv: -sum(kv[1]))
    if len(ranked) <= MAX_SERIES:
        return ranked
    head, tail = ranked[: MAX_SERIES - 1], ranked[MAX_SERIES - 1 :]
    other = [sum(col) for col in zip(*(v for _, v in tail), strict=True)]
    return [*head, ("other", other)]


def stacked_timeline(tl: dict[str, Any], title: str, width: int = 640, height: int = 180) -> str:
    """Stacked bars of counts per time bucket, one colour per series, with a legend.

    Args:
        tl: ``{"start", "step", "buckets", "series"}`` as
            :meth:`~sluice.console.decindex.DecisionIndex.timeline` returns it.
        title: the plot's accessible title.
    """
    series = _series(tl.get("series", {}))
    n = int(tl.get("buckets", 0))
    pad_l, pad_b, legend_h = 40, 18, 16 * ((len(series) + 3) // 4)
    plot_h = height - pad_b - legend_h
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}"><title>{escape(title)}</title>'
    ]
    if not series or n == 0:
        out.append(f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle">no decisions</text></svg>')
        return "".join(out)
    totals = [sum(v[i] for _, v in series) for i in range(n)]
    top = max(max(totals), 1)
    bw = (width - pad_l - 4) / n
    out.append(
        f'<text x="2" y="12" font-size="10">{top}</text><text x="2" y="{plot_h}" font-size="10">0</text>'
    )
    for i in range(n):
        y = float(plot_h)
        for si, (name, vals) in enumerate(series):
            v = vals[i]
            if not v:
                continue
            h = v / top * (plot_h - 4)
            y -= h
            out.append(
                f'<rect x="{pad_l + i * bw:.1f}" y="{y:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}"'
                f' fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(name)}: {v}</title></rect>'
            )
    start, step = float(tl["start"]), float(tl["step"])
    for frac, anchor in ((0.0, "start"), (1.0, "end")):
        t = datetime.fromtimestamp(start + frac * step * n, UTC).strftime("%Y-%m-%d %H:%M")
        x = pad_l if frac == 0 else width - 4
        out.append(f'<text x="{x}" y="{plot_h + 13}" font-size="10" text-anchor="{anchor}">{t}</text>')
    for si, (name, vals) in enumerate(series):
        x, y = pad_l + (si % 4) * 150, plot_h + pad_b + 12 + (si // 4) * 16
        out.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{PALETTE[si % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="{y}" font-size="11">{escape(name)} ({sum(vals)})</text>'
        )
    out.append("</svg>")
    return "".join(out)


def bars(items: list[tuple[str, int]], title: str, width: int = 640) -> str:
    """Horizontal bars of labelled counts (largest first as given)."""
    row = 18
    height = row * max(len(items), 1) + 4
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}"><title>{escape(title)}</title>'
    ]
    if not items:
        out.append('<text x="4" y="14">nothing yet</text></svg>')
        return "".join(out)
    top = max(v for _, v in items) or 1
    label_w = 220
    for i, (label, v) in enumerate(items):
        w = v / top * (width - label_w - 60)
        y = i * row + 2
        out.append(
            f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">'
            f"{escape(label[:40])}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row - 4}" fill="{PALETTE[0]}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="11">{v}</text>'
        )
    out.append("</svg>")
    return "".join(out)
