"""Pruning by heads: the rule itself, then in real single- and multi-objective studies."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search import cli
from search.errors import ConfigError
from search.study import pruning
from search.train import steps

from conftest import TINY_SPACE

HEADS = ("gender", "imagequality", "age", "weight", "carryingbag", "footwear", "emotion",
         "bodypose")


def test_the_rule_counts_heads_below_the_percentile_after_the_warm_up():
    rule = pruning.HeadRule(min_heads=2, percentile=50, warmup_epochs=1, min_trials=2)
    earlier = [{"a": 0.6, "b": 0.6, "c": 0.6}, {"a": 0.8, "b": 0.8, "c": 0.8}]
    lagging = {"a": 0.5, "b": 0.5, "c": 0.9}
    assert rule.lagging(lagging, earlier) == ["a", "b"]
    assert rule.prune(1, lagging, earlier) is None  # warm-up
    assert "2 heads below the 50th percentile" in rule.prune(2, lagging, earlier)
    assert rule.prune(2, {"a": 0.5, "b": 0.9, "c": 0.9}, earlier) is None  # one head only
    assert rule.prune(2, lagging, earlier[:1]) is None  # too few earlier trials


def test_curves_are_compared_at_the_same_epoch():
    curves = [{"a": [0.1, 0.2, 0.3]}, {"a": [0.5]}, {}]
    assert pruning.at_step(curves, 2) == [{"a": 0.2}]


def test_bad_rules_name_the_key():
    with pytest.raises(ConfigError, match="unknown key"):
        pruning.HeadRule.from_spec({"name": "heads", "median": 3})
    with pytest.raises(ConfigError, match="percentile"):
        pruning.HeadRule.from_spec({"name": "heads", "percentile": 150})


def test_the_rule_can_watch_some_heads_only():
    rule = pruning.HeadRule.from_spec({"name": "heads", "heads": ["a", "b"], "min_heads": 2,
                                       "min_trials": 1, "warmup_epochs": 0})
    earlier = [{"a": 0.5, "b": 0.5, "c": 0.5}]
    assert rule.prune(1, {"a": 0.1, "b": 0.9, "c": 0.1}, earlier) is None  # c is not watched
    assert "a, b" in rule.prune(1, {"a": 0.1, "b": 0.1, "c": 0.9}, earlier)



class _Space:  # what pruning.Judge reads of a space
    def __init__(self, pruner, objectives=()):
        self.pruner, self.objectives = pruner, list(objectives)


def _finished(study, curve, value):
    """A finished trial of study with this per-head curve, at stage-aligned steps 1, 2, ..."""
    trial = study.ask()
    trial.set_user_attr(pruning.CURVE_ATTR, curve)
    trial.set_user_attr(pruning.STEPS_ATTR, list(range(1, len(curve["a"]) + 1)))
    for step, v in enumerate(curve["a"], 1):
        trial.report(v, step)
    study.tell(trial, value)


def test_the_judge_asks_the_heads_rule_then_optuna_with_each_stage_warming_up():
    heads = {"name": "heads", "min_heads": 2, "min_trials": 2, "warmup_epochs": 1}
    study = optuna.create_study(direction="maximize")
    for level in (0.6, 0.8):
        _finished(study, {"a": [level] * 3, "b": [level] * 3}, level)
    judge = pruning.Judge(_Space(heads))
    trial = study.ask()
    behind = {"a": 0.5, "b": 0.5}
    assert judge.verdict(trial, 1, behind, "val_mean", {"val_mean": 0.5}) is None  # the rule's warm-up
    assert "2 heads below the 50th percentile" in judge.verdict(
        trial, 2, behind, "val_mean", {"val_mean": 0.5})

    median = {"name": "median", "n_warmup_steps": 2}
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(
        n_startup_trials=1, n_warmup_steps=0))
    _finished(study, {"a": [0.8] * 3}, 0.8)
    judge, trial = pruning.Judge(_Space(median)), study.ask()
    assert judge.verdict(trial, 1, {"a": 0.1}, "val_mean", {"val_mean": 0.1}) is None  # warm-up: step 1 < 2
    assert judge.verdict(trial, 2, {"a": 0.1}, "val_mean", {"val_mean": 0.1}) == \
        "pruned after epoch 2 (val_mean=0.1000)"
    fine_tune = steps.STAGE_STEPS["fine_tune"]  # a new stage warms up again
    assert judge.verdict(trial, fine_tune + 1, {"a": 0.1}, "val_mean", {"val_mean": 0.1}) is None

    two = pruning.Judge(_Space(median, objectives=[("a", "max"), ("b", "max")]))
    assert two.verdict(study.ask(), 2, {"a": 0.1}, "val_mean", {}) is None


@pytest.mark.e2e
def test_a_rule_naming_a_head_the_data_lacks_is_refused_before_anything_is_written(
        tmp_path, tiny_csv, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE.read_text().replace(
        "pruner: {name: none}", "pruner: {name: heads, heads: [gender, shoesize]}"))
    runs = tmp_path / "runs"
    assert cli.main(["run", "--space", str(space), "--data", str(tiny_csv), "--runs-dir",
                     str(runs), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pruner heads names 'shoesize', which is not a head of the data" in err
    assert len(err.strip().splitlines()) == 1
    assert not (runs / "optuna.db").exists() and not (runs / "mlflow.db").exists()


def _run(tmp_path, tiny_csv, study, extra, earlier_accuracy, trials=2):
    """A study whose earlier trials (added by hand) scored earlier_accuracy on every head at
    every epoch; then `trials` real trials under the heads rule."""
    space = tmp_path / f"{study}.yaml"
    space.write_text(TINY_SPACE.read_text().replace("pruner: {name: none}",
                     "pruner: {name: heads, min_heads: 4, warmup_epochs: 1, min_trials: 2}")
                     .replace("  epochs: 1", "  epochs: 3")
                     + "prune_below_majority: false\n" + extra)
    runs = tmp_path / "runs"
    args = ["run", "--space", str(space), "--data", str(tiny_csv), "--study", study,
            "--runs-dir", str(runs), "--no-progress"]
    storage = f"sqlite:///{runs / 'optuna.db'}"
    runs.mkdir(exist_ok=True)
    multi = "objectives" in extra
    study_ = optuna.create_study(storage=storage, study_name=study,
                                 directions=["maximize", "minimize"] if multi else ["maximize"])
    curve = {h: [earlier_accuracy] * 3 for h in HEADS}
    for _ in range(2):
        study_.add_trial(optuna.create_trial(
            state=TrialState.COMPLETE, values=[earlier_accuracy, 1.0] if multi
            else [earlier_accuracy], user_attrs={pruning.CURVE_ATTR: curve}))
    assert cli.main(args + ["--trials", str(2 + trials)]) == 0
    return optuna.load_study(study_name=study, storage=storage).get_trials()[2:]


@pytest.mark.e2e
def test_trials_lagging_on_most_heads_are_pruned(tmp_path, tiny_csv):
    pruned = _run(tmp_path, tiny_csv, "lag", "", earlier_accuracy=1.0)
    assert all(t.state == TrialState.PRUNED for t in pruned)
    assert all(len(t.user_attrs[pruning.CURVE_ATTR]["age"]) == 2 for t in pruned)  # epoch 2


@pytest.mark.e2e
def test_trials_ahead_of_earlier_ones_are_not_pruned(tmp_path, tiny_csv):
    kept = _run(tmp_path, tiny_csv, "ahead", "", earlier_accuracy=0.0)
    assert all(t.state == TrialState.COMPLETE for t in kept)


@pytest.mark.e2e
def test_a_multi_objective_study_prunes_by_heads_and_keeps_its_pareto_front(tmp_path, tiny_csv):
    trials = _run(tmp_path, tiny_csv, "multi", "objectives: [mean_accuracy, params]\n",
                  earlier_accuracy=1.0)
    assert all(t.state == TrialState.PRUNED for t in trials)
    study = optuna.load_study(study_name="multi",
                              storage=f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}")
    assert study.best_trials  # the front is made of the complete trials


def test_each_stage_has_its_own_steps_so_pruners_compare_like_with_like():
    """A fine-tuning epoch is never compared with a probe epoch, whatever the probe's length."""
    assert steps.stage_step("probe", 3) == 3 and steps.stage_step("train", 3) == 3
    assert steps.stage_step("fine_tune", 1) == 1001
    assert steps.stage_epoch(1003) == 3 and steps.stage_name(1003) == "fine-tuning epoch 3"
    long_probe = ({"a": [0.1] * 6}, list(range(1, 7)))  # six probe epochs, still probing
    short_probe = ({"a": [0.2] * 4 + [0.7, 0.8]}, [1, 2, 3, 4, 1001, 1002])
    assert pruning.at_step([long_probe, short_probe], 5) == [{"a": 0.1}]
    assert pruning.at_step([long_probe, short_probe], 1001) == [{"a": 0.7}]
    rule = pruning.HeadRule(min_heads=1, percentile=50, warmup_epochs=1, min_trials=1)
    assert rule.prune(1001, {"a": 0.0}, [{"a": 0.7}]) is None  # fine-tuning warms up too
    assert "fine-tuning epoch 2" in rule.prune(1002, {"a": 0.0}, [{"a": 0.8}])
