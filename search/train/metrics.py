"""Per-head scores from predicted probabilities: accuracy, balanced accuracy, majority baseline.

Plain numpy, so the same numbers come out of a trial, `evaluate` and the tests. Balanced
accuracy is the mean recall over the classes present in y_true: a head that always predicts
the majority class scores 1/k there, however imbalanced the data.
"""

from __future__ import annotations

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    classes = np.unique(y_true)
    if not len(classes):
        return float("nan")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def majority_baseline(y_true: np.ndarray, y_train: np.ndarray | None = None) -> float:
    """Accuracy of always predicting the most frequent class (of y_train when given)."""
    reference = y_true if y_train is None else y_train
    majority = np.bincount(reference).argmax()
    return float(np.mean(y_true == majority))


def cross_entropy(y_true: np.ndarray, probs: np.ndarray) -> float:
    picked = probs[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((k, k), dtype=np.int64)
    np.add.at(out, (y_true, y_pred), 1)
    return out


def beats_majority(y_true: np.ndarray, y_pred: np.ndarray, majority: int,
                   z: float = 1.0) -> bool:
    """Whether predictions beat always answering `majority` on these rows by more than z
    standard errors of the paired difference (McNemar: b rows only the predictions get
    right, c rows only the majority answer gets right; b - c > z * sqrt(b + c))."""
    right, baseline = y_pred == y_true, y_true == majority
    b, c = int(np.sum(right & ~baseline)), int(np.sum(~right & baseline))
    return bool(b - c > z * np.sqrt(b + c))


def priors(labels: dict[str, np.ndarray], vocab: dict) -> dict[str, np.ndarray]:
    """Class frequencies per head (float32), e.g. of the training rows."""
    return {h: (np.bincount(y, minlength=len(vocab[h])) / max(len(y), 1)).astype(np.float32)
            for h, y in labels.items()}


def head_scores(labels: dict[str, np.ndarray], probs: dict[str, np.ndarray],
                train_labels: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """{head: {accuracy, balanced_accuracy, majority, loss}} for every head."""
    out = {}
    for head, y in labels.items():
        p = np.asarray(probs[head])
        pred = p.argmax(axis=1)
        out[head] = {
            "accuracy": accuracy(y, pred),
            "balanced_accuracy": balanced_accuracy(y, pred),
            "majority": majority_baseline(y, None if train_labels is None else train_labels[head]),
            "loss": cross_entropy(y, p),
        }
    return out


def summary(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Means over heads: the study objectives."""
    return {
        "mean_accuracy": float(np.mean([s["accuracy"] for s in scores.values()])),
        "mean_balanced_accuracy": float(np.mean([s["balanced_accuracy"] for s in scores.values()])),
        "mean_loss": float(np.mean([s["loss"] for s in scores.values()])),
    }
