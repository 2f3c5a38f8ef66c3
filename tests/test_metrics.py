"""Per-head scores: the numbers a trial, `evaluate` and the pruner all compare."""

import numpy as np
import pytest

from search.train import metrics


def test_balanced_accuracy_of_the_majority_answer_is_one_over_k():
    y = np.array([0] * 90 + [1] * 8 + [2] * 2)
    always = np.zeros_like(y)
    assert metrics.accuracy(y, always) == pytest.approx(0.9)
    assert metrics.balanced_accuracy(y, always) == pytest.approx(1 / 3)
    assert metrics.majority_baseline(y) == pytest.approx(0.9)


def test_majority_comes_from_the_training_rows_when_given():
    val, train = np.array([1, 1, 0]), np.array([0, 0, 0, 1])
    assert metrics.majority_baseline(val, train) == pytest.approx(1 / 3)  # class 0 of train


def test_empty_rows_score_nan_not_an_error():
    empty = np.array([], dtype=int)
    assert np.isnan(metrics.accuracy(empty, empty))
    assert np.isnan(metrics.balanced_accuracy(empty, empty))


def test_confusion_counts_rows_as_true_class():
    out = metrics.confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert out.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


@pytest.mark.parametrize("gained, lost, beats", [(10, 0, True), (10, 8, False), (3, 3, False),
                                                 (0, 0, False), (30, 15, True)])
def test_beats_majority_needs_more_than_one_standard_error(gained, lost, beats):
    """McNemar on the rows where the two answers differ: b - c > sqrt(b + c)."""
    n_same = 50
    y = np.array([1] * gained + [0] * lost + [0] * n_same)
    pred = np.array([1] * gained + [1] * lost + [0] * n_same)
    assert metrics.beats_majority(y, pred, majority=0) is beats


def test_head_scores_and_summary():
    labels = {"a": np.array([0, 1, 1, 1]), "b": np.array([2, 0, 0, 0])}
    probs = {"a": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]]),
             "b": np.eye(3)[[2, 0, 0, 1]] * 0.98 + 0.0066}
    scores = metrics.head_scores(labels, probs)
    assert scores["a"]["accuracy"] == pytest.approx(0.75)
    assert scores["a"]["balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["b"]["majority"] == pytest.approx(0.75)
    assert scores["a"]["loss"] > 0
    summary = metrics.summary(scores)
    assert summary["mean_accuracy"] == pytest.approx(0.75)
    assert set(summary) == {"mean_accuracy", "mean_balanced_accuracy", "mean_loss"}


def test_priors_are_class_frequencies_with_unseen_classes_at_zero():
    out = metrics.priors({"h": np.array([0, 0, 2, 2])}, {"h": ["x", "y", "z"]})
    assert out["h"].tolist() == [0.5, 0.0, 0.5] and out["h"].dtype == np.float32
