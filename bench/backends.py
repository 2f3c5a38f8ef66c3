"""The same search on TensorFlow and on JAX, side by side on this machine, as a user runs it.

For each backend, one after the other: a fresh folder, `search run --backend B --trials N
--timeout T --seed 0` in it (default: the quick start's synthetic data and spaces/default.yaml;
--real: rows 1-4,480 of ../shared/hvc as bench/quality.py splits them, spaces/hvc.yaml,
SEARCH_WEIGHTS_DIR=../shared/weights), then the quick start itself, README's `search run
--trials 10` in an empty folder (bench/quickstart.py), with `--backend B`. The CLI is this
checkout's (PYTHONPATH), the backend is chosen by the flag as a user would.

Per backend: wall and CPU seconds of the search (cores in use = CPU / wall), trials finished
(complete + pruned, from the study in the folder's runs/optuna.db), trials per minute, median
trial seconds, and where a trial's time goes from the timestamps MLflow gave each epoch's
`loss`: median seconds from the trial's run start to its first epoch's end (building the model,
tracing or XLA-compiling the train and test steps, the first epoch) and median seconds of the
later epochs; the best validation value; the quick start's wall. Then the ratios of each
backend to the first (JAX / TensorFlow).

    .venv/bin/python bench/backends.py [--trials 20] [--timeout 600] [--backends tensorflow,jax]
    .venv/bin/python bench/backends.py --real            # --trials 100000 --timeout 720
Needs jax (pip install 'jax[cpu]'); --real needs ../shared (hvc images, weights).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import quality
import quickstart

import benchlib

WORK = benchlib.ROOT / "runs" / "bench" / "backends"
SEARCH = [sys.executable, "-m", "search.cli"]


def search(backend: str, folder: Path, trials: int, timeout: float, real: bool,
           csv: Path | None) -> dict:
    """`search run --backend B ...` in a fresh `folder`; its figures."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    data = []
    if real:
        env["SEARCH_WEIGHTS_DIR"] = str(quality.SHARED / "weights")
        data = ["--data", str(csv), "--space", str(benchlib.ROOT / "spaces" / "hvc.yaml")]
    cmd = [*SEARCH, "run", "--backend", backend, "--trials", str(trials), "--timeout",
           f"{timeout:g}", "--seed", "0", *data, "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    with open(folder / "run.log", "w") as log:
        code = subprocess.run(cmd, env=env, cwd=folder, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        sys.exit(f"{backend}: search run exited {code}:\n"
                 + "\n".join((folder / "run.log").read_text().splitlines()[-20:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    figures = {"wall": wall, "cpu": cpu, **study_figures(folder / "runs")}
    (folder / "figures.json").write_text(json.dumps(figures))
    return figures


def study_figures(runs: Path) -> dict:
    """Finished trials, their median seconds, the best value, and epoch timings, read from
    the study in runs/optuna.db and the trials' MLflow runs in runs/mlflow.db."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{runs / 'optuna.db'}"
    (name,) = optuna.get_all_study_names(storage)  # a fresh folder holds the one study
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    states = [t.state.name for t in trials]
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    complete = [t for t in finished if t.state.name == "COMPLETE"]
    from search.study import trial_record

    first, later = epoch_seconds(runs, [trial_record.read(t).run_id for t in finished])
    return {"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
            "failed": states.count("FAIL"),
            "trial_s": _median([t.duration.total_seconds() for t in finished]),
            "first_epoch_s": _median(first), "epoch_s": _median(later),
            "best": max((t.value for t in complete), default=float("nan"))}


def epoch_seconds(runs: Path, run_ids: list) -> tuple[list[float], list[float]]:
    """Per trial: seconds from its MLflow run's start to its first epoch's `loss` (the
    callback logs it at the epoch's end), and the seconds between later epochs' `loss`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    first, later = [], []
    for run_id in filter(None, run_ids):
        stamps = [m.timestamp for m in sorted(client.get_metric_history(run_id, "loss"),
                                              key=lambda m: m.step)]
        if not stamps:
            continue
        first.append((stamps[0] - client.get_run(run_id).info.start_time) / 1000)
        later += [(b - a) / 1000 for a, b in zip(stamps, stamps[1:])]
    return first, later


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: dict, args) -> list[str]:
    base_name = next(iter(results))
    data = ("hvc rows 1-4,480 (bench/quality.py's split), spaces/hvc.yaml, "
            "SEARCH_WEIGHTS_DIR=../shared/weights" if args.real else
            "the quick start's synthetic data (2,000 images of 32 px), spaces/default.yaml")
    lines = [f"`search run --backend B --trials {args.trials} --timeout {args.timeout:g} "
             f"--seed 0` in a fresh folder per backend, one after the other, on {data}; "
             f"quick start: `search run --trials {args.quickstart_trials} --backend B` in an "
             "empty folder. Epoch seconds from the timestamps of each trial's per-epoch "
             "`loss` in MLflow; 'to first epoch' is from the trial's run start (model build, "
             "trace or XLA compile, the first epoch and its validation).", "",
             "| backend | wall s | CPU s | cores in use | finished (complete + pruned) | "
             "trials/min | median trial s | median to first epoch s | median later epoch s | "
             "best val | quick start s |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def finished(r):
        return r["complete"] + r["pruned"]

    def per_min(r):
        return finished(r) / r["wall"] * 60

    for name, r in results.items():
        failed = f", {r['failed']} failed" if r["failed"] else ""
        quick = f"{r['quickstart']['total']:.0f}" if r.get("quickstart") else ""
        lines.append(
            f"| {name} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['cpu'] / r['wall']:.2f} of "
            f"{os.cpu_count()} | {finished(r)} ({r['complete']} + {r['pruned']}){failed} | "
            f"{per_min(r):.2f} | {r['trial_s']:.1f} | {r['first_epoch_s']:.1f} | "
            f"{r['epoch_s']:.2f} | {r['best']:.4f} | {quick} |")
    base = results[base_name]
    for name, r in list(results.items())[1:]:
        parts = [f"wall {benchlib.ratio(r['wall'], base['wall'])}",
                 f"trials/min {benchlib.ratio(per_min(r), per_min(base))}",
                 f"median trial s {benchlib.ratio(r['trial_s'], base['trial_s'])}",
                 f"to first epoch {benchlib.ratio(r['first_epoch_s'], base['first_epoch_s'])}",
                 f"later epoch {benchlib.ratio(r['epoch_s'], base['epoch_s'])}",
                 f"best val {r['best'] - base['best']:+.4f}"]
        if r.get("quickstart") and base.get("quickstart"):
            parts.append("quick start " + benchlib.ratio(r["quickstart"]["total"],
                                                         base["quickstart"]["total"]))
        lines += ["", f"{name} / {base_name}: " + ", ".join(parts) + "."]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax",
                        help="in order; ratios against the first (default: %(default)s)")
    parser.add_argument("--real", action="store_true",
                        help="hvc rows 1-4,480 with spaces/hvc.yaml instead of synthetic data")
    parser.add_argument("--trials", type=int,
                        help="finished trials per search (default: 20; --real: 100000, so "
                             "that the timeout decides)")
    parser.add_argument("--timeout", type=float,
                        help="seconds per search (default: 600; --real: 720)")
    parser.add_argument("--quickstart-trials", type=int, default=10,
                        help="the quick start's --trials (default: README's 10)")
    parser.add_argument("--no-quickstart", action="store_true")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    args.trials = args.trials or (100000 if args.real else 20)
    args.timeout = args.timeout or (720 if args.real else 600)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    from search import backend

    for name in names:
        if name not in backend.NAMES:
            sys.exit(f"--backends: unknown {name!r}; known: {', '.join(backend.NAMES)}")
        if importlib.util.find_spec(name) is None:
            sys.exit(f"skipped: {name} is not installed ({backend.PACKAGES[name]})")
    csv = None
    if args.real:
        if not benchlib.HVC_CSV.exists():
            sys.exit(f"skipped: {benchlib.HVC_CSV} is not present")
        quality.WORK.mkdir(parents=True, exist_ok=True)
        csv, _ = quality.split_data()
    # every `search` these runs start is this checkout's, whatever the venv has installed
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(benchlib.ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    results = {}
    for name in names:
        print(f"{name}: search run --trials {args.trials} --timeout {args.timeout:g}",
              flush=True)
        results[name] = search(name, WORK / f"{name}{'-real' if args.real else ''}",
                               args.trials, args.timeout, args.real, csv)
        if not args.no_quickstart:
            print(f"{name}: quick start", flush=True)
            folder = WORK / f"quickstart-{name}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            results[name]["quickstart"] = quickstart.quick_start(
                folder, ["--backend", name], trials=args.quickstart_trials)
    title = f"backends: {' vs '.join(names)}, the same search{' on hvc' if args.real else ''}"
    benchlib.record(title, report(results, args), enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
