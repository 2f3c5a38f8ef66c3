"""What Ray costs: the same tiny study with 1 and 2 Ray workers (`search run --ray`, a local
Ray instance started by each run) against 1 and 2 worker processes (`--workers K`).

Each run is the real CLI on a fresh runs folder (tests/tiny_space.yaml, as bench/workers.py)
until the study holds --trials finished trials. Figures per run: trials per minute on the wall
clock (start-up included) and in the steady state (first trial start to last trial end, from
the MLflow runs). Derived, Ray against processes at the same K: the fixed cost Ray adds per
run (its start, task scheduling, shutdown: the extra wall seconds outside the steady state,
which every worker waits through once) and the ratio of steady seconds per trial.

GPU mode (`--gpus-per-trial G`): the Ray runs ask for G GPUs per worker (0.5 packs two on one
GPU) and the process runs use `--gpus all`; without a GPU it says so and measures nothing.

Cluster mode (`--cluster`, issue 27; CPU only): two workers only, on the topology of
docs/cluster.md "A cluster on one machine". It runs `--workers 2` processes on one node and
`--ray --workers 2` on a local instance as above, then starts a Ray head (`ray start --head
--block`) and a second node joined to it (`ray start --address ... --block`) on this machine,
1 CPU each, free ports, a temp dir and dashboard agent port each, token authentication
(RAY_AUTH_MODE=token, a token per run), and runs `search run --ray 127.0.0.1:PORT --workers 2`
on them (one worker per node; the summary's "workers ran on" line is recorded). The seconds the
nodes took to start are stated apart (a user starts them once, not per run); the nodes and
every process they started are stopped by session id at the end (never `ray stop`). Node logs
and each run's output: runs/bench/ray-cluster/ and runs/bench/LABEL-K.log.

    .venv/bin/python bench/ray_workers.py [--trials 8] [--images 200] [--gpus-per-trial 0.5]
    .venv/bin/python bench/ray_workers.py --cluster [--trials 8] [--images 200]
"""

from __future__ import annotations

import argparse
import os
import sys

from workers import run

import benchlib


def has_gpu() -> bool:
    from search.study import workers

    return bool(workers.gpu_ids("all"))


CLUSTER = "ray, 2 nodes"  # the backend name of the --cluster runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--images", type=int, default=200, help="synthetic 32 px images")
    p.add_argument("--gpus-per-trial", type=float, metavar="G",
                   help="GPU mode: Ray workers ask for G GPUs each; processes get --gpus all")
    p.add_argument("--cluster", action="store_true",
                   help="2 workers: processes, a local Ray instance and two Ray nodes started "
                        "here (ray start --head / --address, 1 CPU each, token auth)")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("bench/ray_workers.py: Ray is not installed (pip install -e '.[ray]'); nothing "
              "measured.", file=sys.stderr)
        return 2
    gpu = args.gpus_per_trial
    if gpu is not None and args.cluster:
        print("bench/ray_workers.py: --cluster measures CPU workers only; drop "
              "--gpus-per-trial.", file=sys.stderr)
        return 2
    if gpu is not None and not has_gpu():
        print("bench/ray_workers.py: --gpus-per-trial: no GPU on this machine; nothing "
              "measured.", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_TMPDIR", "/tmp/ray-bench")
    csv = benchlib.synthetic_csv(args.images, 32)
    ray_flags = ("--ray", *(("--gpus-per-trial", f"{gpu:g}") if gpu else ()))
    process_flags = ("--gpus", "all") if gpu else ()
    ks = (2,) if args.cluster else (1, 2)
    figures = {}
    for k in ks:
        figures["process", k] = run(k, args.trials, csv, process_flags, "processes")
        figures["ray", k] = run(k, args.trials, csv, ray_flags, "ray")
    if args.cluster:
        with benchlib.ray_nodes(benchlib.ROOT / "runs" / "bench" / "ray-cluster") as nodes:
            figures[CLUSTER, 2] = run(2, args.trials, csv, ("--ray", nodes.address),
                                      "ray-cluster", env=nodes.env)
        ran_on = [line for line in (benchlib.ROOT / "runs" / "bench" / "ray-cluster-2.log")
                  .read_text().splitlines() if " ran on: " in line]

    def per_minute(f, which):
        return f[2] * 60 / f[which]

    def outside(f):  # wall seconds outside the steady state: start-up and shutdown
        return f[0] - f[1]

    def per_trial(f, k):  # steady seconds per trial of one worker
        return f[1] * k / f[2]

    def speed(b, k, which=0):
        return per_minute(figures[b, k], which)

    mode = f"Ray --gpus-per-trial {gpu:g} vs processes --gpus all" if gpu else "CPU only"
    lines = [
        f"tests/tiny_space.yaml on {args.images} synthetic 32 px images, {args.trials} trials "
        f"per run, a fresh SQLite storage per run; {mode}; each `ray` run starts (and stops) "
        f"its own local Ray instance"
        + (f"; `{CLUSTER}`: `search run --ray 127.0.0.1:PORT` on a Ray head and a second node "
           f"started here beforehand (`ray start --head` / `--address`, 1 CPU each, token "
           f"authentication), up in {nodes.up_s:.1f} s (not in the run's wall)"
           if args.cluster else "") + ".",
        "",
        "| backend | workers | finished | wall s | trials/min (wall) | trials/min (steady) "
        "| s outside steady state (wall - steady) |",
        "|---|---|---|---|---|---|---|",
        *[f"| {b} | {k} | {f[2]} | {f[0]:.1f} | {per_minute(f, 0):.2f} | "
          f"{per_minute(f, 1):.2f} | {outside(f):.1f} |" for (b, k), f in figures.items()],
        "",
    ]
    for (b, k), r in figures.items():
        if b == "process":
            continue
        q = figures["process", k]
        lines.append(
            f"- {b}, {k} worker(s): Ray/processes trials per minute "
            f"{benchlib.ratio(speed(b, k), speed('process', k))} wall, "
            f"{benchlib.ratio(speed(b, k, 1), speed('process', k, 1))} steady; fixed cost "
            f"Ray adds per run (each worker waits through it once): "
            f"{outside(r) - outside(q):+.1f} s; steady seconds per trial Ray/processes "
            f"{benchlib.ratio(per_trial(r, k), per_trial(q, k))} "
            f"({per_trial(r, k) - per_trial(q, k):+.1f} s per trial).")
    if 1 in ks:
        lines.append(f"- Speed-up 2 vs 1 worker (wall): Ray "
                     f"{benchlib.ratio(speed('ray', 2), speed('ray', 1))}, processes "
                     f"{benchlib.ratio(speed('process', 2), speed('process', 1))}.")
    if args.cluster:
        lines.append(f"- {CLUSTER}: {'; '.join(ran_on) or 'no `ran on` line in its output'}.")
    title = "ray workers vs process workers" + (f", GPU {gpu:g}" if gpu else "") + \
        (", two Ray nodes" if args.cluster else "")
    benchlib.record(title, lines, enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
