"""Engines: who proposes trials. `create` is the one way to make one; `run` searches with it.

An engine (`optuna`, `keras-tuner`) opens its state (an Optuna study, a keras-tuner project),
proposes configs from the session's space and trains each with `trial.run` (one trial, start to
finish: training, MLflow, its LR curve; here because it uses the packages below, and `search
train` and the final refit run it too). The loop around it is the same for every engine and
lives in `search.engines.loop`: the start-up line, "nothing to do" when the study is complete,
the study's MLflow parent run, the stop rules, the workers, Ctrl-C with the command that
resumes, why a search stopped early, the summary of the best trial, and the exit code.
"""

from __future__ import annotations

from search.engines.base import ENGINES, TUNERS, Engine
from search.engines.loop import create, run, work

__all__ = ["ENGINES", "TUNERS", "Engine", "create", "run", "work"]
