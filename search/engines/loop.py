"""The search loop, one for every engine: `create` makes an engine, `run` searches with it.

`run` is the flow of `search run`: open or resume the study, the start-up line, "nothing to
do" when it is complete, the study's MLflow parent run (a `with` block: finished whatever
happens), the trials, Ctrl-C with the command that resumes, why it stopped early, the summary
and the exit code. The trials come from `trials` (this process asks the engine, Optuna's or
keras-tuner's, for one trial at a time and applies the stop rules: --trials, --timeout,
--until-converged, --max-failures) or `spread` (K worker processes or Ray tasks, each running
`work`: `trials` in a joined study). What the loop asks of an engine is
`search.engines.base.Engine`; `create` is the one way to make one, for `search run`, every
worker and the --isolate child alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time

from search.engines.base import (
    CONVERGED,
    EXHAUSTED,
    FAILED,
    TIMEOUT,
    Engine,
    Outcome,
    reason,
    resume_hint,
)
from search.errors import UsageError
from search.settings import mask


def create(name: str, settings, options, *, tuner: str = "hyperband") -> Engine:
    """The engine called `name` for a study: the flags it cannot honour are refused first
    (once, before any data is read or anything written), then the session is built.
    `tuner` is keras-tuner's oracle."""
    from search.engines.base import ENGINES
    from search.study.session import Session

    if name == "optuna":
        from search.engines.optuna import OptunaEngine
        from search.study import workers

        if options.ray is not None or options.gpus_per_trial is not None:
            from search.study.ray_workers import check_options  # no Ray import unless asked for

            check_options(options, settings)
        engine = OptunaEngine(Session.build(settings, options))
        if workers.wanted(options):  # reached and checked before anything is written
            engine.pool = _pool(options, settings)
        if options.isolate:  # each trial trains in a fresh process: `isolated`
            engine.elsewhere = functools.partial(workers.in_fresh_process, isolated, settings,
                                                 options)
        return engine
    if name == "keras-tuner":
        from search.engines.keras_tuner import KerasTunerEngine, check_options

        check_options(options)
        return KerasTunerEngine(Session.build(settings, options), tuner)
    raise UsageError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


def run(engine: Engine) -> int:
    """Open or resume, search to --trials finished trials, summarise; the exit code."""
    opts = engine.session.options
    try:
        engine.open()
        done = engine.finished()
        print(f"{engine.where()}: {done} finished trial(s), target {opts.trials}; "
              f"{engine.session.describe()}", flush=True)
        for line in [*engine.session.notes, *engine.notes()]:
            print(line, flush=True)
        if done >= opts.trials:
            print(f"nothing to do: the study already has {done} finished trials "
                  f"(raise --trials to search further)")
            summary(engine)
            return 0
        try:
            with parent_run(engine):
                outcome = spread(engine) if engine.pool is not None else trials(engine)
        except KeyboardInterrupt:
            print(f"\ninterrupted: running trials are marked FAIL and the study is saved "
                  f"({engine.finished()} finished). Resume with: {resume_hint(opts)}",
                  file=sys.stderr)
            return 130
        if outcome.stopped and outcome.why != CONVERGED:
            print(f"stopped: {outcome.stopped}", file=sys.stderr)
        summary(engine)
        if outcome.why == CONVERGED and outcome.stopped:
            print(f"{outcome.stopped}; {opts.trials - outcome.finished} of --trials "
                  f"{opts.trials} left for the final model: {engine.final_model_hint()}")
        return outcome.code
    finally:
        engine.close()


@contextlib.contextmanager
def parent_run(engine: Engine):
    """The study's MLflow parent run, found or created before any trial, and finished with
    the best value when the trials end, however they end."""
    engine.start_tracking()
    try:
        yield
    finally:
        tracking = engine.session.tracking
        if tracking is not None:
            top = engine.best()
            tracking.tracker.finish_study_run(tracking.parent_run_id,
                                              {"best_value": top.score} if top else None)


def trials(engine: Engine) -> Outcome:
    """This process's share of the trials, one `engine.trial` at a time: stop when the study
    is complete, has converged or ran out of time; wait while other workers hold the last
    slots; stop after --max-failures failures in a row."""
    from tqdm.auto import tqdm

    opts = engine.session.options
    engine.close_orphans()
    if engine.elsewhere is None:
        engine.session.use_device()
    start = time.monotonic()
    bar = tqdm(total=opts.trials, initial=min(engine.finished(), opts.trials),
               unit="trial", disable=not opts.progress, dynamic_ncols=True)
    failures, checked_at, waiting = 0, None, False
    stopped, why = None, FAILED
    try:
        while True:
            engine.interrupts.check()
            engine.fail_dead(bar.write)  # a dead worker's trial: failed, its parameters retried
            done, running = engine.finished(), engine.running()
            if done >= opts.trials:
                break
            if opts.until_converged is not None and done != checked_at:
                checked_at, verdict = done, engine.convergence()
                if verdict.converged:
                    bar.write(verdict.line())
                    stopped, why = converged(verdict), CONVERGED
                    break
            if opts.timeout is not None and time.monotonic() - start > opts.timeout:
                stopped, why = f"timeout of {opts.timeout:g} s reached", TIMEOUT
                break
            if done + running >= opts.trials and running:
                if not waiting:
                    bar.write(engine.waiting_line(running))
                waiting = True
                time.sleep(1.0)
                continue
            waiting = False
            ended = engine.trial(bar)
            if ended.exhausted:
                stopped, why = ended.reason, EXHAUSTED
                break
            if ended.surplus:
                continue
            failures = failures + 1 if ended.failed else 0
            if failures >= opts.max_failures:
                stopped = (f"{failures} trials in a row failed (last: "
                           f"{ended.reason or 'see the log'}); stopping. Fix the cause or "
                           f"raise --max-failures")
                break
    finally:
        bar.close()
        engine.close_orphans()
    return Outcome(finished=engine.finished(), stopped=stopped, why=why)


def spread(engine: Engine) -> Outcome:
    """The trials of --workers, --gpus or --ray: each worker runs `work` on the study, which
    `run` opened; how they ended, as one outcome."""
    session = engine.session
    opts, settings = session.options, session.settings
    if settings.tracking_uri.startswith("sqlite"):
        from search.study.storage import sqlite_wal

        sqlite_wal(settings.tracking_uri)  # K workers write runs/mlflow.db too
    # Absolute paths: a Ray worker's folder is not this one.
    options = dataclasses.replace(opts, workers=1, gpus=None, ray=None, gpus_per_trial=None,
                                  progress=False, data=str(session.csv.resolve()),
                                  space=os.path.abspath(opts.space))
    try:
        codes = engine.pool.launch(work, (settings, options))
    finally:
        engine.close_orphans()
    from search.study import workers

    done = engine.finished()
    trouble = [f"worker {n} {workers.exit_text(code)}"
               for n, code in enumerate(codes, start=1) if code != 0]
    stopped, why = None, FAILED
    verdict = engine.convergence() if opts.until_converged is not None else None
    if done < opts.trials and not trouble and verdict is not None and verdict.converged:
        stopped, why = converged(verdict), CONVERGED
    elif done < opts.trials and not trouble and opts.timeout is not None:
        stopped, why = f"timeout of {opts.timeout:g} s reached", TIMEOUT
    elif done < opts.trials:
        stopped = f"the study has {done} of {opts.trials} finished trials; " + (
            "; ".join(trouble) or "the workers stopped early")
    elif trouble:
        print(f"the study is complete; {'; '.join(trouble)}", file=sys.stderr)
    return Outcome(finished=done, stopped=stopped, why=why)


def work(settings, options) -> int:
    """Join a study that `search run` started and run trials until it is complete: the
    `search worker` command and each worker of `search run --workers/--gpus/--ray`. The exit
    code."""
    from search.study.study import worker_name

    engine = create("optuna", settings, options)
    engine.interrupts.install()
    engine.join()
    who = worker_name()
    print(f"worker {who} joined study {options.study!r} on {mask(settings.storage)}: "
          f"{engine.finished()} of {options.trials} finished", flush=True)
    try:
        outcome = trials(engine)
    except KeyboardInterrupt:
        print(f"worker {who} interrupted: its running trial is marked FAIL", file=sys.stderr)
        return 130
    if outcome.stopped:
        print(f"worker {who} stopped: {outcome.stopped}",
              file=sys.stderr if outcome.code else sys.stdout)
    return outcome.code  # 0 also on --timeout and --until-converged (see `search run --help`)


def isolated(settings, options, trial_id: int, config):
    """--isolate's child: train one sampled config of a joined study in this fresh process.
    (kind, detail): ("value", objective) | ("pruned", why) | ("failed", reason); plain values,
    because TensorFlow's exceptions do not survive pickling back to the parent."""
    from search import console
    from search.engines.trial import Pruned

    console.quiet()
    engine = create("optuna", settings, dataclasses.replace(options, isolate=False))
    engine.interrupts.install()
    engine.join()
    engine.session.use_device()
    try:
        return "value", engine.train(trial_id, config)
    except Pruned as exc:
        return "pruned", str(exc)
    except Exception as exc:
        return "failed", reason(exc)


def _pool(options, settings):
    """The workers of --workers, --gpus or --ray: Ray tasks (search.study.ray_workers), else
    processes on this machine (search.study.workers). Both have launch(target, args) -> exit
    codes, where(), close()."""
    from search.study import workers

    if options.ray is not None:
        from search.study import ray_workers

        return ray_workers.RayPool(options, settings)
    return workers.Processes(workers.devices(options))


def converged(verdict) -> str:
    return f"converged after {verdict.trials} complete trials (--until-converged)"


def summary(engine: Engine) -> None:
    """What the engine says first (workers, Pareto front), the best trial's per-head table,
    then what to do next."""
    from search.engines.base import disk_usage
    from search.formats import head_lines
    from search.study import edges as edges_lib

    for line in engine.summary_notes():
        print(line)
    top = engine.best()
    if top is None:
        print("no completed trial yet")
        return
    weights = f" [weights: {top.weights_note}]" if top.weights_note else ""
    print(f"best trial #{top.number}: {engine.objective_name()} = {top.score:.4f}{weights}")
    heads = top.heads
    columns = [c for c in ("accuracy", "balanced_accuracy", "majority")
               if any(c in s for s in heads.values())]
    titles = {"accuracy": "accuracy", "balanced_accuracy": "balanced", "majority": "majority"}
    test = top.test or {}
    rows = {head: [f"{s.get(c, float('nan')):.3f}" for c in columns]
            for head, s in heads.items()}
    print("\n".join(head_lines([(titles[c], 9) for c in columns], rows, test)))
    if test:
        print(f"  test rows: {top.test_rows}, mean test accuracy {top.test_mean:.4f} (held "
              f"back from every trial: an honest figure for this champion)")
    for line in edges_lib.lines(engine.edges()):
        print(line)
    disk = disk_usage(engine.session)
    if disk:
        print(disk)
    if engine.next_steps():
        print(engine.next_steps())
