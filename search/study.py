"""The Optuna side of a search: storage, sampler, pruner, the trial loop and its progress bar.

`open_study` creates or resumes a study (running the same command again continues it) and
refuses to mix two different spaces or datasets in one study. `optimize` runs trials until the
study holds N finished (COMPLETE or PRUNED) trials, in any number of processes on any number of
machines. A trial that raises is recorded FAIL with its reason and the search goes on.

Storage. The local default is SQLite in WAL mode with a 60 s busy timeout: WAL lets readers run
beside the one writer and the timeout makes writers queue instead of failing with "database is
locked", so several workers on one machine share `runs/optuna.db`. It stays an RDB storage, so
heartbeats keep working: a worker killed mid-trial stops beating, its trial turns FAIL after the
grace period and is retried (`RetryHeartbeatStaleTrialCallback`). JournalStorage
(`journal:PATH`) also survives parallel writers but has no heartbeat, so a killed worker's trial
would stay RUNNING for ever. SQLite needs all workers on one machine (no network file systems);
for several machines use PostgreSQL. Heartbeat interval and grace period come from
SEARCH_HEARTBEAT_INTERVAL / SEARCH_HEARTBEAT_GRACE (seconds; default 30 / 120).

Trial cap. Workers race: two can see N-1 finished trials and both start one. So every trial,
once created, claims a slot: if the trials numbered before it that are finished, running or
waiting already make N, it is surplus and trains nothing. Trial numbers are assigned under a
lock on the study row (SQLite: one writer at a time), so "numbered before" is one order all
workers agree on, and counting waiting trials covers queued trials (retries, baselines) that
start later. Optuna cannot delete
a trial, so a surplus one ends FAIL with user attr `surplus=True`; it counts neither as
finished nor as a failure, and a queued trial it had popped is queued again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState

from search.errors import UsageError
from search.settings import mask
from search.space import FIXED_CONFIG_ATTR, Space

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# What a trial has to count before it may train: trials that took or hold a slot.
CLAIMED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
SURPLUS_ATTR = "surplus"
WORKER_ATTR = "worker"
HEARTBEAT_SECONDS = 30


class SurplusTrial(Exception):
    """The study already had its N trials when this one claimed a slot: it is not trained."""


class _QuietSurplus(logging.Filter):
    """Optuna logs every FAIL with a traceback; a surplus trial is routine (see on_trial)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SurplusTrial))


_QUIET_SURPLUS = _QuietSurplus()


def storage(url: str):
    """An Optuna storage for url: RDB with heartbeats (stale trials FAIL and are retried)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    sqlite = url.startswith("sqlite")
    interval, grace = heartbeat()
    try:
        if sqlite:
            sqlite_wal(url)
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {},
            heartbeat_interval=interval, grace_period=grace,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=2))
    except Exception as exc:  # bad URL, server down, missing driver
        raise UsageError(f"cannot open study storage {mask(url)}: {exc}") from None


def sqlite_wal(url: str) -> None:
    """Switch a SQLite file to WAL (it stays so): readers no longer block the writer."""
    import sqlalchemy

    path = sqlalchemy.engine.make_url(url).database
    if not path or path == ":memory:":
        return
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
        db.execute("PRAGMA journal_mode=WAL")


def heartbeat() -> tuple[int, int]:
    """(interval, grace) in seconds from the environment; short values suit tests."""
    interval = _seconds("SEARCH_HEARTBEAT_INTERVAL", HEARTBEAT_SECONDS)
    grace = _seconds("SEARCH_HEARTBEAT_GRACE", 4 * interval)
    if grace <= interval:
        raise UsageError(f"SEARCH_HEARTBEAT_GRACE ({grace} s) must be longer than "
                         f"SEARCH_HEARTBEAT_INTERVAL ({interval} s), e.g. 4 times it")
    return interval, grace


def _seconds(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{name} must be a whole number of seconds >= 1, not {text!r}")
    return value


def sampler(space: Space, seed: int | None):
    spec = {k: v for k, v in space.sampler.items() if k != "name"}
    if space.sampler["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, **spec)


def pruner(space: Space):
    spec = {k: v for k, v in space.pruner.items() if k != "name"}
    name = space.pruner["name"]
    if space.objectives:  # Optuna cannot prune multi-objective trials
        return optuna.pruners.NopPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**spec)
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(**spec)


def open_study(url: str, name: str, space: Space, *, seed: int | None,
               identity: dict, create: bool = True) -> optuna.Study:
    """Create or resume. `identity` (space fingerprint, data, split) must match on resume.
    With create=False the study must exist (workers join, they never start a study)."""
    if not create:
        try:
            optuna.load_study(study_name=name, storage=storage(url))
        except KeyError:
            raise UsageError(f"no study {name!r} in {mask(url)}: start it with `search run "
                             f"--study {name}` (same storage and flags), then join") from None
    directions = [{"max": "maximize", "min": "minimize"}[d] for _, d in space.objectives] \
        or ["maximize"]
    study = optuna.create_study(storage=storage(url), study_name=name, directions=directions,
                                sampler=sampler(space, seed), pruner=pruner(space),
                                load_if_exists=True)
    if space.objectives and study.metric_names is None:
        study.set_metric_names([metric for metric, _ in space.objectives])
    stored = {k: study.user_attrs.get(k) for k in identity}
    if not any(v is not None for v in stored.values()):
        for key, value in identity.items():
            study.set_user_attr(key, value)
        for entry in space.enqueue:
            study.enqueue_trial({}, user_attrs={FIXED_CONFIG_ATTR: entry["config"],
                                                "baseline": entry["name"]})
        return study
    differs = [k for k, v in identity.items() if stored.get(k) != v]
    if differs:
        detail = "; ".join(f"{k}: study has {stored.get(k)!r}, now {identity[k]!r}"
                           for k in differs)
        raise UsageError(f"study {name!r} was started with a different setup ({detail}). "
                         f"Use another --study name, or the same space, data and flags.")
    return study


def score(trial) -> float:
    """The number that ranks a trial: its value, or in a multi-objective study (several
    values, no single best) its mean validation accuracy."""
    if trial.values is not None and len(trial.values) == 1:
        return trial.values[0]
    return trial.user_attrs.get("mean_accuracy", float("nan"))


def best(study: optuna.Study):
    """The top trial by `score`, or None before any trial completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=score) if complete else None


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def is_surplus(frozen) -> bool:
    """A trial that claimed no slot (see the module docstring); not a failure."""
    return bool(frozen.user_attrs.get(SURPLUS_ATTR))


def worker_name() -> str:
    """host:pid, stored on every trial this process runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(trial: optuna.Trial, n_trials: int) -> None:
    """Take one of the study's n_trials slots, or raise SurplusTrial (see module docstring)."""
    trial.set_user_attr(WORKER_ATTR, worker_name())
    trials = trial.study.get_trials(deepcopy=False)
    ahead = sum(t.number < trial.number and t.state in CLAIMED and not is_surplus(t)
                for t in trials)
    if ahead < n_trials:
        return
    trial.set_user_attr(SURPLUS_ATTR, True)
    mine = next(t for t in trials if t.number == trial.number)
    if mine.params or "fixed_params" in mine.system_attrs:  # popped from the queue: requeue
        trial.study.add_trial(optuna.create_trial(
            state=TrialState.WAITING, params=mine.params, distributions=mine.distributions,
            user_attrs={k: v for k, v in mine.user_attrs.items()
                        if k not in (SURPLUS_ATTR, WORKER_ATTR)},
            system_attrs=mine.system_attrs))
    raise SurplusTrial(f"the {n_trials} trial slots are taken by trials before #{trial.number}; "
                       f"not trained (FAIL with user attr {SURPLUS_ATTR}=True, not counted)")


@dataclass
class Outcome:
    ran: int
    finished: int
    stopped: str | None = None  # why the loop ended early, if it did


def optimize(study: optuna.Study, objective: Callable, *, n_trials: int,
             timeout: float | None = None, max_failures: int = 5,
             on_trial: Callable | None = None, progress: bool = True) -> Outcome:
    """Run trials until the study holds n_trials finished ones (across all workers)."""
    from tqdm.auto import tqdm

    def capped(trial):
        claim(trial, n_trials)
        return objective(trial)

    logging.getLogger("optuna.study._optimize").addFilter(_QUIET_SURPLUS)
    start = time.monotonic()
    bar = tqdm(total=n_trials, initial=min(finished(study), n_trials), unit="trial",
               disable=not progress, dynamic_ncols=True)
    ran = 0
    failures = 0
    stopped = None
    waiting = False
    try:
        while True:
            done = finished(study)
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if done >= n_trials:
                break
            if timeout is not None and time.monotonic() - start > timeout:
                stopped = f"timeout of {timeout:g} s reached"
                break
            if done + running >= n_trials and running:
                if not waiting:
                    bar.write(f"waiting for {running} running trial(s) of other workers (a "
                              f"dead worker's trial fails after the heartbeat grace period)")
                waiting = True
                _wait_for_others(study)
                continue
            waiting = False
            ours: list = []
            # One trial per call: heartbeats (and stale-trial checks) live inside optimize.
            study.optimize(capped, n_trials=1, catch=(Exception,),
                           callbacks=[lambda _study, frozen: ours.append(frozen)])
            last = ours[-1]
            bar.n = min(finished(study), n_trials)
            _best_postfix(study, bar)
            if on_trial is not None:
                on_trial(study, last, bar)
            if is_surplus(last):
                continue
            ran += 1
            failures = failures + 1 if last.state == TrialState.FAIL else 0
            if failures >= max_failures:
                stopped = (f"{failures} trials in a row failed (last: "
                           f"{last.user_attrs.get('fail_reason', 'see the log')}); stopping. "
                           f"Fix the cause or raise --max-failures")
                break
    finally:
        bar.close()
    return Outcome(ran=ran, finished=finished(study), stopped=stopped)


def _wait_for_others(study: optuna.Study) -> None:
    """The last trials run elsewhere. Fail those whose worker died (no heartbeat): their
    retries are queued and this worker picks them up."""
    optuna.storages.fail_stale_trials(study)
    time.sleep(1.0)


def _best_postfix(study: optuna.Study, bar) -> None:
    top = best(study)
    if top is not None:
        bar.set_postfix(best=f"{score(top):.4f}", refresh=True)
