"""Heartbeats of running trials: failing a dead worker's trial at once, with a reason, and
saying how long a wait for other workers' trials can last. The engine's loop calls both; the
heartbeat times come from `search.study.storage.heartbeat_ages`. No TensorFlow here.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import optuna
from optuna.trial import TrialState

from search.study import storage as storage_lib
from search.study import study as study_lib
from search.study import trial_record, workers

DIED = ("its worker died mid-trial (no heartbeat); the heartbeat check failed the trial and "
        "queued its parameters for a retry")


def close_orphan_runs(study, tracker) -> None:
    """End the MLflow runs (`tracker`: search.track.tracking.Tracker) of trials that are over
    but whose process died before ending the run (SIGKILL, power loss, an --isolate process
    killed for memory), so none stays RUNNING for ever. The trial's state decides the
    status; a FAIL trial's reason goes along."""
    ended = {t.number: (t.state.name, trial_record.read(t).fail_reason or DIED)
             for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    tracker.close_orphans(ended)


def fail_dead_trials(study) -> list[str]:
    """Fail the RUNNING trials of dead workers now, each with its reason (the record's
    `fail_reason`), and queue their parameters for a retry (the storage's
    RetryHeartbeatStaleTrialCallback), so that nobody waits for a ghost. A worker beats every
    heartbeat interval while its trial runs. A trial of another process is dead when its last
    heartbeat is older than the grace period (Optuna's own rule, which fails it without a
    reason), or older than two intervals while no trial of any other live process has beaten
    within two intervals: then no other worker is alive (e.g. a crashed single-process run,
    restarted). On this process's node (`study.node_name`: the same Ray node, else the same
    host, boot and pid namespace) it is dead as soon as its worker's pid is gone, whatever its
    heartbeat says: a worker killed beside a live one is not waited for. A worker on another
    Ray node of the same host is judged by its heartbeat only, as one on another machine.
    Heartbeats of this process's own trials do not count. One line per trial failed; []
    without heartbeats."""
    storage = study._storage
    ages = storage_lib.heartbeat_ages(study)
    if not ages:
        return []
    backend = storage_lib.rdb_backend(study)
    interval = backend.heartbeat_interval
    grace, limit = backend.grace_period or 2 * interval, 2 * interval
    me, here = study_lib.worker_name(), study_lib.node_name()
    others = [t for t in study.get_trials(deepcopy=False)
              if t.number in ages and t.user_attrs.get(study_lib.WORKER_ATTR) != me]
    alive = any(ages[t.number] <= limit and not _gone_here(t, here) for t in others)
    lines = []
    for trial in others:
        age = ages[trial.number]
        if trial.state != TrialState.RUNNING:
            continue
        if age > grace:
            why = f"past the grace period of {grace} s"
        elif age > limit and not alive:
            why = "and no other worker is alive"
        elif _gone_here(trial, here):
            why = "and its process is gone from this node"
        else:
            continue
        since = (datetime.now(timezone.utc) - timedelta(seconds=age)).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
        text = (f"its worker {trial.user_attrs.get(study_lib.WORKER_ATTR, '?')}"
                f"{_on_node(trial)} stopped (no heartbeat since {since}, {age:.0f} s ago, {why})")
        try:
            for key, value in trial_record.failure_attrs(text).items():
                storage.set_trial_user_attr(trial._trial_id, key, value)
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # it ended meanwhile
            continue
        retry = storage.get_heartbeat_stale_trial_callback()
        if retry is not None:  # the retry starts clean: no reason, no dead worker
            frozen = copy.deepcopy(storage.get_trial(trial._trial_id))
            frozen.user_attrs = {k: v for k, v in trial_record.without_failure(
                frozen.user_attrs).items() if k not in (study_lib.WORKER_ATTR,
                                                        study_lib.NODE_ATTR)}
            retry(study, frozen)
        lines.append(f"trial {trial.number}: FAILED: {text}; its parameters are queued for a "
                     f"retry")
    return lines


def _gone_here(trial, here: str | None) -> bool:
    """The trial's worker ran on this node and its pid is gone (see fail_dead_trials)."""
    if here is None or trial.user_attrs.get(study_lib.NODE_ATTR) != here:
        return False
    pid = str(trial.user_attrs.get(study_lib.WORKER_ATTR, "")).rsplit(":", 1)[-1]
    return pid.isdigit() and workers.gone(int(pid))


def _on_node(trial) -> str:
    """' on Ray node ID' for a Ray worker's trial: on one host, the node tells them apart."""
    node = str(trial.user_attrs.get(study_lib.NODE_ATTR, ""))
    return f" on Ray node {node.removeprefix('ray:')}" if node.startswith("ray:") else ""


def waiting_line(study, running: int) -> str:
    """What this process waits for, and for how long at most if a worker is dead."""
    head = f"waiting for {running} running trial(s) of other workers"
    ages = storage_lib.heartbeat_ages(study)
    if not ages:
        return (f"{head} (this storage records no heartbeats: a dead worker's trial stays "
                f"RUNNING; Ctrl-C stops)")
    backend = storage_lib.rdb_backend(study)
    grace = backend.grace_period or 2 * backend.heartbeat_interval
    running_ages = [ages[t.number] for t in study.get_trials(
        deepcopy=False, states=(TrialState.RUNNING,)) if t.number in ages]
    left = max((grace - age for age in running_ages), default=grace)
    return (f"{head}: a dead worker's trial fails within {max(0, left):.0f} s (heartbeat grace "
            f"period {grace} s, SEARCH_HEARTBEAT_GRACE)")
