"""Learning-rate pictures: the LR range test curve and a cyclical schedule, as plotly figures
and self-contained HTML. The numbers come from `search.train.clr`.
"""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go


def lr_curve_figure(result) -> go.Figure:
    """Loss vs learning rate (log x) with the suggested bounds marked."""
    fig = go.Figure()
    fig.add_scatter(x=result.lrs, y=result.losses, mode="lines", name="loss", opacity=0.4)
    fig.add_scatter(x=result.lrs, y=result.smoothed, mode="lines", name="smoothed loss")
    finite = [v for v in result.losses + result.smoothed if math.isfinite(v)] or [0.0]
    for lr, label in ((result.suggested_base_lr, "base_lr"), (result.suggested_max_lr, "max_lr")):
        fig.add_scatter(x=[lr, lr], y=[min(finite), max(finite)], mode="lines",
                        line={"dash": "dash"}, name=f"suggested {label}={lr:.2e}")
    fig.update_layout(title="LR range test", xaxis_title="learning rate", yaxis_title="loss")
    fig.update_xaxes(type="log")
    return fig


def save_lr_curve_html(result, path) -> Path:
    """Write the LR range test plot as a self-contained (offline) HTML file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lr_curve_figure(result).write_html(path, include_plotlyjs=True)
    return path


def schedule_figure(base_lr: float, max_lr: float, step_size: int, mode: str = "triangular",
                    gamma: float = 1.0, total_steps: int | None = None) -> go.Figure:
    """The cyclical learning rate over `total_steps` optimizer steps (default: 3 cycles)."""
    from search.train.clr import check_clr_args, clr_value  # TensorFlow: only for a schedule

    check_clr_args(base_lr, max_lr, step_size, mode, gamma)
    total_steps = total_steps or 6 * step_size
    steps = list(range(total_steps + 1))
    fig = go.Figure()
    lrs = [clr_value(s, base_lr, max_lr, step_size, mode, gamma) for s in steps]
    fig.add_scatter(x=steps, y=lrs, mode="lines", name=mode)
    fig.update_layout(title=f"Cyclical learning rate ({mode})", xaxis_title="step",
                      yaxis_title="learning rate")
    return fig
