"""Keras callbacks of a trial, one job each.

`HeadEvaluator` scores every head on the validation images after each epoch and writes the
numbers into `logs`, so the callbacks after it (pruning, MLflow, history) all read the same
keys: `val_<head>_accuracy`, `val_<head>_balanced_accuracy`, `val_<head>_loss`,
`val_mean_accuracy`, `val_mean_balanced_accuracy`.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from search import metrics


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


class HeadEvaluator(keras.callbacks.Callback):
    def __init__(self, val_dataset, val_labels: dict[str, np.ndarray],
                 train_labels: dict[str, np.ndarray] | None = None):
        super().__init__()
        self.val_dataset = val_dataset
        self.val_labels = val_labels
        self.train_labels = train_labels
        self.scores: dict[str, dict[str, float]] = {}
        self.probs: dict[str, np.ndarray] = {}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self.probs = self.model.predict(self.val_dataset, verbose=0)
        self.scores = metrics.head_scores(self.val_labels, self.probs, self.train_labels)
        for head, s in self.scores.items():
            logs[f"val_{head}_accuracy"] = s["accuracy"]
            logs[f"val_{head}_balanced_accuracy"] = s["balanced_accuracy"]
            logs[f"val_{head}_loss"] = s["loss"]
        summary = metrics.summary(self.scores)
        logs["val_mean_accuracy"] = summary["mean_accuracy"]
        logs["val_mean_balanced_accuracy"] = summary["mean_balanced_accuracy"]
        logs["val_loss"] = summary["mean_loss"]


class TrainTimer(keras.callbacks.Callback):
    """Seconds spent in training epochs, before any end-of-epoch evaluation (put it first)."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.epochs = 0
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._start
        self.epochs += 1


class StopOnNonFinite(keras.callbacks.Callback):
    """Raise (so the trial is recorded as failed with a reason) when the loss is NaN/inf."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(f"training loss became {loss} in epoch {epoch + 1}")


class Reporting(keras.callbacks.Callback):
    """Hand each epoch's logs to the trial's reporter (which may stop the trial: pruning)."""

    def __init__(self, reporter, offset: int = 0):
        super().__init__()
        self.reporter = reporter
        self.offset = offset  # epochs of earlier stages, so steps count across stages

    def on_epoch_end(self, epoch, logs=None):
        self.reporter.epoch(self.offset + epoch + 1, logs or {})


class EpochLogger(keras.callbacks.Callback):
    """Per-epoch metrics to the trial's MLflow run; checks the expected keys after epoch 1."""

    def __init__(self, run, expected_keys: list[str]):
        super().__init__()
        self.run = run
        self.expected = expected_keys

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        missing = [k for k in self.expected if k not in logs]
        if missing:
            raise KeyError(f"expected metric(s) {missing} not logged; got {sorted(logs)}")
        if self.run is not None:
            self.run.log_metrics({k: v for k, v in logs.items()
                                  if isinstance(v, (int, float, np.floating))}, step=epoch + 1)
