"""When a search has converged: the rule behind `search run --until-converged`.

The rule is Optuna's Terminator rule (Makarova et al., "Automatic termination for
hyperparameter optimization", 2022): stop when the room left for improvement is below the
statistical error of the objective, and not before `min_trials` complete trials. It is
checked after every finished trial. The two evaluators follow Optuna's
`optuna.terminator` interfaces (`BaseImprovementEvaluator`, `BaseErrorEvaluator`), so each can
be swapped for Optuna's own, but the decision is made here rather than by
`optuna.terminator.Terminator`, for two reasons:

- Optuna's default improvement evaluator, `RegretBoundEvaluator`, fits a Gaussian process
  with torch. torch is no dependency of this project (only the optional `gp` sampler needs
  it) and would add a few hundred MB to every install for one number. The improvement here is
  measured instead, without a model: how much the best value rose over the last `window`
  complete trials (`BestGainEvaluator`). A best that has not moved by more than the noise for
  that long is what "further trials are unlikely to matter" can be seen as; Optuna's
  `BestValueStagnationEvaluator` counts the same stagnation in trials, this one in the
  objective's own units, so that it can be compared with the noise. Where torch is installed,
  `verdict(..., improvement=optuna.terminator.RegretBoundEvaluator())` uses the regret bound.
- `Terminator` itself is deprecated since Optuna 4.9 (a FutureWarning, removal in 6.0), and
  it answers a bare bool, while a user (and bench/quality.py) wants the two numbers.

The error is the validation noise of the objective, estimated from the champion's per-head
validation accuracies: the binomial standard error sqrt(p (1 - p) / n) of each head's accuracy
on the n validation images, averaged over heads (`ValidationNoiseEvaluator`). The heads are
scored on the same images, so their errors are correlated; the average of the per-head errors
is the standard error of their mean when they move together, the upper end (independent heads
would give sqrt(mean p (1 - p) / n / heads)), the same one-standard-error yardstick
`majority_fallback` uses. For `mean_balanced_accuracy` the same formula on the per-head
balanced accuracies is a lower estimate (small classes are noisier). No TensorFlow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.study import StudyDirection
from optuna.terminator import BaseErrorEvaluator, BaseImprovementEvaluator
from optuna.trial import FrozenTrial, TrialState

from search.study import trial_record
from search.study.options import MIN_TRIALS


@dataclass(frozen=True)
class Verdict:
    """Whether the study has converged, and the two numbers behind the answer."""

    converged: bool
    improvement: float | None  # what the best gained over the last `window` complete trials
    noise: float | None  # the validation noise of the objective (standard error)
    trials: int  # complete trials seen
    window: int
    min_trials: int

    def line(self) -> str:
        """One line for the log: why the search stops, or why it does not yet."""
        if self.improvement is None:
            return (f"not converged yet: {self.trials} of at least {self.min_trials} complete "
                    f"trials (--until-converged)")
        if not self.converged:
            return (f"not converged: the best rose by {self.improvement:.4f} over the last "
                    f"{self.window} complete trials, above the validation noise "
                    f"{self.noise:.4f}")
        return (f"converged after {self.trials} complete trials: the best rose by "
                f"{self.improvement:.4f} in the last {self.window} of them, below the "
                f"validation noise {self.noise:.4f}, so further trials are unlikely to "
                f"matter; stopping (--until-converged)")


class BestGainEvaluator(BaseImprovementEvaluator):
    """Room for improvement, measured: the best value now minus the best before the last
    `window` complete trials (in trial-number order), in the objective's units."""

    def __init__(self, window: int) -> None:  # no super().__init__: Optuna's warns
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window

    def evaluate(self, trials: list[FrozenTrial], study_direction: StudyDirection) -> float:
        sign = -1.0 if study_direction == StudyDirection.MINIMIZE else 1.0
        values = [sign * t.value for t in sorted(_complete(trials), key=lambda t: t.number)]
        if len(values) <= self.window:
            raise ValueError(f"need more than {self.window} complete trials, got {len(values)}")
        return max(values) - max(values[:-self.window])


class ValidationNoiseEvaluator(BaseErrorEvaluator):
    """The objective's validation noise: the champion's per-head binomial standard error on
    `n_val` images, averaged over heads (see the module docstring). A trial without per-head
    accuracies (a plain Optuna study) is treated as one accuracy, its value."""

    def __init__(self, n_val: int, balanced: bool = False) -> None:
        if n_val < 1:
            raise ValueError(f"n_val must be at least 1, got {n_val}")
        self.n_val = n_val
        self.balanced = balanced

    def evaluate(self, trials: list[FrozenTrial], study_direction: StudyDirection) -> float:
        complete = _complete(trials)
        if not complete:
            raise ValueError("no complete trial yet")
        pick = min if study_direction == StudyDirection.MINIMIZE else max
        champion = pick(complete, key=lambda t: t.value)
        record = trial_record.read(champion)
        heads = (record.balanced_accuracy if self.balanced else record.accuracy) \
            or {"value": champion.value}
        return sum(standard_error(p, self.n_val) for p in heads.values()) / len(heads)


def standard_error(p: float, n: int) -> float:
    """The binomial standard error of an accuracy p measured on n images."""
    p = min(max(float(p), 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / n)


def verdict(study: optuna.Study, n_val: int | None = None, *, min_trials: int = MIN_TRIALS,
            noise: float | None = None, objective: str = "mean_accuracy",
            improvement: BaseImprovementEvaluator | None = None) -> Verdict:
    """The rule on a single-objective study: converged when, with at least `min_trials`
    complete trials, the improvement evaluator's figure (default: the best's gain over the
    last min_trials // 2 complete trials) is at most the noise (default: the champion's
    validation noise on `n_val` images; `noise` gives it directly)."""
    if len(study.directions) != 1:
        raise ValueError("the convergence rule needs a single-objective study")
    if min_trials < 2:
        raise ValueError(f"min_trials must be at least 2, got {min_trials}")
    if noise is None and n_val is None:
        raise ValueError("give n_val (validation images) or noise")
    window = max(1, min_trials // 2)
    trials = study.get_trials(deepcopy=False)
    count = len(_complete(trials))
    if count < min_trials:
        return Verdict(False, None, None, count, window, min_trials)
    gain = (improvement or BestGainEvaluator(window)).evaluate(trials, study.direction)
    if noise is None:
        noise = ValidationNoiseEvaluator(
            n_val, balanced=objective == "mean_balanced_accuracy").evaluate(
            trials, study.direction)
    return Verdict(gain <= noise, float(gain), float(noise), count, window, min_trials)


def _complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
