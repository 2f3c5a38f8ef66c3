"""MLflow logging: one parent run per study, one nested run per trial.

Our own small module on the MLflow client, not Optuna's deprecated `MLflowCallback` (which
logs final values only, marks failed trials FINISHED and has no parent run). The experiment is
the study name; the parent run is found again by tag, so resumed studies and many workers all
log under the same parent. Nothing here touches Optuna or Keras.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from search.settings import mask
from search.track import outage
from search.track.tags import (
    MODEL_DELETED_TAG,
    MODEL_URI_TAG,
    REASON_TAG,
    ROLE_TAG,
    STATE_TAG,
    STUDY_ROLE,
    STUDY_TAG,
    TRIAL_ROLE,
    TRIAL_TAG,
)


@contextlib.contextmanager
def using(tracking_uri: str):
    """Point MLflow's fluent API at tracking_uri for a block, then restore it.

    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into the environment, which would
    leak one study's store into the next command run in the same process.
    """
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


class Tracker:
    """The MLflow side of a study."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None = None):
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        outage.watch(tracking_uri)  # a server that stops answering: said, and waited for
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_name = experiment
        self.experiment_id = self._experiment(experiment, artifact_root)

    def _experiment(self, name: str, artifact_root: Path | None) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None  # a tracking server chooses its own artifact store
        if artifact_root is not None and not self.tracking_uri.startswith(("http:", "https:")):
            location = (artifact_root / name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another worker created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def study_run(self, study_name: str, params: dict[str, Any] | None = None) -> str:
        """The parent run's id: found by tag, or created. Marked RUNNING while we work."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(f"tags.`{ROLE_TAG}` = '{STUDY_ROLE}' and "
                           f"tags.`{STUDY_TAG}` = '{study_name}'"),
            max_results=1, order_by=["attributes.start_time ASC"])
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=f"study-{study_name}",
                                     tags={STUDY_TAG: study_name, ROLE_TAG: STUDY_ROLE})
        for key, value in (params or {}).items():
            self.client.log_param(run.info.run_id, key, mask(_short(value)))
        return run.info.run_id

    def finish_study_run(self, run_id: str, summary: dict[str, float] | None = None) -> None:
        for key, value in (summary or {}).items():
            if _finite(value):
                self.client.log_metric(run_id, key, float(value))
        self.client.set_terminated(run_id, status="FINISHED")

    def close_orphans(self, ended: dict[int, tuple[str, str]]) -> None:
        """Close the trial runs left RUNNING whose trial is over: `ended` maps a trial number
        to its final state (COMPLETE, PRUNED, FAIL) and, for FAIL, the reason."""
        from mlflow.exceptions import MlflowException

        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{ROLE_TAG}` = '{TRIAL_ROLE}'")
        for run in runs:
            number = int(run.data.tags.get(TRIAL_TAG, -1))
            if number not in ended:
                continue  # still running in a live worker
            state, why = ended[number]
            run_id = run.info.run_id
            try:
                self.client.set_tag(run_id, STATE_TAG, state)
                if state == "FAIL":
                    self.client.set_tag(run_id, REASON_TAG, mask(why))
                self.client.set_terminated(run_id, status={"COMPLETE": "FINISHED",
                                                           "PRUNED": "KILLED"}.get(state, "FAILED"))
            except MlflowException:
                # Another worker's sweep is closing the same run (MLflow's set_tag inserts
                # and two inserts of one tag collide); if both gave up, the next sweep retries.
                continue

    def drop_models(self, run_ids) -> list[str]:
        """Delete the logged models of these trial runs (files and MLflow records), except
        models a registered version uses; tag each run `search.model_deleted`. Idempotent:
        several workers may drop the same model. Returns the run ids whose model went."""
        from mlflow.exceptions import MlflowException
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        dropped = []
        for run_id in run_ids:
            tags = self.client.get_run(run_id).data.tags
            uri = tags.get(MODEL_URI_TAG, "")
            if not uri.startswith("models:/m-") or tags.get(MODEL_DELETED_TAG) == "true":
                continue
            if self.client.search_model_versions(f"run_id = '{run_id}'"):
                continue  # registered: `search best --register` (or a user) points at it
            model_id = uri.removeprefix("models:/")
            try:
                location = self.client.get_logged_model(model_id).artifact_location
                get_artifact_repository(location).delete_artifacts()
                self.client.delete_logged_model(model_id)
                if location.startswith("file:"):  # its now empty folder, on a local store
                    with contextlib.suppress(OSError):
                        Path(urlparse(location).path).parent.rmdir()
            except (MlflowException, OSError):
                pass  # another worker deleted it first
            self.client.set_tag(run_id, MODEL_DELETED_TAG, "true")
            dropped.append(run_id)
        return dropped

    @contextlib.contextmanager
    def nested_run(self, parent_id: str, study_name: str, name: str, tags: dict[str, str], *,
                   killed: tuple[type[BaseException], ...] = ()) -> Iterator["TrialRun"]:
        """A run under the study's parent run, ended by the block's exit (MLflow's `with
        start_run()` idiom on the client): FINISHED when it ends normally, KILLED for Ctrl-C
        and the `killed` exception types, else FAILED. The exception propagates; while the
        tracking server does not answer, the run is left for close_orphans (search.track.
        outage), not ended at the price of MLflow's retries a second time."""
        created = self.client.create_run(
            self.experiment_id, run_name=name,
            tags={"mlflow.parentRunId": parent_id, STUDY_TAG: study_name, **tags})
        run = TrialRun(self, created.info.run_id)
        try:
            yield run
        except BaseException as exc:
            if outage.down():
                outage.gave_up(f"run {name}")
                raise
            run.end("KILLED" if isinstance(exc, (KeyboardInterrupt, *killed)) else "FAILED")
            raise
        run.end("FINISHED")

    @contextlib.contextmanager
    def trial_run(self, parent_id: str, study_name: str, number: int,
                  tags: dict[str, str] | None = None, *,
                  killed: tuple[type[BaseException], ...] = ()) -> Iterator["TrialRun"]:
        """A trial's `nested_run`, its outcome also in `search.state`: COMPLETE; PRUNED (run
        KILLED) for the `killed` exception types (a pruned trial); FAILED with the reason
        (run FAILED, or KILLED for Ctrl-C)."""
        with self.nested_run(parent_id, study_name, f"trial-{number}",
                             {ROLE_TAG: TRIAL_ROLE, TRIAL_TAG: str(number), **(tags or {})},
                             killed=killed) as run:
            try:
                yield run
            except BaseException as exc:
                if not outage.down():
                    run.set_tags({STATE_TAG: "PRUNED" if isinstance(exc, killed) else "FAILED",
                                  REASON_TAG: f"{type(exc).__name__}: {exc}"})
                raise
            run.set_tags({STATE_TAG: "COMPLETE"})


class TrialRun:
    """Logging for one trial's nested run; `end` records FINISHED, FAILED or KILLED."""

    tracked = True  # what it logs is kept (NullRun: not)

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.client = tracker.client
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, mask(_short(v))) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if _finite(v)]
        for start in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[start:start + 500])

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, mask(_short(value, 5000)))

    def log_data(self, table, csv) -> None:
        """The annotation table this run trained and validated on, as an MLflow dataset input
        (name, source path and a digest of its content)."""
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag

        frame = table.frame[["image_path", *table.heads]]
        dataset = mlflow.data.from_pandas(frame, source=str(csv), name=Path(csv).name)
        inputs = [DatasetInput(dataset._to_mlflow_entity(),
                               tags=[InputTag("mlflow.data.context", "training")])]
        try:
            self.client.log_inputs(self.run_id, datasets=inputs)
        except mlflow.exceptions.MlflowException:
            # Workers starting together race to insert the experiment's one dataset row (MLflow
            # looks it up, then inserts: "UNIQUE constraint failed: datasets..."); the second
            # call finds the row the other worker wrote and only links it to this run.
            self.client.log_inputs(self.run_id, datasets=inputs)

    def log_dict(self, data: dict, name: str) -> None:
        self.client.log_text(self.run_id, json.dumps(data, indent=2, default=str), name)

    def log_file(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_model(self, keras_path: Path, vocab: dict, config: dict) -> str:
        """Log the saved Keras model + label vocabulary as one MLflow LoggedModel; its URI."""
        from search.track.registry import log_model

        with using(self.tracker.tracking_uri):
            return log_model(self.run_id, keras_path, vocab, config)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def _short(value: Any, limit: int = 500) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
