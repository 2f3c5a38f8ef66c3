"""Plotly figures of a study's results, built from plain numbers (no Optuna, MLflow or Keras),
so that `search.report` only gathers data and each picture can be checked on its own.
"""

from __future__ import annotations

import json
import math
import re
from typing import Sequence

import plotly.graph_objects as go

from search.study.pareto import Row, pareto_front

FRONT = "#d62728"
OTHERS = "#7f7f7f"


def note(text: str, height: int = 180) -> go.Figure:
    """An empty figure that says why there is nothing to plot (keeps one plot per section)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14})
    fig.update_layout(height=height, xaxis_visible=False, yaxis_visible=False,
                      margin={"t": 20, "b": 20})
    return fig


def pareto_table(rows: Sequence[Row], heads: Sequence[str]) -> go.Figure:
    """The Pareto set as a table: trial, MLflow run id, accuracy per head, params, mean."""
    header = ["trial", "MLflow run id", *heads, "params", "mean"]
    cells = [[r.trial for r in rows], [r.run_id or "-" for r in rows],
             *[[f"{r.head_accuracy[h]:.3f}" for r in rows] for h in heads],
             [r.params_count if r.params_count is not None else "-" for r in rows],
             [f"{r.mean:.3f}" for r in rows]]
    fig = go.Figure(go.Table(
        columnwidth=[50, 250] + [90] * len(heads) + [80, 60],
        header={"values": header, "fill_color": "#dde6f0", "align": "center"},
        cells={"values": cells, "align": "center", "height": 26}))
    fig.update_layout(height=min(60 + 28 * (len(rows) + 1), 900), margin={"t": 10, "b": 10})
    return fig


def pareto_scatter(rows: Sequence[Row], pair: tuple[str, str],
                   majority: dict[str, float] | None = None) -> go.Figure:
    """Accuracy on one head against another; the 2-D front in red, joined as a staircase."""
    x, y = pair
    front = set(pareto_front({r.trial: {x: r.head_accuracy[x], y: r.head_accuracy[y]}
                              for r in rows}))
    hover = f"trial %{{text}}<br>{x} %{{x:.3f}}<br>{y} %{{y:.3f}}<extra></extra>"
    fig = go.Figure()
    for on_front, name, style in ((False, "other trials", {"color": OTHERS, "size": 8}),
                                  (True, "Pareto front", {"color": FRONT, "size": 12})):
        spots: dict[tuple[float, float], list[int]] = {}  # trials on the same spot share a label
        for r in rows:
            if (r.trial in front) == on_front:
                spots.setdefault((r.head_accuracy[x], r.head_accuracy[y]), []).append(r.trial)
        ordered = sorted(spots)
        fig.add_scatter(x=[p[0] for p in ordered], y=[p[1] for p in ordered], name=name,
                        text=[", ".join(f"#{n}" for n in spots[p]) for p in ordered],
                        mode="lines+markers+text" if on_front else "markers",
                        textposition="top right", marker=style, hovertemplate=hover,
                        line={"shape": "vh", "color": FRONT}, cliponaxis=False)
    for head, axis in ((x, "x"), (y, "y")):
        if majority and head in majority:
            fig.add_shape(type="line", line={"dash": "dot", "color": OTHERS},
                          **({"x0": majority[head], "x1": majority[head], "y0": 0, "y1": 1,
                              "yref": "paper"} if axis == "x" else
                             {"y0": majority[head], "y1": majority[head], "x0": 0, "x1": 1,
                              "xref": "paper"}))
    fig.update_layout(xaxis_title=f"{x} validation accuracy", height=520,
                      yaxis_title=f"{y} validation accuracy",
                      title="dotted lines: majority-class accuracy")
    return fig


def parallel_coordinates(params: Sequence[dict], accuracy: Sequence[dict[str, float]],
                         values: Sequence[float], kinds: dict[str, str],
                         objective: str = "objective") -> go.Figure:
    """One line per trial from its parameters to its accuracy on every head, coloured by the
    objective. `kinds` maps each parameter to categorical, log or linear; a parameter a trial
    did not sample (conditional ones, baselines) sits on an 'unset' tick below the axis."""
    dims = [_dimension(name, [p.get(name) for p in params], kind)
            for name, kind in kinds.items()]
    heads = list(accuracy[0]) if accuracy else []
    dims += [{"label": h, "values": [a[h] for a in accuracy]} for h in heads]
    fig = go.Figure(go.Parcoords(
        dimensions=dims, labelangle=-30,
        line={"color": list(values), "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": objective}}}))
    fig.update_layout(height=520, margin={"t": 120, "l": 80, "r": 160})
    return fig


def _dimension(label: str, values: list, kind: str) -> dict:
    """A parcoords axis: categories become evenly spaced ticks, log values log10 positions."""
    present = [v for v in values if v is not None]
    unset = len(present) < len(values)
    if kind == "categorical" or not all(_is_number(v) for v in present):
        def text(v) -> str:
            return "unset" if v is None else v if isinstance(v, str) else json.dumps(v)

        choices = sorted({text(v): v for v in present}.items(),  # numbers in numeric order
                         key=lambda kv: (not _is_number(kv[1]), kv[1] if _is_number(kv[1])
                                         else kv[0]))
        labels = [t for t, _ in choices] + ["unset"] * unset
        at = {t: i for i, t in enumerate(labels)}
        return {"label": label, "tickvals": list(range(len(labels))), "ticktext": labels,
                "values": [at[text(v)] for v in values]}
    log = kind == "log" and all(v > 0 for v in present)
    pos = [math.log10(v) if log else float(v) for v in present] or [0.0]
    lo, hi = min(pos), max(pos)
    below = lo - 0.15 * ((hi - lo) or 1.0)
    ticks = [lo + (hi - lo) * i / 4 for i in range(5)] if hi > lo else [lo]
    text = [f"{10 ** t if log else t:.3g}" for t in ticks]
    return {"label": label, "range": [below if unset else lo, hi],
            "tickvals": ticks + [below] * unset, "ticktext": text + ["unset"] * unset,
            "values": [below if v is None else (math.log10(v) if log else float(v))
                       for v in values]}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def grouped_bars(groups: Sequence[tuple[str, dict[str, float], str | None]],
                 heads: Sequence[str]) -> go.Figure:
    """Accuracy per head, one bar per (name, accuracy, colour or None for the palette's)."""
    fig = go.Figure([go.Bar(name=name, x=list(heads), y=[acc.get(h) for h in heads],
                            hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
                            marker_color=color)
                     for name, acc, color in groups])
    fig.update_layout(barmode="group", yaxis_title="validation accuracy", height=480,
                      yaxis_range=[0, 1], legend={"orientation": "h", "y": -0.15})
    return fig


def history(complete: Sequence[tuple[int, float]], pruned: Sequence[tuple[int, float]],
            objective: str = "objective") -> go.Figure:
    """Objective by trial number with the best value so far; pruned trials at their last
    reported value."""
    fig = go.Figure()
    fig.add_scatter(x=[n for n, _ in complete], y=[v for _, v in complete], mode="markers",
                    name="complete", marker={"size": 9})
    if pruned:
        fig.add_scatter(x=[n for n, _ in pruned], y=[v for _, v in pruned], mode="markers",
                        name="pruned (last report)",
                        marker={"symbol": "x", "color": OTHERS, "size": 8})
    best, running = [], -math.inf
    for _, v in complete:
        running = max(running, v)
        best.append(running)
    fig.add_scatter(x=[n for n, _ in complete], y=best, mode="lines", name="best so far",
                    line={"shape": "hv", "color": FRONT})
    last = max([n for n, _ in [*complete, *pruned]], default=0)
    fig.update_layout(xaxis_title="trial number", yaxis_title=objective, height=420,
                      xaxis={"tick0": 0, "dtick": max(1, math.ceil((last + 1) / 12))})
    return fig


def importances(values: dict[str, float], objective: str = "objective") -> go.Figure:
    """Horizontal bars, most important parameter on top."""
    names = list(values)[::-1]
    fig = go.Figure(go.Bar(x=[values[n] for n in names], y=names, orientation="h"))
    fig.update_layout(xaxis_title=f"importance for {objective}",
                      height=100 + 40 * len(names), yaxis={"automargin": True, "dtick": 1})
    return fig


def confusion(head: str, labels: Sequence[str], counts: Sequence[Sequence[int]],
              accuracy: float | None = None) -> go.Figure:
    """Rows = true class, columns = predicted; colour = share of the row, text = count."""
    shares = [[c / max(sum(row), 1) for c in row] for row in counts]
    fig = go.Figure(go.Heatmap(
        z=shares, x=list(labels), y=list(labels), text=[[str(c) for c in row] for row in counts],
        texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1, showscale=False,
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text} image(s)<extra></extra>"))
    title = head if accuracy is None else f"{head}: accuracy {accuracy:.3f}"
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed", height=220 + 40 * len(labels),
                      margin={"t": 50}, modebar_orientation="v")
    return fig


def from_html(page: str) -> go.Figure:
    """The figure of a page written by plotly's `write_html` (e.g. a trial's lr_find.html
    artifact), read back from its `Plotly.newPlot("id", data, layout, ...)` call."""
    # plotly.js itself mentions "Plotly.newPlot(" too, but never followed by a quoted id
    calls = list(re.finditer(r'Plotly\.newPlot\(\s*"', page))
    if not calls:
        raise ValueError("no Plotly.newPlot call in the page")
    decoder = json.JSONDecoder()
    _, i = decoder.raw_decode(page, calls[-1].end() - 1)  # the div id
    data, i = decoder.raw_decode(page, _skip(page, i))
    layout, _ = decoder.raw_decode(page, _skip(page, i))
    return go.Figure(data=data, layout=layout)


def _skip(text: str, i: int) -> int:
    while text[i] in " \t\r\n,":
        i += 1
    return i
