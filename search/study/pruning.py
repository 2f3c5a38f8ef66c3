"""Pruning by heads: a rule over every head's accuracy, for single- and multi-objective studies.

Optuna's `trial.report` takes one float, so a multi-objective study cannot prune, and one
averaged objective hides a trial that lags on most heads. Here each trial records every head's
validation accuracy per epoch (user attr `head_curve`), and after a warm-up a trial is pruned
when at least `min_heads` of its heads sit below the `percentile` of the earlier trials'
accuracies on that head at the same epoch. `heads` restricts the rule to some heads (the
session checks that the data has them):

    pruner: {name: heads, min_heads: 5, percentile: 50, warmup_epochs: 2, min_trials: 3}
    pruner: {name: heads, heads: [gender, age, emotion], min_heads: 2}

`Judge` is the one place that decides whether a trial stops after an epoch: this rule against
the earlier trials of its window, then the study's own Optuna pruner. (The majority guard,
search.train.callbacks.PruneBelowMajority, needs no other trial and lives with the training.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.space.algorithms import HEAD_RULE, head_rule_args
from search.study import window
from search.study.study import FINISHED
from search.train.steps import stage_epoch, stage_name

CURVE_ATTR = "head_curve"
# the stage-aligned step (search.train.steps) of each epoch of the curve
STEPS_ATTR = "head_curve_steps"


@dataclass(frozen=True)
class HeadRule:
    """The `heads` pruner; its spec's keys, defaults and checks are search.space.algorithms'
    (a space checks them when it loads, below this package)."""

    min_heads: int = HEAD_RULE["min_heads"]  # heads that must lag for a prune
    # of the earlier trials' accuracy on a head, same epoch
    percentile: float = HEAD_RULE["percentile"]
    warmup_epochs: int = HEAD_RULE["warmup_epochs"]  # no pruning before this epoch
    # earlier trials that reached the epoch, before any pruning
    min_trials: int = HEAD_RULE["min_trials"]
    heads: tuple[str, ...] | None = None  # the heads it watches (default: every head)

    @classmethod
    def from_spec(cls, spec: dict) -> "HeadRule":
        return cls(**head_rule_args(spec))

    def lagging(self, mine: dict[str, float], earlier: list[dict[str, float]]) -> list[str]:
        """The heads on which `mine` is below the percentile of `earlier` (each: head →
        accuracy at the same epoch); empty while there are too few earlier trials."""
        if len(earlier) < self.min_trials:
            return []
        return [head for head, value in self.watched(mine).items()
                if value < np.percentile([e[head] for e in earlier if head in e],
                                         self.percentile)]

    def watched(self, mine: dict[str, float]) -> dict[str, float]:
        """The accuracies of the heads this rule watches."""
        return mine if self.heads is None else {h: mine[h] for h in self.heads if h in mine}

    def prune(self, step: int, mine: dict[str, float],
              earlier: list[dict[str, float]]) -> str | None:
        """Why the trial should stop at `step`, or None."""
        if stage_epoch(step) <= self.warmup_epochs:  # each stage warms up
            return None
        behind = self.lagging(mine, earlier)
        if len(behind) < min(self.min_heads, len(self.watched(mine))):
            return None
        return (f"pruned after {stage_name(step)}: {len(behind)} heads below the "
                f"{self.percentile:g}th percentile of earlier trials ({', '.join(behind)})")


def at_step(curves: list, step: int) -> list[dict[str, float]]:
    """Each curve's accuracies at the stage-aligned `step`, for the curves that reached it.
    A curve is (head → accuracies, their steps); without steps (older trials) its epochs
    are steps 1, 2, ..."""
    out = []
    for item in curves:
        curve, steps = item if isinstance(item, tuple) else (item, None)
        if not curve:
            continue
        n = len(next(iter(curve.values())))
        steps = steps or list(range(1, n + 1))
        if step not in steps:
            continue
        i = steps.index(step)
        if all(len(v) > i for v in curve.values()):
            out.append({h: values[i] for h, values in curve.items()})
    return out


class Judge:
    """Whether a trial stops after an epoch (the reason, or None), from the space's `pruner`:
    the heads rule against the earlier trials of the trial's window, else Optuna's pruner on
    the objective. Optuna's warm-up counts steps; with stage-aligned steps it must count each
    stage's epochs, so the judge applies it (a stage is not judged on its first epochs).
    Optuna cannot prune a multi-objective trial: only the heads rule judges one."""

    def __init__(self, space):
        spec = space.pruner
        self.rule = HeadRule.from_spec(spec) if spec["name"] == "heads" else None
        self.warmup = int(spec.get("n_warmup_steps", 0))
        self.single_objective = not space.objectives

    def verdict(self, trial, step: int, heads: dict[str, float], key: str,
                logs: dict) -> str | None:
        """trial: the Optuna trial whose curve (CURVE_ATTR) holds this epoch already; heads:
        this epoch's accuracies; logs: the epoch's Keras logs, which must hold the objective
        `key` where Optuna's pruner judges."""
        if self.rule is not None:
            seen = window.visible(trial.study, trial.number)  # its window's trials
            earlier = [(t.user_attrs.get(CURVE_ATTR), t.user_attrs.get(STEPS_ATTR))
                       for t in seen.get_trials(deepcopy=False, states=FINISHED)
                       if t.number != trial.number]
            why = self.rule.prune(step, heads, at_step(earlier, step))
            if why:
                return why
        if not self.single_objective:
            return None
        value = float(logs[key])
        trial.report(value, step=step)
        if stage_epoch(step) >= self.warmup and trial.should_prune():
            return f"pruned after {stage_name(step)} ({key}={value:.4f})"
        return None
