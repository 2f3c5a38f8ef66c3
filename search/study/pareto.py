"""`search pareto`: the trials no other trial beats on every head at once.

The objective averages the heads, so one number hides trade-offs (a model best on age but weak
on gender). The Pareto set keeps every trial that is best for some weighting of the heads.
Reads COMPLETE trials only, so it works on a study that is still running. No TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from search.errors import UsageError
from search.formats import csv_text, json_text
from search.study import trial_record


def pruning_note(space) -> str | None:
    """The start-up line of a multi-objective study (None for one objective): its objectives
    and whether its trials are pruned."""
    if not space.objectives:
        return None
    how = ("trials are pruned by the heads rule (pruner: heads)" if space.pruner["name"] == "heads"
           else "pruning is off, Optuna cannot prune multi-objective trials (pruner: heads "
                "prunes by per-head accuracies)")
    return f"multi-objective study ({_objectives(space)}): {how}"


def front_line(study, space, name: str) -> str:
    """The summary's line on a multi-objective study's Pareto front."""
    return (f"multi-objective study: {len(study.best_trials)} trial(s) on the Pareto front of "
            f"{_objectives(space)} (search pareto --study {name}); by mean accuracy:")


def _objectives(space) -> str:
    return ", ".join(f"{m}:{d}" for m, d in space.objectives)


def dominates(a: dict[str, float], b: dict[str, float], heads) -> bool:
    """a is at least as good as b on every head and better on one (all maximised)."""
    return all(a[h] >= b[h] for h in heads) and any(a[h] > b[h] for h in heads)


def pareto_front(points: dict[int, dict[str, float]]) -> list[int]:
    """Trial numbers of the non-dominated points, ascending. Points equal on every head do not
    dominate each other, so ties stay together in the front.

    Sorted best-first (by sum, then lexicographically), a dominator always comes before what it
    dominates, so each point only needs checking against the front found so far.
    """
    if not points:
        return []
    heads = sorted(next(iter(points.values())))
    order = sorted(points, key=lambda n: (sum(points[n][h] for h in heads),
                                          [points[n][h] for h in heads]), reverse=True)
    front: list[int] = []
    for n in order:
        if not any(dominates(points[f], points[n], heads) for f in front):
            front.append(n)
    return sorted(front)


@dataclass(frozen=True)
class Row:
    """One COMPLETE trial as the Pareto table shows it: the columns of its record
    (search.study.trial_record) that the table, CSV and JSON list."""

    trial: int
    run_id: str | None
    head_accuracy: dict[str, float]
    params_count: int | None
    mean_accuracy: float | None
    value: float

    @classmethod
    def of(cls, record: trial_record.TrialRecord) -> "Row":
        return cls(record.number, record.run_id, dict(record.accuracy), record.params_count,
                   record.mean_accuracy, record.score)

    @property
    def mean(self) -> float:
        """Mean accuracy over all heads (the objective value when not recorded)."""
        return self.value if self.mean_accuracy is None else self.mean_accuracy


def complete_rows(study) -> list[Row]:
    """Every COMPLETE trial that recorded per-head accuracy."""
    return [Row.of(r) for r in trial_record.complete(study)]


def choose_heads(rows: list[Row], wanted: str | None, flag: str = "--heads") -> list[str]:
    """The heads to compare: `wanted` (comma-separated) or every head all rows have, in the
    order the trials list them. Unknown or repeated heads are a usage error naming `flag`."""
    known = [h for h in (rows[0].head_accuracy if rows else ())
             if all(h in r.head_accuracy for r in rows)]
    if not wanted:
        return known
    heads = [h.strip() for h in wanted.split(",")]
    unknown = [h for h in heads if h not in known]
    if unknown:
        raise UsageError(f"{flag}: unknown head(s) {', '.join(map(repr, unknown))}; the trials "
                         f"have: {', '.join(known)}")
    if len(set(heads)) != len(heads):
        raise UsageError(f"{flag}: a head is listed twice in {wanted!r}")
    return heads


def front_rows(rows: list[Row], heads: list[str]) -> list[Row]:
    """The Pareto set over `heads`, best mean accuracy first."""
    front = set(pareto_front({r.trial: {h: r.head_accuracy[h] for h in heads} for r in rows}))
    chosen = [r for r in rows if r.trial in front]
    return sorted(chosen, key=lambda r: (-r.mean, r.trial))


def require_rows(study) -> list[Row]:
    """`complete_rows`, or a usage error when there are none yet."""
    rows = complete_rows(study)
    if not rows:
        raise UsageError(f"study {study.study_name!r} has no completed trial with per-head "
                         f"accuracy yet")
    return rows


def table(rows: list[Row], heads: list[str]) -> str:
    """A fixed-width text table: trial, MLflow run id, one column per head, params, mean."""
    widths = [max(len(h), 5) for h in heads]
    head = (f"{'trial':>5}  {'mlflow run id':<32}  "
            + "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths))
            + f"  {'params':>9}  {'mean':>6}")
    lines = [head]
    for r in rows:
        lines.append(f"{r.trial:>5}  {r.run_id or '-':<32}  "
                     + "  ".join(f"{r.head_accuracy[h]:>{w}.3f}" for h, w in zip(heads, widths))
                     + f"  {r.params_count if r.params_count is not None else '-':>9}  "
                     + f"{r.mean:>6.3f}")
    return "\n".join(lines)


def pareto(settings, study_name: str, heads: str | None, fmt: str = "table") -> int:
    """Print the Pareto set of a study: a table, CSV, one JSON document, or (fmt "jsonl", the
    deprecated `--json`) one JSON object per line."""
    from search.study.study import load_study

    rows = require_rows(load_study(settings, study_name))
    chosen = choose_heads(rows, heads)
    front = front_rows(rows, chosen)
    records = [{**asdict(r), "head_accuracy": {h: r.head_accuracy[h] for h in chosen}}
               for r in front]
    if fmt == "jsonl":
        for record in records:
            print(json.dumps(record))
    elif fmt == "json":
        print(json_text({"study": study_name, "heads": chosen, "completed": len(rows),
                         "front": records}))
    elif fmt == "csv":
        print(csv_text(["trial", "run_id", *chosen, "params_count", "mean_accuracy", "value"],
                       [[r.trial, r.run_id, *(r.head_accuracy[h] for h in chosen),
                         r.params_count, r.mean_accuracy, r.value] for r in front]))
    else:
        print(f"study {study_name!r}: {len(front)} of {len(rows)} completed trial(s) are "
              f"Pareto-optimal over {len(chosen)} head(s) (validation accuracy, higher is "
              f"better)")
        print(table(front, chosen))
    return 0
