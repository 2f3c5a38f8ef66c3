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
import pytest
from optuna.trial import TrialState

from search import cli

from conftest import ROOT, TINY_SPACE

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

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
    if len(os.sched_getaffinity(0)) > 1:  # one process on a CPU machine: say what uses it all
        assert f"--workers {min(len(os.sched_getaffinity(0)), 4)} trains" in out


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
    from test_workers import default_sigint, mid_trial, wait_for, worker_pids

    runs = tmp_path / "runs"
    log = tmp_path / "run.log"
    storage = f"sqlite:///{runs / 'optuna.db'}"
    # trials of a few epochs, so that the signal lands inside one on a busy machine too (at
    # one epoch a trial seen running could finish before the signal reached its worker)
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE.read_text().replace("epochs: 1", "epochs: 6"))
    args = ["run", "--workers", "2", "--trials", "4", "--study", "stop", "--space",
            str(space), "--data", str(tiny_csv), "--heads", ",".join(HEADS),
            "--runs-dir", str(runs), "--no-progress"]
    run = subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=ROOT,
                           stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
                           env={**os.environ}, preexec_fn=default_sigint)
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


def test_a_run_stopped_by_failures_exits_1_even_after_finished_trials(tmp_path, tiny_csv,
                                                                      capsys):
    """Issue 21: `stopped: N trials in a row failed` used to exit 0 once a trial had finished.
    Stopping before the target for any reason but --timeout, Ctrl-C or convergence exits 1."""
    space = tmp_path / "late-nan.yaml"  # a good baseline first, then every sampled trial NaN
    space.write_text(TINY_SPACE.read_text().replace(
        "base_lr: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}",
        "base_lr: 1.0e+12\n  optimizer: sgd") + """enqueue:
  - name: good
    config: {backbone: separable, width: 8, depth: 2, neck_units: 16, head_units: 0,
             image_size: 32, batch_size: 32, epochs: 1}
""")
    code, trials, _ = _run(tmp_path, tiny_csv, space, "--trials", "4", "--max-failures", "2")
    assert code == 1
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert "stopped: 2 trials in a row failed" in capsys.readouterr().err


def test_a_restarted_run_fails_its_dead_trial_at_once_with_a_reason(tmp_path, tiny_csv):
    """Issue 21: a single-process run SIGKILLed mid-trial leaves a RUNNING trial. With no other
    process beating, the same command restarted fails it at once (user attr fail_reason),
    retries its parameters and completes; it does not wait out the grace period (an hour
    here: the restart would time out)."""
    from test_workers import mid_trial, wait_for

    runs = tmp_path / "runs"
    storage = f"sqlite:///{runs / 'optuna.db'}"
    command = [sys.executable, "-m", "search.cli", "run", "--trials", "1", "--epochs", "2",
               "--study", "ghost", "--space", str(TINY_SPACE), "--data", str(tiny_csv),
               "--heads", ",".join(HEADS), "--runs-dir", str(runs), "--no-progress"]
    env = {**os.environ, "SEARCH_HEARTBEAT_INTERVAL": "1", "SEARCH_HEARTBEAT_GRACE": "3600"}
    log = tmp_path / "first.log"
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"),
                             stderr=subprocess.STDOUT)
    wait_for(lambda: "finished trial(s), target" in log.read_text(), "the study to start")
    victim = wait_for(lambda: mid_trial(storage, "ghost"), "a trial to start")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    text = second.stdout + second.stderr
    assert second.returncode == 0, text[-3000:]
    assert f"trial {victim.number}: FAILED: its worker " in text, text[-3000:]
    trials = optuna.load_study(study_name="ghost", storage=storage).trials
    dead = trials[victim.number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["fail_reason"].startswith(
        f"its worker {victim.user_attrs['worker']} stopped (no heartbeat since ")
    assert dead.user_attrs["fail_reason"].endswith("and no other worker is alive)")
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)  # finished: the target
    assert retry.params == dead.params and "fail_reason" not in retry.user_attrs
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    _failed_run(client, dead, "no heartbeat since")
