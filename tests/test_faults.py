"""Trials that go wrong: NaN losses and exceptions are recorded with their reason while the
study completes, --isolate trials report the same reasons from their own process, and Ctrl-C
leaves no trial or MLflow run RUNNING and prints how to resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import mlflow
import optuna
from optuna.trial import TrialState

from conftest import ROOT, TINY_SPACE
from search import cli

HEADS = ("gender", "age")  # two of tiny_csv's heads: half the graph to trace per trial

# Trials enqueued before the sampled ones: a NaN loss (SGD at a huge learning rate) and a model
# that cannot be built (a weights file that does not exist).
NAN = """  - name: nan
    config: {backbone: separable, width: 8, depth: 2, optimizer: sgd, clr_mode: constant,
             base_lr: 1.0e+12, max_lr: 1.0e+12, image_size: 32, batch_size: 32, epochs: 1}
"""
NO_WEIGHTS = """  - name: no-weights
    config: {backbone: pretrained, family: mobilenet_v2, weights: /nonexistent/weights.h5,
             image_size: 32, batch_size: 32, epochs: 1}
"""


def _space(tmp_path, *entries: str):
    path = tmp_path / "faults.yaml"
    path.write_text(TINY_SPACE.read_text() + "enqueue:\n" + "".join(entries))
    return path


def _run(tmp_path, tiny_csv, space, *flags):
    runs = tmp_path / "runs"
    code = cli.main(["run", "--space", str(space), "--data", str(tiny_csv), "--study", "faults",
                     "--heads", ",".join(HEADS), "--runs-dir", str(runs), "--no-progress",
                     *flags])
    study = optuna.load_study(study_name="faults", storage=f"sqlite:///{runs / 'optuna.db'}")
    return code, study.trials, mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")


def _failed_run(client, trial, reason: str) -> None:
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and reason in run.data.tags["search.reason"]


def test_nan_and_exceptions_are_recorded_and_the_study_completes(tmp_path, tiny_csv, capsys):
    code, trials, client = _run(tmp_path, tiny_csv, _space(tmp_path, NAN, NO_WEIGHTS),
                                "--trials", "2")
    assert code == 0
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL,
                                         TrialState.COMPLETE, TrialState.COMPLETE]
    nan, broken = trials[0], trials[1]
    assert nan.user_attrs["fail_reason"].startswith("NonFiniteLoss: ")
    assert broken.user_attrs["fail_reason"].startswith("ConfigError: weights file ")
    _failed_run(client, nan, "NonFiniteLoss")
    _failed_run(client, broken, "/nonexistent/weights.h5 does not exist")
    out = capsys.readouterr().out
    assert "trial 1 [no-weights]: FAILED: ConfigError" in out and "best trial #" in out


def test_isolated_trials_report_the_same_reasons(tmp_path, tiny_csv):
    code, trials, client = _run(tmp_path, tiny_csv, _space(tmp_path, NO_WEIGHTS),
                                "--trials", "1", "--isolate")
    assert code == 0 and [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["fail_reason"].startswith("ConfigError: weights file ")
    _failed_run(client, trials[0], "does not exist")
    assert client.get_run(trials[1].user_attrs["mlflow_run_id"]).info.status == "FINISHED"
    assert set(trials[1].user_attrs["head_accuracy"]) == set(HEADS)


def test_ctrl_c_fails_the_running_trials_and_prints_the_resume_command(tmp_path, tiny_csv):
    """SIGINT to `search run --workers 2` reaches each worker once: their trials end FAIL,
    their MLflow runs KILLED, and the launcher prints the command that resumes."""
    from test_workers import mid_trial, wait_for, worker_pids

    runs = tmp_path / "runs"
    log = tmp_path / "run.log"
    storage = f"sqlite:///{runs / 'optuna.db'}"
    args = ["run", "--workers", "2", "--trials", "4", "--study", "stop", "--space",
            str(TINY_SPACE), "--data", str(tiny_csv), "--heads", ",".join(HEADS),
            "--runs-dir", str(runs), "--no-progress"]
    run = subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=ROOT,
                           stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
                           env={**os.environ})
    wait_for(lambda: worker_pids(log), "the workers to start", 120)
    wait_for(lambda: mid_trial(storage, "stop"), "a trial to start")
    run.send_signal(signal.SIGINT)
    run.wait(timeout=120)
    text = log.read_text()
    assert run.returncode == 130, text[-3000:]
    assert "Resume with: search run --workers 2 --trials 4 --study stop --space" in text
    trials = optuna.load_study(study_name="stop", storage=storage).trials
    assert TrialState.FAIL in {t.state for t in trials}
    assert TrialState.RUNNING not in {t.state for t in trials}
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    runs_ = client.search_runs([client.get_experiment_by_name("stop").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs_}
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert all(client.get_run(t.user_attrs["mlflow_run_id"]).info.status == "KILLED"
               for t in killed if "mlflow_run_id" in t.user_attrs)


def test_a_failed_trial_s_reason_is_one_masked_line():
    """What a failed trial stores (fail_reason, keras-tuner's trial message) and prints is
    masked like every other message: a storage URL in an exception keeps no password."""
    from search.engines.base import reason

    text = reason(RuntimeError("could not reach\npostgresql+psycopg2://me:s3cret@db/search"))
    assert text == "RuntimeError: could not reach postgresql+psycopg2://me:***@db/search"
