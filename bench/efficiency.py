"""Search efficiency: best validation accuracy over wall time, same space, data and budget.

Engines, each run through the real CLI (`search run ... --timeout BUDGET`) one after another:
  optuna      TPE sampler + median pruner (the space's own settings)
  hyperband   --engine keras-tuner --tuner hyperband (max_epochs = the space's epochs bound)
  random      --engine keras-tuner --tuner random
Every trial of every engine is an MLflow run, so one reader serves all three: a trial counts
when it finished within the budget, at its end time since the study's parent run started;
its value is the final mean validation accuracy (pruned Optuna trials have none). `--seed`
changes the sampler seeds and the train/validation split together.

Figure of merit per seed: the time Optuna's best-so-far needs to reach Hyperband's final best,
divided by the time Hyperband needed for it (target <= 0.5). Curves go to a self-contained
plotly HTML file.

    .venv/bin/python bench/efficiency.py --budget 600 --seeds 0,1,2      # a real comparison
    .venv/bin/python bench/efficiency.py --budget 90 --seeds 0,1         # a quick look
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import benchlib

SPACE = Path(__file__).with_name("efficiency_space.yaml")
ENGINES = {
    "optuna": [],
    "hyperband": ["--engine", "keras-tuner", "--tuner", "hyperband"],
    "random": ["--engine", "keras-tuner", "--tuner", "random"],
}
COLORS = {"optuna": "#1f77b4", "hyperband": "#d62728", "random": "#7f7f7f"}


def run_engine(engine: str, seed: int, budget: float, csv: Path, runs: Path) -> None:
    cmd = [sys.executable, "-m", "search.cli", "run", *ENGINES[engine], "--space", str(SPACE),
           "--data", str(csv), "--study", f"{engine}-s{seed}", "--seed", str(seed),
           "--trials", "100000", "--timeout", str(budget), "--no-baselines", "--no-progress",
           "--runs-dir", str(runs)]
    print(f"$ {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True, cwd=benchlib.ROOT, stdout=subprocess.DEVNULL)


def trials(runs: Path, study: str, budget: float) -> list[tuple[float, float]]:
    """(seconds since the study started, final mean accuracy) of trials done within budget."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name(study)
    runs_ = client.search_runs([exp.experiment_id], max_results=10000)
    parent = next(r for r in runs_ if r.data.tags.get("search.role") == "study")
    t0 = parent.info.start_time
    out = []
    for r in runs_:
        value = r.data.metrics.get("final_mean_accuracy")
        if r.data.tags.get("search.role") == "trial" and value is not None and r.info.end_time:
            seconds = (r.info.end_time - t0) / 1000
            if seconds <= budget:
                out.append((seconds, value))
    return sorted(out)


def best_so_far(points):
    best, curve = -math.inf, []
    for t, v in points:
        best = max(best, v)
        curve.append((t, best))
    return curve


def time_to_reach(curve, target: float) -> float:
    return next((t for t, b in curve if b >= target - 1e-12), math.inf)


def plot(curves: dict, points: dict, budget: float, out: Path) -> Path:
    import plotly.graph_objects as go

    fig = go.Figure()
    for (engine, seed), curve in curves.items():
        if not curve:
            continue
        xs = [t for t, _ in curve] + [budget]
        ys = [b for _, b in curve] + [curve[-1][1]]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line_shape="hv",
                                 name=f"{engine} seed {seed}", legendgroup=engine,
                                 line=dict(color=COLORS[engine], dash=["solid", "dash", "dot",
                                                                       "dashdot"][seed % 4])))
        fig.add_trace(go.Scatter(x=[t for t, _ in points[engine, seed]],
                                 y=[v for _, v in points[engine, seed]], mode="markers",
                                 marker=dict(color=COLORS[engine], size=4, opacity=0.35),
                                 legendgroup=engine, showlegend=False,
                                 name=f"{engine} seed {seed} trials"))
    fig.update_layout(title="Best mean validation accuracy over wall time (same space, data, "
                            "budget)", xaxis_title="seconds since the study started",
                      yaxis_title="best mean validation accuracy so far", template="plotly_white")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(out, include_plotlyjs=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=600, help="wall seconds per engine and seed")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--images", type=int, default=1200, help="synthetic images (default: 1200)")
    p.add_argument("--out", type=Path, default=benchlib.ROOT / "runs" / "bench" /
                   "efficiency.html", help="plotly HTML file")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    csv = benchlib.synthetic_csv(args.images, 32)
    runs = benchlib.ROOT / "runs" / "bench" / "efficiency"
    shutil.rmtree(runs, ignore_errors=True)
    points, curves = {}, {}
    for seed in seeds:
        for engine in ENGINES:
            run_engine(engine, seed, args.budget, csv, runs)
            points[engine, seed] = trials(runs, f"{engine}-s{seed}", args.budget)
            curves[engine, seed] = best_so_far(points[engine, seed])
    html = plot(curves, points, args.budget, args.out)

    def final(engine, seed):
        return curves[engine, seed][-1][1] if curves[engine, seed] else math.nan

    rows, ratios = [], {"optuna": [], "random": []}
    for seed in seeds:
        target = final("hyperband", seed)
        t_hb = time_to_reach(curves["hyperband", seed], target)
        cells = []
        for engine in ("optuna", "random"):
            t = time_to_reach(curves[engine, seed], target)
            ratios[engine].append(t / t_hb)
            cells.append(f"{t:.0f} s ({t / t_hb:.2f})" if math.isfinite(t) else "never")
        rows.append(f"| {seed} | " + " | ".join(
            f"{final(e, seed):.4f} ({len(points[e, seed])})" for e in ENGINES)
            + f" | {t_hb:.0f} s | {cells[0]} | {cells[1]} |")

    def spread(engine):
        values = [final(engine, s) for s in seeds]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {sd:.4f} (min {min(values):.4f}, max " \
               f"{max(values):.4f})"

    optuna_ratio = statistics.median(ratios["optuna"])
    lines = [
        f"Space bench/efficiency_space.yaml, {args.images} synthetic 32 px images, budget "
        f"{args.budget:g} s per engine and seed, seeds {args.seeds}; engines run one after "
        f"another on this machine. Curves: {html}",
        "",
        "| seed | optuna best (trials) | hyperband best (trials) | random best (trials) | "
        "hyperband reaches its best | optuna reaches it (ratio) | random reaches it (ratio) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        *[f"- final best {e}: {spread(e)}" for e in ENGINES],
        f"- time-to-Hyperband's-best ratio, median over seeds: optuna {optuna_ratio:.2f} "
        f"(per seed {', '.join(f'{r:.2f}' for r in ratios['optuna'])}), random "
        f"{statistics.median(ratios['random']):.2f}",
        f"- Target optuna <= 0.5x: {'met' if optuna_ratio <= 0.5 else 'MISSED'}.",
    ]
    benchlib.record(f"efficiency: optuna vs keras-tuner, {args.budget:g} s budget", lines,
                    enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
