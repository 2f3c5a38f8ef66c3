"""The keras-tuner engine: `search run --engine keras-tuner [--tuner hyperband|bayesian|random]`.

Same space file, trial code and MLflow logging as the Optuna engine; only the proposer differs.
The space becomes keras_tuner `HyperParameters` (Choice / Int / Float with log sampling, `when`
as `conditional_scope`); the oracle proposes values; `SearchTuner.run_trial` turns them back
into a `TrialConfig` through `Space.sample` (so conditions, pins and lr_ratio resolve exactly as
for Optuna) and calls `search.engines.trial.run`. The loop around the trials is the Optuna
engine's (`search.engines.loop.trials`: --trials, --timeout, --max-failures); each of its
steps is one step of keras-tuner's `Tuner.search` (`KerasTunerEngine.trial`). Each trial is a
nested MLflow run under the study's parent run. State lives in runs/keras-tuner/<study>/; the
same command resumes it.

Where it differs from the Optuna engine, and why:
- Hyperband owns the epoch budget: `epochs` is pinned to the space's upper bound (max_epochs)
  and each trial trains `tuner/epochs` epochs. `trial.run` has no warm start, so a config that
  Hyperband promotes (`tuner/trial_id`) is retrained from scratch rather than resumed from a
  checkpoint: `tuner/initial_epoch` extra epochs per promotion, and no checkpoint files.
- `--trials N` stops the search once N trials have finished (failed ones do not count), for
  every oracle; Hyperband starts as many brackets as it takes. `--timeout` stops starting
  trials after S seconds.
- No pruning inside a trial; the space's `sampler`/`pruner` (Optuna settings) are unused.
- Refused, by name: enqueued baselines (an oracle only proposes points of its own space) and
  multi-objective spaces. `clr_bounds: lr_find` works: it happens inside `trial.run`.
- One process per study: no --workers, --gpus or --isolate (keras-tuner's own distribution
  needs a gRPC chief); `search best` reads Optuna studies only, so the best trial is printed
  here and is in MLflow.
"""

from __future__ import annotations

import dataclasses
import json
import time

import keras_tuner as kt

from search.engines.base import TUNERS, Ended, Engine, free_trial_graphs, reason
from search.engines.keras_tuner_space import (  # noqa: F401
    Translation,
    check_supported,
    config_from_values,
    max_epochs,
    translate,
)
from search.engines.trial import Reporter
from search.errors import UsageError
from search.space.space import Space
from search.study import edges as edges_lib
from search.study import trial_record
from search.study.trial_record import TrialRecord

ENGINE = "keras-tuner"
Status = kt.engine.trial.TrialStatus


class EarlyStop(Reporter):
    """keras-tuner has no pruned state: a trial below the majority baseline stops training
    there and is scored as it stands (its low score informs the oracle)."""

    def prune(self, reason: str) -> None:
        return None


class SearchTuner(kt.Tuner):
    """A keras_tuner Tuner whose trial is `search.engines.trial.run`: same training, same MLflow
    runs. The search loop (`search.engines.loop`) asks it for one trial at a time through
    `KerasTunerEngine.trial`, the step of keras-tuner's own `Tuner.search`."""

    def __init__(self, oracle, *, space: Space, translation: Translation, name: str,
                 **kwargs):
        self.space = space
        self.translation = translation
        self.tuner_name = name
        self.session = None  # search.study.session.Session, set before the first trial
        self.engine = None  # the KerasTunerEngine, for model retention
        self.completed: list[TrialRecord] = []  # this process's trials with a model
        super().__init__(oracle, **kwargs)

    def finished(self) -> int:
        return sum(t.status == "COMPLETED" for t in self.oracle.trials.values())

    def run_trial(self, trial, *args, **kwargs):
        from search.engines.trial import run as one_trial

        values = trial.hyperparameters.values
        config = config_from_values(self.space, self.translation, values)
        tags = {"search.engine": ENGINE, "search.tuner": self.tuner_name,
                "search.keras_tuner.trial_id": trial.trial_id}
        # Hyperband's own keys: epochs, initial_epoch, bracket, round, trial_id (promoted from)
        tags.update({f"search.keras_tuner.{k.split('/')[1].replace('trial_id', 'from_trial')}":
                     str(v) for k, v in values.items() if k.startswith("tuner/")})
        try:
            result = one_trial(config, self.session, EarlyStop(),
                               number=int(trial.trial_id), tags=tags)
        except Exception as exc:  # keras-tuner records trial.message: keep it one masked line
            raise kt.errors.FailedTrialError(reason(exc)) from None
        finally:
            free_trial_graphs()  # as the Optuna engine does after each in-process trial
        heads = {f"{h}_accuracy": s["accuracy"] for h, s in result.scores.items()}
        if result.run_id and result.model_uri:
            self.completed.append(dataclasses.replace(
                trial_record.finished(int(trial.trial_id), result), run_id=result.run_id,
                values=(result.value,)))
            if self.engine is not None:
                self.engine.drop_models(self.completed)
        return {**result.summary, **heads}

def make_oracle(name: str, space: Space, translation: Translation, *, seed: int):
    if name not in TUNERS:
        raise UsageError(f"--tuner must be one of {', '.join(TUNERS)}, got {name!r}")
    common = dict(objective=kt.Objective(space.objective, "max"),
                  hyperparameters=translation.hyperparameters,
                  seed=seed + 1,  # keras-tuner treats seed 0 as "unseeded"
                  # the search loop owns --max-failures (search.engines.loop.trials)
                  max_consecutive_failed_trials=10**9)
    if name == "hyperband":
        # hyperband_iterations=None: as many brackets as --trials needs.
        return kt.oracles.HyperbandOracle(max_epochs=max_epochs(space), factor=3,
                                          hyperband_iterations=None, **common)
    if name == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=None, **common)
    return kt.oracles.RandomSearchOracle(max_trials=None, **common)


class KerasTunerEngine(Engine):
    """`search run --engine keras-tuner`: the shared flow around a keras-tuner search."""

    name = ENGINE

    def __init__(self, session, tuner: str = "hyperband"):
        super().__init__(session)
        self.tuner_name = tuner
        self.tuner: SearchTuner | None = None

    def open(self) -> None:
        session, opts = self.session, self.session.options
        check_supported(session.space)
        space = session.space
        if self.tuner_name == "hyperband":
            space = space.pin(epochs=max_epochs(space))
        translation = translate(space)
        session.settings.ensure()
        directory = session.settings.runs_dir / ENGINE
        identity = directory / opts.study / "search_identity.json"
        stored = json.loads(identity.read_text()) if identity.is_file() else {}
        if stored.get("tuner", self.tuner_name) != self.tuner_name:
            raise UsageError(f"keras-tuner study {opts.study!r} was started with a different "
                             f"setup (tuner: study has {stored['tuner']!r}, now "
                             f"{self.tuner_name!r}). Use another --study name, or the same "
                             f"--tuner.")
        session.check_identity(stored, "keras-tuner study")
        identity.parent.mkdir(parents=True, exist_ok=True)
        identity.write_text(json.dumps({**session.identity(), "tuner": self.tuner_name},
                                       indent=2))
        oracle = make_oracle(self.tuner_name, space, translation, seed=opts.seed)
        self.tuner = SearchTuner(oracle, space=space, translation=translation,
                                 name=self.tuner_name, directory=str(directory),
                                 project_name=opts.study, overwrite=False)
        self.tuner.oracle.verbose = 0  # one line per trial from `trial` instead of tables
        self.tuner.session, self.tuner.engine = session, self

    def where(self) -> str:
        return f"keras-tuner {self.tuner_name} study {self.session.study!r} in " \
               f"{self.tuner.project_dir}"

    def finished(self) -> int:
        return self.tuner.finished()

    def best(self) -> TrialRecord | None:
        trials = self.tuner.oracle.get_best_trials(1)
        top = trials[0] if trials and trials[0].status == "COMPLETED" else None
        if top is None:
            return None
        accuracy = {h: top.metrics.get_last_value(f"{h}_accuracy")
                    for h in self.session.table.heads if top.metrics.exists(f"{h}_accuracy")}
        return TrialRecord(int(top.trial_id), values=(top.score,), accuracy=accuracy)

    def records(self) -> list[TrialRecord]:
        """Its completed trials as records: the oracle's score and the config its values
        make (the same `config_from_values` a trial trains)."""
        tuner = self.tuner
        return [TrialRecord(int(t.trial_id), values=(t.score,), config=config_from_values(
                    tuner.space, tuner.translation, t.hyperparameters.values).to_dict())
                for t in tuner.oracle.trials.values()
                if t.status == "COMPLETED" and t.score is not None]

    def edges(self) -> list:
        """As the base, on the space the tuner searched (Hyperband pins epochs)."""
        return edges_lib.find(self.tuner.space.params, self.records())

    def start_tracking(self) -> None:
        from search.track.tracking import Tracker

        tracker = Tracker(self.session.settings.tracking_uri, self.session.study,
                          self.session.settings.artifact_root)
        _check_parent_engine(tracker, self.session.study)
        self.session.start_tracking({"engine": ENGINE, "tuner": self.tuner_name,
                                     "storage": self.tuner.project_dir})

    def trial(self, bar) -> Ended:
        """One step of keras-tuner's `Tuner.search`: the oracle proposes (IDLE: it is still
        computing, ask again; STOPPED: it has nothing new), the tuner trains the trial
        (`run_trial`) and the oracle is told; then its line."""
        tuner = self.tuner
        trial = tuner.oracle.create_trial(tuner.tuner_id)
        while trial.status == Status.IDLE:
            trial = tuner.oracle.create_trial(tuner.tuner_id)
        if trial.status == Status.STOPPED:
            return Ended(exhausted=True, reason=f"the keras-tuner {self.tuner_name} oracle has "
                                                f"no new trial to propose")
        start = time.monotonic()
        tuner.on_trial_begin(trial)
        try:  # Tuner._try_run_and_update_trial, without printing a traceback per failure
            tuner._run_and_update_trial(trial)
            trial.status, why = Status.COMPLETED, None
            what = f"{trial.metrics.get_last_value(tuner.oracle.objective.name):.4f}"
        except kt.errors.FailedTrialError as exc:  # run_trial's: every failure, one line
            trial.status, trial.message = Status.FAILED, str(exc)
            why = str(exc)
            what = f"FAILED: {why}"
        tuner.on_trial_end(trial)  # tells the oracle, saves its state
        epochs = trial.hyperparameters.values.get("tuner/epochs")
        budget = f", {epochs} epoch(s)" if epochs is not None else ""
        bar.n = min(self.finished(), self.session.options.trials)
        bar.refresh()
        bar.write(f"trial {int(trial.trial_id)}: {what} ({time.monotonic() - start:.0f} s"
                  f"{budget})")
        return Ended(failed=why is not None, reason=why)

    def next_steps(self) -> str:
        top = self.best()
        return (f"its MLflow run: trial-{top.number} in experiment {self.session.study!r} "
                f"(search mlflow-ui)") if top else ""


def check_options(options) -> None:
    """Flags this engine cannot honour, refused before anything is read or written (by
    `search.engines.create`)."""
    if options.until_converged is not None:
        raise UsageError("--until-converged works with --engine optuna only (its rule reads "
                         "the Optuna study's trials); drop it or the --engine flag")
    used = [flag for flag, on in (("--workers", options.workers not in (None, 1)),
                                  ("--gpus", options.gpus), ("--isolate", options.isolate),
                                  ("--ray", options.ray is not None),
                                  ("--gpus-per-trial", options.gpus_per_trial is not None))
            if on]
    if options.warm_start:
        raise UsageError("--warm-start enqueues an earlier Optuna study's params, which a "
                         "keras-tuner oracle cannot take; it works with --engine optuna only")
    if used:
        raise UsageError(f"--engine keras-tuner runs its trials in this one process; "
                         f"{', '.join(used)} work with --engine optuna only")


def _check_parent_engine(tracker, study: str) -> None:
    """An Optuna study's MLflow parent run must not collect keras-tuner trials too."""
    from search.track.tags import ROLE_TAG, STUDY_ROLE, STUDY_TAG

    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = '{STUDY_ROLE}' and tags.`{STUDY_TAG}` = '{study}'",
        max_results=1, order_by=["attributes.start_time ASC"])
    if runs and runs[0].data.params.get("engine") != ENGINE:
        raise UsageError(f"MLflow already holds study {study!r} from the Optuna engine; use "
                         f"another --study name for --engine keras-tuner")
