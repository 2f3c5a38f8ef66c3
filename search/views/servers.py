"""Local web UIs on the study's state: optuna-dashboard and the MLflow UI (loopback default)."""

from __future__ import annotations

import os
import sys

from search.settings import Settings, mask


def dashboard(settings: Settings, host: str, port: int, study: str | None = None) -> int:
    """optuna-dashboard on the storage opened read-only (search.study.storage): beside a running
    `search run` it never takes SQLite's write lock, so neither side sees "database is locked"
    (optuna-dashboard#545). What the dashboard would write (notes, study edits, uploads) is
    refused. Trial artifacts are served from runs/optuna-artifacts, also when the dashboard
    started before the first trial wrote any."""
    from optuna_dashboard import run_server

    from search.study.storage import require_storage, storage
    from search.track import artifacts

    require_storage(settings)
    opened = storage(settings.storage, read_only=True)
    page = ""
    if study:
        try:
            page = f"dashboard/studies/{opened.get_study_id_from_name(study)}"
        except KeyError:
            from search.errors import UsageError

            raise UsageError(f"no study named {study!r} in {mask(settings.storage)}; "
                             f"`search studies` lists them") from None
    print(f"optuna-dashboard on {mask(settings.storage)} (read-only): http://{host}:{port}/"
          f"{page}  (Ctrl-C stops)", flush=True)
    run_server(opened, host=host, port=port,
               artifact_store=artifacts.store(settings.runs_dir, create=False))
    return 0


def mlflow_ui(settings: Settings, host: str, port: int) -> int:
    """Replace this process with `mlflow ui`, so Ctrl-C and SIGTERM reach the server itself
    (and its workers) instead of orphaning them. One worker and no background job runner:
    a UI for one person, not a team server (see docs/cluster.md for `mlflow server`)."""
    # The store URI travels in the environment, not argv, so a password in it stays out of `ps`.
    os.environ["MLFLOW_BACKEND_STORE_URI"] = settings.tracking_uri
    cmd = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port),
           "--workers", "1"]
    print(f"MLflow UI on {mask(settings.tracking_uri)}: http://{host}:{port}/  (Ctrl-C stops)",
          flush=True)
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, cmd)
