"""A trial's predicted probabilities on the validation and test rows, stored beside its other
artifacts (`probabilities.npz`), so the final step can choose among every finished trial
(`search.final.selection`) without loading and running each trial's model again.

The file holds, per part (`val`, `test`), the row indices of the table it predicted and one
[rows, classes] float32 array per head: what the trial's saved model answers on those rows at
its best epoch (heads falling back to their prior answer the prior). A few hundred KB for the
hvc split. A reader checks the rows against its own split and ignores a file that differs.
No TensorFlow here.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "probabilities.npz"
PARTS = ("val", "test")


@dataclass(frozen=True)
class Stored:
    """One trial's stored probabilities: {part: row indices} and {part: {head: [N, k]}}."""

    rows: dict[str, np.ndarray]
    probs: dict[str, dict[str, np.ndarray]]

    def matches(self, rows: dict[str, np.ndarray]) -> bool:
        """Whether it predicted exactly these rows, part by part (the same split)."""
        return all(part in self.rows and np.array_equal(self.rows[part], np.asarray(wanted))
                   for part, wanted in rows.items() if len(wanted))

    def fits(self, part: str, shapes: dict[str, tuple[int, int]]) -> bool:
        """Whether `part` holds every head at its [rows, classes] shape (a study resumed on
        other labels stored other shapes)."""
        probs = self.probs.get(part, {})
        return all(h in probs and probs[h].shape == shape for h, shape in shapes.items())


def write(run_, rows: dict[str, np.ndarray], probs: dict[str, dict | None]) -> None:
    """Log {part: {head: probabilities}} with each part's row indices to the trial's run (a
    search.track.tracking TrialRun; nothing for a NullRun). Parts that are None are left out."""
    if not run_.tracked:
        return
    arrays = {}
    for part in PARTS:
        if probs.get(part) is None:
            continue
        arrays[f"{part}/rows"] = np.asarray(rows[part], np.int64)
        for head, p in probs[part].items():
            arrays[f"{part}/{head}"] = np.asarray(p, np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FILE
        np.savez_compressed(path, **arrays)
        run_.log_file(path)


def read(client, run_id: str) -> Stored | None:
    """The probabilities a trial's run stored, or None (a trial made before they were stored,
    a run without the file)."""
    from mlflow.exceptions import MlflowException

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, FILE, tmp)
            with np.load(path) as data:
                arrays = {key: data[key] for key in data.files}
    except (MlflowException, OSError):
        return None
    return parse(arrays)


def parse(arrays: dict[str, np.ndarray]) -> Stored:
    rows, probs = {}, {}
    for key, value in arrays.items():
        part, name = key.split("/", 1)
        if name == "rows":
            rows[part] = value
        else:
            probs.setdefault(part, {})[name] = value
    return Stored(rows, probs)
