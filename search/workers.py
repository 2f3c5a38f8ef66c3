"""Several processes on one study: `search run --workers K | --gpus`, a fresh process per trial
(`--isolate`), and cleaning up after workers that died.

Local workers are spawned processes (multiprocessing "spawn": a fresh interpreter, no forked
TensorFlow state) that receive the launcher's resolved Settings and Options through a pipe, not
argv, so a storage password never shows in `ps`. Each runs `Runner.work`, the same code as
`search worker` on another machine. Each worker leads its own process group: Ctrl-C reaches
the launcher only, which forwards one SIGINT to each worker's group and waits while they mark
their trial FAIL and close its MLflow run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys

from search.errors import UsageError
from search.settings import mask

DIED = ("its worker died mid-trial (no heartbeat); the heartbeat check failed the trial and "
        "queued its parameters for a retry")


class TrialProcessError(RuntimeError):
    """An --isolate trial failed in its own process; the message is the reason recorded."""


def wanted(options) -> bool:
    """Whether `search run` starts worker processes rather than training itself."""
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    return options.workers > 1 or bool(options.gpus)


def devices(options) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each worker to start (None: inherit; CPU when there is no GPU).
    One worker per GPU; with more --workers than GPUs they share GPUs round-robin."""
    if not options.gpus:
        return [None] * options.workers
    gpus = gpu_ids(options.gpus)
    if not gpus:
        print(f"--gpus {options.gpus}: no GPU found; starting {options.workers} CPU worker(s)")
        return [None] * options.workers
    return [gpus[i % len(gpus)] for i in range(max(options.workers, len(gpus)))]


def gpu_ids(spec: str) -> list[str]:
    """'0,1' → ['0', '1']; 'all' → the visible GPUs (CUDA_VISIBLE_DEVICES, else nvidia-smi)."""
    if spec != "all":
        ids = [g.strip() for g in spec.split(",") if g.strip()]
        if not ids:
            raise UsageError(f"--gpus {spec!r}: give GPU ids such as 0,1 or 'all'")
        return ids
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() not in ("", "-1")]
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return found.stdout.split() if found.returncode == 0 else []


def launch(runner, study, tracker):
    """Start the workers, wait for them (forwarding Ctrl-C), close what dead ones left open.
    The study and its MLflow parent run exist already, so workers only join them."""
    from search import study as study_lib

    settings = runner.settings
    if settings.tracking_uri.startswith("sqlite"):
        study_lib.sqlite_wal(settings.tracking_uri)  # K workers write runs/mlflow.db too
    options = dataclasses.replace(runner.options, workers=1, gpus=None, progress=False)
    before = len(study.get_trials(deepcopy=False))
    context = multiprocessing.get_context("spawn")
    workers = []
    for number, gpu in enumerate(devices(runner.options), start=1):
        process = context.Process(target=_worker, args=(settings, options, gpu),
                                  name=f"search-worker-{number}")
        process.start()
        workers.append(process)
        print(f"worker {number}: pid {process.pid}" + (f", GPU {gpu}" if gpu else ""),
              flush=True)
    try:
        for process in workers:
            process.join()
    except KeyboardInterrupt:
        for process in workers:
            _interrupt(process)
        for process in workers:
            process.join()
        raise
    finally:
        close_orphan_runs(study, tracker)
    return _outcome(study, workers, options.trials, before)


def _interrupt(process) -> None:
    """SIGINT to a worker's process group, so that its --isolate trial process stops too."""
    try:
        os.killpg(process.pid, signal.SIGINT)
    except ProcessLookupError:  # not leading its group yet, or already gone
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)


def _worker(settings, options, gpu: str | None) -> None:
    """A worker process: own process group (see module docstring), its GPU, `Runner.work`."""
    os.setpgrp()
    sys.stdout.reconfigure(line_buffering=True)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    from search.runner import Runner

    try:
        code = Runner(settings, options).work()
    except UsageError as exc:
        print(f"search worker: error: {mask(str(exc))}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:  # forwarded before the worker was ready
        code = 130
    sys.exit(code)


def _outcome(study, workers, target: int, before: int):
    from search import study as study_lib

    done = study_lib.finished(study)
    trouble = [f"worker {n} {_exit_text(p.exitcode)}"
               for n, p in enumerate(workers, start=1) if p.exitcode != 0]
    stopped = None
    if done < target:
        stopped = f"the study has {done} of {target} finished trials; " + (
            "; ".join(trouble) or "the workers stopped early")
    elif trouble:
        print(f"the study is complete; {'; '.join(trouble)}", file=sys.stderr)
    return study_lib.Outcome(ran=len(study.get_trials(deepcopy=False)) - before,
                             finished=done, stopped=stopped)


def _exit_text(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return {1: "stopped after repeated failures", 2: "could not start (see its error)",
            130: "was interrupted"}.get(code, f"exited with code {code}")


def close_orphan_runs(study, tracker) -> None:
    """End the MLflow runs of trials that are over but whose process died before ending the
    run (SIGKILL, power loss, an --isolate process killed for memory), so none stays RUNNING
    for ever. The trial's state decides the status; a FAIL trial's reason goes along."""
    from optuna.trial import TrialState

    from search.tracking import ROLE_TAG

    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{ROLE_TAG}` = 'trial'")
    if not runs:
        return
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for run in runs:
        trial = trials.get(int(run.data.tags.get("search.trial", -1)))
        if trial is None or not trial.state.is_finished():
            continue  # still running in a live worker
        status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}.get(
            trial.state, "FAILED")
        run_id = run.info.run_id
        tracker.client.set_tag(run_id, "search.state", trial.state.name)
        if trial.state == TrialState.FAIL:
            tracker.client.set_tag(run_id, "search.reason",
                                   trial.user_attrs.get("fail_reason", DIED))
        tracker.client.set_terminated(run_id, status=status)


def train_isolated(runner, config, trial) -> float:
    """`Runner.train` for one trial in a fresh spawned process: when it exits, all its memory
    (TensorFlow's, the GPU's) is returned. Costs an interpreter and TensorFlow start per trial."""
    import optuna
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    options = dataclasses.replace(runner.options, isolate=False)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(_train_in_child, runner.settings, options, trial._trial_id, config)
        try:
            kind, detail = future.result()
        except BrokenProcessPool:
            raise TrialProcessError("the trial's process died (killed by the system, e.g. out "
                                    "of memory); its MLflow run is closed as FAILED") from None
    if kind == "pruned":
        raise optuna.TrialPruned(detail)
    if kind == "failed":
        raise TrialProcessError(detail)
    return detail


def _train_in_child(settings, options, trial_id: int, config):
    """(kind, detail): ("value", objective) | ("pruned", why) | ("failed", reason). Plain
    values, because TensorFlow's exceptions do not survive pickling back to the parent."""
    import optuna

    from search import device
    from search.runner import Runner

    runner = Runner(settings, options)
    study = runner.open_study(create=False)
    tracker, parent = runner.tracking(study, create=False)
    bench = runner.workbench(tracker, parent, device.choose(options.precision, options.xla))
    try:
        return "value", runner.train(config, bench, optuna.trial.Trial(study, trial_id))
    except optuna.TrialPruned as exc:
        return "pruned", str(exc)
    except Exception as exc:
        return "failed", f"{type(exc).__name__}: {exc}"
