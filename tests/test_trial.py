"""One trial on a real session: the best epoch is what is scored, logged and saved; the
majority guard; the held-out test rows; heads that fall back to their prior."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from search.engines import trial as trial_lib
from search.settings import Settings
from search.space import space as space_lib
from search.space.config import TrialConfig
from search.study.session import Options, Session
from search.track import registry

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

TINY = dict(width=8, depth=2, image_size=(32, 32), neck_units=16, head_units=0,
            batch_size=32, clr_mode="triangular", base_lr=0.003, max_lr=0.01)
FROZEN = dict(base_lr=1e-9, max_lr=2e-9)  # learns nothing: predictions stay near chance


def _session(tmp_path, csv, *, guard=None, test_fraction=None, tracking=True):
    options = Options(study="trial", data=str(csv), test_fraction=test_fraction)
    space = space_lib.Space(name="t", params=(), prune_below_majority=guard)
    made = Session.on_data(Settings.resolve(tmp_path / "runs"), options, space)
    made.use_device()
    if tracking:
        made.start_tracking()
    return made


class Recorder(trial_lib.Reporter):
    def __init__(self):
        self.steps, self.pruned, self.results = [], [], []

    def epoch(self, step, logs, judged=True):
        self.steps.append((step, logs["val_mean_accuracy"]))

    def finished(self, result):
        self.results.append(result)


def test_the_best_epoch_is_scored_logged_and_saved(tmp_path, tiny_csv):
    session = _session(tmp_path, tiny_csv)
    reporter = Recorder()
    result = trial_lib.run(TrialConfig(**TINY, epochs=4), session, reporter)
    by_step = dict(reporter.steps)
    best = max(by_step, key=by_step.get)
    assert result.best_epoch == best and len(by_step) == 4
    assert result.summary["mean_accuracy"] == pytest.approx(by_step[best])
    run = mlflow.MlflowClient(session.settings.tracking_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["search.state"] == "COMPLETE"
    assert run.data.metrics["best_epoch"] == best
    assert run.data.metrics["final_mean_accuracy"] == pytest.approx(by_step[best])
    # the saved model is that epoch's: it scores the validation rows as logged
    net, vocab = registry.load(_pulled(session, result, tmp_path))
    from search.data.table import decode

    images = [decode(p) for p in session.table.frame["path"].iloc[session.val_rows]]
    probs = registry.predict_probs(net, images)
    labels = session.table.labels(session.val_rows)
    accuracy = np.mean([np.mean(probs[h].argmax(1) == labels[h]) for h in labels])
    assert accuracy == pytest.approx(by_step[best], abs=1e-6)
    assert reporter.results == [result]


def _pulled(session, result, tmp_path):
    with registry_uri(session):
        return str(registry.pull(result.model_uri, tmp_path / "pulled"))


def registry_uri(session):
    from search.track.tracking import using

    return using(session.settings.tracking_uri)


def test_a_trial_below_the_majority_baseline_is_pruned_by_the_guard(tmp_path, tiny_csv):
    session = _session(tmp_path, tiny_csv, guard={"after_epoch": 1, "margin": 0.0})
    with pytest.raises(trial_lib.Pruned, match="below the majority baseline after epoch 1"):
        trial_lib.run(TrialConfig(**{**TINY, **FROZEN}, epochs=3), session)
    run = mlflow.MlflowClient(session.settings.tracking_uri).search_runs(
        [session.tracking.tracker.experiment_id], "tags.`search.role` = 'trial'")[0]
    assert run.info.status == "KILLED" and run.data.tags["search.state"] == "PRUNED"


def test_a_trial_whose_fit_raises_leaves_its_run_failed_with_the_reason(tmp_path, tiny_csv):
    class Broken(trial_lib.Reporter):
        def epoch(self, step, logs, judged=True):
            raise RuntimeError("the reporter broke")

    session = _session(tmp_path, tiny_csv)
    with pytest.raises(RuntimeError, match="the reporter broke"):
        trial_lib.run(TrialConfig(**TINY, epochs=2), session, Broken())
    run = mlflow.MlflowClient(session.settings.tracking_uri).search_runs(
        [session.tracking.tracker.experiment_id], "tags.`search.role` = 'trial'")[0]
    assert run.info.status == "FAILED" and run.data.tags["search.state"] == "FAILED"
    assert run.data.tags["search.reason"] == "RuntimeError: the reporter broke"
    assert "val_mean_accuracy" in run.data.metrics  # its first epoch was logged


def test_without_a_pruning_engine_the_guard_stops_the_trial_early(tmp_path, tiny_csv):
    class Stop(trial_lib.Reporter):
        def prune(self, reason):
            return None  # keras-tuner's way: no pruned state, stop and score

    session = _session(tmp_path, tiny_csv, guard={"after_epoch": 1, "margin": 0.0},
                       tracking=False)
    result = trial_lib.run(TrialConfig(**{**TINY, **FROZEN}, epochs=3), session, Stop())
    assert result.notes["stopped"].startswith("below the majority baseline after epoch 1")
    assert result.notes["train.epochs"] == 1


def test_test_rows_are_held_back_and_scored_at_the_best_epoch(tmp_path, tiny_csv):
    session = _session(tmp_path, tiny_csv, test_fraction=0.25)
    assert len(session.test_rows) == 40
    assert not set(session.test_rows) & (set(session.train_rows) | set(session.val_rows))
    result = trial_lib.run(TrialConfig(**TINY, epochs=2), session)
    assert set(result.test) == set(session.table.heads)
    gender = result.test["gender"]
    assert gender["n"] == 40 and gender["accuracy_ci"][0] <= gender["accuracy"] \
        <= gender["accuracy_ci"][1]
    run = mlflow.MlflowClient(session.settings.tracking_uri).get_run(result.run_id)
    assert run.data.metrics["test_gender_accuracy"] == pytest.approx(gender["accuracy"])
    assert "test_mean_accuracy" in run.data.metrics


def test_heads_that_learned_nothing_answer_their_prior(tmp_path, tiny_csv):
    """With no learning no head beats its majority class: every head of the saved model
    answers the training prior, so it predicts the majority class for any image."""
    session = _session(tmp_path, tiny_csv)
    result = trial_lib.run(TrialConfig(**{**TINY, **FROZEN}, epochs=1,
                                       majority_fallback=True), session)
    assert set(result.priors) == set(session.table.heads)
    train = session.table.labels(session.train_rows)
    for head, s in result.scores.items():
        assert s["accuracy"] == pytest.approx(s["majority"])  # exactly the majority answer
    net, vocab = registry.load(_pulled(session, result, tmp_path))
    answers = registry.predict_arrays(net, vocab, [np.zeros((50, 40, 3), np.uint8)])[0]
    for head, labels in vocab.items():
        majority = labels[int(np.bincount(train[head]).argmax())]
        assert answers[head]["label"] == majority


def test_beats_majority_needs_more_than_one_standard_error():
    from search.train.metrics import beats_majority

    y = np.array([0] * 60 + [1] * 40)
    assert not beats_majority(y, np.zeros(100, int), 0)  # the majority answer itself
    better = np.where(np.arange(100) < 80, y, 1 - y)  # right on 80 rows, majority on 60
    assert beats_majority(y, better, 0)
    slightly = np.zeros(100, int)
    slightly[0:2] = 1  # wrong on 2 rows the majority answer gets right
    slightly[60:64] = 1  # right on 4 it gets wrong: 62 against 60, within one standard error
    assert not beats_majority(y, slightly, 0)
