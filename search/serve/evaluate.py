"""`search evaluate`: score a saved model on a labelled CSV (hold-out data), per head.

Uses the model's own label vocabulary (a label it does not know is a data error, not a
silent miss), feeds raw images through the saved model exactly as `predict` does, and
reports accuracy, balanced accuracy and the majority baseline with 95% bootstrap confidence
intervals (percentile method, rows resampled with a fixed seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from search.train import metrics
from search.settings import Settings


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, score, *, rounds: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of score(y_true[idx], y_pred[idx]) over resampled rows
    (accuracy and balanced accuracy vectorised over all rounds at once)."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    if score in (metrics.accuracy, metrics.balanced_accuracy):
        index = rng.integers(0, n, (rounds, n))
        values = _resampled(np.asarray(y_true), np.asarray(y_pred), index,
                            balanced=score is metrics.balanced_accuracy)
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


def score(labels: dict[str, np.ndarray], probs: dict[str, np.ndarray], *,
          rounds: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Per head: accuracy, balanced accuracy, majority baseline, n, and their 95% CIs."""
    out = {}
    for head, y in labels.items():
        pred = probs[head].argmax(axis=1)
        out[head] = {
            "n": int(len(y)),
            "accuracy": metrics.accuracy(y, pred),
            "accuracy_ci": bootstrap_ci(y, pred, metrics.accuracy, rounds=rounds, seed=seed),
            "balanced_accuracy": metrics.balanced_accuracy(y, pred),
            "balanced_accuracy_ci": bootstrap_ci(y, pred, metrics.balanced_accuracy,
                                                 rounds=rounds, seed=seed),
            "majority": metrics.majority_baseline(y),
        }
    return out


def evaluate(settings: Settings, model: str, csv: str, *, rounds: int = 1000,
             json_out: str | None = None, on_bad_images: str = "error") -> int:
    from search.track import registry
    from search.data.table import decode, read_table
    from search.track.tracking import using

    with using(settings.tracking_uri):
        net, vocab = registry.load(model)
    table = read_table(csv, tuple(vocab), vocab=vocab, on_bad_images=on_bad_images)
    probs = registry.predict_probs(net, [decode(p) for p in table.paths])
    scores = score(table.labels(), probs, rounds=rounds)
    print(f"{model} on {csv} ({len(table)} images); 95% bootstrap intervals, {rounds} rounds")
    print(f"  {'head':<14}{'accuracy':>22}{'balanced':>22}{'majority':>10}")
    for head, s in scores.items():
        acc = f"{s['accuracy']:.3f} [{s['accuracy_ci'][0]:.3f}, {s['accuracy_ci'][1]:.3f}]"
        bal = (f"{s['balanced_accuracy']:.3f} [{s['balanced_accuracy_ci'][0]:.3f}, "
               f"{s['balanced_accuracy_ci'][1]:.3f}]")
        print(f"  {head:<14}{acc:>22}{bal:>22}{s['majority']:>10.3f}")
    if json_out:
        Path(json_out).write_text(json.dumps({"model": model, "data": str(csv),
                                              "heads": scores}, indent=2))
        print(f"wrote {json_out}")
    return 0
