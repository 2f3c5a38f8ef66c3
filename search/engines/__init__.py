"""Engines: who proposes trials. Each owns its loop; `create` is the one way to make one.

An engine (`optuna`, `keras-tuner`) opens its state (an Optuna study, a keras-tuner project),
proposes configs from the session's space and trains each with `trial.run` (one trial, start to
finish: training, MLflow, its LR curve; here because it uses the packages below, and `search
train` and the final refit run it too). The flow around that is the same for every engine
and lives in `search.engines.base.Engine.run`: the start-up line, "nothing to do" when the
study is complete, the study's MLflow parent run, Ctrl-C with the command that resumes, why a
search stopped early, the summary of the best trial, and the exit code.
"""

from __future__ import annotations

from search.engines.base import ENGINES, TUNERS, Engine
from search.errors import UsageError

__all__ = ["ENGINES", "TUNERS", "Engine", "create"]


def create(name: str, settings, options, *, tuner: str = "hyperband") -> Engine:
    """The engine called `name` for a study: the flags it cannot honour are refused first
    (once, before any data is read or anything written), then the session is built.
    `tuner` is keras-tuner's oracle."""
    from search.study.session import Session

    if name == "optuna":
        from search.engines.optuna import OptunaEngine

        if options.ray is not None or options.gpus_per_trial is not None:
            from search.study.ray_workers import check_options  # no Ray import unless asked for

            check_options(options, settings)
        return OptunaEngine(Session.build(settings, options))
    if name == "keras-tuner":
        from search.engines.keras_tuner import KerasTunerEngine, check_options

        check_options(options)
        return KerasTunerEngine(Session.build(settings, options), tuner)
    raise UsageError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
