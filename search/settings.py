"""Where state lives: the runs/ folder, the Optuna storage URL and the MLflow tracking URI.

Every command takes `--runs-dir`, `--storage` and `--tracking-uri`; each falls back to an
environment variable (SEARCH_RUNS_DIR, SEARCH_STORAGE, MLFLOW_TRACKING_URI) and then to local
SQLite files under runs/. Passwords in URLs are masked wherever a URL is shown or logged.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    runs_dir: Path
    storage: str
    tracking_uri: str

    @classmethod
    def resolve(cls, runs_dir=None, storage=None, tracking_uri=None) -> "Settings":
        runs = Path(runs_dir or os.environ.get("SEARCH_RUNS_DIR") or "runs").resolve()
        storage = storage or os.environ.get("SEARCH_STORAGE") or f"sqlite:///{runs / 'optuna.db'}"
        tracking = (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                    or f"sqlite:///{runs / 'mlflow.db'}")
        return cls(runs_dir=runs, storage=storage, tracking_uri=tracking)

    @property
    def artifact_root(self) -> Path:
        return self.runs_dir / "mlartifacts"

    @property
    def cache_dir(self) -> Path:
        return self.runs_dir / "cache"

    def ensure(self) -> None:
        """Create runs/ (only when local state is used)."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)


_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@\s]+)(?=@)")


def mask(text: str) -> str:
    """'postgresql://user:secret@host/db' → 'postgresql://user:***@host/db' (anywhere in text)."""
    return _PASSWORD.sub(lambda m: m.group("head") + "***", str(text))
