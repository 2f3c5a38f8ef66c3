"""Wires a space, a dataset and the settings into a running study.

`setup` validates everything a user can get wrong (space, data, flags) before anything is
written to the study storage or MLflow; `Runner.run` then loops over trials. The CLI's `run`
and `worker` commands are thin layers over this.
"""

from __future__ import annotations

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
        space = space_lib.load(options.space)
        if not options.baselines:
            space = space_lib._replace(space, enqueue=())
        if options.objective:
            if options.objective not in space_lib.OBJECTIVES:
                raise UsageError(f"--objective must be one of {', '.join(space_lib.OBJECTIVES)}")
            space = space_lib._replace(space, objective=options.objective,
                                       source={**space.source, "objective": options.objective})
        self.space = space.pin(**(options.pins or {}))
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

    def run(self) -> int:
        """Run the study to options.trials finished trials; returns the process exit code."""
        import optuna

        from search import device, study as study_lib
        from search.tracking import Tracker
        from search.trial import Workbench

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opts = self.options
        self.settings.ensure()
        study = study_lib.open_study(self.settings.storage, opts.study, self.space,
                                     seed=opts.seed, identity=self.identity())
        done = study_lib.finished(study)
        print(f"study {opts.study!r} on {mask(self.settings.storage)}: {done} finished trial(s), "
              f"target {opts.trials}; data {self.csv} ({len(self.train_rows)} train / "
              f"{len(self.val_rows)} validation images, heads: {', '.join(self.table.heads)})",
              flush=True)
        if done >= opts.trials:
            print(f"nothing to do: the study already has {done} finished trials "
                  f"(raise --trials to search further)")
            self._summary(study)
            return 0
        tracker = Tracker(self.settings.tracking_uri, opts.study, self.settings.artifact_root)
        parent = tracker.study_run(opts.study, {
            "space": opts.space, "data": str(self.csv), "storage": self.settings.storage,
            "objective": self.space.objective, "seed": opts.seed})
        study.set_user_attr("mlflow_experiment_id", tracker.experiment_id)
        study.set_user_attr("mlflow_parent_run_id", parent)
        bench = Workbench(table=self.table, train_rows=self.train_rows, val_rows=self.val_rows,
                          settings=self.settings, objective=self.space.objective,
                          clr_bounds=self.space.clr_bounds, tracker=tracker,
                          parent_run_id=parent, study_name=opts.study, verbose=opts.verbose,
                          device=device.choose(opts.precision, opts.xla))
        outcome = None
        try:
            outcome = study_lib.optimize(
                study, self.objective(bench), n_trials=opts.trials, timeout=opts.timeout,
                max_failures=opts.max_failures, on_trial=_report_trial, progress=opts.progress)
        except KeyboardInterrupt:
            print(f"\ninterrupted: the study is saved. Resume with the same command "
                  f"(study {opts.study!r}).", file=sys.stderr)
            return 130
        finally:
            best = _best(study)
            tracker.finish_study_run(parent, {"best_value": best.value} if best else None)
        if outcome.stopped:
            print(f"stopped: {outcome.stopped}", file=sys.stderr)
        self._summary(study)
        return 1 if outcome.stopped and outcome.finished == 0 else 0

    def objective(self, bench):
        from search import trial as trial_lib

        def objective(trial) -> float:
            try:
                config = self.space.sample(trial)
                tags = {"search.baseline": trial.user_attrs["baseline"]} \
                    if "baseline" in trial.user_attrs else None
                return trial_lib.run(config, bench, trial=trial, number=trial.number,
                                     tags=tags).value
            except Exception as exc:
                if type(exc).__name__ != "TrialPruned":
                    trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:2000])
                raise
        return objective

    def _summary(self, study) -> None:
        best = _best(study)
        if best is None:
            print("no completed trial yet")
            return
        acc = best.user_attrs.get("head_accuracy", {})
        bal = best.user_attrs.get("head_balanced_accuracy", {})
        maj = best.user_attrs.get("majority", {})
        print(f"best trial #{best.number}: {self.space.objective} = {best.value:.4f}")
        print(f"  {'head':<14}{'accuracy':>9}{'balanced':>9}{'majority':>9}")
        for head in acc:
            print(f"  {head:<14}{acc[head]:>9.3f}{bal.get(head, float('nan')):>9.3f}"
                  f"{maj.get(head, float('nan')):>9.3f}")
        print(f"next: search dashboard --study {self.options.study}   |   "
              f"search best --study {self.options.study} --register MODEL_NAME")


def _best(study):
    try:
        return study.best_trial
    except ValueError:
        return None


def _report_trial(study, frozen, bar) -> None:
    from optuna.trial import TrialState

    if frozen.state == TrialState.COMPLETE:
        what = f"{frozen.value:.4f}"
    elif frozen.state == TrialState.PRUNED:
        what = "pruned"
    else:
        what = f"FAILED: {frozen.user_attrs.get('fail_reason', '?')}"
    seconds = (frozen.duration.total_seconds() if frozen.duration else 0.0)
    baseline = frozen.user_attrs.get("baseline")
    label = f" [{baseline}]" if baseline else ""
    bar.write(f"trial {frozen.number}{label}: {what} ({seconds:.0f} s)")
