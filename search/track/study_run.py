"""The study's MLflow parent run as one process holds it: started (found or created) by the
process that starts a search, joined by its workers, which never start one; and a trial's run
under it (`trial_run`), or a `NullRun` where nothing is tracked."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from search.errors import UsageError
from search.settings import Settings, mask


@dataclass
class Tracking:
    """The MLflow side of a session: the tracker and the study's parent run."""

    tracker: object  # search.track.tracking.Tracker
    parent_run_id: str


def start(settings: Settings, study: str, params: dict) -> Tracking:
    """The tracker and the study's parent run, found or created, with `params` logged on it
    (the process that starts a study does this before any worker starts)."""
    tracker = _tracker(settings, study)
    return Tracking(tracker, tracker.study_run(study, params))


def join(settings: Settings, study: str, parent_run_id: str | None) -> Tracking:
    """The tracker and the parent run the study recorded, which must exist."""
    from mlflow.exceptions import MlflowException

    tracker = _tracker(settings, study)
    try:
        tracker.client.get_run(parent_run_id or "none")
    except MlflowException:
        raise UsageError(f"study {study!r} has no MLflow parent run {parent_run_id} in "
                         f"{mask(settings.tracking_uri)}: pass the --tracking-uri (or "
                         f"MLFLOW_TRACKING_URI) of the `search run` that started it") from None
    return Tracking(tracker, parent_run_id)


def _tracker(settings: Settings, study: str):
    from search.track.tracking import Tracker

    return Tracker(settings.tracking_uri, study, settings.artifact_root)


@contextlib.contextmanager
def trial_run(tracking, study_name: str, number: int, tags: dict[str, str] | None = None, *,
              killed: tuple[type[BaseException], ...] = ()) -> Iterator[Any]:
    """`Tracker.trial_run` (a search.track.tracking.TrialRun) under the session's `Tracking`,
    or a `NullRun` when there is none, so a trial logs the same way either way."""
    if tracking is None:
        yield NullRun()
        return
    with tracking.tracker.trial_run(tracking.parent_run_id, study_name, number, tags,
                                    killed=killed) as run:
        yield run


class NullRun:
    """A trial run without tracking: every log call does nothing; `tracked` says so to callers
    that would build an artifact (a model file, a figure) only to log it."""

    tracked = False
    run_id = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_data(self, table, csv) -> None:
        pass

    def log_dict(self, data: dict, name: str) -> None:
        pass

    def log_file(self, path: str | Path, folder: str | None = None) -> None:
        pass
