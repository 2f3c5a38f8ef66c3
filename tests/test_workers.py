"""Several workers on one study: the exact global trial cap, PostgreSQL and local SQLite
storage, SIGKILLed workers and full crashes, and no password anywhere a user can see.

The PostgreSQL tests read SEARCH_TEST_POSTGRES (.ci/run starts a server on 127.0.0.1 and sets
it) and skip without it. Workers run as real `search` processes on a light space.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from search.study import storage as storage_lib
from search.study import study as study_lib
from search.study import workers

from conftest import ROOT

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

POSTGRES = os.environ.get("SEARCH_TEST_POSTGRES")
POSTGRES_PASSWORD = sqlalchemy.engine.make_url(POSTGRES).password if POSTGRES else None
needs_postgres = pytest.mark.skipif(
    not POSTGRES, reason="SEARCH_TEST_POSTGRES is not set (.ci/run starts PostgreSQL)")
HEADS = ("gender", "age")  # two of tiny_csv's heads: half the graph to trace per trial
# Lighter than tiny_space.yaml: one block of 8 filters, so a trial is mostly fixed costs.
LIGHT_SPACE = """
objective: mean_accuracy
sampler: {name: tpe, n_startup_trials: 4}
pruner: {name: none}
params:
  backbone: separable
  width: 8
  depth: 1
  neck_units: 8
  head_units: 0
  dropout: {type: float, low: 0.0, high: 0.2}
  clr_mode: triangular
  base_lr: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}
  lr_ratio: {type: float, low: 2.0, high: 4.0}
  image_size: 32
  batch_size: 32
  epochs: 1
"""
QUICK_HEARTBEAT = {"SEARCH_HEARTBEAT_INTERVAL": "2", "SEARCH_HEARTBEAT_GRACE": "6"}


def test_gpu_flags_pick_one_worker_per_gpu(monkeypatch):
    from search.study.session import Options

    assert workers.devices(Options(gpus="0,1")) == ["0", "1"]
    assert workers.devices(Options(gpus="0,1", workers=3)) == ["0", "1", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert workers.devices(Options(gpus="all", workers=2)) == [None, None]  # CPU workers


def test_each_of_k_workers_gets_its_share_of_the_cores(monkeypatch):
    """K workers on this machine: TensorFlow's op threads split the cores between them."""
    cores = len(os.sched_getaffinity(0))
    assert workers.cpu_share(1) == cores and workers.cpu_share(cores * 2) == 1
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    codes = workers.launch(_threads_exit_code, (), [None, None])
    assert codes == [max(1, cores // 2)] * 2


def _threads_exit_code() -> int:
    """A worker's exit code: the op threads it was given."""
    return int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))


def test_a_worker_only_joins_an_existing_study(tmp_path, tiny_csv, capsys):
    from search import cli

    code = cli.main(["worker", "--study", "nope", "--data", str(tiny_csv),
                     "--runs-dir", str(tmp_path / "runs")])
    assert code == 2 and "start it with `search run --study nope`" in capsys.readouterr().err


# --- real workers ---------------------------------------------------------------------------


@pytest.fixture
def light_space(tmp_path) -> Path:
    path = tmp_path / "light.yaml"
    path.write_text(LIGHT_SPACE)
    return path


@pytest.fixture
def pg_study():
    """A fresh study name on the test PostgreSQL server, deleted afterwards."""
    name = f"w-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=POSTGRES)
    except KeyError:
        pass


def default_sigint() -> None:
    """preexec_fn: SIGINT at its default, as a terminal's process has it, so Ctrl-C tests hold
    when pytest runs in the background (SIGINT ignored, which stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def search(args, log: Path, **env) -> subprocess.Popen:
    """A `search` command in its own process, output into log."""
    return subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=ROOT,
                            env={**os.environ, **QUICK_HEARTBEAT, **env},
                            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_sigint)


def finish(process: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    process.wait(timeout=timeout)
    text = log.read_text()
    assert process.returncode == 0, text[-3000:]
    return text


def wait_for(condition, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def worker_pids(log: Path) -> list[int]:
    return [int(line.split("pid ")[1].split(",")[0]) for line in log.read_text().splitlines()
            if line.startswith("worker ") and ": pid " in line]


def stored_trials(storage: str, study: str) -> list:
    """The study's trials, read through a storage that is closed at once: the tests poll every
    half second, and a storage left to the garbage collector holds its PostgreSQL connection
    (the server allows about 100; the CI log showed "remaining connection slots are
    reserved")."""
    store = storage_lib.storage(storage, read_only=True)
    try:
        return optuna.load_study(study_name=study, storage=store).get_trials()
    finally:
        if hasattr(store, "engine"):
            store.engine.dispose()


def mid_trial(storage: str, study: str, pid: int | None = None):
    """A RUNNING trial (of worker pid) that has opened its MLflow run, if any."""
    try:
        trials = stored_trials(storage, study)
    except KeyError:  # not created yet
        return None
    return next((t for t in trials if t.state == TrialState.RUNNING
                 and "mlflow_run_id" in t.user_attrs
                 and (pid is None or t.user_attrs["worker"].endswith(f":{pid}"))), None)


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def check_study(storage: str, name: str, runs: Path, target: int,
                tracking: str | None = None) -> list:
    """Exactly target finished trials, each with its FINISHED nested MLflow run (per-head
    metrics) under the study's one parent run; no trial and no run left RUNNING. MLflow:
    tracking, else runs/mlflow.db."""
    trials = stored_trials(storage, name)
    finished = [t for t in trials if t.state in study_lib.FINISHED]
    assert len(finished) == target
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    client = mlflow.MlflowClient(tracking or f"sqlite:///{runs / 'mlflow.db'}")
    every = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    parents = [r for r in every if r.data.tags.get("search.role") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    by_id = {r.info.run_id: r for r in every}
    for trial in finished:
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.info.status == "FINISHED"
        assert all(f"final_{head}_balanced_accuracy" in run.data.metrics for head in HEADS)
    assert not [r for r in every if r.info.status == "RUNNING"]
    if POSTGRES_PASSWORD:
        assert not [v for r in every for v in r.data.params.values() if POSTGRES_PASSWORD in v]
    return trials


@needs_postgres
def test_three_workers_share_a_twelve_trial_study(pg_study, light_space, tiny_csv, tmp_path):
    runs = tmp_path / "runs"
    log = tmp_path / "run.log"
    run = search(["run", "--workers", "3", "--trials", "12", "--study", pg_study,
                  "--space", str(light_space), "--data", str(tiny_csv), "--heads", ",".join(HEADS),
                  "--runs-dir", str(runs), "--storage", POSTGRES, "--no-progress"], log)
    pids = wait_for(lambda: len(worker_pids(log)) == 3 and worker_pids(log), "3 workers", 120)
    for pid in pids:  # the URL travels through a pipe, not argv
        assert POSTGRES_PASSWORD not in cmdline(pid)
    text = finish(run, log)
    assert POSTGRES_PASSWORD not in text and "search_test:***@" in text
    trials = check_study(POSTGRES, pg_study, runs, 12)
    assert not [t for t in trials if t.state == TrialState.FAIL and not study_lib.is_surplus(t)]
    assert {t.user_attrs["worker"].split(":")[1] for t in trials} == {str(p) for p in pids}
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    parent = client.get_run(optuna.load_study(study_name=pg_study, storage=POSTGRES)
                            .user_attrs["mlflow_parent_run_id"])
    assert parent.data.params["storage"].startswith("postgresql+psycopg2://search_test:***@")


@needs_postgres
def test_a_killed_worker_s_trial_is_retried_and_nothing_is_lost(pg_study, light_space,
                                                                tiny_csv, tmp_path):
    """Two workers from `search run`, a third joins with `search worker` and is SIGKILLed
    mid-trial: its trial turns FAIL on the heartbeat, its parameters run again, and the study
    still ends with exactly 12 finished trials."""
    runs = tmp_path / "runs"
    flags = ["--trials", "12", "--study", pg_study, "--space", str(light_space), "--data",
             str(tiny_csv), "--heads", ",".join(HEADS), "--runs-dir", str(runs), "--no-progress"]
    run_log, join_log = tmp_path / "run.log", tmp_path / "join.log"
    run = search(["run", "--workers", "2", *flags], run_log, SEARCH_STORAGE=POSTGRES)
    wait_for(lambda: worker_pids(run_log), "the study to start", 120)
    joiner = search(["worker", *flags], join_log, SEARCH_STORAGE=POSTGRES)
    victim = wait_for(lambda: mid_trial(POSTGRES, pg_study, joiner.pid), "the joiner's trial")
    complete_before = {t.number for t in optuna.load_study(
        study_name=pg_study, storage=POSTGRES).get_trials(states=(TrialState.COMPLETE,))}
    joiner.send_signal(signal.SIGKILL)
    joiner.wait()
    text = finish(run, run_log) + join_log.read_text()

    trials = check_study(POSTGRES, pg_study, runs, 12)
    dead = trials[victim.number]
    assert dead.state == TrialState.FAIL and not study_lib.is_surplus(dead)
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert complete_before <= {t.number for t in trials if t.state == TrialState.COMPLETE}
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    closed = client.get_run(victim.user_attrs["mlflow_run_id"])
    assert closed.info.status == "FAILED" and "no heartbeat" in closed.data.tags["search.reason"]
    assert POSTGRES_PASSWORD not in text


def test_local_workers_survive_a_full_crash_on_the_default_storage(light_space, tiny_csv,
                                                                   tmp_path):
    """2 workers on runs/optuna.db (SQLite) are all SIGKILLed mid-trial; the same command
    resumes: the dead trials fail on the heartbeat and the study ends with exactly 4."""
    runs = tmp_path / "runs"
    args = ["run", "--workers", "2", "--trials", "4", "--study", "local", "--space",
            str(light_space), "--data", str(tiny_csv), "--heads", ",".join(HEADS),
            "--runs-dir", str(runs), "--no-progress"]
    storage = f"sqlite:///{runs / 'optuna.db'}"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = search(args, first_log)
    wait_for(lambda: worker_pids(first_log), "the study to start", 120)
    victim = wait_for(lambda: mid_trial(storage, "local"), "a trial to start")
    for pid in [first.pid, *worker_pids(first_log)]:  # the whole machine goes down
        os.kill(pid, signal.SIGKILL)
    first.wait()
    text = first_log.read_text() + finish(search(args, second_log), second_log)

    trials = check_study(storage, "local", runs, 4)
    assert trials[victim.number].state == TrialState.FAIL
    # two workers: trial n sees the trials numbered n - 4 or lower (search.study.window)
    assert optuna.load_study(study_name="local", storage=storage).user_attrs["window"] == 4
    assert "database is locked" not in text and "Traceback" not in text


def test_a_worker_s_ctrl_c_is_raised_only_while_a_trial_runs_and_never_forgotten():
    """Between trials (Optuna's ask and tell) SIGINT is remembered and raised at the next trial
    boundary; while a trial runs it is raised at once."""
    interrupts = workers.Interrupts()
    before = signal.getsignal(signal.SIGINT)
    try:
        interrupts.install()
        os.kill(os.getpid(), signal.SIGINT)  # outside a trial: nothing raised here
        time.sleep(0.1)
        assert interrupts.requested
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        with pytest.raises(KeyboardInterrupt):  # a trial does not start after Ctrl-C
            with interrupts.armed():
                pass
        interrupts.requested = False
        with pytest.raises(KeyboardInterrupt):
            with interrupts.armed():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, before)
