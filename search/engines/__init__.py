"""Engines: who proposes trials. Each owns its loop; `create` picks one by name.

An engine (`optuna`, `keras-tuner`) opens its state (an Optuna study, a keras-tuner project),
proposes configs from the session's space and trains each with `search.trial.run`. The flow
around that is the same for every engine and lives in `search.engines.base` (`Engine.run`):
the start-up line, "nothing to do" when the study is complete, the study's MLflow parent run,
Ctrl-C with the command that resumes, why a search stopped early, the summary of the best
trial, and the exit code.
"""

from __future__ import annotations

from search.engines.base import ENGINES, TUNERS, Engine
from search.errors import UsageError

__all__ = ["ENGINES", "TUNERS", "Engine", "create"]


def create(name: str, session) -> Engine:
    """The engine called `name` for a session."""
    if name == "optuna":
        from search.engines.optuna import OptunaEngine

        return OptunaEngine(session)
    if name == "keras-tuner":
        from search.engines.keras_tuner import KerasTunerEngine

        return KerasTunerEngine(session)
    raise UsageError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
