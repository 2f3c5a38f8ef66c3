"""The `search eda` page: one self-contained HTML file (plotly.js inlined, works offline) drawn
from a `search.eda.Report` — class balance, head-vs-head tables, image sizes and padding,
duplicate and unreadable images.
"""

from __future__ import annotations

import html
from pathlib import Path

from search.eda import BLACK, Report, cross_table, lines_text, size_counts, summary_text

def render_html(report: Report, path) -> Path:
    """One self-contained HTML file (plotly.js inlined, works offline)."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs
    from plotly.subplots import make_subplots

    counts, majorities = report.counts(), report.majority()
    cols = 4
    rows = -(-len(report.heads) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[
        f"{h}: majority {majorities[h][1]:.2f}" for h in report.heads])
    for i, h in enumerate(report.heads):
        fig.add_bar(x=counts[h].index.tolist(), y=counts[h].tolist(), name=h,
                    row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title="Rows per class", showlegend=False, height=300 * rows)
    parts = [_section("Class balance", fig)]

    assoc = report.association()
    parts.append(_section("How strongly heads go together (Cramér's V)", _heatmap(
        assoc, assoc.round(2), zmin=0, zmax=1)))
    for a, b in report.pairs():
        parts.append(_section(f"{a} × {b}", _cross_figure(report, a, b)))
    parts.append(_table("Suspicious combinations", ["rule", "rows", "CSV lines"], [
        (f"{r.head}={r.value} → {r.other} in {'/'.join(r.expected)} ({r.why})", len(bad),
         lines_text(bad).lstrip(": ")) for r, bad in report.flags]))

    ok = report.readable()
    parts.append(_table("Image sizes, modes and formats", ["size / mode / format", "images"],
                        [*size_counts(ok).items(), *ok["mode"].value_counts().items(),
                         *ok["format"].value_counts().items()]))
    pad = go.Figure([go.Histogram(x=ok[side], name=side, opacity=0.6)
                     for side in ("pad_left", "pad_right")])
    pad.update_layout(barmode="overlay", xaxis_title=f"black columns (luminance ≤ {BLACK})",
                      yaxis_title="images")
    parts.append(_section("Black side padding per image", pad))
    parts.append(_table("Exact duplicate images (same bytes)", ["CSV lines", "image"], [
        (", ".join(map(str, g)), report.images.at[g[0], "sha1"][:12]) for g in
        report.duplicates()]))
    parts.append(_table("Unreadable images", ["CSV line", "problem"],
                        list(report.unreadable().items())))

    title = html.escape(f"EDA: {report.csv_path}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head>"
            f"<body style='font-family:sans-serif'><h1>{title}</h1>"
            f"<pre style='white-space:pre-wrap'>{html.escape(summary_text(report))}</pre>"
            f"{''.join(parts)}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _cross_figure(report: Report, a: str, b: str):
    """Counts of a × b; cells a rule calls suspicious are marked ⚠."""
    table = cross_table(report.frame, a, b)
    text = table.astype(str)
    for rule, _ in report.flags:
        if (rule.head, rule.other) == (a, b) and rule.value in table.index:
            for label in table.columns.difference(rule.expected):
                text.loc[rule.value, label] += " ⚠"
    return _heatmap(table, text, colorscale="Blues")


def _heatmap(values, text, **style):
    """A labelled grid, first row on top, each cell showing its text."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=values.to_numpy(), x=values.columns.tolist(),
                               y=values.index.tolist(), text=text.to_numpy(),
                               texttemplate="%{text}", **style))
    fig.update_layout(height=160 + 45 * len(values), yaxis_autorange="reversed",
                      xaxis_title=values.columns.name, yaxis_title=values.index.name)
    return fig


def _section(title: str, fig) -> str:
    return f"<h2>{html.escape(title)}</h2>" + fig.to_html(full_html=False, include_plotlyjs=False)


def _table(title: str, header: list[str], rows: list) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows) or f"<tr><td colspan='{len(header)}'>none</td></tr>"
    return f"<h2>{html.escape(title)}</h2><table border='1' cellpadding='4'>{head}{body}</table>"
