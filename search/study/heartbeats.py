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
from search.study import trial_record


def fail_dead_trials(study) -> list[str]:
    """Fail the RUNNING trials of dead workers now, each with its reason (the record's
    `fail_reason`), and queue their parameters for a retry (the storage's
    RetryHeartbeatStaleTrialCallback), so that nobody waits for a ghost. A worker beats every
    heartbeat interval while its trial runs. A trial of another process is dead when its last
    heartbeat is older than the grace period (Optuna's own rule, which fails it without a
    reason), or older than two intervals while no trial of any other process has beaten within
    two intervals: then no other worker is alive (e.g. a crashed single-process run,
    restarted). Heartbeats of this
    process's own trials do not count. One line per trial failed; [] without heartbeats."""
    storage = study._storage
    ages = storage_lib.heartbeat_ages(study)
    if not ages:
        return []
    backend = storage_lib.rdb_backend(study)
    interval = backend.heartbeat_interval
    grace, limit = backend.grace_period or 2 * interval, 2 * interval
    me = study_lib.worker_name()
    others = [t for t in study.get_trials(deepcopy=False)
              if t.number in ages and t.user_attrs.get(study_lib.WORKER_ATTR) != me]
    alive = any(ages[t.number] <= limit for t in others)
    lines = []
    for trial in others:
        age = ages[trial.number]
        if trial.state != TrialState.RUNNING or age <= limit or (age <= grace and alive):
            continue
        since = (datetime.now(timezone.utc) - timedelta(seconds=age)).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
        text = (f"its worker {trial.user_attrs.get(study_lib.WORKER_ATTR, '?')} stopped (no "
                f"heartbeat since {since}, {age:.0f} s ago, "
                + (f"past the grace period of {grace} s)" if age > grace else
                   "and no other worker is alive)"))
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
                frozen.user_attrs).items() if k != study_lib.WORKER_ATTR}
            retry(study, frozen)
        lines.append(f"trial {trial.number}: FAILED: {text}; its parameters are queued for a "
                     f"retry")
    return lines


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
