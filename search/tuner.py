"""The keras-tuner engine: `search run --engine keras-tuner [--tuner hyperband|bayesian|random]`.

Same space file, trial code and MLflow logging as the Optuna engine; only the proposer differs.
The space becomes keras_tuner `HyperParameters` (Choice / Int / Float with log sampling, `when`
as `conditional_scope`); the oracle proposes values; `SearchTuner.run_trial` turns them back
into a `TrialConfig` through `Space.sample` (so conditions, pins and lr_ratio resolve exactly as
for Optuna) and calls `search.trial.run`. Each trial is a nested MLflow run under the study's
parent run. State lives in runs/keras-tuner/<study>/; the same command resumes it.

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

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras_tuner as kt

from search import space as space_lib
from search.config import TrialConfig
from search.errors import UsageError
from search.runner import _free_trial_graphs
from search.space import Space

TUNERS = ("hyperband", "bayesian", "random")
ENGINE = "keras-tuner"


# ---------------------------------------------------------------------------------------------
# Space → HyperParameters and back.


@dataclass(frozen=True)
class Codec:
    """How one categorical's choices travel through keras-tuner, which takes only one type of
    str/int/float per Choice: anything else (bools, None, mixed types) goes as JSON text."""

    as_json: bool

    @classmethod
    def for_choices(cls, choices) -> "Codec":
        types = {type(c) for c in choices}
        return cls(as_json=len(types) > 1 or not types <= {str, int, float})

    def encode(self, value):
        value = space_lib._hashable(value)
        return json.dumps(value) if self.as_json else value

    def decode(self, value):
        return json.loads(value) if self.as_json else value


@dataclass(frozen=True)
class Translation:
    hyperparameters: kt.HyperParameters
    codecs: dict[str, Codec | None]  # every declared key; None for numeric ones


def translate(space: Space) -> Translation:
    """The space as keras_tuner HyperParameters. Fixed keys stay out (Space.sample supplies
    them); a condition on a fixed parent is decided here, once."""
    import optuna.distributions as od

    hp = kt.HyperParameters()
    codecs: dict[str, Codec | None] = {}
    by_name = {p.name: p for p in space.params}
    for param in space.params:  # parents first (Space orders them)
        d = param.distribution
        if d is None:
            continue
        conditions = _conditions(param, by_name, codecs)
        if conditions is None:
            continue  # its fixed parent never matches: Space.sample never suggests it
        with contextlib.ExitStack() as scopes:
            for parent, values in conditions:
                scopes.enter_context(hp.conditional_scope(parent, values))
            sampling = "log" if getattr(d, "log", False) else "linear"
            if isinstance(d, od.CategoricalDistribution):
                codec = codecs[param.name] = Codec.for_choices(d.choices)
                hp.Choice(param.name, [codec.encode(c) for c in d.choices])
            elif isinstance(d, od.IntDistribution):
                codecs[param.name] = None  # with log sampling, keras-tuner's step multiplies
                hp.Int(param.name, d.low, d.high, step=None if d.log else d.step,
                       sampling=sampling)
            else:
                codecs[param.name] = None
                hp.Float(param.name, d.low, d.high, step=d.step, sampling=sampling)
    return Translation(hp, codecs)


def _conditions(param, by_name, codecs) -> list[tuple[str, list]] | None:
    """`when` as (declared parent, encoded values) scopes; None if it can never hold."""
    out = []
    for name, values in param.when.items():
        parent = by_name[name]
        if parent.distribution is None:  # fixed parent: decide now, inherit its conditions
            inherited = _conditions(parent, by_name, codecs)
            if parent.value not in values or inherited is None:
                return None
            out += inherited
        elif name not in codecs:
            return None  # the parent itself is never active
        else:
            codec = codecs[name]
            out.append((name, [codec.encode(v) if codec else v for v in values]))
    return out


def config_from_values(space: Space, translation: Translation, values: dict) -> TrialConfig:
    """A trial's hp values → TrialConfig, through the very code Optuna trials use."""
    import optuna

    codecs = translation.codecs
    params = {k: (codecs[k].decode(v) if codecs[k] else v)
              for k, v in values.items() if k in codecs}
    config = space.sample(optuna.trial.FixedTrial(params))
    if "tuner/epochs" in values:  # Hyperband's budget for this round
        config = config.replace(epochs=int(values["tuner/epochs"]))
    return config


def max_epochs(space: Space) -> int:
    """The largest epochs value the space can produce: Hyperband's max_epochs."""
    param = next((p for p in space.params if p.name == "epochs"), None)
    if param is None:
        return TrialConfig.epochs
    if param.distribution is None:
        return int(param.value)
    d = param.distribution
    return int(max(d.choices) if hasattr(d, "choices") else d.high)


def check_supported(space: Space) -> None:
    """Features of a space that this engine cannot honour fail here, by name."""
    if getattr(space, "objectives", ()):
        raise UsageError("--engine keras-tuner does not support multi-objective spaces "
                         "(objectives:); keras-tuner would sum them into one number. Use "
                         "--engine optuna")
    if space.enqueue:
        names = ", ".join(e["name"] for e in space.enqueue)
        raise UsageError(
            f"--engine keras-tuner does not support enqueued baselines ({names}, from the "
            f"space's enqueue/include): a keras-tuner oracle only proposes points of its own "
            f"space. Pass --no-baselines, or use --engine optuna")


# ---------------------------------------------------------------------------------------------
# The tuner.


class SearchTuner(kt.Tuner):
    """A keras_tuner Tuner whose trial is `search.trial.run`: same training, same MLflow runs."""

    def __init__(self, oracle, *, space: Space, translation: Translation, name: str,
                 target: int, timeout: float | None = None, **kwargs):
        self.space = space
        self.translation = translation
        self.tuner_name = name
        self.target = target
        self.timeout = timeout
        self.bench = None  # search.trial.Workbench, set before search()
        self.stopped: str | None = None
        self._started = time.monotonic()
        self._trial_start = 0.0
        super().__init__(oracle, **kwargs)

    def finished(self) -> int:
        return sum(t.status == "COMPLETED" for t in self.oracle.trials.values())

    def pre_create_trial(self):
        """Stop at `target` finished trials (failed ones do not count) or after the timeout:
        both by moving the oracle's max_trials, which makes create_trial answer STOPPED."""
        failed = len(self.oracle.trials) - self.finished()
        limit = self.target + failed
        if self.timeout is not None and time.monotonic() - self._started > self.timeout:
            self.stopped = f"timeout of {self.timeout:g} s reached"
            limit = max(1, len(self.oracle.trials))
        self.oracle.max_trials = limit

    def run_trial(self, trial, *args, **kwargs):
        from search import trial as trial_lib

        values = trial.hyperparameters.values
        config = config_from_values(self.space, self.translation, values)
        tags = {"search.engine": ENGINE, "search.tuner": self.tuner_name,
                "search.keras_tuner.trial_id": trial.trial_id}
        # Hyperband's own keys: epochs, initial_epoch, bracket, round, trial_id (promoted from)
        tags.update({f"search.keras_tuner.{k.split('/')[1].replace('trial_id', 'from_trial')}":
                     str(v) for k, v in values.items() if k.startswith("tuner/")})
        try:
            result = trial_lib.run(config, self.bench, number=int(trial.trial_id), tags=tags)
        finally:
            _free_trial_graphs()  # as the Optuna engine does after each in-process trial
        heads = {f"{h}_accuracy": s["accuracy"] for h, s in result.scores.items()}
        return {**result.summary, **heads}

    def on_trial_begin(self, trial):
        self._trial_start = time.monotonic()
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        seconds = time.monotonic() - self._trial_start
        if trial.status == "COMPLETED":
            what = f"{trial.metrics.get_last_value(self.oracle.objective.name):.4f}"
        else:
            what = "FAILED: " + (trial.message or "?").strip().splitlines()[-1]
        epochs = trial.hyperparameters.values.get("tuner/epochs")
        budget = f", {epochs} epoch(s)" if epochs is not None else ""
        print(f"trial {int(trial.trial_id)}: {what} ({seconds:.0f} s{budget})", flush=True)
        super().on_trial_end(trial)


def make_oracle(name: str, space: Space, translation: Translation, *, seed: int,
                max_failures: int):
    if name not in TUNERS:
        raise UsageError(f"--tuner must be one of {', '.join(TUNERS)}, got {name!r}")
    common = dict(objective=kt.Objective(space.objective, "max"),
                  hyperparameters=translation.hyperparameters,
                  seed=seed + 1,  # keras-tuner treats seed 0 as "unseeded"
                  max_consecutive_failed_trials=max_failures)
    if name == "hyperband":
        # hyperband_iterations=None: as many brackets as --trials needs.
        return kt.oracles.HyperbandOracle(max_epochs=max_epochs(space), factor=3,
                                          hyperband_iterations=None, **common)
    if name == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=None, **common)
    return kt.oracles.RandomSearchOracle(max_trials=None, **common)


def build(runner, name: str = "hyperband", *, timeout: float | None = None) -> SearchTuner:
    """The tuner for a Runner's study: space checked and translated, state reloaded."""
    check_supported(runner.space)
    space = runner.space
    if name == "hyperband":
        space = space.pin(epochs=max_epochs(space))
    translation = translate(space)
    opts = runner.options
    runner.settings.ensure()
    directory = runner.settings.runs_dir / ENGINE
    _check_identity(directory / opts.study, {**runner.identity(), "tuner": name}, opts.study)
    oracle = make_oracle(name, space, translation, seed=opts.seed,
                         max_failures=opts.max_failures)
    tuner = SearchTuner(oracle, space=space, translation=translation, name=name,
                        target=opts.trials, timeout=timeout, directory=str(directory),
                        project_name=opts.study, overwrite=False)
    tuner.oracle.verbose = 0  # one line per trial from on_trial_end instead of tables
    return tuner


def _check_identity(project: Path, identity: dict, study: str) -> None:
    """Refuse to resume a study with another space, data, split or tuner (like Optuna's)."""
    path = project / "search_identity.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        differs = [k for k in identity if stored.get(k) != identity[k]]
        if differs:
            detail = "; ".join(f"{k}: study has {stored.get(k)!r}, now {identity[k]!r}"
                               for k in differs)
            raise UsageError(f"keras-tuner study {study!r} was started with a different setup "
                             f"({detail}). Use another --study name, or the same space, data, "
                             f"flags and --tuner.")
        return
    project.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=2))


def _check_parent_engine(tracker, study: str) -> None:
    """An Optuna study's MLflow parent run must not collect keras-tuner trials too."""
    from search.tracking import ROLE_TAG, STUDY_TAG

    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'study' and tags.`{STUDY_TAG}` = '{study}'",
        max_results=1, order_by=["attributes.start_time ASC"])
    if runs and runs[0].data.params.get("engine") != ENGINE:
        raise UsageError(f"MLflow already holds study {study!r} from the Optuna engine; use "
                         f"another --study name for --engine keras-tuner")


def run(runner, name: str = "hyperband") -> int:
    """Run (or resume) a keras-tuner search until it holds --trials finished trials."""
    from search import device
    from search.tracking import Tracker

    opts = runner.options
    tuner = build(runner, name, timeout=opts.timeout)
    done = tuner.finished()
    print(f"keras-tuner {name} study {opts.study!r} in {tuner.project_dir}: {done} finished "
          f"trial(s), target {opts.trials}; data {runner.csv} ({len(runner.train_rows)} train / "
          f"{len(runner.val_rows)} validation images)", flush=True)
    if done >= opts.trials:
        print(f"nothing to do: the study already has {done} finished trials "
              f"(raise --trials to search further)")
        _summary(tuner, runner)
        return 0
    tracker = Tracker(runner.settings.tracking_uri, opts.study, runner.settings.artifact_root)
    _check_parent_engine(tracker, opts.study)
    parent = tracker.study_run(opts.study, {
        "engine": ENGINE, "tuner": name, "space": opts.space, "data": str(runner.csv),
        "storage": tuner.project_dir, "objective": runner.space.objective,
        "seed": opts.seed})
    tuner.bench = runner.workbench(tracker, parent, device.choose(opts.precision, opts.xla))
    try:
        tuner.search()
    except KeyboardInterrupt:
        print(f"\ninterrupted: the study is saved. Resume with the same command "
              f"(study {opts.study!r}).", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # the oracle's "consecutive failures" stop
        if "consecutive failures" not in str(exc):
            raise
        tuner.stopped = (f"{opts.max_failures} trials in a row failed (last: "
                         f"{str(exc).strip().splitlines()[-1]}); stopping. Fix the cause or "
                         f"raise --max-failures")
    finally:
        best = _best(tuner)
        tracker.finish_study_run(parent, {"best_value": best.score} if best else None)
    if tuner.stopped:
        print(f"stopped: {tuner.stopped}", file=sys.stderr)
    _summary(tuner, runner)
    return 1 if tuner.stopped and tuner.finished() == 0 else 0


def _best(tuner):
    best = tuner.oracle.get_best_trials(1)
    return best[0] if best and best[0].status == "COMPLETED" else None


def _summary(tuner, runner) -> None:
    best = _best(tuner)
    if best is None:
        print("no completed trial yet")
        return
    objective = runner.space.objective
    print(f"best trial #{int(best.trial_id)}: {objective} = {best.score:.4f}")
    for head in runner.table.heads:
        key = f"{head}_accuracy"
        if best.metrics.exists(key):
            print(f"  {head:<14}{best.metrics.get_last_value(key):>9.3f}")
    print(f"its MLflow run: trial-{int(best.trial_id)} in experiment {runner.options.study!r} "
          f"(search mlflow-ui)")
