"""The Optuna engine: `search run` (and `search worker`) with an Optuna study.

Its loop runs trials until the study holds --trials finished (COMPLETE or PRUNED) trials, in any
number of processes on any number of machines: `run` starts the study (and K worker processes
with --workers/--gpus), `work` joins one. One trial is: claim a slot (`search.study.study.claim`),
sample a config from the space, `search.engines.trial.run` it with an `OptunaReporter` (pruning,
user attributes, dashboard artifacts), and record why it failed if it did. A failed trial is
recorded FAIL with its reason and the search goes on.

Before each trial (and while it waits for other workers' trials) the loop fails the trials of
dead workers, with a reason (`search.study.heartbeats`), so a restarted single-process run does not
wait the heartbeat grace period for a ghost. With --until-converged it stops once
`search.study.convergence.verdict` says further trials are unlikely to matter.

Draws. Trial n's sampler is seeded from --seed, the study name and n, and sees the trials
of its window (`search.study.window`): with K workers it waits for the trials numbered n - 2K
or lower and sees only those. So a resumed study continues its sequence instead of replaying
its first draws, two studies do not share start-up draws, and the same command on the same
study state draws the same trials, with one worker or many (--workers 2 keeps two cores busy
without giving that up).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time

import optuna
from optuna.trial import TrialState

from search.engines.base import (
    CONVERGED,
    FAILED,
    TIMEOUT,
    Engine,
    Outcome,
    free_trial_graphs,
    reason,
)
from search.engines.optuna_trial import OptunaReporter, ranked, trial_line
from search.engines.trial import Pruned
from search.settings import mask
from search.study import study as study_lib
from search.study import trial_record, warm_start, window, workers
from search.study.heartbeats import close_orphan_runs, fail_dead_trials, waiting_line
from search.study.trial_record import TrialRecord
from search.track.tags import BASELINE_TAG, WARM_START_TAG


class OptunaEngine(Engine):
    name = "optuna"

    def __init__(self, session):
        super().__init__(session)
        self.study = None
        self.interrupts = workers.Interrupts()  # installed by `work`, the worker entry point
        self.pool = None  # _worker_pool: the workers of --workers, --gpus, --ray
        self.checked_at: int | None = None  # finished trials at the last convergence check
        self.warm_lines: list[str] = []  # what --warm-start queued or skipped, or its hint

    def open(self) -> None:
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures: one line each, ours
        opts = self.session.options
        warm = warm_start.plan(self.session)  # the earlier studies checked before any write
        hint = None if warm else warm_start.hint(self.session)  # a new study: --warm-start?
        if workers.wanted(opts):  # a Ray cluster is reached and checked before any write
            self.pool = _worker_pool(opts, self.session.settings)
        self.session.settings.ensure()
        self.study = study_lib.start_study(self.session)
        at_once = (len(self.pool.gpus) if isinstance(self.pool, workers.Processes)
                   else opts.workers)  # trials training at once (--gpus: one per GPU at least)
        window.set_width(self.study, window.width_for(at_once))
        if warm is not None:
            self.warm_lines = warm_start.enqueue(self.study, warm)
        elif hint:
            self.warm_lines = [hint]

    @property
    def sampler_seed(self) -> int | None:
        """The study's base sampler seed (trial n's: window.trial_seed(base, n))."""
        return self.study.sampler.seed if self.study is not None else None

    def where(self) -> str:
        return f"study {self.session.study!r} on {mask(self.session.settings.storage)}"

    def finished(self) -> int:
        return study_lib.finished(self.study)

    def best(self) -> TrialRecord | None:
        top = study_lib.best(self.study)
        return None if top is None else trial_record.read(top)

    def records(self) -> list[TrialRecord]:
        return trial_record.complete(self.study)

    def objective_name(self) -> str:
        return "mean_accuracy" if self.session.space.objectives else super().objective_name()

    def notes(self) -> list[str]:
        space = self.session.space
        if not space.objectives:
            return self.warm_lines
        how = ("trials are pruned by the heads rule (pruner: heads)"
               if space.pruner["name"] == "heads"
               else "pruning is off, Optuna cannot prune multi-objective trials (pruner: heads "
                    "prunes by per-head accuracies)")
        return ["multi-objective study (" + ", ".join(f"{m}:{d}" for m, d in space.objectives)
                + f"): {how}", *self.warm_lines]

    def start_tracking(self) -> None:
        tracking = self.session.start_tracking()
        study_lib.record_tracking(self.study, tracking.tracker.experiment_id,
                                  tracking.parent_run_id)

    def search(self) -> Outcome:
        opts = self.session.options
        if self.pool is None:
            return self.loop()
        settings = self.session.settings
        if settings.tracking_uri.startswith("sqlite"):
            from search.study.storage import sqlite_wal

            sqlite_wal(settings.tracking_uri)  # K workers write runs/mlflow.db too
        # Absolute paths: a Ray worker's folder is not this one.
        options = dataclasses.replace(opts, workers=1, gpus=None, ray=None, gpus_per_trial=None,
                                      progress=False, data=str(self.session.csv.resolve()),
                                      space=os.path.abspath(opts.space))
        try:
            codes = self.pool.launch(work, (settings, options))
        finally:
            close_orphan_runs(self.study, self.session.tracking.tracker)
        done = study_lib.finished(self.study)
        trouble = [f"worker {n} {workers.exit_text(code)}"
                   for n, code in enumerate(codes, start=1) if code != 0]
        stopped, why = None, FAILED
        verdict = self.convergence() if opts.until_converged is not None else None
        if done < opts.trials and not trouble and verdict is not None and verdict.converged:
            stopped, why = _converged(verdict), CONVERGED
        elif done < opts.trials and not trouble and opts.timeout is not None:
            stopped, why = f"timeout of {opts.timeout:g} s reached", TIMEOUT
        elif done < opts.trials:
            stopped = f"the study has {done} of {opts.trials} finished trials; " + (
                "; ".join(trouble) or "the workers stopped early")
        elif trouble:
            print(f"the study is complete; {'; '.join(trouble)}", file=sys.stderr)
        return Outcome(finished=done, stopped=stopped, why=why)

    def convergence(self):
        """The --until-converged rule on this study now (search.study.convergence.verdict)."""
        from search.study import convergence

        return convergence.verdict(self.study, len(self.session.val_rows),
                                   min_trials=self.session.options.until_converged,
                                   objective=self.session.space.objective)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def summary(self) -> None:
        if self.pool is not None and self.pool.where():
            print(self.pool.where())
        k = workers.cpu_workers(self.session.device) if self.pool is None else 0
        if k:
            print(f"one trial at a time leaves part of this CPU idle: --workers {k} trains {k} "
                  f"at once and draws the same trials")
        space = self.session.space
        if space.objectives and study_lib.best(self.study) is not None:
            print(f"multi-objective study: {len(self.study.best_trials)} trial(s) on the Pareto "
                  f"front of {', '.join(f'{m}:{d}' for m, d in space.objectives)} (search "
                  f"pareto --study {self.session.study}); by mean accuracy:")
        super().summary()

    def next_steps(self) -> str:
        name = self.session.study
        return (f"next: search dashboard --study {name}   |   "
                f"search best --study {name} --register MODEL_NAME")

    # --- joining and the loop -------------------------------------------------------------
    def join(self) -> None:
        """Open an existing study and its MLflow parent run (a worker never creates them)."""
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.session.settings.ensure()
        self.study = study_lib.join_study(self.session)
        self.session.join_tracking(study_lib.setup(self.study).parent_run_id)

    def loop(self) -> Outcome:
        """This process's share of the trials, one `study.optimize(n_trials=1)` at a time:
        stop when the study is complete, has converged or ran out of time; wait while other
        workers hold the last slots; stop after --max-failures failures in a row."""
        from tqdm.auto import tqdm

        opts = self.session.options
        study, tracker = self.study, self.session.tracking.tracker
        close_orphan_runs(study, tracker)
        if not opts.isolate:
            self.session.use_device()
        logging.getLogger("optuna.study._optimize").addFilter(study_lib.QuietSurplus())
        start = time.monotonic()
        bar = tqdm(total=opts.trials, initial=min(study_lib.finished(study), opts.trials),
                   unit="trial", disable=not opts.progress, dynamic_ncols=True)
        failures = 0
        stopped, why = None, FAILED
        waiting = False
        try:
            while True:
                self.interrupts.check()
                for line in fail_dead_trials(study):  # a dead worker's trial: retried
                    bar.write(line)
                done = study_lib.finished(study)
                running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
                if done >= opts.trials:
                    break
                stop = self._stop_before_next(done, start, bar)
                if stop:
                    stopped, why = stop
                    break
                if done + running >= opts.trials and running:
                    if not waiting:
                        bar.write(waiting_line(study, running))
                    waiting = True
                    time.sleep(1.0)
                    continue
                waiting = False
                last = self._one_trial(bar)
                if study_lib.is_surplus(last):
                    continue
                failures = failures + 1 if last.state == TrialState.FAIL else 0
                if failures >= opts.max_failures:
                    stopped = (f"{failures} trials in a row failed (last: "
                               f"{trial_record.read(last).fail_reason or 'see the log'}); "
                               f"stopping. Fix the cause or raise --max-failures")
                    break
        finally:
            bar.close()
            close_orphan_runs(study, tracker)
        return Outcome(finished=study_lib.finished(study), stopped=stopped, why=why)

    def _stop_before_next(self, done: int, start: float, bar):
        """(why stopped, outcome kind) when --until-converged or --timeout ends the loop
        before another trial; None to go on. Convergence is checked again only when the
        number of finished trials changed."""
        opts = self.session.options
        if opts.until_converged is not None and done != self.checked_at:
            self.checked_at, verdict = done, self.convergence()
            if verdict.converged:
                bar.write(verdict.line())
                return _converged(verdict), CONVERGED
        if opts.timeout is not None and time.monotonic() - start > opts.timeout:
            return f"timeout of {opts.timeout:g} s reached", TIMEOUT
        return None

    def _one_trial(self, bar):
        """Run one trial (heartbeats and stale-trial checks live inside `optimize`), then
        report it, close runs dead workers left open and drop the models no longer kept.
        The finished trial."""
        study = self.study
        ours: list = []
        study.optimize(lambda trial: self.objective(trial, bar), n_trials=1,
                       catch=(Exception,), callbacks=[lambda _study, frozen: ours.append(frozen)])
        last = ours[-1]
        bar.n = min(study_lib.finished(study), self.session.options.trials)
        top = study_lib.best(study)
        bar.set_postfix_str(f"best {trial_record.score(top):.4f}" if top else "", refresh=True)
        bar.write(trial_line(last))
        close_orphan_runs(study, self.session.tracking.tracker)
        if last.state == TrialState.COMPLETE:
            self.drop_models(ranked(study))
        return last

    def objective(self, trial, bar=None):
        """Claim a slot, sample, train (here or in a fresh process), record a failure."""
        with self.interrupts.armed():
            return self._objective(trial, bar)

    def _objective(self, trial, bar=None):
        study_lib.claim(trial, self.session.options.trials)
        try:
            self._wait_for_window(trial, bar)
            config = self.session.space.sample(trial)
            if self.session.options.isolate:
                kind, detail = workers.in_fresh_process(
                    _train_in_child, self.session.settings, self.session.options,
                    trial._trial_id, config)
                if kind == "failed":
                    raise workers.TrialProcessError(detail)
                if kind == "pruned":
                    raise Pruned(detail)
                return detail
            return self.train(config, trial, bar)
        except Pruned as exc:
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:
            trial_record.write(trial, TrialRecord(trial.number, fail_reason=reason(exc)))
            raise

    def _wait_for_window(self, trial, bar=None) -> None:
        """Wait until the trials trial n sees have finished (search.study.window), failing
        dead workers' trials meanwhile; a wait is recorded on the trial."""
        def meanwhile():
            self.interrupts.check()
            write = print if bar is None else bar.write
            for line in fail_dead_trials(trial.study):
                write(line)

        seconds = window.waited(trial.study, trial.number, meanwhile)
        if seconds >= 1.0:
            trial.set_user_attr(window.WAITED_ATTR, round(seconds, 1))

    def train(self, config, trial, bar=None):
        """One config in this process: its objective value(s)."""
        from search.engines.trial import run as one_trial

        record = trial_record.read(trial)
        baseline = record.baseline
        tags = {BASELINE_TAG: baseline} if baseline else {}
        if record.warm_start:
            tags[WARM_START_TAG] = record.warm_start
        find_lr = not baseline and self.session.space.clr_bounds == "lr_find"  # baselines keep LR
        try:
            result = one_trial(config, self.session,
                               OptunaReporter(trial, self.session, bar, self,
                                              lr_range_test=find_lr),
                               number=trial.number, tags=tags or None, find_lr=find_lr)
        finally:
            free_trial_graphs()
        if self.session.space.objectives:
            return result.values(self.session.space.objectives)
        return result.value


def work(settings, options) -> int:
    """Join a study that `search run` started and run trials until it is complete: the
    `search worker` command and each process of `search run --workers`. The exit code."""
    from search.study.session import Session

    engine = OptunaEngine(Session.build(settings, options))
    engine.interrupts.install()
    engine.join()
    who = study_lib.worker_name()
    print(f"worker {who} joined study {options.study!r} on {mask(settings.storage)}: "
          f"{study_lib.finished(engine.study)} of {options.trials} finished", flush=True)
    try:
        outcome = engine.loop()
    except KeyboardInterrupt:
        print(f"worker {who} interrupted: its running trial is marked FAIL", file=sys.stderr)
        return 130
    if outcome.stopped:
        print(f"worker {who} stopped: {outcome.stopped}",
              file=sys.stderr if outcome.code else sys.stdout)
    return outcome.code  # 0 also on --timeout and --until-converged (see `search run --help`)


def _train_in_child(settings, options, trial_id: int, config):
    """(kind, detail): ("value", objective) | ("pruned", why) | ("failed", reason). Plain
    values, because TensorFlow's exceptions do not survive pickling back to the parent."""
    from search import console
    from search.study.session import Session

    console.quiet()
    options = dataclasses.replace(options, isolate=False)
    engine = OptunaEngine(Session.build(settings, options))
    engine.interrupts.install()
    engine.join()
    engine.session.use_device()
    try:
        return "value", engine.train(config, optuna.trial.Trial(engine.study, trial_id))
    except Pruned as exc:
        return "pruned", str(exc)
    except Exception as exc:
        return "failed", reason(exc)


def _converged(verdict) -> str:
    return f"converged after {verdict.trials} complete trials (--until-converged)"


def _worker_pool(options, settings):
    """The workers `search run` starts, made before anything is written (a Ray cluster that
    cannot be reached or cannot hold one trial is a usage error): Ray tasks with --ray
    (search.study.ray_workers), else processes on this machine (search.study.workers). Both have
    launch(target, args) -> exit codes, where(), close()."""
    if options.ray is not None:
        from search.study import ray_workers

        return ray_workers.RayPool(options, settings)
    return workers.Processes(workers.devices(options))
