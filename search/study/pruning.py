"""Pruning by heads: a rule over every head's accuracy, for single- and multi-objective studies.

Optuna's `trial.report` takes one float, so a multi-objective study cannot prune, and one
averaged objective hides a trial that lags on most heads. Here each trial records every head's
validation accuracy per epoch (user attr `head_curve`), and after a warm-up a trial is pruned
when at least `min_heads` of its heads sit below the `percentile` of the earlier trials'
accuracies on that head at the same epoch. `heads` restricts the rule to some heads (the
session checks that the data has them):

    pruner: {name: heads, min_heads: 5, percentile: 50, warmup_epochs: 2, min_trials: 3}
    pruner: {name: heads, heads: [gender, age, emotion], min_heads: 2}
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from search.errors import ConfigError

CURVE_ATTR = "head_curve"
STEPS_ATTR = "head_curve_steps"  # the stage-aligned step of each epoch of the curve
STAGE_STEPS = {"train": 0, "probe": 0, "fine_tune": 1000}  # a stage's first step - 1


def stage_step(stage: str, epoch: int) -> int:
    """The pruners' step of a stage's 1-based `epoch`. Pruners compare trials at the same
    step, so each stage has a range of its own: the third fine-tuning epoch is step 1003
    whatever the probe's length, compared only with other trials' third fine-tuning epoch,
    never with a probe epoch (a frozen trial's one stage is a probe: heads on frozen
    features, like the probe before fine-tuning)."""
    return STAGE_STEPS[stage] + epoch


def stage_epoch(step: int) -> int:
    """The 1-based epoch within its stage of a stage-aligned step."""
    return step - STAGE_STEPS["fine_tune"] if step > STAGE_STEPS["fine_tune"] else step


def stage_name(step: int) -> str:
    """'epoch 3' or 'fine-tuning epoch 3': a stage-aligned step in words."""
    prefix = "fine-tuning " if step > STAGE_STEPS["fine_tune"] else ""
    return f"{prefix}epoch {stage_epoch(step)}"


@dataclass(frozen=True)
class HeadRule:
    min_heads: int = 5  # heads that must lag for a prune
    percentile: float = 50.0  # of the earlier trials' accuracy on a head, same epoch
    warmup_epochs: int = 2  # no pruning before this epoch
    min_trials: int = 3  # earlier trials that reached the epoch, before any pruning
    heads: tuple[str, ...] | None = None  # the heads it watches (default: every head)

    @classmethod
    def from_spec(cls, spec: dict) -> "HeadRule":
        known = {f.name for f in fields(cls)}
        args = {k: v for k, v in spec.items() if k != "name"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ConfigError(f"pruner heads: unknown key(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(known))}")
        if "heads" in args:
            watched = args["heads"]
            if not isinstance(watched, list) or not watched \
                    or not all(isinstance(h, str) for h in watched):
                raise ConfigError(f"pruner heads: heads must be a list of head names, got "
                                  f"{watched!r}")
            args["heads"] = tuple(watched)
        rule = cls(**args)
        if not 0 <= rule.percentile <= 100 or rule.min_heads < 1 or rule.min_trials < 1 \
                or rule.warmup_epochs < 0:
            raise ConfigError(f"pruner heads: need min_heads >= 1, 0 <= percentile <= 100, "
                              f"warmup_epochs >= 0, min_trials >= 1; got {spec}")
        return rule

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
