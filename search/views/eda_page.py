"""The `search eda` page: one self-contained HTML file (plotly.js inlined, works offline) drawn
from a `search.data.eda.Report` — class balance, head-vs-head tables, image sizes and padding,
duplicate and unreadable images.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from search.data.eda import BLACK, Report, cross_table, lines_text, size_counts, summary_text
from search.views.page import Section, table, write


def render_html(report: Report, path) -> Path:
    """One self-contained HTML file (plotly.js inlined, works offline)."""
    import plotly.graph_objects as go
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
    parts = [_section("balance", "Class balance", fig)]

    assoc = report.association()
    parts.append(_section("association", "How strongly heads go together (Cramér's V)",
                          _heatmap(assoc, assoc.round(2), zmin=0, zmax=1)))
    for a, b in report.pairs():
        sid = re.sub(r"[^A-Za-z0-9_-]+", "-", f"cross-{a}-{b}")  # an id: no spaces
        parts.append(_section(sid, f"{a} × {b}", _cross_figure(report, a, b)))
    parts.append(_table("suspicious", "Suspicious combinations",
                        ["rule", "rows", "CSV lines"], [
        (f"{r.head}={r.value} → {r.other} in {'/'.join(r.expected)} ({r.why})", len(bad),
         lines_text(bad).lstrip(": ")) for r, bad in report.flags]))

    ok = report.readable()
    parts.append(_table("sizes", "Image sizes, modes and formats",
                        ["size / mode / format", "images"],
                        [*size_counts(ok).items(), *ok["mode"].value_counts().items(),
                         *ok["format"].value_counts().items()]))
    pad = go.Figure([go.Histogram(x=ok[side], name=side, opacity=0.6)
                     for side in ("pad_left", "pad_right")])
    pad.update_layout(barmode="overlay", xaxis_title=f"black columns (luminance ≤ {BLACK})",
                      yaxis_title="images")
    parts.append(_section("padding", "Black side padding per image", pad))
    parts.append(_table("duplicates", "Exact duplicate images (same bytes)",
                        ["CSV lines", "image"], [
        (", ".join(map(str, g)), report.images.at[g[0], "sha1"][:12]) for g in
        report.duplicates()]))
    parts.append(_table("unreadable", "Unreadable images", ["CSV line", "problem"],
                        list(report.unreadable().items())))

    summary = f"<pre style='white-space:pre-wrap'>{html.escape(summary_text(report))}</pre>"
    return write(path, summary, parts, f"EDA: {report.csv_path}")


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


def _section(sid: str, title: str, fig) -> Section:
    return Section(sid, title, [fig])


def _table(sid: str, title: str, header: list[str], rows: list) -> Section:
    return Section(sid, title, html=table(header, rows) if rows else "<p>none</p>")
