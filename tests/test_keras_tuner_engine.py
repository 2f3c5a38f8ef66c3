"""The keras-tuner engine: the space's translation, and a real 2-trial search logged to MLflow."""

from __future__ import annotations

import json

import mlflow
import pytest

from search import cli
from search.engines import keras_tuner as tuner
from search.errors import UsageError
from search.space import space as space_lib

from conftest import ROOT, TINY_SPACE

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

HEADS = ("gender", "imagequality", "age", "weight", "carryingbag", "footwear", "emotion",
         "bodypose")


def _hp(translation, name):
    return next(h for h in translation.hyperparameters.space if h.name == name)


def test_conditional_hp_is_inactive_unless_its_parent_matches():
    translation = tuner.translate(space_lib.load(TINY_SPACE))
    hp = translation.hyperparameters.copy()
    gamma = _hp(translation, "gamma")
    hp.values["clr_mode"] = "triangular"
    assert not hp.is_active(gamma)
    hp.values["clr_mode"] = "exp_range"
    assert hp.is_active(gamma)
    assert _hp(translation, "base_lr").sampling == "log"
    assert {h.name for h in translation.hyperparameters.space}.isdisjoint(
        {"depth", "image_size", "epochs"})  # fixed keys stay out


def test_condition_on_a_fixed_parent_is_decided_at_translation():
    space = space_lib.parse({"params": {
        "backbone": {"type": "categorical", "choices": ["separable", "pretrained"]},
        "width": {"type": "categorical", "choices": [16, 32], "when": {"backbone": "separable"}},
        "alpha": {"type": "categorical", "choices": [0.35, 0.5],
                  "when": {"backbone": "pretrained"}},
        "weights": "none"}})
    assert [c.name for c in _hp(tuner.translate(space), "width").conditions] == ["backbone"]
    names = {h.name for h in tuner.translate(space.pin(backbone="separable"))
             .hyperparameters.space}
    assert names == {"width"}  # unconditional now; alpha can never be active


def test_values_become_the_same_config_optuna_would_build():
    space = space_lib.parse({"params": {
        "flip": {"type": "categorical", "choices": [True, False]},
        "image_size": {"type": "categorical", "choices": [32, [32, 48]]},
        "base_lr": {"type": "float", "low": 1.0e-3, "high": 2.0e-3, "log": True},
        "lr_ratio": 3.0,
        "epochs": {"type": "int", "low": 1, "high": 5}}})
    translation = tuner.translate(space)
    values = {"flip": json.dumps(False), "image_size": json.dumps("32x48"), "base_lr": 0.002,
              "epochs": 4, "tuner/epochs": 2}
    config = tuner.config_from_values(space, translation, values)
    assert config.flip is False and config.image_size == (32, 48)
    assert config.max_lr == pytest.approx(0.006)
    assert config.epochs == 2  # Hyperband's budget wins
    assert tuner.max_epochs(space) == 5


def test_enqueued_baselines_are_refused_by_name():
    with pytest.raises(UsageError, match="enqueued baselines.*model-1-separable.*--no-baselines"):
        tuner.check_supported(space_lib.load(ROOT / "spaces" / "hvc-gpu.yaml"))


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_csv):
    runs = tmp_path_factory.mktemp("kt-runs")
    code = cli.main(["run", "--engine", "keras-tuner", "--trials", "2", "--space",
                     str(TINY_SPACE), "--data", str(tiny_csv), "--study", "kt", "--runs-dir",
                     str(runs), "--no-progress"])
    assert code == 0
    return runs


def test_two_trials_ran_and_are_nested_mlflow_runs_with_head_metrics(study_dir):
    states = [json.loads(p.read_text())["status"]
              for p in (study_dir / "keras-tuner" / "kt").glob("trial_*/trial.json")]
    assert states == ["COMPLETED", "COMPLETED"]
    client = mlflow.MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("kt").experiment_id])
    parents = [r for r in runs if r.data.tags.get("search.role") == "study"]
    children = [r for r in runs if r.data.tags.get("search.role") == "trial"]
    assert len(parents) == 1 and len(children) == 2
    assert parents[0].data.params["engine"] == "keras-tuner"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.data.tags["search.tuner"] == "hyperband"
        assert child.data.tags["search.keras_tuner.epochs"] == child.data.params["epochs"]
        assert child.info.status == "FINISHED"
        for head in HEADS:
            assert f"final_{head}_accuracy" in child.data.metrics
            assert f"final_{head}_balanced_accuracy" in child.data.metrics


def test_same_command_resumes_and_another_tuner_is_refused(study_dir, tiny_csv, capsys):
    args = ["run", "--engine", "keras-tuner", "--trials", "2", "--space", str(TINY_SPACE),
            "--data", str(tiny_csv), "--study", "kt", "--runs-dir", str(study_dir)]
    assert cli.main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(args + ["--tuner", "random"]) == 2
    assert "tuner: study has 'hyperband'" in capsys.readouterr().err


def test_optuna_only_flags_are_refused(capsys):
    assert cli.main(["run", "--engine", "keras-tuner", "--workers", "2"]) == 2
    assert "--workers work with --engine optuna only" in capsys.readouterr().err
    assert cli.main(["run", "--engine", "keras-tuner", "--ray"]) == 2
    assert "--ray work with --engine optuna only" in capsys.readouterr().err
    assert cli.main(["run", "--engine", "keras-tuner", "--gpus-per-trial", "0.5"]) == 2
    assert "--gpus-per-trial work with --engine optuna only" in capsys.readouterr().err


def test_failures_and_the_timeout_stop_it_as_they_stop_the_optuna_engine(tmp_path, tiny_csv,
                                                                         capsys):
    """Both engines run under one loop (search.engines.loop.trials): --max-failures failures
    in a row stop keras-tuner with the last trial's one-line reason and exit 1; --timeout
    stops it starting trials and exits 0."""
    space = tmp_path / "nan.yaml"  # every trial's loss is NaN
    space.write_text(TINY_SPACE.read_text().replace(
        "base_lr: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}",
        "base_lr: 1.0e+12\n  optimizer: sgd"))
    common = ["run", "--engine", "keras-tuner", "--tuner", "random", "--no-baselines",
              "--data", str(tiny_csv), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    assert cli.main([*common, "--space", str(space), "--study", "nan", "--trials", "5",
                     "--max-failures", "2"]) == 1
    out, err = capsys.readouterr()
    assert out.count(": FAILED: NonFiniteLoss: training loss became nan") == 2
    assert err.strip().splitlines() == [  # one line, no traceback
        "stopped: 2 trials in a row failed (last: NonFiniteLoss: training loss became nan in "
        "epoch 1); stopping. Fix the cause or raise --max-failures"]
    assert cli.main([*common, "--space", str(TINY_SPACE), "--study", "timed", "--trials", "5",
                     "--timeout", "0.1"]) == 0
    out, err = capsys.readouterr()
    assert out.count("trial 0: ") == 1 and "trial 1: " not in out
    assert "stopped: timeout of 0.1 s reached" in err
