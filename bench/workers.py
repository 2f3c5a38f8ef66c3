"""Trials per hour with `search run --workers 2` vs `--workers 1`, on tiny trials.

Each run is the real CLI on a fresh runs folder (tests/tiny_space.yaml: 32 px, 1 epoch, a few
thousand parameters) until the study holds --trials finished trials. Two figures per run:
wall clock (start-up included: every worker imports TensorFlow) and steady state (first trial
start to last trial end, from the MLflow runs). Exits 2 with a message if this checkout's
`search run` has no --workers flag yet.

    .venv/bin/python bench/workers.py [--trials 12] [--images 400]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import benchlib

SPACE = benchlib.ROOT / "tests" / "tiny_space.yaml"


def has_workers_flag() -> bool:
    help_ = subprocess.run([sys.executable, "-m", "search.cli", "run", "--help"],
                           capture_output=True, text=True, cwd=benchlib.ROOT)
    return "--workers" in help_.stdout


def run(workers: int, trials: int, csv, extra: tuple[str, ...] = (),
        label: str = "workers", env: dict | None = None) -> tuple[float, float, int]:
    """(wall seconds, first-start-to-last-end seconds, finished trials) for one study
    (`extra`: more `search run` flags, e.g. --ray; `label` names its runs folder, and its
    output goes to the same name + .log; `env`: the run's environment, default this one's)."""
    import mlflow

    runs = benchlib.ROOT / "runs" / "bench" / f"{label}-{workers}"
    shutil.rmtree(runs, ignore_errors=True)
    runs.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "search.cli", "run", "--workers", str(workers), "--trials",
           str(trials), "--space", str(SPACE), "--data", str(csv), "--study", "workers",
           "--runs-dir", str(runs), "--no-progress", *extra]
    print(f"$ {' '.join(cmd[2:])}", flush=True)
    with benchlib.Timer() as t, runs.with_suffix(".log").open("w") as log:
        subprocess.run(cmd, check=True, cwd=benchlib.ROOT, stdout=log, env=env)
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("workers")
    done = [r for r in client.search_runs([exp.experiment_id], max_results=10000)
            if r.data.tags.get("search.role") == "trial" and r.info.status == "FINISHED"]
    steady = (max(r.info.end_time for r in done) - min(r.info.start_time for r in done)) / 1000
    return t.seconds, steady, len(done)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--images", type=int, default=400, help="synthetic 32 px images")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)
    if not has_workers_flag():
        print("bench/workers.py: `search run --workers` does not exist in this checkout yet "
              "(it is being implemented); nothing measured.", file=sys.stderr)
        return 2
    csv = benchlib.synthetic_csv(args.images, 32)
    figures = {n: run(n, args.trials, csv) for n in (1, 2)}

    def per_hour(n, which):
        return figures[n][2] * 3600 / figures[n][which]

    lines = [
        f"tests/tiny_space.yaml on {args.images} synthetic 32 px images, {args.trials} trials "
        f"per run, one study per run on a fresh SQLite storage.",
        "",
        "| workers | finished | wall s | trials/hour (wall) | trials/hour (steady) |",
        "|---|---|---|---|---|",
        *[f"| {n} | {f[2]} | {f[0]:.1f} | {per_hour(n, 0):.0f} | {per_hour(n, 1):.0f} |"
          for n, f in figures.items()],
        "",
        f"Speed-up 2 vs 1 worker: {benchlib.ratio(per_hour(2, 0), per_hour(1, 0))} wall, "
        f"{benchlib.ratio(per_hour(2, 1), per_hour(1, 1))} steady (target >= 1.8x).",
    ]
    benchlib.record("workers: 2 vs 1", lines, enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
