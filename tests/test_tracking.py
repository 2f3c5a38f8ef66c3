"""The MLflow side of a study: a trial's run is ended by its `with` block (FINISHED, FAILED,
KILLED), a null run stands in without tracking, and runs that dead workers left open are
closed exactly once, even when two workers sweep at the same moment."""

import pytest

from search.track import study_run
from search.track.study_run import Tracking
from search.track.tracking import ROLE_TAG, Tracker


class Stopped(Exception):
    """Stands for search.engines.trial.Pruned: a kind of exception the caller names as KILLED."""


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    """One store for the cases below (each new SQLite MLflow store migrates for seconds)."""
    folder = tmp_path_factory.mktemp("ends")
    return Tracker(f"sqlite:///{folder / 'mlflow.db'}", "ends", artifact_root=folder / "mlartifacts")


def _ended(tracker: Tracker, number: int, raised: BaseException | None):
    parent = tracker.study_run("ends")
    try:
        with study_run.trial_run(Tracking(tracker, parent), "ends", number,
                                killed=(Stopped,)) as run:
            run.log_metrics({"loss": 0.5})
            if raised is not None:
                raise raised
    except BaseException as exc:
        assert exc is raised  # propagated, unchanged
    return tracker.client.get_run(run.run_id)


@pytest.mark.parametrize("number, raised, status, state", [
    (0, None, "FINISHED", "COMPLETE"),
    (1, ValueError("bad config"), "FAILED", "FAILED"),
    (2, Stopped("below the majority"), "KILLED", "PRUNED"),
    (3, KeyboardInterrupt(), "KILLED", "FAILED"),
])
def test_a_trial_run_ends_with_its_block(tracker, number, raised, status, state):
    run = _ended(tracker, number, raised)
    assert run.info.status == status and run.data.tags["search.state"] == state
    assert run.data.metrics["loss"] == 0.5
    if raised is not None:
        assert run.data.tags["search.reason"] == f"{type(raised).__name__}: {raised}"
    assert run.data.tags["search.trial"] == str(number) and run.data.tags[ROLE_TAG] == "trial"


def test_without_tracking_a_trial_run_is_null():
    with study_run.trial_run(None, "none", 0) as run:
        run.log_params({"a": 1})
        run.log_metrics({"b": 2.0}, step=1)
        run.set_tags({"c": "d"})
        run.log_dict({}, "e.json")
    assert run.run_id is None and not run.tracked


def _open_trial_run(tracker: Tracker, number: int) -> str:
    run = tracker.client.create_run(tracker.experiment_id, run_name=f"trial-{number}",
                                    tags={ROLE_TAG: "trial", "search.trial": str(number)})
    return run.info.run_id


def test_orphan_runs_close_with_their_trial_state(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "orphans", artifact_root=tmp_path / "mlartifacts")
    failed, pruned, live = (_open_trial_run(tracker, n) for n in (0, 1, 2))
    tracker.close_orphans({0: ("FAIL", "its worker died"), 1: ("PRUNED", "")})
    runs = {r: tracker.client.get_run(r) for r in (failed, pruned, live)}
    assert runs[failed].info.status == "FAILED"
    assert runs[failed].data.tags["search.reason"] == "its worker died"
    assert runs[pruned].info.status == "KILLED"
    assert runs[live].info.status == "RUNNING"  # its trial is still running somewhere


def test_two_workers_closing_the_same_orphan_do_not_crash(tmp_path):
    """MLflow's set_tag reads, then inserts; when another worker's sweep inserts the same tag
    in between, the insert fails (UNIQUE constraint) and used to kill the worker (seen in CI).
    The other worker's whole sweep is made to land exactly there, on the real store."""
    from sqlalchemy import event

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ours = Tracker(uri, "race", artifact_root=tmp_path / "mlartifacts")
    theirs = Tracker(uri, "race", artifact_root=tmp_path / "mlartifacts")
    run_id = _open_trial_run(ours, 3)
    ended = {3: ("FAIL", "its worker died mid-trial")}
    interleaved = []

    def other_worker_first(conn, cursor, statement, *_):
        if statement.lstrip().upper().startswith("INSERT INTO TAGS") and not interleaved:
            interleaved.append(statement)
            theirs.close_orphans(ended)

    engine = ours.client._tracking_client.store.engine
    event.listen(engine, "before_cursor_execute", other_worker_first)
    try:
        ours.close_orphans(ended)
    finally:
        event.remove(engine, "before_cursor_execute", other_worker_first)
    assert interleaved, "the interleaving did not happen: the test proves nothing"
    run = ours.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["search.reason"] == "its worker died mid-trial"


def test_two_workers_logging_the_study_data_together_do_not_fail_a_trial(tmp_path):
    """MLflow's log_inputs looks the experiment's dataset up, then inserts it; when another
    worker's trial inserts it in between, the insert fails (UNIQUE constraint on datasets) and
    used to FAIL the trial (seen in CI with three workers). The other worker's call is made to
    land exactly there, on the real store; both runs end up with the one dataset."""
    import pandas as pd
    from sqlalchemy import event

    from search.data.table import Table
    from search.track.tracking import TrialRun

    csv = tmp_path / "annotations.csv"
    frame = pd.DataFrame({"image_path": ["a.jpg", "b.jpg"], "path": ["/a.jpg", "/b.jpg"],
                          "gender": ["male", "female"]})
    frame.to_csv(csv, index=False)
    table = Table(csv, frame, ("gender",), {"gender": ("female", "male")})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ours = Tracker(uri, "data", artifact_root=tmp_path / "mlartifacts")
    theirs = Tracker(uri, "data", artifact_root=tmp_path / "mlartifacts")
    runs = [TrialRun(tracker, _open_trial_run(tracker, n))
            for n, tracker in enumerate((ours, theirs))]
    interleaved = []

    def other_worker_first(conn, cursor, statement, *_):
        if statement.lstrip().upper().startswith("INSERT INTO DATASETS") and not interleaved:
            interleaved.append(statement)
            runs[1].log_data(table, csv)

    engine = ours.client._tracking_client.store.engine
    event.listen(engine, "before_cursor_execute", other_worker_first)
    try:
        runs[0].log_data(table, csv)
    finally:
        event.remove(engine, "before_cursor_execute", other_worker_first)
    assert interleaved
    for run in runs:
        inputs = ours.client.get_run(run.run_id).inputs.dataset_inputs
        assert [i.dataset.name for i in inputs] == ["annotations.csv"]
