"""Local web UIs on the study's state: optuna-dashboard and the MLflow UI (loopback default)."""

from __future__ import annotations

import os
import sys

from search.settings import Settings, mask


def dashboard(settings: Settings, host: str, port: int) -> int:
    from optuna_dashboard import run_server

    from search import artifacts
    from search.results import require_storage
    from search.storage import storage

    require_storage(settings)
    artifact_store = None
    if (settings.runs_dir / artifacts.STORE_DIR).is_dir():
        artifact_store = artifacts.store(settings.runs_dir)
    print(f"optuna-dashboard on {mask(settings.storage)}: http://{host}:{port}/  (Ctrl-C stops)",
          flush=True)
    run_server(storage(settings.storage), host=host, port=port, artifact_store=artifact_store)
    return 0


def mlflow_ui(settings: Settings, host: str, port: int) -> int:
    """Replace this process with `mlflow ui`, so Ctrl-C and SIGTERM reach the server itself
    (and its workers) instead of orphaning them. One worker and no background job runner:
    a UI for one person, not a team server (see README for `mlflow server`)."""
    # The store URI travels in the environment, not argv, so a password in it stays out of `ps`.
    os.environ["MLFLOW_BACKEND_STORE_URI"] = settings.tracking_uri
    cmd = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port),
           "--workers", "1"]
    print(f"MLflow UI on {mask(settings.tracking_uri)}: http://{host}:{port}/  (Ctrl-C stops)",
          flush=True)
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, cmd)
