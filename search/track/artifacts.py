"""Per-trial files for optuna-dashboard's trial view, through Optuna's artifact API.

Each finished trial gets its resolved config (YAML), per-epoch learning curves (JSON and a
plotly HTML) and per-head confusion matrices (JSON), stored in a FileSystemArtifactStore under
runs/optuna-artifacts, which `search dashboard` serves.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

STORE_DIR = "optuna-artifacts"


def store(runs_dir: Path, create: bool = True):
    """The store under runs_dir. A reader (the dashboard) passes create=False: it may start
    before the first trial uploads, and then finds the files once they are there."""
    from optuna.artifacts import FileSystemArtifactStore

    folder = Path(runs_dir) / STORE_DIR
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def upload(artifact_store, trial, *, config: dict, history: dict, confusion: dict) -> list[str]:
    """Write and upload the trial's files; returns the artifact ids."""
    from optuna.artifacts import upload_artifact

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {
            "config.yaml": yaml.safe_dump(config, sort_keys=True),
            "learning_curves.json": json.dumps(history, indent=1),
            "confusion.json": json.dumps(confusion, indent=1),
            "learning_curves.html": curves_html(history),
        }
        ids = []
        for name, text in files.items():
            path = tmp / name
            path.write_text(text)
            ids.append(upload_artifact(artifact_store=artifact_store, file_path=str(path),
                                       study_or_trial=trial))
    return ids


def curves_html(history: dict) -> str:
    """Per-head validation accuracy by epoch, one self-contained plotly page."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, values in sorted(history.items()):
        if key.startswith("val_") and key.endswith("_accuracy") and "balanced" not in key:
            fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values,
                                     mode="lines+markers", name=key[4:-9]))
    fig.update_layout(title="validation accuracy per head", xaxis_title="epoch",
                      yaxis_title="accuracy")
    return fig.to_html(include_plotlyjs=True, full_html=True)
