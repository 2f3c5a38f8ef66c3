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

Readers (`search dashboard`, `studies`, `best`, `pareto`, `report`) open the storage with
`read_only=True`: no heartbeat (they run no trial) and, for SQLite, a read-only connection
(`mode=ro`), so a reader beside running workers never takes the write lock, never writes on
start-up (optuna-dashboard#545: a dashboard that did crashed the study with "database is
locked") and, in WAL mode, never makes a writer wait.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import warnings
from pathlib import Path

import optuna

from search.errors import UsageError
from search.settings import Settings, mask

HEARTBEAT_SECONDS = 30


def storage(url: str, *, read_only: bool = False):
    """An Optuna storage for url: RDB with heartbeats (stale trials FAIL and are retried), or
    with read_only a reader's (see the module docstring; a journal file is read as it is)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    sqlite = url.startswith("sqlite")
    interval, grace = (None, None) if read_only else heartbeat()
    try:
        opened = url
        if sqlite and read_only:
            opened = read_only_url(url)
        elif sqlite:
            sqlite_wal(url)
        return optuna.storages.RDBStorage(
            opened, engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {},
            heartbeat_interval=interval, grace_period=grace,
            heartbeat_stale_trial_callback=None if read_only else
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2))
    except Exception as exc:  # bad URL, server down, missing driver, no such file
        raise UsageError(open_error(url, exc)) from None


DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


def open_error(url: str, exc: BaseException) -> str:
    """The one line for a storage that cannot be opened: the URL (password masked), where it
    points (host, port), the driver's own first line without SQLAlchemy's wrapping (the
    exception class, SQL, "Background on this error at: https://sqlalche.me/..."), and what
    to check."""
    import sqlalchemy

    text = str(getattr(exc, "orig", None) or exc)  # the driver's error, not SQLAlchemy's
    text = re.sub(r"\(Background on this error at: [^)]*\)", "", text)
    text = " ".join((text.strip().splitlines() or [type(exc).__name__])[0].split())
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        parsed = None
    if parsed is not None and parsed.host:
        port = parsed.port or DEFAULT_PORTS.get(parsed.get_backend_name(), "default")
        where = f" (host {parsed.host}, port {port})"
        check = ("check that the database server runs there and accepts connections from this "
                 "machine, and the user, password and database name; or fix --storage / "
                 "SEARCH_STORAGE")
    elif url.startswith("sqlite"):
        where, check = "", "check that its folder exists and is writable, or fix --storage"
    else:
        where, check = "", "check the URL (--storage / SEARCH_STORAGE) and its driver"
    return mask(f"cannot open study storage {url}{where}: {text}; {check}")


def rdb_backend(study):
    """The study's storage under Optuna's cache wrapper (an RDBStorage for SQL URLs)."""
    return getattr(study._storage, "_backend", study._storage)


def heartbeat_ages(study) -> dict[int, float]:
    """Seconds since each trial's last heartbeat (trial number → age), by the database's own
    clock, which is also what Optuna's stale-trial check reads (so no two machines' clocks
    are compared); {} where the storage records no heartbeats (read-only, journal). Reads
    Optuna's heartbeat table through its RDB models, which are private: Optuna has no public
    call for a heartbeat's time."""
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    backend = rdb_backend(study)
    if not isinstance(backend, optuna.storages.RDBStorage) or backend.heartbeat_interval is None:
        return {}
    with _create_scoped_session(backend.scoped_session) as session:
        now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
        rows = (session.query(models.TrialModel.number, models.TrialHeartbeatModel.heartbeat)
                .join(models.TrialHeartbeatModel,
                      models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study._study_id).all())
    return {number: (now - beat.replace(tzinfo=None)).total_seconds() for number, beat in rows}


def read_only_url(url: str) -> str:
    """The SQLite URL opened read-only: `sqlite:///file:PATH?mode=ro&uri=true` (SQLAlchemy
    hands `file:PATH?mode=ro` to sqlite3 as a URI). A write through it fails with "attempt
    to write a readonly database" instead of taking the lock. In-memory URLs stay as they are.
    """
    from urllib.parse import quote

    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    path = parsed.database
    if not path or path == ":memory:" or parsed.query.get("mode") == "memory":
        return url
    if parsed.query.get("uri") not in ("true", "1"):
        path = "file:" + quote(path)  # SQLite decodes %XX in a URI: spaces, '?', '#'
    return (parsed.set(database=path).update_query_dict({"mode": "ro", "uri": "true"})
            .render_as_string(hide_password=False))


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


def require_storage(settings: Settings) -> None:
    """A local SQLite study file must exist: reading must not create an empty one."""
    if settings.storage.startswith("sqlite:///"):
        db = Path(settings.storage.removeprefix("sqlite:///"))
        if not db.is_file():
            raise UsageError(f"no study storage at {db}: run `search run` first or pass --storage")
