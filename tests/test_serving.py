"""A trained, registered model used the way a user meets it: `search predict` and `search
evaluate` in fresh processes, which import nothing the trial's process had loaded.

Every family (separable, pretrained frozen, pretrained fine-tuned), every CLR schedule and both
engines; the saved model must not carry the optimizer or its learning-rate schedule.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import mlflow
import pytest

from search import cli
from search.space.config import TrialConfig

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

SPACE = """
name: serving
pruner: {name: none}
prune_below_majority: false   # every trial must train to the end and log its model
params:
  backbone: separable
  width: 8
  depth: 2
  neck_units: 16
  head_units: 0
  image_size: 32
  batch_size: 32
  epochs: 1
enqueue:
  - name: separable-triangular
    config: {backbone: separable, width: 8, depth: 2, neck_units: 16, head_units: 0,
             clr_mode: triangular, image_size: 32, batch_size: 32, epochs: 1}
  - name: separable-triangular2
    config: {backbone: separable, width: 8, depth: 2, neck_units: 16, head_units: 0,
             clr_mode: triangular2, image_size: 32, batch_size: 32, epochs: 1}
  - name: frozen-exp-range
    config: {backbone: pretrained, family: mobilenet_v2, alpha: 0.35, weights: auto,
             fine_tune_fraction: 0.0, neck_units: 16, head_units: 0, clr_mode: exp_range,
             gamma: 0.99, image_size: 32, batch_size: 32, epochs: 1}
  - name: fine-tuned-constant
    config: {backbone: pretrained, family: mobilenet_v2, alpha: 0.35, weights: auto,
             fine_tune_fraction: 0.3, neck_units: 16, head_units: 0, clr_mode: constant,
             base_lr: 0.001, max_lr: 0.001, image_size: 32, batch_size: 32, epochs: 1}
"""


def search_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`search ARGS` as a user runs it: a new interpreter, nothing preloaded."""
    return search_processes([args], cwd)[0]


def search_processes(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Several `search` commands, each in its own new interpreter, run side by side."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = [subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for args in commands]
    done = []
    for args, process in zip(commands, started):
        out, err = process.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_csv):
    """One Optuna study holding one trial per family and schedule, its champion registered."""
    folder = tmp_path_factory.mktemp("serving")
    space = folder / "space.yaml"
    space.write_text(SPACE)
    runs = folder / "runs"
    common = ["--data", str(tiny_csv), "--runs-dir", str(runs), "--no-progress"]
    assert cli.main(["run", "--trials", "4", "--space", str(space), "--study", "serving",
                     *common]) == 0
    assert cli.main(["best", "--study", "serving", "--register", "served",
                     "--runs-dir", str(runs)]) == 0
    return folder, runs


def _model_uris(runs: Path, experiment: str) -> dict[str, str]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    found = {}
    for run in client.search_runs([exp.experiment_id], "tags.`search.role` = 'trial'"):
        tags = run.data.tags
        found[tags.get("search.baseline") or tags["mlflow.runName"]] = tags["search.model_uri"]
    return found


def _saved_config(model_folder: Path) -> str:
    with zipfile.ZipFile(model_folder / "model.keras") as archive:
        return archive.read("config.json").decode()


def test_every_family_and_schedule_predicts_in_a_fresh_process(trained, tiny_csv):
    folder, runs = trained
    uris = _model_uris(runs, "serving")
    assert set(uris) == {"separable-triangular", "separable-triangular2", "frozen-exp-range",
                         "fine-tuned-constant"}
    image = str(sorted((tiny_csv.parent / "images").iterdir())[0])
    runs_ = search_processes([["predict", "--runs-dir", str(runs), "--model", uri, image]
                              for uri in uris.values()], folder)
    for name, done in zip(uris, runs_):
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
        line = json.loads(done.stdout.strip().splitlines()[-1])
        assert line["image"] == image and set(line) > {"gender", "emotion", "bodypose"}


def test_a_fine_tuned_trial_reports_each_stage_at_its_own_steps(trained):
    """The pruner sees a frozen trial's epochs at steps 1.. and a fine-tuned trial's
    fine-tuning epochs from 1001 on, not its lead-in probe (recorded in the curve only)."""
    import optuna

    _, runs = trained
    study = optuna.load_study(study_name="serving", storage=f"sqlite:///{runs / 'optuna.db'}")
    steps = {t.user_attrs["fixed_config"]["fine_tune_fraction"]: sorted(t.intermediate_values)
             for t in study.trials if t.user_attrs.get("fixed_config", {}).get(
                 "backbone") == "pretrained"}
    assert steps[0.3] == [1001]
    assert steps[0.0] == [1]
    fine_tuned = next(t for t in study.trials if t.user_attrs.get("fixed_config", {}).get(
        "fine_tune_fraction") == 0.3)
    probe = TrialConfig.probe_epochs  # the default: the config sets none
    assert fine_tuned.user_attrs["head_curve_steps"] == [0] * probe + [1001]


def test_registered_champion_predicts_and_evaluates_in_fresh_processes(trained, tiny_csv):
    folder, runs = trained
    image = str(sorted((tiny_csv.parent / "images").iterdir())[1])
    scores = folder / "scores.json"
    predicted, evaluated = search_processes([
        ["predict", "--runs-dir", str(runs), "--model", "models:/served@champion", image],
        ["evaluate", "--runs-dir", str(runs), "--model", "models:/served@champion", "--data",
         str(tiny_csv), "--bootstrap", "20", "--json", str(scores)]], folder)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert json.loads(predicted.stdout.strip().splitlines()[-1])["gender"]["label"] in (
        "male", "female")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert set(json.loads(scores.read_text())["heads"]) >= {"gender", "age", "emotion"}


def test_pulled_model_carries_no_optimizer(trained):
    folder, runs = trained
    out = folder / "pulled"
    assert cli.main(["pull", "models:/served@champion", "--out", str(out),
                     "--runs-dir", str(runs)]) == 0
    config = _saved_config(out)
    assert "CyclicalLearningRate" not in config and "optimizer" not in config


def test_keras_tuner_model_predicts_in_a_fresh_process(trained, tiny_csv):
    from conftest import TINY_SPACE

    folder, runs = trained
    kt_runs = folder / "kt-runs"
    assert cli.main(["run", "--engine", "keras-tuner", "--tuner", "random", "--trials", "1",
                     "--space", str(TINY_SPACE), "--study", "kt", "--no-baselines",
                     "--data", str(tiny_csv), "--runs-dir", str(kt_runs),
                     "--no-progress"]) == 0
    (uri,) = _model_uris(kt_runs, "kt").values()
    image = str(sorted((tiny_csv.parent / "images").iterdir())[2])
    done = search_process(["predict", "--runs-dir", str(kt_runs), "--model", uri, image],
                          folder)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bodypose" in json.loads(done.stdout.strip().splitlines()[-1])
