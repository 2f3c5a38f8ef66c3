"""Local web UIs on the study's state: optuna-dashboard and the MLflow UI (loopback default)."""

from __future__ import annotations

import subprocess
import sys

from search.settings import Settings, mask


def dashboard(settings: Settings, host: str, port: int) -> int:
    from optuna_dashboard import run_server

    from search.results import load_study  # noqa: F401  (validates the storage exists)
    from search.study import storage

    artifacts = settings.runs_dir / "optuna-artifacts"
    artifact_store = None
    if artifacts.is_dir():
        from optuna.artifacts import FileSystemArtifactStore

        artifact_store = FileSystemArtifactStore(str(artifacts))
    print(f"optuna-dashboard on {mask(settings.storage)}: http://{host}:{port}/  (Ctrl-C stops)",
          flush=True)
    run_server(storage(settings.storage), host=host, port=port, artifact_store=artifact_store)
    return 0


def mlflow_ui(settings: Settings, host: str, port: int) -> int:
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.tracking_uri,
           "--host", host, "--port", str(port)]
    print(f"MLflow UI on {mask(settings.tracking_uri)}: http://{host}:{port}/  (Ctrl-C stops)",
          flush=True)
    return subprocess.call(cmd)
