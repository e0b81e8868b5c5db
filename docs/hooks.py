"""MkDocs hooks (mkdocs.yml: ``hooks:``): the benchmark charts, drawn at build time from the
tables of docs/benchmarks.md, so the picture never drifts from the numbers and nothing binary
is kept in the repository (plain SVG, no plotting library).

A table is charted when it has "speed-up" columns (one per instruction set, named by the
"AVX-512:" / "AVX2:" prefix of the column before them); the chart is ``img/<name>.svg`` where
the page says ``![...](img/<name>.svg)`` after a table's ``<!-- chart: <name> -->`` comment.
"""

from __future__ import annotations

import html
import math
import os
import re

from mkdocs.structure.files import File

_CHART = re.compile(r"<!-- chart: ([\w-]+) -->\s*\n((?:\|.*\n)+)")
COLORS = {"AVX-512": "#3b6ea8", "AVX2": "#e08a2c"}


def parse_table(table: str) -> tuple[list[str], dict[str, list[float | None]]]:
    """(row labels, {instruction set: speed-ups}) of a Markdown table with speed-up columns."""
    lines = [line.strip().strip("|").split("|") for line in table.strip().splitlines()]
    head = [c.strip() for c in lines[0]]
    rows = [[c.strip() for c in r] for r in lines[2:]]
    series: dict[str, list[float | None]] = {}
    isa = None
    for i, name in enumerate(head):
        m = re.match(r"(AVX-512|AVX2):", name)
        if m:
            isa = m.group(1)
        if name == "speed-up" and isa:
            series[isa] = [float(r[i].rstrip("x")) if re.match(r"^[\d.]+x$", r[i]) else None for r in rows]
    labels = [f"{r[0]} vs {r[1]}" for r in rows]
    return labels, series


def svg_chart(labels: list[str], series: dict[str, list[float | None]], title: str) -> str:
    """Horizontal bars of each speed-up on a log scale, a line at 1x (regtune as fast as the peer)."""
    values = [v for vs in series.values() for v in vs if v]
    lo = min(0.25, min(values) / 1.5)
    hi = max(values) * 1.5
    left, width, bar, gap, top = 260, 460, 9, 8, 46
    row_h = bar * len(series) + gap
    height = top + row_h * len(labels) + 40

    def x(v: float) -> float:
        return left + width * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 30}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    for k, isa in enumerate(series):
        out.append(f'<rect x="{left + 170 * k}" y="28" width="10" height="10" fill="{COLORS.get(isa, "#888")}"/>'
                   f'<text x="{left + 170 * k + 14}" y="37">{isa} path</text>')
    ticks = [t for t in (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100) if lo <= t <= hi]
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{height - 34}" '
                   f'stroke="{"#000" if t == 1 else "#ddd"}"/>'
                   f'<text x="{x(t):.1f}" y="{height - 20}" text-anchor="middle">{t:g}x</text>')
    out.append(f'<text x="{left + width / 2}" y="{height - 4}" text-anchor="middle">speed-up: the peer\'s time '
               "over regtune's (log scale; right of 1x, regtune is faster)</text>")
    for i, label in enumerate(labels):
        y0 = top + i * row_h
        out.append(f'<text x="{left - 6}" y="{y0 + bar * len(series) / 2 + 4}" text-anchor="end">'
                   f"{html.escape(label)}</text>")
        for k, (isa, vs) in enumerate(series.items()):
            v = vs[i]
            if v:
                x0, x1 = sorted((x(1), x(v)))
                out.append(f'<rect x="{x0:.1f}" y="{y0 + k * bar}" width="{max(x1 - x0, 1):.1f}" height="{bar - 1}" '
                           f'fill="{COLORS.get(isa, "#888")}"><title>{html.escape(label)}, {isa}: {v:g}x</title></rect>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def on_files(files, config):
    """Add img/<name>.svg for every charted table of the docs' pages."""
    for page in [f for f in files if f.src_uri.endswith(".md") and not f.generated_by]:
        with open(os.path.join(config["docs_dir"], page.src_uri), encoding="utf-8") as fh:
            text = fh.read()
        for name, table in _CHART.findall(text):
            labels, series = parse_table(table)
            if not series:
                raise ValueError(f"{page.src_uri}: the table under <!-- chart: {name} --> has no speed-up column")
            svg = svg_chart(labels, series, "regtune against its peers, 4096x4096 float32")
            files.append(File.generated(config, f"img/{name}.svg", content=svg))
    return files
