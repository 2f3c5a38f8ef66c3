"""Optuna storage URLs → storages that several workers can share.

The local default is SQLite in WAL mode with a 60 s busy timeout: WAL lets readers run beside
the one writer and the timeout makes writers queue instead of failing with "database is
locked", so several workers on one machine share `runs/optuna.db`. It stays an RDB storage, so
heartbeats keep working: a worker killed mid-trial stops beating, its trial turns FAIL after the
grace period and is retried (`RetryHeartbeatStaleTrialCallback`). JournalStorage
(`journal:PATH`) also survives parallel writers but has no heartbeat, so a killed worker's trial
would stay RUNNING for ever. SQLite needs all workers on one machine (no network file systems);
for several machines use PostgreSQL. Heartbeat interval and grace period come from
SEARCH_HEARTBEAT_INTERVAL / SEARCH_HEARTBEAT_GRACE (seconds; default 30 / 120).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import warnings

import optuna

from search.errors import UsageError
from search.settings import mask

HEARTBEAT_SECONDS = 30


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
