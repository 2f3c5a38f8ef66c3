"""`search train --from-trial`: without overrides it replays the trial (same data, split with
its held-out test rows, seeds, per-batch augmentation seeds), so the per-head validation and
test accuracies come out the same; with --all-data it trains on train + validation rows and
the study's test rows stay held out; a trial that did not finish is refused with a usage
error."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from search import cli

from conftest import TINY_SPACE

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

HEADS = ("gender", "imagequality", "age", "weight", "carryingbag", "footwear", "emotion",
         "bodypose")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_csv):
    runs = tmp_path_factory.mktemp("replay")
    assert cli.main(["run", "--trials", "1", "--space", str(TINY_SPACE), "--data", str(tiny_csv),
                     "--study", "replay", "--runs-dir", str(runs), "--test-fraction", "0.2",
                     "--no-progress"]) == 0
    return runs


def _study(runs):
    return optuna.load_study(study_name="replay", storage=f"sqlite:///{runs / 'optuna.db'}")


def _final_accuracies(client, run_id) -> dict[str, float]:
    metrics = client.get_run(run_id).data.metrics
    return {h: metrics[f"final_{h}_accuracy"] for h in HEADS}


def _retrained(client, number: int, all_data: bool):
    runs = [r for r in client.search_runs([client.get_experiment_by_name("replay").experiment_id])
            if r.data.tags.get("search.retrained_from") == f"replay:{number}"
            and r.data.tags.get("search.all_data") == str(all_data).lower()]
    assert len(runs) == 1
    return runs[0]


def _rows(run) -> dict[str, int]:
    return {k: int(run.data.params[f"rows.{k}"]) for k in ("train", "validation", "test")}


def test_exact_replay_gives_the_same_per_head_accuracies(study_dir, capsys):
    trial = _study(study_dir).best_trial
    assert trial.user_attrs["config"]["cutout"] > 0  # augmentation is part of what replays
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{study_dir / 'mlflow.db'}")
    assert cli.main(["train", "--from-trial", f"replay:{trial.number}", "--exact",
                     "--runs-dir", str(study_dir)]) == 0
    retrained = _retrained(client, trial.number, all_data=False)
    original = _final_accuracies(client, trial.user_attrs["mlflow_run_id"])
    assert _final_accuracies(client, retrained.info.run_id) == original
    assert original == pytest.approx(trial.user_attrs["head_accuracy"])
    first = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert _rows(retrained) == _rows(first)  # the same split, test rows held out as before
    assert {k: v for k, v in retrained.data.metrics.items() if k.startswith("test_")} == {
        k: v for k, v in first.data.metrics.items() if k.startswith("test_")}


def test_a_replay_keeps_the_study_s_test_rows_out_of_training(study_dir, capsys):
    """Regression (issue 19): `--from-trial` of a study run with --test-fraction must rebuild
    its split with the test rows (the study records it as '0.2:0:plain:test=0.2'); were they
    dropped, a retrain on --all-data would train on the rows the trial's test figure came
    from."""
    from search.final import retrain
    from search.settings import Settings
    from search.study import trial_record

    study = _study(study_dir)
    trial = study.best_trial
    assert study.user_attrs["split"].endswith(":test=0.2")
    assert retrain.study_split(study).test_fraction == 0.2
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{study_dir / 'mlflow.db'}")
    first = _rows(client.get_run(trial.user_attrs["mlflow_run_id"]))
    assert first["test"] == trial.user_attrs["test_scores"]["gender"]["n"] > 0
    session = retrain.study_session(Settings.resolve(str(study_dir)), study,
                                    trial_record.read(trial))
    assert len(session.test_rows) == first["test"]
    trained = retrain.train_and_validation(session)
    assert not set(trained) & set(session.test_rows)
    assert cli.main(["train", "--from-trial", f"replay:{trial.number}", "--all-data",
                     "--runs-dir", str(study_dir)]) == 0
    assert "test rows held out" in capsys.readouterr().out
    assert _rows(_retrained(client, trial.number, all_data=True)) == {
        "train": first["train"] + first["validation"], "validation": first["validation"],
        "test": first["test"]}


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
