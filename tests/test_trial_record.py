"""The trial record (search.study.trial_record): written to a real Optuna trial in a SQLite study
and read back whole; a trial written with the attribute layout of earlier versions still reads;
absent attributes read as None or empty; the weights note has one definition."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from search.study import trial_record
from search.study.trial_record import TrialRecord

HEADS = {"gender": 0.75, "age": 0.5}
TEST = {"gender": {"accuracy": 0.7, "accuracy_ci": [0.6, 0.8], "balanced_accuracy": 0.65,
                   "balanced_accuracy_ci": [0.55, 0.75], "majority": 0.55, "n": 40},
        "age": {"accuracy": 0.4, "accuracy_ci": [0.3, 0.5], "balanced_accuracy": 0.35,
                "balanced_accuracy_ci": [0.25, 0.45], "majority": 0.3, "n": 40}}


@pytest.fixture()
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name="record", storage=f"sqlite:///{tmp_path / 'o.db'}")


def test_what_is_written_reads_back_whole(study):
    written = TrialRecord(
        0, config={"backbone": "pretrained", "epochs": 3}, seeds={"split": 0, "trial": 7},
        run_id="abc123", accuracy=dict(HEADS), balanced_accuracy={"gender": 0.7, "age": 0.4},
        majority={"gender": 0.6, "age": 0.3}, params_count=1234, best_epoch=2, test=TEST,
        fallback_heads=("age",), mean_accuracy=0.625, mean_balanced_accuracy=0.55,
        weights="none (offline)", model_uri="models:/m-1", lr_range_test=True,
        train_seconds=12.5, baseline="frozen-mobilenet", warm_start="earlier#3")
    trial = study.ask()
    started = TrialRecord(trial.number, config=written.config, seeds=written.seeds,
                          run_id=written.run_id)
    trial_record.write(trial, started)  # what a trial writes when it starts, then the rest
    trial_record.write(trial, written)
    study.tell(trial, 0.625)
    reloaded = optuna.load_study(study_name="record", storage=study._storage)
    got = trial_record.read(reloaded.trials[0])
    assert got.state == "COMPLETE" and got.values == (0.625,)
    for name in ("config", "seeds", "run_id", "accuracy", "balanced_accuracy", "majority",
                 "params_count", "best_epoch", "test", "fallback_heads", "mean_accuracy",
                 "mean_balanced_accuracy", "weights", "model_uri", "lr_range_test",
                 "train_seconds", "baseline", "warm_start"):
        assert getattr(got, name) == getattr(written, name), name
    assert got.score == 0.625 and got.scored
    assert got.heads["gender"] == {"accuracy": 0.75, "balanced_accuracy": 0.7, "majority": 0.6}
    assert got.test_rows == 40 and got.test_mean == pytest.approx(0.55)
    assert trial_record.complete(reloaded) == [got]


def test_a_trial_of_an_earlier_version_still_reads(study):
    """The attribute names and layout earlier versions wrote (engines/optuna_trial.py before
    the record), including a trial with none of the optional ones."""
    study.add_trial(optuna.trial.create_trial(value=0.6, user_attrs={
        "config": {"backbone": "separable"}, "seeds": {"split": 0}, "mlflow_run_id": "r1",
        "head_accuracy": HEADS, "head_balanced_accuracy": HEADS, "majority": HEADS,
        "params_count": 99, "best_epoch": 1, "fallback_heads": ["age"],
        "mean_accuracy": 0.6, "mean_balanced_accuracy": 0.6, "weights_resolved": "imagenet",
        "model_uri": "models:/m-2", "head_curve": {"gender": [0.5]}, "worker": "h:1"}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL,
                                              user_attrs={"fail_reason": "OOM"}))
    study.add_trial(optuna.trial.create_trial(value=0.1))  # a plain Optuna trial
    old, failed, plain = map(trial_record.read, study.trials)
    assert (old.run_id, old.accuracy, old.fallback_heads, old.weights) == (
        "r1", HEADS, ("age",), "imagenet")
    assert old.test is None and old.lr_range_test is False and old.train_seconds is None
    assert old.weights_note is None  # it got its weights
    assert failed.state == "FAIL" and failed.fail_reason == "OOM" and math.isnan(failed.score)
    assert plain.config is None and plain.accuracy == {} and not plain.scored
    assert plain.score == 0.1 and plain.heads == {} and plain.test_mean is None
    assert [r.number for r in trial_record.complete(study)] == [0]


def test_absent_fields_are_not_written(study):
    trial = study.ask()
    trial_record.write(trial, TrialRecord(trial.number, config={"epochs": 1}, run_id=None))
    assert study.trials[0].user_attrs == {"config": {"epochs": 1}}
    assert trial_record.attrs(TrialRecord(0)) == {}


def test_the_weights_note_says_when_imagenet_weights_were_not_used():
    assert TrialRecord(0, weights="none (auto: no weight file offline)").weights_note == \
        "none (auto: no weight file offline)"
    assert TrialRecord(0, weights="imagenet").weights_note is None
    assert TrialRecord(0).weights_note is None  # not a pretrained trial


def test_a_multi_objective_trial_ranks_by_its_mean_accuracy():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.9, 100.0],
                                              user_attrs={"mean_accuracy": 0.42}))
    record = trial_record.read(study.trials[0])
    assert record.score == 0.42 == trial_record.score(study.trials[0])


def test_best_per_head():
    a = TrialRecord(0, accuracy={"gender": 0.9, "age": 0.1})
    b = TrialRecord(1, accuracy={"gender": 0.5, "age": 0.6})
    assert trial_record.best_per_head([a, b], ["gender", "age"]) == {"gender": a, "age": b}
