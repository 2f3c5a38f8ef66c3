"""The Optuna engine: the oracle of `search run` (and `search worker`) on an Optuna study.

It opens or joins the study and runs one trial when the loop (`search.engines.loop`) asks:
`study.optimize(n_trials=1)` (Optuna's heartbeats and stale-trial checks) around `objective`,
which claims a slot (`search.study.study.claim`), waits for its window, samples a config and
trains it with `search.engines.trial.run` and an `OptunaReporter` (pruning, user attributes,
dashboard artifacts), here or in a fresh process (--isolate). A failed trial is recorded FAIL
with its reason and the search goes on. Trial n's sampler is seeded from --seed, the study and
n, and sees only its window's trials (`search.study.window`): one worker or many, a resumed
study or a fresh one, the same study state draws the same trials.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

import search.engines.trial as trial_lib
from search.engines.base import Ended, Engine, free_trial_graphs, reason
from search.engines.optuna_trial import OptunaReporter, ranked, trial_line
from search.engines.trial import Pruned
from search.settings import mask
from search.study import heartbeats, pareto, trial_record, warm_start, window, workers
from search.study import study as study_lib
from search.study.trial_record import TrialRecord


class OptunaEngine(Engine):
    name = "optuna"

    def __init__(self, session):
        super().__init__(session)
        self.study = None
        self.warm_lines: list[str] = []  # what --warm-start queued or skipped, or its hint
        self.bar = None  # the loop's progress bar, while a trial runs

    def open(self) -> None:
        """Create or resume the study; --warm-start's studies are checked before anything is
        written (and a Ray cluster, by `search.engines.loop.create`)."""
        study_lib.quiet()
        opts = self.session.options
        warm = warm_start.plan(self.session)  # the earlier studies checked before any write
        hint = None if warm else warm_start.hint(self.session)  # a new study: --warm-start?
        self.session.settings.ensure()
        self.study = study_lib.start_study(self.session)
        at_once = (len(self.pool.gpus) if isinstance(self.pool, workers.Processes)
                   else opts.workers)  # trials training at once (--gpus: one per GPU at least)
        window.set_width(self.study, window.width_for(at_once))
        if warm is not None:
            self.warm_lines = warm_start.enqueue(self.study, warm)
        elif hint:
            self.warm_lines = [hint]

    def join(self) -> None:
        """Open an existing study and its MLflow parent run (a worker never creates them)."""
        study_lib.quiet()
        self.session.settings.ensure()
        self.study = study_lib.join_study(self.session)
        self.session.join_tracking(study_lib.setup(self.study).parent_run_id)

    def where(self) -> str:
        return f"study {self.session.study!r} on {mask(self.session.settings.storage)}"

    def finished(self) -> int:
        return study_lib.finished(self.study)

    def running(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    def best(self) -> TrialRecord | None:
        top = study_lib.best(self.study)
        return None if top is None else trial_record.read(top)

    def records(self) -> list[TrialRecord]:
        return trial_record.complete(self.study)

    def objective_name(self) -> str:
        return "mean_accuracy" if self.session.space.objectives else super().objective_name()

    def convergence(self):
        """The --until-converged rule on this study now (search.study.convergence.verdict)."""
        from search.study import convergence

        return convergence.verdict(self.study, len(self.session.val_rows),
                                   min_trials=self.session.options.until_converged,
                                   objective=self.session.space.objective)

    def start_tracking(self) -> None:
        tracking = self.session.start_tracking()
        study_lib.record_tracking(self.study, tracking.tracker.experiment_id,
                                  tracking.parent_run_id)

    # --- other workers --------------------------------------------------------------------
    def fail_dead(self, write) -> None:
        """Fail the trials of workers that died, with a reason; their parameters are retried."""
        for line in heartbeats.fail_dead_trials(self.study):
            write(line)

    def close_orphans(self) -> None:
        """Close the MLflow runs of trials that dead workers left open."""
        heartbeats.close_orphan_runs(self.study, self.session.tracking.tracker)

    def waiting_line(self, running: int) -> str:
        return heartbeats.waiting_line(self.study, running)

    # --- one trial ------------------------------------------------------------------------
    def trial(self, bar) -> Ended:
        """`study.optimize(n_trials=1)`; its line, dead workers' runs, models no longer kept."""
        ours: list = []
        self.bar = bar
        try:
            self.study.optimize(self.objective, n_trials=1, catch=(Exception,),
                                callbacks=[lambda _study, frozen: ours.append(frozen)])
        finally:
            self.bar = None
        last = ours[-1]
        bar.n = min(self.finished(), self.session.options.trials)
        top = study_lib.best(self.study)
        bar.set_postfix_str(f"best {trial_record.score(top):.4f}" if top else "", refresh=True)
        bar.write(trial_line(last))
        self.close_orphans()
        if last.state == TrialState.COMPLETE:
            self.drop_models(ranked(self.study))
        return Ended(failed=last.state == TrialState.FAIL, surplus=study_lib.is_surplus(last),
                     reason=trial_record.read(last).fail_reason)

    def objective(self, trial, config=None):
        """Claim a slot, wait for the window, sample, train (here, or in a fresh process with
        --isolate); record a failure. `config`: sampled already (the isolated child)."""
        with self.interrupts.armed():
            try:
                if config is None:
                    study_lib.claim(trial, self.session.options.trials)
                    window.wait(trial, self._meanwhile)
                    config = self.session.space.sample(trial)
                    if self.elsewhere is not None:
                        return self._elsewhere(trial, config)
                reporter = OptunaReporter(trial, self.session, self.bar, self)
                try:
                    result = trial_lib.run(config, self.session, reporter, number=trial.number,
                                           tags=reporter.tags or None,
                                           find_lr=reporter.lr_range_test)
                finally:
                    free_trial_graphs()
                objectives = self.session.space.objectives
                return result.values(objectives) if objectives else result.value
            except Pruned as exc:
                raise optuna.TrialPruned(str(exc)) from None
            except Exception as exc:
                trial_record.write(trial, TrialRecord(trial.number, fail_reason=reason(exc)))
                raise

    def train(self, trial_id: int, config):
        """--isolate's child: the config its parent sampled for this trial, trained here."""
        try:
            return self.objective(optuna.trial.Trial(self.study, trial_id), config)
        except optuna.TrialPruned as exc:
            raise Pruned(str(exc)) from None

    def _elsewhere(self, trial, config):
        kind, detail = self.elsewhere(trial._trial_id, config)
        if kind == "failed":
            raise workers.TrialProcessError(detail)
        if kind == "pruned":
            raise Pruned(detail)
        return detail

    def _meanwhile(self) -> None:
        """While a trial waits for its window: Ctrl-C, and dead workers' trials."""
        self.interrupts.check()
        self.fail_dead(print if self.bar is None else self.bar.write)

    # --- what it says ---------------------------------------------------------------------
    def notes(self) -> list[str]:
        note = pareto.pruning_note(self.session.space)
        return [note, *self.warm_lines] if note else self.warm_lines

    def summary_notes(self) -> list[str]:
        lines = [self.pool.where()] if self.pool is not None and self.pool.where() else []
        k = workers.cpu_workers(self.session.device) if self.pool is None else 0
        if k:
            lines.append(f"one trial at a time leaves part of this CPU idle: --workers {k} "
                         f"trains {k} at once and draws the same trials")
        if self.session.space.objectives and study_lib.best(self.study) is not None:
            lines.append(pareto.front_line(self.study, self.session.space, self.session.study))
        return lines

    def next_steps(self) -> str:
        name = self.session.study
        return (f"next: search dashboard --study {name}   |   "
                f"search best --study {name} --register MODEL_NAME")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
