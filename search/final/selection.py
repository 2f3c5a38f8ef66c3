"""Per-head ensemble selection over the finished trials: Caruana et al., "Ensemble selection
from libraries of models" (ICML 2004), the rule AutoGluon's weighted ensemble uses.

For each head, on the validation rows only:
- bagging: `BAGS` times, a random half of the trials is the library (against overfitting the
  validation rows: a member must win in many libraries to weigh much);
- sorted initialisation: the best 1 to `INIT` trials of the library at that head (how many:
  whichever average scores best);
- forward selection with replacement: add the trial whose inclusion scores best, up to
  `ROUNDS` picks, and keep the best prefix;
- a member's weight is how often it was picked, summed over bags (each bag weighs 1); a
  member carrying less than `MIN_WEIGHT` of a head is dropped there and the rest renormalised
  (each member is a whole network to run: a sliver of weight is not worth its cost).
The score is accuracy, ties broken by the lower log loss (accuracy moves in steps of one row).

Test-time flips are then decided per head, on the validation rows too (`flips`): the image and
its mirror averaged, where that scores better than the image alone. Nothing here reads the test
rows: the caller passes validation probabilities and labels only. No TensorFlow here.
"""

from __future__ import annotations

import zlib

import numpy as np

ROUNDS = 25  # picks per bag (Caruana: the curve is flat well before 25 with bagging)
BAGS = 20
BAG_FRACTION = 0.5  # of the trials in each bag's library
INIT = 3  # sorted initialisation: up to this many of a bag's best
MIN_WEIGHT = 1 / BAGS  # the least a member carries of a head: one bag's worth


def score(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, -log loss): higher is better on both, compared in that order."""
    probs = np.asarray(probs, np.float64)
    accuracy = float(np.mean(probs.argmax(1) == labels))
    picked = probs[np.arange(len(labels)), labels]
    return accuracy, float(np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


def select(val: dict[int, dict[str, np.ndarray]], labels: dict[str, np.ndarray], *,
           seed: int = 0) -> dict[str, dict[int, float]]:
    """{head: {trial: weight}} (weights sum to 1 per head) from each trial's validation
    probabilities ({trial: {head: [N, k]}}) and the validation labels ({head: [N]})."""
    trials = sorted(val)
    weights = {}
    for head, y in labels.items():
        stacked = np.stack([np.asarray(val[t][head], np.float64) for t in trials])
        rng = np.random.default_rng([seed, zlib.crc32(head.encode())])
        counts = _bagged(stacked, np.asarray(y), rng)
        counts[(counts < MIN_WEIGHT) & (counts < counts.max())] = 0
        counts /= counts.sum()
        weights[head] = {trials[i]: float(c) for i, c in enumerate(counts) if c > 0}
    return weights


def _bagged(stacked: np.ndarray, y: np.ndarray, rng) -> np.ndarray:
    n = len(stacked)
    counts = np.zeros(n)
    size = n if n <= 2 else max(2, int(round(BAG_FRACTION * n)))
    for _ in range(BAGS):
        library = np.sort(rng.choice(n, size=size, replace=False))
        picks = _forward(stacked, y, library)
        for i in picks:
            counts[i] += 1 / len(picks)  # every bag weighs the same
    return counts / counts.sum()


def _forward(stacked: np.ndarray, y: np.ndarray, library: np.ndarray) -> list[int]:
    """One bag's picks, with repeats: sorted initialisation, then forward selection over the
    bag's library, cut to the best-scoring prefix."""
    singles = sorted(library, key=lambda i: score(stacked[i], y), reverse=True)
    starts = [singles[:k] for k in range(1, min(INIT, len(singles)) + 1)]
    picks = max(starts, key=lambda s: score(stacked[s].mean(0), y))
    total = stacked[picks].sum(0)
    best, best_len = score(total / len(picks), y), len(picks)
    while len(picks) < ROUNDS:
        scored = [(score((total + stacked[i]) / (len(picks) + 1), y), i) for i in library]
        value, i = max(scored, key=lambda pair: pair[0])  # first of equals: library order
        picks.append(int(i))
        total += stacked[i]
        if value > best:
            best, best_len = value, len(picks)
    return picks[:best_len]


def members(weights: dict[str, dict[int, float]]) -> list[int]:
    """The distinct trials the selection uses, in order."""
    return sorted({t for per_head in weights.values() for t in per_head})


def combine(weights: dict[str, dict[int, float]], probs: dict[int, dict[str, np.ndarray]],
            mirrored: dict[int, dict[str, np.ndarray]] | None = None,
            flipped: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """{head: the weighted average of its members' probabilities}, the image and its mirror
    averaged first for the heads in `flipped`."""
    out = {}
    for head, per_trial in weights.items():
        out[head] = sum(w * (0.5 * (np.asarray(probs[t][head]) + mirrored[t][head])
                             if head in flipped else np.asarray(probs[t][head]))
                        for t, w in per_trial.items())
    return out


def flips(weights: dict[str, dict[int, float]], probs: dict[int, dict[str, np.ndarray]],
          mirrored: dict[int, dict[str, np.ndarray]], labels: dict[str, np.ndarray]
          ) -> tuple[str, ...]:
    """The heads whose selection scores better on the validation rows when each member's
    answer is the mean of the image's and its mirror's."""
    plain = combine(weights, probs)
    both = combine(weights, probs, mirrored, tuple(weights))
    return tuple(h for h in weights if score(both[h], labels[h]) > score(plain[h], labels[h]))


def cross_validated(val: dict[int, dict[str, np.ndarray]], labels: dict[str, np.ndarray], *,
                    folds: int = 2, repeats: int = 3) -> dict[str, float]:
    """An honest look, on the validation rows alone, at whether the selection beats the best
    single trial: each is chosen on all folds but one of the rows (the trial by its mean
    accuracy) and scored on the fold left out, over `repeats` random splits (one 2-fold split
    moves by a few rows' noise); {"selection", "best_trial"}: mean accuracy over heads, folds
    and repeats. Flips are not part of it (decided afterwards, on all the validation rows).
    What `search best` goes by when the study has no test rows."""
    n = len(next(iter(labels.values())))
    parts = [part for seed in range(repeats)
             for part in _folds(np.random.default_rng(seed).permutation(n), folds)]
    scores: dict[str, list[float]] = {"selection": [], "best_trial": []}

    def rows(index):
        return ({t: {h: np.asarray(p)[index] for h, p in heads.items()}
                 for t, heads in val.items()}, {h: np.asarray(y)[index] for h, y in labels.items()})

    def mean_accuracy(probs, y):
        return float(np.mean([score(probs[h], y[h])[0] for h in y]))

    for held, fit in parts:
        (val_fit, y_fit), (val_held, y_held) = rows(fit), rows(held)
        weights = select(val_fit, y_fit)
        scores["selection"].append(mean_accuracy(combine(weights, val_held), y_held))
        best = max(sorted(val_fit), key=lambda t: mean_accuracy(val_fit[t], y_fit))
        scores["best_trial"].append(mean_accuracy(val_held[best], y_held))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def _folds(order: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(held-out rows, the rest) for each fold of a permutation of the rows."""
    parts = np.array_split(order, folds)
    return [(held, np.concatenate([p for j, p in enumerate(parts) if j != k]))
            for k, held in enumerate(parts)]
