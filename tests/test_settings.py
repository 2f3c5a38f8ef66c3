"""Where state lives, and that passwords never show."""

from pathlib import Path

import pytest

from search.settings import Settings, mask


def test_defaults_are_sqlite_files_under_runs(tmp_path, monkeypatch):
    for name in ("SEARCH_RUNS_DIR", "SEARCH_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    s = Settings.resolve()
    assert s.runs_dir == tmp_path / "runs"
    assert s.storage == f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}"
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert s.artifact_root == tmp_path / "runs" / "mlartifacts"
    assert not s.runs_dir.exists()  # nothing written until a command needs it
    s.ensure()
    assert s.runs_dir.is_dir()


def test_flags_win_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCH_RUNS_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("SEARCH_STORAGE", "postgresql://u:p@127.0.0.1/env")
    s = Settings.resolve(runs_dir=tmp_path / "flag", tracking_uri="http://127.0.0.1:5000")
    assert s.runs_dir == Path(tmp_path / "flag")
    assert s.storage == "postgresql://u:p@127.0.0.1/env"
    assert s.tracking_uri == "http://127.0.0.1:5000"


@pytest.mark.parametrize("text, shown", [
    ("postgresql://user:s3cr:et@db:5432/x", "postgresql://user:***@db:5432/x"),
    ("could not connect to postgresql+psycopg2://a:b@h/d (timeout)",
     "could not connect to postgresql+psycopg2://a:***@h/d (timeout)"),
    ("sqlite:////tmp/optuna.db", "sqlite:////tmp/optuna.db"),
    ("http://host:5000/path", "http://host:5000/path"),
])
def test_mask_hides_passwords_anywhere_in_text(text, shown):
    assert mask(text) == shown
