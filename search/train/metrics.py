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


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, score, *, rounds: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of score(y_true[idx], y_pred[idx]) over resampled rows
    (accuracy and balanced accuracy vectorised over all rounds at once)."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    if score in (accuracy, balanced_accuracy):
        index = rng.integers(0, n, (rounds, n))
        values = _resampled(np.asarray(y_true), np.asarray(y_pred), index,
                            balanced=score is balanced_accuracy)
    else:
        values = [score(y_true[idx], y_pred[idx])
                  for idx in (rng.integers(0, n, n) for _ in range(rounds))]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _resampled(y_true, y_pred, index, *, balanced: bool) -> np.ndarray:
    """Accuracy (or balanced accuracy: mean recall over the classes present) of each row of
    `index`, a [rounds, n] array of resampled row numbers."""
    correct = (y_true == y_pred)[index]  # [rounds, n]
    if not balanced:
        return correct.mean(axis=1)
    classes = np.unique(y_true)
    truth = y_true[index][..., None] == classes  # [rounds, n, k]
    seen = truth.sum(axis=1)
    recall = (truth & correct[..., None]).sum(axis=1) / np.maximum(seen, 1)
    return np.nanmean(np.where(seen > 0, recall, np.nan), axis=1)


def scores_with_ci(labels: dict[str, np.ndarray], probs: dict[str, np.ndarray], *,
          rounds: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Per head on held-out rows (a study's test rows, `search evaluate`): accuracy, balanced
    accuracy, the majority baseline of these rows, n, and 95% bootstrap intervals."""
    out = {}
    for head, y in labels.items():
        pred = probs[head].argmax(axis=1)
        out[head] = {
            "n": int(len(y)),
            "accuracy": accuracy(y, pred),
            "accuracy_ci": bootstrap_ci(y, pred, accuracy, rounds=rounds, seed=seed),
            "balanced_accuracy": balanced_accuracy(y, pred),
            "balanced_accuracy_ci": bootstrap_ci(y, pred, balanced_accuracy,
                                                 rounds=rounds, seed=seed),
            "majority": majority_baseline(y),
        }
    return out


def weak_heads(train_labels: dict, val_labels: dict, probs: dict,
               vocab: dict) -> dict[str, np.ndarray]:
    """{head: training prior} for the heads whose best-epoch validation predictions do not
    beat always answering their majority class (by one standard error)."""
    prior = priors(train_labels, vocab)
    return {h: prior[h] for h, y in val_labels.items()
            if not beats_majority(y, np.asarray(probs[h]).argmax(1), int(np.argmax(prior[h])))}


def with_priors(probs: dict, priors: dict) -> dict:
    """probs with each head of `priors` answering its prior for every row."""
    return {h: np.tile(priors[h], (len(p), 1)) if h in priors else p for h, p in probs.items()}


def confusions(vocab: dict, labels: dict, probs: dict) -> dict:
    """{"labels": {head: [...]}, "confusion": {head: k×k counts, rows = true class}}."""
    return {"labels": {h: list(v) for h, v in vocab.items()},
            "confusion": {h: confusion(labels[h], np.asarray(probs[h]).argmax(1),
                                       len(vocab[h])).tolist() for h in vocab}}
