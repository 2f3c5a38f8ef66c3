"""Optuna storages: heartbeat settings from the environment, SQLite switched to WAL, readers
that cannot write."""

from __future__ import annotations

import sqlite3

import optuna
import pytest

from search.errors import UsageError
from search.study import storage as storage_lib


def test_heartbeat_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SEARCH_HEARTBEAT_INTERVAL", "2")
    assert storage_lib.heartbeat() == (2, 8)
    monkeypatch.setenv("SEARCH_HEARTBEAT_GRACE", "2")
    with pytest.raises(UsageError, match="must be longer than SEARCH_HEARTBEAT_INTERVAL"):
        storage_lib.heartbeat()
    monkeypatch.setenv("SEARCH_HEARTBEAT_INTERVAL", "soon")
    with pytest.raises(UsageError, match="whole number of seconds"):
        storage_lib.heartbeat()


def test_local_sqlite_storage_is_switched_to_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    storage_lib.storage(url)
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_bad_storage_url_is_a_usage_error_with_the_password_masked():
    with pytest.raises(UsageError, match="cannot open study storage") as caught:
        storage_lib.storage("postgresql+nosuchdriver://u:secret@127.0.0.1/db")
    assert "secret" not in str(caught.value) and "u:***@" in str(caught.value)


def test_a_reader_reads_beside_a_writer_and_can_never_write(tmp_path):
    """The storage the dashboard and the reading commands get: no heartbeat, a read-only
    SQLite connection that refuses writes, and, in WAL mode, a writer that commits while the
    reader holds a read transaction (a path with a space and a '#' still opens)."""
    folder = tmp_path / "my runs #1"
    folder.mkdir()
    db = folder / "o.db"
    url = f"sqlite:///{db}"
    study = optuna.create_study(storage=storage_lib.storage(url), study_name="s")
    study.add_trial(optuna.create_trial(value=0.5))
    before = db.stat().st_mtime_ns, db.read_bytes()

    reader = storage_lib.storage(url, read_only=True)
    assert reader.heartbeat_interval is None and reader.get_heartbeat_interval() is None
    loaded = optuna.load_study(study_name="s", storage=reader)
    assert loaded.best_value == 0.5
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        loaded.set_user_attr("note", "from the dashboard")
    assert "readonly database" in str(refused.value.__cause__)
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before  # opening wrote nothing

    writer = sqlite3.connect(db, timeout=0)  # no waiting: a lock held by the reader would fail
    with reader.engine.connect() as held:
        held.exec_driver_sql("BEGIN")
        assert held.exec_driver_sql("SELECT count(*) FROM trials").scalar() == 1
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE trials SET number = number")
        writer.commit()
    writer.close()
    study.add_trial(optuna.create_trial(value=0.7))
    study_id = reader.get_study_id_from_name("s")
    assert len(reader.get_all_trials(study_id)) == 2  # it sees new trials as they come


def test_an_unreachable_server_is_the_project_s_one_line():
    """Not SQLAlchemy's multi-line error with its 'Background on this error at:
    https://sqlalche.me/...' tail (issue 21): where it points, why, what to check; masked."""
    pytest.importorskip("psycopg2")
    with pytest.raises(UsageError) as caught:
        storage_lib.storage("postgresql+psycopg2://u:secret@127.0.0.1:1/db")
    text = str(caught.value)
    assert "\n" not in text and "sqlalche.me" not in text and "Background" not in text
    assert text.startswith("cannot open study storage postgresql+psycopg2://u:***@127.0.0.1:1/db "
                           "(host 127.0.0.1, port 1): ")
    assert "Connection refused" in text and "secret" not in text
    assert text.endswith("check that the database server runs there and accepts connections "
                         "from this machine, and the user, password and database name; or fix "
                         "--storage / SEARCH_STORAGE")
    assert "(host 127.0.0.1, port 5432)" in storage_lib.open_error(
        "postgresql://u:secret@127.0.0.1/db", RuntimeError("refused"))
