"""The record of one trial: what a trial stores in its Optuna user attributes, with a schema.

Every reader of a trial's results (`search best`, `pareto`, `studies`, `report`, `train
--from-trial`, the final model, model retention, the engine's summary, the benchmarks) reads a
`TrialRecord` made by `read`, never an attribute by name; the engine writes one with `write`.
The attribute names are private to this module and are those earlier versions wrote, so a
study made before still reads (an attribute a trial lacks reads as None or empty) and
optuna-dashboard shows the same attributes. Owned elsewhere, as constants: the per-epoch head
curves (search.study.pruning), the enqueued config (search.space.space), the trial's worker and its
surplus mark (search.study). No TensorFlow, no MLflow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

# The user attributes, one per field (the names studies already hold).
_NAMES = {
    "config": "config",  # the resolved config: `search train --from-trial` replays it
    "seeds": "seeds",
    "run_id": "mlflow_run_id",
    "accuracy": "head_accuracy",
    "balanced_accuracy": "head_balanced_accuracy",
    "majority": "majority",
    "params_count": "params_count",
    "best_epoch": "best_epoch",
    "test": "test_scores",
    "fallback_heads": "fallback_heads",
    "mean_accuracy": "mean_accuracy",
    "mean_balanced_accuracy": "mean_balanced_accuracy",
    "weights": "weights_resolved",
    "model_uri": "model_uri",
    "lr_range_test": "lr_find",
    "train_seconds": "train_seconds",
    "baseline": "baseline",
    "warm_start": "warm_start",
    "fail_reason": "fail_reason",
}
_SCORES = ("accuracy", "balanced_accuracy", "majority")  # per head, on the validation rows


@dataclass(frozen=True)
class TrialRecord:
    """One trial as its readers see it. `number`, `state`, `values` and `params` are Optuna's
    own; the other fields are its user attributes (None or empty: not recorded)."""

    number: int
    state: str = "COMPLETE"
    values: tuple[float, ...] | None = None
    config: dict | None = None  # TrialConfig.to_dict(), with an LR range test's bounds
    seeds: dict | None = None  # every seed the trial used (Session.seeds)
    run_id: str | None = None  # its MLflow run
    accuracy: dict[str, float] = field(default_factory=dict)  # per head
    balanced_accuracy: dict[str, float] = field(default_factory=dict)
    majority: dict[str, float] = field(default_factory=dict)  # the training majority's
    params_count: int | None = None
    best_epoch: int | None = None  # counted over all stages from 1: the weights kept
    test: dict | None = None  # per head on the held-out test rows (metrics.scores_with_ci)
    fallback_heads: tuple[str, ...] = ()  # heads answering their prior (majority fallback)
    mean_accuracy: float | None = None
    mean_balanced_accuracy: float | None = None
    weights: str | None = None  # what a pretrained trial's weights resolved to
    model_uri: str | None = None  # None: no model logged
    lr_range_test: bool = False  # its LR bounds came from an LR range test
    train_seconds: float | None = None
    baseline: str | None = None  # the name of the enqueued baseline it is
    warm_start: str | None = None  # 'STUDY#N': the earlier trial whose params it was enqueued with
    fail_reason: str | None = None  # one masked line, for a FAIL trial
    # Optuna's own: the keys the trial sampled (only the active ones), in Optuna's form
    # ('224x128', lr_ratio, family_alpha); empty for an enqueued baseline or another engine's
    params: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The number that ranks a trial: its value, or in a multi-objective study (several
        values, no single best) its mean validation accuracy."""
        return _score(self.values, self.mean_accuracy)

    @property
    def scored(self) -> bool:
        """It recorded per-head accuracies (a finished trial of this harness)."""
        return bool(self.accuracy)

    @property
    def heads(self) -> dict[str, dict[str, float]]:
        """{head: {"accuracy", "balanced_accuracy", "majority"}}, the scores it recorded."""
        scores = {key: getattr(self, key) for key in _SCORES}
        return {h: {key: s[h] for key, s in scores.items() if h in s} for h in self.accuracy}

    @property
    def weights_note(self) -> str | None:
        """What a pretrained trial's weights resolved to when it got no ImageNet weights
        (weights: auto, offline), else None: the warning every view shows."""
        resolved = self.weights
        return resolved if resolved and resolved.startswith("none") else None

    @property
    def test_mean(self) -> float | None:
        """The mean accuracy over the heads on the held-out test rows."""
        return sum(t["accuracy"] for t in self.test.values()) / len(self.test) \
            if self.test else None

    @property
    def test_rows(self) -> int | None:
        """How many held-out test rows it was scored on."""
        return next(iter(self.test.values()))["n"] if self.test else None


def _score(values, mean_accuracy) -> float:
    if values is not None and len(values) == 1:
        return values[0]
    return float("nan") if mean_accuracy is None else mean_accuracy


def read(trial) -> TrialRecord:
    """The record of an Optuna trial (frozen or running); absent attributes read as None."""
    attrs = trial.user_attrs
    got = {name: attrs[key] for name, key in _NAMES.items() if attrs.get(key) is not None}
    for name in ("accuracy", "balanced_accuracy", "majority"):
        got[name] = dict(got.get(name) or {})
    got["fallback_heads"] = tuple(got.get("fallback_heads") or ())
    got["lr_range_test"] = bool(got.get("lr_range_test"))
    state = getattr(trial, "state", None)
    values = getattr(trial, "values", None)
    return TrialRecord(number=trial.number, state=state.name if state is not None else "RUNNING",
                       values=tuple(values) if values is not None else None,
                       params=dict(getattr(trial, "params", None) or {}), **got)


def read_all(study, states=None) -> list[TrialRecord]:
    """The records of the study's trials (of `states`, Optuna TrialStates), in number order."""
    return [read(t) for t in study.get_trials(deepcopy=False, states=states)]


def complete(study) -> list[TrialRecord]:
    """The COMPLETE trials that recorded per-head accuracies: what the result views show."""
    from optuna.trial import TrialState

    return [r for r in read_all(study, (TrialState.COMPLETE,)) if r.scored]


def best_per_head(records: list[TrialRecord], heads) -> dict[str, TrialRecord]:
    """{head: the record with the best validation accuracy on it}, for each of `heads`."""
    return {h: max(records, key=lambda r: r.accuracy.get(h, -1.0)) for h in heads}


def score(trial) -> float:
    """`TrialRecord.score` of an Optuna trial, without reading the rest of its record."""
    return _score(trial.values, trial.user_attrs.get(_NAMES["mean_accuracy"]))


def attrs(record: TrialRecord) -> dict:
    """The user attributes `record` is written as: every field it holds (None, empty and
    False fields are left out, so a later write adds to an earlier one)."""
    out = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name in _NAMES and value is not None and value is not False and value != {} \
                and value != ():
            out[_NAMES[f.name]] = list(value) if isinstance(value, tuple) else value
    return out


def write(trial, record: TrialRecord) -> None:
    """Store the fields `record` holds on the Optuna trial (`attrs`)."""
    for key, value in attrs(record).items():
        trial.set_user_attr(key, value)


def finished(number: int, result, *, lr_range_test: bool = False) -> TrialRecord:
    """The record of a trial that trained and was scored (a `search.engines.trial.TrialResult`)."""
    scores = {key: {h: s[key] for h, s in result.scores.items()} for key in _SCORES}
    return TrialRecord(
        number=number, config=result.config.to_dict(), **scores,
        params_count=result.params_count, best_epoch=result.best_epoch,
        test=result.test or None, fallback_heads=tuple(sorted(result.priors)),
        mean_accuracy=result.summary["mean_accuracy"],
        mean_balanced_accuracy=result.summary["mean_balanced_accuracy"],
        weights=result.weights_source if result.config.backbone == "pretrained" else None,
        model_uri=result.model_uri or None, lr_range_test=lr_range_test,
        train_seconds=_finite(result.train_seconds))


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def baseline_attrs(name: str) -> dict:
    """The user attribute an enqueued baseline trial starts with (search.study)."""
    return {_NAMES["baseline"]: name}


def warm_start_attrs(ref: str) -> dict:
    """The user attribute a trial enqueued by --warm-start starts with: 'STUDY#N', the earlier
    trial it repeats (search.study.warm_start)."""
    return {_NAMES["warm_start"]: ref}


def failure_attrs(reason: str) -> dict:
    """The user attribute a FAIL trial's reason is stored as (for a storage-level write)."""
    return {_NAMES["fail_reason"]: reason}


def without_failure(user_attrs: dict) -> dict:
    """A trial's user attributes without its failure reason: what a retry starts from."""
    return {k: v for k, v in user_attrs.items() if k != _NAMES["fail_reason"]}
