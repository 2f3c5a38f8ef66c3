"""Keras callbacks of a trial, one job each.

`HeadEvaluator` scores every head on the validation inputs after each epoch and writes the
numbers into `logs`, so the callbacks after it (best epoch, pruning, MLflow, history) all read
the same keys: `val_<head>_accuracy`, `val_<head>_balanced_accuracy`, `val_<head>_loss`,
`val_mean_accuracy`, `val_mean_balanced_accuracy`. A trial of several stages numbers its
epochs on (`offset`: the epochs of the stages before).
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from search.train import metrics
from search.train.steps import stage_step


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
        logs["val_mean_majority"] = float(np.mean([s["majority"] for s in self.scores.values()]))
        logs["val_loss"] = summary["mean_loss"]


class AveragedWeights(keras.callbacks.Callback):
    """Under `use_ema`: between epochs the model holds the optimizer's moving average of its
    trainable weights, so whatever reads the weights at an epoch's end (`HeadEvaluator`,
    `BestEpoch`, pruning) sees the average; the next epoch trains on from the raw weights.

    Put it before every callback that reads the weights. Not `keras.callbacks.SwapEMAWeights`:
    that swaps by adding and subtracting (under TensorFlow), which moves the raw weights by a
    rounding error each epoch, and it hands the average back to the optimizer only after the
    last epoch, so a stage stopped early (patience, the majority guard) would end on its raw
    weights after Keras's `finalize_variable_values`. Here the raw values wait in memory (the
    trainable weights only) and the optimizer keeps its average, so a stage always ends on it.
    """

    def __init__(self):
        super().__init__()
        self._raw: list | None = None

    def _pairs(self) -> list:
        """(variable, its average) for each trainable variable the optimizer averages."""
        opt = self.model.optimizer
        opt = getattr(opt, "inner_optimizer", opt)  # under a LossScaleOptimizer
        if not getattr(opt, "use_ema", False):
            raise ValueError("AveragedWeights needs an optimizer built with use_ema=True")
        return [(v, a) for v, a in zip(opt._trainable_variables,
                                       opt._model_variables_moving_average) if a is not None]

    def on_epoch_begin(self, epoch, logs=None):
        if self._raw is not None:
            for (variable, _), raw in zip(self._pairs(), self._raw):
                variable.assign(raw)
            self._raw = None

    def on_epoch_end(self, epoch, logs=None):
        pairs = self._pairs()
        self._raw = [variable.numpy() for variable, _ in pairs]
        for variable, average in pairs:
            variable.assign(average)

    def on_train_end(self, logs=None):
        self._raw = None  # the stage ends on the average (so does finalize_variable_values)


class TrainTimer(keras.callbacks.Callback):
    """Seconds spent in training epochs, before any end-of-epoch evaluation (put it first)."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._start


class StopOnNonFinite(keras.callbacks.Callback):
    """Raise (so the trial is recorded as failed with a reason) when the loss is NaN/inf."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(f"training loss became {loss} in epoch {epoch + 1}")


class ReportEpochs(keras.callbacks.Callback):
    """Hand each epoch's logs to the trial's reporter (which may stop the trial: pruning),
    at the stage-aligned step of `search.train.steps.stage_step`."""

    def __init__(self, reporter, stage: str = "train", judged: bool = True):
        super().__init__()
        self.reporter = reporter
        self.stage = stage
        self.judged = judged  # False: a lead-in stage that pruners do not see

    def on_epoch_end(self, epoch, logs=None):
        self.reporter.epoch(stage_step(self.stage, epoch + 1), logs or {},
                            judged=self.judged)


class BestEpoch(keras.callbacks.Callback):
    """Keeps the best epoch of a whole trial on `monitor` (higher is better): the network's
    weights, the evaluator's scores and probabilities, and the test predictions. `restore`
    puts the best weights back, so what is scored, logged and saved is that epoch."""

    def __init__(self, monitor: str, net):
        super().__init__()
        self.monitor, self.net = monitor, net
        self.value, self.epoch, self.stage = -math.inf, 0, ""
        self.scores: dict = {}
        self.probs: dict = {}
        self.test_probs: dict | None = None
        self._weights: list = []
        self._watch = None

    def watching(self, evaluator, stage, offset: int) -> "BestEpoch":
        """Follow a new stage: its evaluator, its test inputs, its first epoch number."""
        self._watch = (evaluator, stage, offset)
        return self

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {}).get(self.monitor, -math.inf))
        if not value > self.value:
            return
        evaluator, stage, offset = self._watch
        self.value, self.epoch, self.stage = value, offset + epoch + 1, stage.name
        self.scores = {h: dict(s) for h, s in evaluator.scores.items()}
        self.probs = {h: np.array(p) for h, p in evaluator.probs.items()}
        self._weights = [(v, v.numpy()) for v in self.net.weights]
        if stage.test is not None:
            self.test_probs = self.model.predict(stage.test, verbose=0)

    def restore(self) -> None:
        for variable, value in self._weights:
            variable.assign(value)


class PruneBelowMajority(keras.callbacks.Callback):
    """After epoch `after`, a trial whose mean validation accuracy is below the mean
    majority-class baseline by more than `margin` cannot win: `prune(reason)` is called (an
    engine that can prune raises there); if it returns, this stage stops training."""

    def __init__(self, after: int, margin: float, prune, offset: int = 0):
        super().__init__()
        self.after, self.margin, self.prune, self.offset = after, margin, prune, offset
        self.stopped: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.offset + epoch + 1 != self.after or "val_mean_majority" not in logs:
            return
        value, majority = logs["val_mean_accuracy"], logs["val_mean_majority"]
        if value < majority - self.margin:
            self.stopped = (f"below the majority baseline after epoch {self.after}: mean "
                            f"accuracy {value:.4f} < {majority:.4f} - {self.margin:g}")
            self.prune(self.stopped)
            self.model.stop_training = True


class EpochLogger(keras.callbacks.Callback):
    """Per-epoch metrics to the trial's MLflow run (search.track.tracking's TrialRun or NullRun);
    first checks that every expected key is in the epoch's logs, so a renamed metric fails
    the trial at its first epoch instead of logging nothing."""

    def __init__(self, run, expected_keys: list[str], offset: int = 0):
        super().__init__()
        self.run = run
        self.expected = expected_keys
        self.offset = offset

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        missing = [k for k in self.expected if k not in logs]
        if missing:
            raise KeyError(f"expected metric(s) {missing} not logged; got {sorted(logs)}")
        self.run.log_metrics({k: v for k, v in logs.items()
                              if isinstance(v, (int, float, np.floating))},
                             step=self.offset + epoch + 1)
