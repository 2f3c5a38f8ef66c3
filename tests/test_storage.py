"""Optuna storages: heartbeat settings from the environment, SQLite switched to WAL."""

from __future__ import annotations

import sqlite3

import pytest

from search import storage as storage_lib
from search.errors import UsageError


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
