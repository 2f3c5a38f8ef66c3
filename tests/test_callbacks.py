"""The trial's Keras callbacks, each on a real (tiny) fit: the best epoch is kept and restored,
a trial below the majority baseline stops, a non-finite loss fails with a reason."""

from __future__ import annotations

import math
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from search.train.callbacks import BestEpoch, NonFiniteLoss, PruneBelowMajority, StopOnNonFinite


def _tiny_fit(callbacks, epochs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=callbacks)
    return model


class Scripted(keras.callbacks.Callback):
    """Writes chosen validation figures into each epoch's logs (what HeadEvaluator does), and
    remembers the weights each epoch ended with."""

    def __init__(self, figures: list[dict]):
        super().__init__()
        self.figures, self.weights = figures, []

    def on_epoch_end(self, epoch, logs=None):
        logs.update(self.figures[epoch])
        self.weights.append([w.numpy().copy() for w in self.model.weights])


def test_best_epoch_keeps_and_restores_the_best_weights_and_scores():
    scripted = Scripted([{"val_mean_accuracy": v} for v in (0.5, 0.7, 0.6)])
    evaluator = SimpleNamespace(scores={}, probs={})

    class Evaluate(keras.callbacks.Callback):  # the scores of each epoch, as the evaluator has
        def on_epoch_end(self, epoch, logs=None):
            evaluator.scores = {"gender": {"accuracy": logs["val_mean_accuracy"]}}
            evaluator.probs = {"gender": np.full((2, 2), epoch, dtype="float32")}

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    best = BestEpoch("val_mean_accuracy", model)
    best.watching(evaluator, SimpleNamespace(name="probe", test=None), offset=4)
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(x, (x[:, 0] > 0).astype("int64"), epochs=3, batch_size=8, verbose=0,
              callbacks=[scripted, Evaluate(), best])
    assert (best.epoch, best.stage, best.value) == (4 + 2, "probe", 0.7)
    assert best.scores == {"gender": {"accuracy": 0.7}}
    assert best.probs["gender"][0, 0] == 1  # the second epoch's probabilities
    last = [w.numpy().copy() for w in model.weights]
    assert not all(np.array_equal(a, b) for a, b in zip(last, scripted.weights[1]))
    best.restore()
    for now, kept in zip(model.weights, scripted.weights[1]):
        np.testing.assert_array_equal(now.numpy(), kept)


def test_pruning_below_majority_stops_a_trial_below_the_baseline_after_its_epoch():
    reasons = []
    scripted = Scripted([{"val_mean_accuracy": 0.40, "val_mean_majority": 0.55}] * 6)
    guard = PruneBelowMajority(after=2, margin=0.03, prune=reasons.append)
    _tiny_fit([scripted, guard], epochs=6)
    assert len(scripted.weights) == 2  # stopped at epoch 2, not 6
    assert guard.stopped == reasons[0]
    assert "below the majority baseline after epoch 2" in reasons[0]


def test_pruning_below_majority_lets_a_trial_within_the_margin_go_on():
    scripted = Scripted([{"val_mean_accuracy": 0.53, "val_mean_majority": 0.55}] * 4)
    guard = PruneBelowMajority(after=2, margin=0.03, prune=pytest.fail)
    _tiny_fit([scripted, guard], epochs=4)
    assert len(scripted.weights) == 4 and guard.stopped is None


def test_pruning_below_majority_counts_epochs_across_stages():
    """In a second stage (offset 3 epochs), epoch `after` = 2 has already passed: no check."""
    scripted = Scripted([{"val_mean_accuracy": 0.1, "val_mean_majority": 0.55}] * 3)
    guard = PruneBelowMajority(after=2, margin=0.03, prune=pytest.fail, offset=3)
    _tiny_fit([scripted, guard], epochs=3)
    assert len(scripted.weights) == 3


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_a_non_finite_loss_fails_the_trial_with_the_epoch(loss):
    with pytest.raises(NonFiniteLoss, match="epoch 3"):
        StopOnNonFinite().on_epoch_end(2, {"loss": loss})
    StopOnNonFinite().on_epoch_end(2, {"loss": 0.3})  # finite: nothing happens
