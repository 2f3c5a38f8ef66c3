"""`search studies`: one row per study in a storage, to see a storage's studies at a glance.

Per study: trials complete / pruned / failed / running (a surplus trial, see search.study, is
no failure), the best score (`search.study.trial_record.score` of the best COMPLETE trial), the best
validation accuracy of each head over the COMPLETE trials, the registered model whose alias
`champion` points at one of its trials, when it started (first trial) and its last update.

Reads only: the storage is opened read-only (search.study.storage), so this runs beside workers, and
MLflow is asked only when a study has runs and the store exists (a local store is never
created). No TensorFlow, no Keras.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from search.errors import UsageError
from search.formats import csv_text, json_text, table_text
from search.settings import Settings, mask
from search.space.config import OBJECTIVES

COUNTS = ("complete", "pruned", "failed", "running")
BEFORE_HEADS = ("study", *COUNTS, "best")
AFTER_HEADS = ("champion", "started", "updated")
TEXT_COLUMNS = ("study", "champion")  # sorted A-Z; the others highest or newest first


@dataclass(frozen=True)
class Champion:
    """A registered model version aliased `champion` that is one of the study's trials."""

    model: str
    version: str
    trial: int

    def __str__(self) -> str:
        return f"{self.model} v{self.version} (#{self.trial})"


@dataclass(frozen=True)
class StudyRow:
    study: str
    complete: int
    pruned: int
    failed: int
    running: int
    best: float | None
    objective: str | None
    heads: dict[str, float]
    started: datetime | None
    updated: datetime | None
    champion: tuple[Champion, ...] = ()

    def value(self, column: str):
        """The cell of `column` (a head name: that head's best accuracy) that the table, the
        CSV and --sort show."""
        if column in self.heads or column not in (*BEFORE_HEADS, *AFTER_HEADS):
            return self.heads.get(column)
        if column == "champion":
            return ", ".join(map(str, self.champion)) or None
        return getattr(self, column)

    def to_dict(self) -> dict:
        return {"study": self.study, **{c: getattr(self, c) for c in COUNTS},
                "best": self.best, "objective": self.objective, "heads": self.heads,
                "champion": [vars(c) for c in self.champion], "started": self.started,
                "updated": self.updated}


def summarise(name: str, trials, directions: int = 1,
              objective: str | None = None) -> StudyRow:
    """One study's row from its frozen trials (champion left empty). `objective` is the
    study's (user attr); with several directions the best is the mean accuracy."""
    from optuna.trial import TrialState

    from search.study import trial_record
    from search.study.study import is_surplus

    def state(s):
        return [t for t in trials if t.state == s]

    complete = [trial_record.read(t) for t in state(TrialState.COMPLETE)]
    best = max(r.score for r in complete) if complete else None
    heads: dict[str, float] = {}
    for r in complete:
        for head, acc in r.accuracy.items():
            heads[head] = max(acc, heads.get(head, acc))
    starts = [t.datetime_start for t in trials if t.datetime_start]
    updates = [t.datetime_complete or t.datetime_start for t in trials if t.datetime_start]
    return StudyRow(
        study=name, complete=len(complete), pruned=len(state(TrialState.PRUNED)),
        failed=sum(not is_surplus(t) for t in state(TrialState.FAIL)),
        running=len(state(TrialState.RUNNING)),
        best=None if best is None or math.isnan(best) else best,
        objective=OBJECTIVES[0] if directions > 1 else objective, heads=heads,
        started=min(starts, default=None), updated=max(updates, default=None))


def read(settings: Settings) -> tuple[list[StudyRow], dict[str, tuple[str, int]]]:
    """Every study's row, in the storage's order (champions not looked up yet), and the MLflow
    run ids of all trials: run id -> (study, trial number)."""
    from search.study import trial_record
    from search.study.storage import require_storage, storage
    from search.study.study import setup

    require_storage(settings)
    store = storage(settings.storage, read_only=True)
    rows, run_ids = [], {}
    for study in store.get_all_studies():
        trials = store.get_all_trials(store.get_study_id_from_name(study.study_name),
                                      deepcopy=False)
        rows.append(summarise(study.study_name, trials, len(study.directions),
                              setup(study).objective))
        run_ids.update({r.run_id: (study.study_name, r.number)
                        for r in map(trial_record.read, trials) if r.run_id})
    return rows, run_ids


def champions(tracking_uri: str, run_ids: dict[str, tuple[str, int]]
              ) -> tuple[dict[str, list[Champion]], str | None]:
    """{study: [Champion]} for the registered models whose `champion` alias points at a version
    whose run is a trial's (run_ids: run id -> (study, trial number)), and a note if MLflow
    could not be read. One search over the registered models (their aliases come with them)
    and one lookup per champion alias: the cost follows the registered models, not the
    trials. Nothing to look for, or a local store that does not exist: no MLflow at all."""
    local = tracking_uri.removeprefix("sqlite:///")
    if not run_ids or (tracking_uri.startswith("sqlite:///") and not Path(local).is_file()):
        return {}, None
    from mlflow import MlflowClient

    from search.track.registry import CHAMPION

    found: dict[str, list[Champion]] = {}
    try:
        with _answer_fast():
            client = MlflowClient(tracking_uri=tracking_uri)
            token = None
            while True:
                page = client.search_registered_models(max_results=1000, page_token=token)
                for model in page:
                    version = model.aliases.get(CHAMPION)
                    run_id = (client.get_model_version(model.name, str(version)).run_id
                              if version is not None else None)
                    if run_id in run_ids:
                        study, number = run_ids[run_id]
                        found.setdefault(study, []).append(
                            Champion(model.name, str(version), number))
                token = page.token
                if not token:
                    return found, None
    except Exception as exc:  # server down, no registry, no permission: a note, not a failure
        first = (str(exc) or repr(exc)).splitlines()[0]
        return {}, mask(f"champion column left empty: cannot read the MLflow model registry at "
                        f"{tracking_uri}: {first}")


@contextlib.contextmanager
def _answer_fast():
    """MLflow retries an unreachable tracking server for minutes (7 retries, backoff 2, 120 s
    timeouts); a champion column is not worth the wait. Settings the user made stay."""
    fast = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    added = [k for k in fast if k not in os.environ]
    os.environ.update({k: fast[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def columns(rows: list[StudyRow]) -> list[str]:
    """study, the counts, best, one column per head (in order of appearance), champion,
    started, updated."""
    heads = list(dict.fromkeys(h for r in rows for h in r.heads))
    return [*BEFORE_HEADS, *heads, *AFTER_HEADS]


def check_column(column: str, known: list[str]) -> None:
    if column not in known:
        raise UsageError(f"--sort: unknown column {column!r}; the columns are: "
                         f"{', '.join(known)}")


def sort(rows: list[StudyRow], column: str) -> list[StudyRow]:
    """Rows by `column`: names A-Z, numbers highest and times newest first; empty cells
    last, ties by study name."""
    by_name = sorted(rows, key=lambda r: r.study)
    filled = [r for r in by_name if r.value(column) is not None]
    empty = [r for r in by_name if r.value(column) is None]
    return sorted(filled, key=lambda r: r.value(column),
                  reverse=column not in TEXT_COLUMNS) + empty


def table_cells(row: StudyRow, cols: list[str]) -> list[str]:
    out = []
    for c in cols:
        v = row.value(c)
        if v is None:
            out.append("-")
        elif isinstance(v, datetime):
            out.append(v.strftime("%Y-%m-%d %H:%M"))
        elif isinstance(v, float):
            out.append(f"{v:.4f}" if c == "best" else f"{v:.3f}")
        else:
            out.append(str(v))
    return out


def studies(settings: Settings, sort_by: str, fmt: str) -> int:
    """Print every study of the storage (`search studies`)."""
    rows, run_ids = read(settings)
    cols = columns(rows)
    check_column(sort_by, cols)  # before MLflow is asked: a typo answers at once
    found, note = champions(settings.tracking_uri, run_ids)
    rows = sort([replace(r, champion=tuple(found.get(r.study, ()))) for r in rows], sort_by)
    if fmt == "json":
        print(json_text([r.to_dict() for r in rows]))
    elif fmt == "csv":
        print(csv_text(cols, [[r.value(c) for c in cols] for r in rows]))
    elif not rows:
        print(f"no studies in {mask(settings.storage)}")
    else:
        print(table_text(cols, [table_cells(r, cols) for r in rows], left=TEXT_COLUMNS))
    if note:
        print(note, file=sys.stderr)
    return 0
