"""Levers whose best trials sit on the edge of the space: the optimum may lie beyond it.

A search can only find the best inside the ranges it was given. When the best trials of a
study crowd a range's bound (or the last choice of an ordered list, with the best score per
choice still rising toward it), the space, not the data, is what stops the search: widening
that lever is the next experiment (issue 30: the best score per fine-tuned share of
MobileNetV2 climbed 0.652 → 0.681 → 0.682 up to the largest choice, 0.5). `find` names those
levers with their figures; `lines` prints them after a search's summary and in `search best`.

What counts, and why:
- A lever is a searched key (an Optuna distribution). A pinned value is no lever, and an
  unordered choice (clr_mode, family_alpha) has no edge.
- A conditional key counts only on the trials where it was active: its recorded value
  elsewhere is a default the trial never used.
- Fewer than MIN_TRIALS trials with the lever active: nothing is said (the best of four draws
  sits near a bound by chance too often).
- A range (float or int; on the log scale when it is log): the best trial lies within NEAR of
  the range from a bound, and so do two thirds of the top few (TOP_SHARE of the trials, at
  least TOP_MIN), never fewer than TOP_MIN. One lucky trial near a bound is not enough: where
  the lever does not matter (independent uniform draws), "best and 2 of the top 3" held by
  chance for 4% of the levers, too often with a dozen levers (a 5-trial keras-tuner check
  named dropout that way); "all of the top 3" holds for 0.2%.
- An ordered choice (numbers, or sizes such as 224x128 that grow in every dimension together):
  at least three choices tried, the best trial at the first or last, and the best score per
  choice rising step by step toward it, by MIN_RISE in all. Two choices are left out: their
  better one is always at an end, which says nothing of a trend. Where the lever does not
  matter, three per-choice bests fall in a monotone order a third of the time: MIN_RISE keeps
  out flat noise, and the line prints the figures to judge by (the issue's rose 0.030).

Values come from a record's Optuna params when it has them (the keys the trial actually
sampled, in Optuna's form); otherwise from its config under the space's conditions (a
keras-tuner trial, a record built by hand). Enqueued baselines are left out: their configs
were set by hand, not drawn from this space. No TensorFlow, no MLflow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from search.space.param import SPLIT_CHOICES, Param, family_alpha, hashable
from search.study.trial_record import TrialRecord

MIN_TRIALS = 5  # trials with the lever active before anything is said
NEAR = 0.1  # a tenth of the range (of its logarithm for a log range) from a bound
TOP_SHARE, TOP_MIN = 0.1, 3  # the top few: a tenth of the trials, at least three
NEAR_SHARE = 2 / 3  # of the top few that must sit near the bound too (at least TOP_MIN)
MIN_CHOICES = 3  # ordered choices tried before a trend is read
MIN_RISE = 0.01  # of the objective (an accuracy), from the first tried choice to the end one


@dataclass(frozen=True)
class Edge:
    """One lever whose best trials sit at a bound: `side` is 'low' or 'high'."""

    name: str
    side: str
    best: Any  # the best trial's value
    bound: Any  # the range's bound or the end choice
    trials: int  # trials with the lever active
    near: int = 0  # ranges: how many of the top `top` lie within NEAR of the bound
    top: int = 0
    distance: float = 0.0  # ranges: the farthest of those, as a share of the range
    log: bool = False
    per_choice: tuple[tuple[Any, float], ...] = ()  # ordered choices: (choice, best score)

    @property
    def line(self) -> str:
        """One line: the lever, where its best trials sit, the figures, what to do."""
        if self.per_choice:
            end = "largest" if self.side == "high" else "smallest"
            figures = ", ".join(f"{_fmt(c)} {s:.3f}" for c, s in self.per_choice)
            return (f"{self.name}: the best trials sit at the {end} choice {_fmt(self.bound)} "
                    f"(best per choice: {figures}); widen it in the space")
        top = f"the top {self.top}" if self.near == self.top else \
            f"{self.near} of the top {self.top}"
        scale = " (log scale)" if self.log else ""
        where = f"at the {self.side} bound" if self.distance == 0 else \
            f"within {self.distance:.0%} of the range{scale} from the {self.side} bound"
        return (f"{self.name}: best {_fmt(self.best)}, {top} {where} {_fmt(self.bound)}; "
                f"widen {self.side}")


def find(params, records: list[TrialRecord]) -> list[Edge]:
    """The edges of the space `params` (a Space's params) in these finished, scored trials,
    in the space's key order."""
    pinned = {p.name: p.value for p in params if p.distribution is None}
    kept = [r for r in records if r.baseline is None and math.isfinite(r.score)]
    points = [(_values(params, pinned, r), r.score) for r in kept]
    edges = []
    for param in params:
        if param.distribution is None:
            continue
        seen = [(v[param.name], s) for v, s in points if param.name in v]
        if len(seen) < MIN_TRIALS:
            continue
        edge = _choice_edge(param, seen) if hasattr(param.distribution, "choices") \
            else _range_edge(param, seen)
        if edge is not None:
            edges.append(edge)
    return edges


def lines(edges: list[Edge]) -> list[str]:
    """What a summary prints: a heading and one line per edge; nothing when there is none."""
    if not edges:
        return []
    return ["the best trials sit on the edge of the space (the optimum may lie beyond it):",
            *(f"  {e.line}" for e in edges)]


def levers_of(trials) -> list[Param]:
    """The searched keys of a study's frozen Optuna trials (the union of their
    distributions): the space `search best` checks, which reads a study and not its file.
    Conditions need no `when` here: a trial's params hold only the keys it sampled."""
    seen: dict[str, Param] = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            seen.setdefault(name, Param(name=name, distribution=distribution))
    return list(seen.values())


# --- values -------------------------------------------------------------------------------
def _values(params, pinned: dict, record: TrialRecord) -> dict[str, Any]:
    """{lever: value} over the levers active on this trial, each in Optuna's form."""
    if record.params:
        return {p.name: record.params[p.name] for p in params
                if p.distribution is not None and p.name in record.params}
    config = record.config or {}
    chosen: dict[str, Any] = {}
    for param in params:  # parents first (Space.params is `ordered`)
        if param.name in pinned:
            chosen[param.name] = pinned[param.name]
        elif param.active(chosen):
            value = _from_config(param, config)
            if value is not None:
                chosen[param.name] = value
    return {k: v for k, v in chosen.items() if k not in pinned}


def _from_config(param: Param, config: dict) -> Any:
    """A searched key's value in a resolved config, as Optuna would have stored it; None
    when the config cannot say (derived keys whose parts are missing)."""
    name = param.name
    if name == "lr_ratio":
        base, top = config.get("base_lr"), config.get("max_lr")
        return top / base if base and top is not None else None
    if name == "family_alpha":
        pair = (config.get("family"), config.get("alpha"))
        return next((c for c in param.distribution.choices if family_alpha(c) == pair), None)
    value = config.get(name)
    return hashable(value) if name in SPLIT_CHOICES else value


# --- ranges -------------------------------------------------------------------------------
def _range_edge(param: Param, seen: list[tuple[Any, float]]) -> Edge | None:
    d = param.distribution
    low, high = d.low, d.high
    if high <= low or (d.log and low <= 0):
        return None
    where = _position(low, high, d.log)
    inside = [(v, s) for v, s in seen if low - 1e-9 * abs(low) <= v <= high + 1e-9 * abs(high)]
    if len(inside) < MIN_TRIALS:
        return None
    ranked = sorted(inside, key=lambda p: p[1], reverse=True)
    top = ranked[:max(TOP_MIN, math.ceil(TOP_SHARE * len(ranked)))]
    best = top[0][0]
    for side, bound in (("low", low), ("high", high)):
        if side == "low" and bound == 0:
            continue  # 0 is off (no dropout, no cutout): nothing lies beyond it
        distances = [abs(where(v) - where(bound)) for v, _ in top]
        if distances[0] > NEAR:
            continue
        near = [x for x in distances if x <= NEAR]
        if len(near) >= max(TOP_MIN, math.ceil(NEAR_SHARE * len(top))):
            return Edge(param.name, side, best, bound, len(inside), near=len(near),
                        top=len(top), distance=max(near), log=bool(d.log))
    return None


def _position(low: float, high: float, log: bool):
    """A value's place in [low, high] as a share of the range (0 at low, 1 at high)."""
    if log:
        span = math.log(high) - math.log(low)
        return lambda v: (math.log(max(v, low)) - math.log(low)) / span
    return lambda v: (v - low) / (high - low)


# --- ordered choices ----------------------------------------------------------------------
def _choice_edge(param: Param, seen: list[tuple[Any, float]]) -> Edge | None:
    order = _order(param.distribution.choices)
    if order is None:
        return None
    best_of: dict[Any, float] = {}
    for value, score in seen:
        if value in order:
            best_of[value] = max(score, best_of.get(value, -math.inf))
    tried = [c for c in order if c in best_of]
    count = sum(v in order for v, _ in seen)
    if len(tried) < MIN_CHOICES or count < MIN_TRIALS:
        return None
    best = max(tried, key=lambda c: best_of[c])
    scores = [best_of[c] for c in tried]
    per_choice = tuple((c, best_of[c]) for c in tried)
    if abs(scores[-1] - scores[0]) < MIN_RISE:
        return None
    if best == order[-1] and all(a < b for a, b in zip(scores, scores[1:])):
        return Edge(param.name, "high", best, best, count, per_choice=per_choice)
    # a smallest choice of 0 is off (no neck, nothing fine-tuned): nothing lies below it
    if best == order[0] and order[0] != 0 and all(a > b for a, b in zip(scores, scores[1:])):
        return Edge(param.name, "low", best, best, count, per_choice=per_choice)
    return None


def _order(choices) -> list | None:
    """The choices from smallest to largest, or None when they have no order: numbers sort
    as numbers; 'HxW' sizes sort when every dimension grows together; anything else
    (names, booleans, a mix) is unordered."""
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
        return sorted(choices)
    if all(isinstance(c, str) for c in choices):
        try:
            sizes = {c: tuple(int(x) for x in c.split("x")) for c in choices}
        except ValueError:
            return None
        ranked = sorted(choices, key=lambda c: sizes[c])
        for a, b in zip(ranked, ranked[1:]):
            if len(sizes[a]) != len(sizes[b]) or not all(
                    x <= y for x, y in zip(sizes[a], sizes[b])):
                return None
        return ranked
    return None


def _fmt(value: Any) -> str:
    """Short figures: 0.0, 0.25, 128, 224x128, 1.45e-3, 0.123."""
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            mantissa, exponent = f"{value:.2e}".split("e")
            return f"{float(mantissa):g}e{int(exponent)}"
        return repr(value) if len(repr(value)) <= 5 else f"{value:.3g}"
    return str(value)
