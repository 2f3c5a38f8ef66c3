"""Wires a space, a dataset and the settings into a running study.

`setup` validates everything a user can get wrong (space, data, flags) before anything is
written to the study storage or MLflow; `Runner.run` then loops over trials. The CLI's `run`
and `worker` commands are thin layers over this.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from search import data as data_lib
from search import space as space_lib
from search.errors import UsageError
from search.settings import Settings, mask


@dataclass
class Options:
    study: str = "default"
    space: str = "spaces/default.yaml"
    data: str | None = None
    heads: tuple[str, ...] = data_lib.DEFAULT_HEADS
    trials: int = 10
    timeout: float | None = None
    seed: int = 0
    val_fraction: float = 0.2
    stratify: str | None = None
    objective: str | None = None
    pins: dict | None = None
    baselines: bool = True
    precision: str = "auto"
    xla: str = "auto"
    verbose: int = 0
    max_failures: int = 5
    progress: bool = True
    on_bad_images: str = "error"
    workers: int = 1  # local worker processes (search.workers)
    gpus: str | None = None  # "0,1" or "all": one worker per GPU
    isolate: bool = False  # each trial in a fresh process


def resolve_data(settings: Settings, path: str | None) -> Path:
    """The CSV to use: --data, or the embedded synthetic dataset (generated on first use)."""
    if path:
        return Path(path)
    from search import synthetic

    settings.ensure()
    return synthetic.ensure_default(settings.runs_dir)


class Runner:
    def __init__(self, settings: Settings, options: Options):
        self.settings = settings
        self.options = options
        self.trial_hooks: list = []  # f(study, frozen) after each trial of this process
        space = space_lib.load(options.space)
        if not options.baselines:
            space = dataclasses.replace(space, enqueue=())
        if options.objective:
            if options.objective not in space_lib.OBJECTIVES:
                raise UsageError(f"--objective must be one of {', '.join(space_lib.OBJECTIVES)}")
            space = dataclasses.replace(space, objective=options.objective,
                                       source={**space.source, "objective": options.objective})
        self.space = space.pin(**(options.pins or {}))
        if self.space.objectives and options.isolate:
            raise UsageError("--isolate does not support multi-objective spaces yet; "
                             "drop --isolate or the space's `objectives`")
        self.csv = resolve_data(settings, options.data)
        self.table = data_lib.read_table(self.csv, options.heads,
                                         on_bad_images=options.on_bad_images)
        strata = None
        if options.stratify:
            if options.stratify not in self.table.heads:
                raise UsageError(f"--stratify {options.stratify!r} is not one of the heads "
                                 f"{', '.join(self.table.heads)}")
            strata = self.table.frame[options.stratify].to_numpy()
        self.train_rows, self.val_rows = data_lib.split(
            len(self.table), val_fraction=options.val_fraction, seed=options.seed, strata=strata)

    def identity(self) -> dict:
        return {"space_fingerprint": self.space.fingerprint(),
                "data_fingerprint": self.table.fingerprint(),
                "split": f"{self.options.val_fraction}:{self.options.seed}:"
                         f"{self.options.stratify or 'plain'}",
                "heads": ",".join(self.table.heads)}

    def workbench(self, tracker, parent_run_id: str, device_choice):
        """What every trial shares, for `run`, its workers and engines that drive
        `search.trial.run` themselves (search.tuner)."""
        from search import artifacts
        from search.trial import Workbench

        return Workbench(table=self.table, train_rows=self.train_rows, val_rows=self.val_rows,
                         settings=self.settings, objective=self.space.objective,
                         objectives=self.space.objectives,
                         clr_bounds=self.space.clr_bounds, tracker=tracker,
                         parent_run_id=parent_run_id, study_name=self.options.study,
                         verbose=self.options.verbose, device=device_choice,
                         artifact_store=artifacts.store(self.settings.runs_dir))

    def run(self) -> int:
        """Run the study to options.trials finished trials, in this process or in --workers
        processes; returns the process exit code."""
        from search import study as study_lib, workers

        opts = self.options
        launch = workers.wanted(opts)
        study = self.open_study(create=True)
        done = study_lib.finished(study)
        print(f"study {opts.study!r} on {mask(self.settings.storage)}: {done} finished trial(s), "
              f"target {opts.trials}; data {self.csv} ({len(self.train_rows)} train / "
              f"{len(self.val_rows)} validation images, heads: {', '.join(self.table.heads)})",
              flush=True)
        if self.space.objectives:
            print("multi-objective study ("
                  + ", ".join(f"{m}:{d}" for m, d in self.space.objectives)
                  + "): pruning is off, Optuna cannot prune multi-objective trials", flush=True)
        if done >= opts.trials:
            print(f"nothing to do: the study already has {done} finished trials "
                  f"(raise --trials to search further)")
            self._summary(study)
            return 0
        tracker, parent = self.tracking(study, create=True)
        outcome = None
        try:
            if launch:
                outcome = workers.launch(self, study, tracker)
            else:
                outcome = self._work(study, tracker, parent)
        except KeyboardInterrupt:
            print(f"\ninterrupted: running trials are marked FAIL and the study is saved "
                  f"({study_lib.finished(study)} finished). Resume with: {_resume_hint(opts)}",
                  file=sys.stderr)
            return 130
        finally:
            best = _best(study)
            tracker.finish_study_run(parent, {"best_value": study_lib.score(best)} if best else None)
        if outcome.stopped:
            print(f"stopped: {outcome.stopped}", file=sys.stderr)
        self._summary(study)
        return 1 if outcome.stopped and outcome.finished == 0 else 0

    def work(self) -> int:
        """Join a study that `search run` started (the `search worker` command, and each of
        the processes of `search run --workers`); returns the process exit code."""
        from search import study as study_lib

        study = self.open_study(create=False)
        tracker, parent = self.tracking(study, create=False)
        study.sampler.reseed_rng()  # else every worker would draw the same "random" trials
        print(f"worker {study_lib.worker_name()} joined study {self.options.study!r} on "
              f"{mask(self.settings.storage)}: {study_lib.finished(study)} of "
              f"{self.options.trials} finished", flush=True)
        try:
            outcome = self._work(study, tracker, parent)
        except KeyboardInterrupt:
            print(f"worker {study_lib.worker_name()} interrupted: its running trial is marked "
                  f"FAIL", file=sys.stderr)
            return 130
        if outcome.stopped:
            print(f"worker {study_lib.worker_name()} stopped: {outcome.stopped}",
                  file=sys.stderr)
            return 1
        return 0

    def open_study(self, *, create: bool):
        import optuna

        from search import study as study_lib

        # ERROR: a failed trial is reported once, as one line with its reason (kept in the
        # trial's user attrs and its MLflow run), not as Optuna's WARNING traceback.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.settings.ensure()
        return study_lib.open_study(self.settings.storage, self.options.study, self.space,
                                    seed=self.options.seed, identity=self.identity(),
                                    create=create)

    def tracking(self, study, *, create: bool):
        """The MLflow tracker and the study's parent run id. `search run` finds or creates the
        parent before any worker starts (so K workers never race to create two) and stores its
        id on the study; workers read it from there."""
        from mlflow.exceptions import MlflowException

        from search.tracking import Tracker

        opts = self.options
        tracker = Tracker(self.settings.tracking_uri, opts.study, self.settings.artifact_root)
        if create:
            parent = tracker.study_run(opts.study, {
                "space": opts.space, "data": str(self.csv), "storage": self.settings.storage,
                "objective": self.space.objective, "seed": opts.seed})
            study.set_user_attr("mlflow_experiment_id", tracker.experiment_id)
            study.set_user_attr("mlflow_parent_run_id", parent)
            return tracker, parent
        parent = study.user_attrs.get("mlflow_parent_run_id")
        try:
            tracker.client.get_run(parent or "none")
        except MlflowException:
            raise UsageError(f"study {opts.study!r} has no MLflow parent run {parent} in "
                             f"{mask(self.settings.tracking_uri)}: pass the --tracking-uri "
                             f"(or MLFLOW_TRACKING_URI) of the `search run` that started it"
                             ) from None
        return tracker, parent

    def _work(self, study, tracker, parent):
        """This process's share of the trials; closes runs that dead workers left open."""
        from search import device, study as study_lib, workers

        opts = self.options
        workers.close_orphan_runs(study, tracker)
        bench = None if opts.isolate else self.workbench(
            tracker, parent, device.choose(opts.precision, opts.xla))

        def after_trial(study_, frozen, bar) -> None:
            _report_trial(study_, frozen, bar)
            workers.close_orphan_runs(study_, tracker)
            for hook in self.trial_hooks:
                hook(study_, frozen)

        try:
            return study_lib.optimize(
                study, self.objective(bench), n_trials=opts.trials, timeout=opts.timeout,
                max_failures=opts.max_failures, on_trial=after_trial, progress=opts.progress)
        finally:
            workers.close_orphan_runs(study, tracker)

    def objective(self, bench):
        """Sample a config, train it, record why it failed. bench is None with --isolate."""

        def objective(trial) -> float:
            try:
                return self.train(self.space.sample(trial), bench, trial)
            except Exception as exc:
                if type(exc).__name__ != "TrialPruned":
                    trial.set_user_attr("fail_reason", _reason(exc)[:2000])
                raise
        return objective

    def train(self, config, bench, trial) -> float:
        """Train one sampled config here, or with --isolate in a fresh process (which frees
        all of its memory, GPU included, when the trial ends)."""
        if self.options.isolate:
            from search import workers

            return workers.train_isolated(self, config, trial)
        from search import trial as trial_lib

        tags = {"search.baseline": trial.user_attrs["baseline"]} \
            if "baseline" in trial.user_attrs else None
        try:
            result = trial_lib.run(config, bench, trial=trial, number=trial.number, tags=tags,
                                   find_lr=False if tags else None)  # baselines keep their LR
            if self.space.objectives:
                return trial_lib.objective_values(result, self.space.objectives)
            return result.value
        finally:
            _free_trial_graphs()

    def _summary(self, study) -> None:
        best = _best(study)
        if best is None:
            print("no completed trial yet")
            return
        acc = best.user_attrs.get("head_accuracy", {})
        bal = best.user_attrs.get("head_balanced_accuracy", {})
        maj = best.user_attrs.get("majority", {})
        from search.study import score

        if self.space.objectives:
            front = len(study.best_trials)
            print(f"multi-objective study: {front} trial(s) on the Pareto front of "
                  f"{', '.join(f'{m}:{d}' for m, d in self.space.objectives)} "
                  f"(search pareto --study {self.options.study}); by mean accuracy:")
        print(f"best trial #{best.number}: {self.space.objective} = {score(best):.4f}")
        print(f"  {'head':<14}{'accuracy':>9}{'balanced':>9}{'majority':>9}")
        for head in acc:
            print(f"  {head:<14}{acc[head]:>9.3f}{bal.get(head, float('nan')):>9.3f}"
                  f"{maj.get(head, float('nan')):>9.3f}")
        print(f"next: search dashboard --study {self.options.study}   |   "
              f"search best --study {self.options.study} --register MODEL_NAME")


def _best(study):
    from search.study import best

    return best(study)


def _free_trial_graphs() -> None:
    """Let a finished trial's TensorFlow graphs go. TensorFlow keeps every graph-mode
    `custom_gradient` in a global registry for ever (Keras' optimizer all-reduces gradients
    through one), and each entry pins the whole traced train step: about 35 MB per trial with
    8 heads (tensorflow/tensorflow#80895). Nothing traced by the finished trial runs again, so
    its entries can go; clearing the Keras session then frees the graphs."""
    import keras
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", {})
    for name in [n for n in registry if n.startswith("CustomGradient-")]:
        del registry[name]
    keras.backend.clear_session()  # and gc.collect()


def _reason(exc: Exception) -> str:
    from search.workers import TrialProcessError

    return str(exc) if isinstance(exc, TrialProcessError) else f"{type(exc).__name__}: {exc}"


def _resume_hint(opts: Options) -> str:
    """This command line (passwords masked) when it is one; else a description of it."""
    args = sys.argv[1:]
    if args[:1] == ["run"]:
        return "search " + shlex.join(mask(a) for a in args)
    return f"the same `search run` command (study {opts.study!r}, --trials {opts.trials})"


def _report_trial(study, frozen, bar) -> None:
    from optuna.trial import TrialState

    from search.study import is_surplus

    if frozen.state == TrialState.COMPLETE:
        what = ", ".join(f"{v:.4g}" for v in frozen.values)
    elif frozen.state == TrialState.PRUNED:
        what = "pruned"
    elif is_surplus(frozen):
        what = "surplus, not trained (the study's slots were taken by other workers)"
    else:
        what = f"FAILED: {frozen.user_attrs.get('fail_reason', '?')}"
    seconds = (frozen.duration.total_seconds() if frozen.duration else 0.0)
    baseline = frozen.user_attrs.get("baseline")
    label = f" [{baseline}]" if baseline else ""
    bar.write(f"trial {frozen.number}{label}: {what} ({seconds:.0f} s)")
