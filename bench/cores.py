"""Cores in use and trials finished: `search run --workers 2` against one worker, and against
the commit issue 30 started from, on the same rows, space and budget, one after the other.

Each run is the real CLI on a fresh runs folder: rows 1-4,480 of ../shared/hvc (bench/quality.py's
split), spaces/hvc.yaml, --seed 0, `--trials 100000 --timeout MINUTES*60` (so its first
trial builds the caches, as a user's does). Figures per run: wall and CPU seconds of the whole
process tree (cores in use = CPU / wall), trials finished (complete + pruned), the best
validation score, and the seconds workers waited for their window (search.study.window). The
`start` run checks out START (git worktree under runs/bench/cores) and runs its own CLI and
space unchanged.

    .venv/bin/python bench/cores.py [--minutes 15] [--runs start,one,two] [--start d9b7a20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import quality

import benchlib

WORK = benchlib.ROOT / "runs" / "bench" / "cores"
RUNS = {"start": ("START, its default (one process)", []),
        "one": ("this checkout, --workers 1", ["--workers", "1"]),
        "two": ("this checkout, --workers 2", ["--workers", "2"])}


def source(name: str, start: str):
    """The folder whose `search` a run uses: this checkout, or START's worktree."""
    if name != "start":
        return benchlib.ROOT
    tree = WORK / f"src-{start}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), start], check=True,
                       cwd=benchlib.ROOT, stdout=subprocess.DEVNULL)
    return tree


def run(name: str, minutes: float, csv, start: str) -> dict:
    root = source(name, start)
    runs = WORK / name
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    env = {**os.environ, "SEARCH_WEIGHTS_DIR": str(quality.SHARED / "weights"),
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "search.cli", "run", "--data", str(csv), "--space",
           str(root / "spaces" / "hvc.yaml"), "--study", "cores", "--seed", "0", "--trials",
           "100000", "--timeout", str(minutes * 60), "--no-progress", "--runs-dir", str(runs),
           *RUNS[name][1]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    with open(runs / "run.log", "w") as log:
        subprocess.run(cmd, env=env, check=True, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    import optuna

    trials = optuna.load_study(study_name="cores",
                               storage=f"sqlite:///{runs / 'optuna.db'}").get_trials()
    states = [t.state.name for t in trials]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    figures = {"wall": wall, "cpu": cpu, "complete": states.count("COMPLETE"),
               "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
               "best": max((t.value for t in complete), default=float("nan")),
               "waited": sum(t.user_attrs.get("window_wait_s", 0.0) for t in trials)}
    (runs / "figures.json").write_text(json.dumps(figures))
    return figures


def report(results: dict, minutes: float, start: str) -> list[str]:
    base = results.get("start") or results.get("one")
    lines = [f"{minutes:g} minutes each, hvc rows 1-4,480, spaces/hvc.yaml, seed 0; START = "
             f"{start}; ratios against the {'start' if 'start' in results else 'one'} run.", "",
             "| run | wall s | CPU s | cores in use | finished (complete + pruned) | ratio | "
             "best val | window waits s |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        finished = r["complete"] + r["pruned"]
        base_finished = base["complete"] + base["pruned"]
        lines.append(f"| {RUNS[name][0].replace('START', start)} | {r['wall']:.0f} | "
                     f"{r['cpu']:.0f} | {r['cpu'] / r['wall']:.2f} of {os.cpu_count()} | "
                     f"{finished} ({r['complete']} + {r['pruned']}) | "
                     f"{finished / max(base_finished, 1):.2f}x | {r['best']:.4f} | "
                     f"{r['waited']:.0f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--runs", default="start,one,two",
                        help="which runs, in order (default: %(default)s)")
    parser.add_argument("--start", default="d9b7a20", help="the commit issue 30 started from")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if not benchlib.HVC_CSV.exists():
        sys.exit(f"skipped: {benchlib.HVC_CSV} is not present")
    quality.WORK.mkdir(parents=True, exist_ok=True)
    csv, _ = quality.split_data()
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        sys.exit(f"--runs: unknown {', '.join(unknown)}; known: {', '.join(RUNS)}")
    results = {}
    for name in names:
        print(f"{name}: {RUNS[name][0].replace('START', args.start)}, {args.minutes:g} min",
              flush=True)
        results[name] = run(name, args.minutes, csv, args.start)
    benchlib.record(f"cores: search run --workers 2 vs one worker vs {args.start}",
                    report(results, args.minutes, args.start), enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
