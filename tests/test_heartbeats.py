"""search.study.heartbeats: a dead worker's trial on this node is failed as soon as its pid is
gone, even beside a live worker (issue 27: in a chaos run each waited 121-134 s for the grace
period); a worker on another Ray node of the same host is judged by its heartbeat alone, and
its reason names the node. Real processes and a real SQLite storage; no TensorFlow."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from search.study import heartbeats, workers
from search.study import study as study_lib
from search.study.storage import storage

HOST = socket.gethostname()


@pytest.fixture
def beats(tmp_path, monkeypatch):
    """A study with quick heartbeats (1 s; grace an hour: only our rules fail a trial here),
    and `running(worker, node)`: a RUNNING trial of that worker that has just beaten."""
    monkeypatch.setenv("SEARCH_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("SEARCH_HEARTBEAT_GRACE", "3600")
    monkeypatch.delenv(workers.RAY_NODE_ENV, raising=False)
    db = tmp_path / "o.db"
    study = optuna.create_study(storage=storage(f"sqlite:///{db}"), study_name="beats")

    def running(worker: str, node: str | None):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr(study_lib.WORKER_ATTR, worker)
        if node:
            trial.set_user_attr(study_lib.NODE_ATTR, node)
        study._storage.record_heartbeat(trial._trial_id)
        return trial

    def beat_ago(trial, seconds: int) -> None:
        with sqlite3.connect(db) as con:
            con.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', ?) "
                        "WHERE trial_id = ?", (f"-{seconds} seconds", trial._trial_id))

    return study, running, beat_ago


@pytest.fixture
def pids():
    """(a live pid, a dead and reaped pid, a zombie's pid): processes of this test."""
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    zombie = subprocess.Popen(["true"])  # exits at once; unreaped, it stays a zombie
    deadline = time.monotonic() + 10
    while not workers.gone(zombie.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield live.pid, dead.pid, zombie.pid
    live.kill()
    live.wait()
    zombie.wait()


def test_gone_knows_live_dead_and_zombie_processes(pids):
    live, dead, zombie = pids
    assert not workers.gone(live)
    assert workers.gone(dead) and workers.gone(zombie)


def test_a_dead_worker_on_this_node_fails_at_once_beside_a_live_one(beats, pids):
    study, running, _ = beats
    live, dead, zombie = pids
    here = study_lib.node_name()
    alive = running(f"{HOST}:{live}", here)
    killed = running(f"{HOST}:{dead}", here)
    unreaped = running(f"{HOST}:{zombie}", here)
    lines = heartbeats.fail_dead_trials(study)
    assert [line.split(":")[0] for line in lines] == [f"trial {killed.number}",
                                                      f"trial {unreaped.number}"]
    trials = study.get_trials()
    assert trials[alive.number].state == TrialState.RUNNING
    for trial, pid in ((killed, dead), (unreaped, zombie)):
        reason = trials[trial.number].user_attrs["fail_reason"]
        assert trials[trial.number].state == TrialState.FAIL
        assert reason.startswith(f"its worker {HOST}:{pid} stopped (no heartbeat since ")
        assert reason.endswith("and its process is gone from this node)")
    retries = [t for t in trials if "failed_trial" in t.system_attrs]
    assert [t.system_attrs["failed_trial"] for t in retries] == [killed.number, unreaped.number]
    assert all(t.state == TrialState.WAITING and not t.user_attrs for t in retries)


def test_a_worker_on_another_ray_node_of_this_host_is_judged_by_its_heartbeat(
        beats, pids, monkeypatch):
    """Two Ray nodes on one host share its pids, but each stands for a machine: only a
    worker of this process's own Ray node is judged by its pid."""
    study, running, beat_ago = beats
    _, dead, _ = pids
    me, other = "a" * 56, "b" * 56
    monkeypatch.setenv(workers.RAY_NODE_ENV, me)  # this process: a Ray worker task
    assert study_lib.node_name() == f"ray:{me}"
    mine = running(f"{HOST}:{dead}", f"ray:{me}")
    elsewhere = running(f"{HOST}:{dead}", f"ray:{other}")
    assert [line.split(":")[0] for line in heartbeats.fail_dead_trials(study)] == [
        f"trial {mine.number}"]
    assert study.get_trials()[elsewhere.number].state == TrialState.RUNNING
    beat_ago(elsewhere, 5)  # silent for over two intervals, and no other worker beats
    [line] = heartbeats.fail_dead_trials(study)
    reason = study.get_trials()[elsewhere.number].user_attrs["fail_reason"]
    assert line.startswith(f"trial {elsewhere.number}: FAILED: {reason}")
    assert reason.startswith(f"its worker {HOST}:{dead} on Ray node {other} stopped (no "
                             f"heartbeat since ")
    assert reason.endswith("and no other worker is alive)")
