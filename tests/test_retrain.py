"""`search train --from-trial`: without overrides it replays the trial (same data, split, seeds,
per-batch augmentation seeds), so the per-head validation accuracies come out the same; a trial
that did not finish is refused with a usage error."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY_SPACE
from search import cli

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

HEADS = ("gender", "imagequality", "age", "weight", "carryingbag", "footwear", "emotion",
         "bodypose")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_csv):
    runs = tmp_path_factory.mktemp("replay")
    assert cli.main(["run", "--trials", "1", "--space", str(TINY_SPACE), "--data", str(tiny_csv),
                     "--study", "replay", "--runs-dir", str(runs), "--no-progress"]) == 0
    return runs


def _study(runs):
    return optuna.load_study(study_name="replay", storage=f"sqlite:///{runs / 'optuna.db'}")


def _final_accuracies(client, run_id) -> dict[str, float]:
    metrics = client.get_run(run_id).data.metrics
    return {h: metrics[f"final_{h}_accuracy"] for h in HEADS}


def test_exact_replay_gives_the_same_per_head_accuracies(study_dir, capsys):
    trial = _study(study_dir).best_trial
    assert trial.user_attrs["config"]["cutout"] > 0  # augmentation is part of what replays
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{study_dir / 'mlflow.db'}")
    assert cli.main(["train", "--from-trial", f"replay:{trial.number}", "--exact",
                     "--runs-dir", str(study_dir)]) == 0
    retrained = [r for r in client.search_runs(
        [client.get_experiment_by_name("replay").experiment_id])
        if r.data.tags.get("search.retrained_from") == f"replay:{trial.number}"]
    assert len(retrained) == 1
    original = _final_accuracies(client, trial.user_attrs["mlflow_run_id"])
    assert _final_accuracies(client, retrained[0].info.run_id) == original
    assert original == pytest.approx(trial.user_attrs["head_accuracy"])


def test_a_trial_that_did_not_finish_is_refused(study_dir, capsys):
    study = _study(study_dir)
    done = study.best_trial
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED, params=done.params, distributions=done.distributions,
        user_attrs={"config": done.user_attrs["config"]}))
    pruned = study.get_trials(states=(TrialState.PRUNED,))[-1].number
    capsys.readouterr()
    assert cli.main(["train", "--from-trial", f"replay:{pruned}",
                     "--runs-dir", str(study_dir)]) == 2
    err = capsys.readouterr().err
    assert "did not finish (PRUNED)" in err and "Traceback" not in err
