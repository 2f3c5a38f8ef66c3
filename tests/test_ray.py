"""`search run --ray`: a real Ray instance on this machine (started and stopped by the run)
whose two workers stop on Ctrl-C and, resumed, reach the study's target, one of them
SIGKILLed mid-trial and restarted by Ray, the study resumed without Ray and its champion
registered and served; and the flags, addresses and states refused in one line, before
anything is written.

Storage: PostgreSQL when SEARCH_TEST_POSTGRES is set (.ci/run starts it), else the local SQLite
files, which workers of a Ray instance on this machine share. Ray keeps its files under
RAY_TMPDIR (default here /tmp/ray-search-test) and the run stops the instance it started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from search import cli
from search.study import study as study_lib

from conftest import ROOT
from test_workers import (
    HEADS,
    POSTGRES,
    POSTGRES_PASSWORD,
    check_study,
    finish,
    light_space,  # noqa: F401 (a fixture)
    mid_trial,
    search,
    stored_trials,
    wait_for,
)

# e2e: a whole search, worker, server or subprocess CLI; one xdist worker runs every Ray test
# (two Ray instances on one machine would contend for the dashboard agent's fixed port)
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("ray")]

RAY_ENV = {"RAY_TMPDIR": os.environ.get("RAY_TMPDIR", "/tmp/ray-search-test")}


@pytest.fixture
def study():
    """A fresh study name (deleted from PostgreSQL afterwards when that is the storage)."""
    name = f"ray-{uuid.uuid4().hex[:8]}"
    yield name
    if POSTGRES:
        try:
            optuna.delete_study(study_name=name, storage=POSTGRES)
        except KeyError:
            pass


def _flags(study: str, space: Path, csv: Path, runs: Path) -> tuple[list[str], str]:
    """The flags of one study on the test storage, and that storage's URL."""
    storage = POSTGRES or f"sqlite:///{runs / 'optuna.db'}"
    return (["--study", study, "--space", str(space), "--data", str(csv), "--heads",
             ",".join(HEADS), "--runs-dir", str(runs), "--storage", storage, "--no-progress"],
            storage)


def _ray_workers(text: str) -> list[tuple[int, int]]:
    """(worker number, pid) of each Ray worker start the log shows (restarts included)."""
    return [(int(n), int(pid)) for n, pid in re.findall(r"worker (\d+): pid (\d+) on ", text)]


# --- refused in one line, nothing written ------------------------------------------------------


@pytest.mark.parametrize("flags, says", [
    (["--ray", "--gpus-per-trial", "0"], "--gpus-per-trial must be above 0"),
    (["--ray", "--gpus-per-trial", "-0.5"], "--gpus-per-trial must be above 0"),
    (["--ray", "--gpus-per-trial", "1.5"], "a whole number above 1"),
    (["--ray", "--cpus-per-trial", "0"], "--cpus-per-trial must be above 0"),
    (["--gpus-per-trial", "0.5"], "add --ray"),
    (["--ray", "--gpus", "0"], "use --gpus-per-trial G instead"),
    (["--ray", "ray://10.255.255.1:10001"], "are files on this machine"),  # SQLite: both
    (["--ray", "10.255.255.1:6379", "--storage", "postgresql+psycopg2://u:s3cret@db/x"],
     "the MLflow store sqlite:"),
    (["--ray", "10.255.255.1:6379", "--storage", "postgresql+psycopg2://u:s3cret@db/x",
      "--tracking-uri", "/srv/mlruns"], "the MLflow store /srv/mlruns is a file"),
    (["--ray", "10.255.255.1:6379", "--storage", "postgresql+psycopg2://u:s3cret@db/x",
      "--tracking-uri", "file:///srv/mlruns"], "the MLflow store file:///srv/mlruns is a file"),
    (["--ray", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
    (["--ray", "ray://127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
])
def test_bad_ray_flags_and_addresses_are_one_line(flags, says, tmp_path, tiny_csv, capsys):
    runs = tmp_path / "runs"
    code = cli.main(["run", "--data", str(tiny_csv), "--runs-dir", str(runs), "--no-progress",
                     "--study", "refused", *flags])
    err = capsys.readouterr().err
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and "s3cret" not in err
    if "files" in says or "MLflow store" in says:
        assert "PostgreSQL" in err and "MLflow tracking server" in err
    assert not runs.exists()


@pytest.mark.skipif(not POSTGRES, reason="SEARCH_TEST_POSTGRES is not set (.ci/run starts "
                    "PostgreSQL)")
def test_a_storage_url_without_its_password_is_one_line(tmp_path, tiny_csv, capsys,
                                                        monkeypatch):
    """The server asks for a password the URL lacks: one line naming host and port, exit 2,
    nothing written (no password from the environment or a .pgpass either)."""
    import sqlalchemy

    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    url = sqlalchemy.engine.make_url(POSTGRES)  # (URL.set(password=None) keeps it)
    bare = sqlalchemy.engine.URL.create(url.drivername, url.username, host=url.host,
                                        port=url.port, database=url.database)
    runs = tmp_path / "runs"
    code = cli.main(["run", "--data", str(tiny_csv), "--runs-dir", str(runs), "--no-progress",
                     "--study", "refused", "--storage",
                     bare.render_as_string(hide_password=False)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot open study storage postgresql+psycopg2://" in err, err
    assert f"(host {bare.host}, port {bare.port})" in err and "password" in err
    assert len(err.strip().splitlines()) == 1 and POSTGRES_PASSWORD not in err
    assert not runs.exists()


def test_ray_not_installed_says_how_to_install_it(monkeypatch, tmp_path, tiny_csv, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    runs = tmp_path / "runs"
    code = cli.main(["run", "--ray", "--data", str(tiny_csv), "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and "pip install -e '.[ray]'" in err and len(err.strip().splitlines()) == 1
    assert not runs.exists()


def test_importing_the_cli_imports_neither_ray_nor_tensorflow():
    code = ("import sys, search.cli, search.study.workers, search.study.ray_workers; "
            "print(sorted(m for m in ('ray', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stderr


def _node(address: str, cpus: float, gpus: float) -> dict:
    """A node as ray.nodes() describes it (the keys check_fits reads)."""
    return {"NodeManagerAddress": address, "Alive": True,
            "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_a_trial_must_fit_on_one_node_cpus_and_gpus_together():
    """Each resource alone fits on some node, but no node has both: refused (Ray would keep
    the workers pending for ever); the single-resource refusals keep their wording."""
    from search.errors import UsageError
    from search.study.ray_cluster import check_fits

    cpu_node, gpu_node = _node("10.0.0.5", 8, 0), _node("10.0.0.6", 1, 2)
    check_fits([cpu_node, gpu_node], 1, 0.5)  # two per GPU on 10.0.0.6
    check_fits([cpu_node, gpu_node], 8, 0)
    with pytest.raises(UsageError, match=r"^--cpus-per-trial 2 --gpus-per-trial 0.5: no node "
                       r"of the Ray cluster has both at once \(nodes: 10.0.0.5 8 CPU/0 GPU, "
                       r"10.0.0.6 1 CPU/2 GPU\)$"):
        check_fits([cpu_node, gpu_node], 2, 0.5)
    with pytest.raises(UsageError, match="--gpus-per-trial 4: no node .* the most a node has "
                       r"is 2 \(on 10.0.0.6\)"):
        check_fits([cpu_node, gpu_node, _node("10.0.0.7", 1, 2)], 1, 4)


# --- a real local Ray instance -----------------------------------------------------------------


@pytest.mark.slow
def test_more_gpus_per_trial_than_a_node_has_is_refused(tmp_path, tiny_csv):
    pytest.importorskip("ray")
    runs, log = tmp_path / "runs", tmp_path / "run.log"
    run = search(["run", "--ray", "--gpus-per-trial", "64", "--data", str(tiny_csv),
                  "--runs-dir", str(runs), "--no-progress"], log, **RAY_ENV)
    run.wait(timeout=300)
    text = log.read_text()
    assert run.returncode == 2, text[-3000:]
    assert "--gpus-per-trial 64: no node of the Ray cluster has that many GPUs" in text
    assert not runs.exists()


@pytest.mark.slow
def test_ray_workers_stop_on_ctrl_c_then_the_same_command_reaches_the_target(
        study, light_space, tiny_csv, tmp_path):
    runs = tmp_path / "runs"
    flags, storage = _flags(study, light_space, tiny_csv, runs)
    args = ["run", "--ray", "--workers", "2", "--trials", "4", *flags]
    log = tmp_path / "interrupted.log"
    run = search(args, log, **RAY_ENV)
    wait_for(lambda: "Ray worker task(s)" in log.read_text(), "the study to start", 120)
    wait_for(lambda: mid_trial(storage, study), "a Ray worker's trial", 300)
    run.send_signal(signal.SIGINT)  # Ctrl-C: the tasks are cancelled, the study saved
    run.wait(timeout=120)
    text = log.read_text()
    assert run.returncode == 130, text[-3000:]
    assert "interrupted: running trials are marked FAIL" in text
    for _, pid in _ray_workers(text):  # Ray's worker processes are gone with the instance
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), f"worker {pid} to end", 60)
    stopped = stored_trials(storage, study)
    assert stopped and not [t for t in stopped if t.state == TrialState.RUNNING]
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    every = client.search_runs([client.get_experiment_by_name(study).experiment_id])
    assert not [r for r in every if r.info.status == "RUNNING"]

    log = tmp_path / "ray.log"  # the same command resumes
    text = finish(search(args, log, **RAY_ENV), log)
    assert "Ray: a Ray instance started on this machine: 1 node(s)" in text
    assert re.search(r"^2 workers ran on: \S+ \(CPU\) x2$", text, re.M)
    assert len({pid for _, pid in _ray_workers(text)}) == 2
    trials = check_study(storage, study, runs, 4)
    assert len({t.number for t in trials}) == len(trials)
    interrupted = {t.number for t in stopped if t.state == TrialState.FAIL}
    assert {t.number for t in trials if t.state == TrialState.FAIL
            and not study_lib.is_surplus(t)} <= interrupted
    if POSTGRES_PASSWORD:  # not in our output, nor in any of Ray's logs
        assert POSTGRES_PASSWORD not in text
        logs = Path(RAY_ENV["RAY_TMPDIR"], "ray").glob("session_*/logs/*")
        assert not [f for f in logs if f.is_file() and POSTGRES_PASSWORD.encode() in f.read_bytes()]
    # `search best --register` and `predict` against a Ray-run study: tests/test_cluster.py


@pytest.mark.slow
def test_a_killed_ray_worker_is_restarted_and_its_trial_retried(study, light_space, tiny_csv,
                                                                 tmp_path):
    runs = tmp_path / "runs"
    flags, storage = _flags(study, light_space, tiny_csv, runs)
    log = tmp_path / "ray.log"
    run = search(["run", "--ray", "--workers", "2", "--trials", "4", *flags], log, **RAY_ENV)
    wait_for(lambda: "Ray worker task(s)" in log.read_text(), "the study to start", 120)
    victim = wait_for(lambda: mid_trial(storage, study), "a Ray worker's trial", 300)
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    text = finish(run, log)

    started = _ray_workers(text)
    killed = next(n for n, p in started if p == pid)
    assert len([p for n, p in started if n == killed]) == 2  # Ray started it again
    trials = check_study(storage, study, runs, 4)
    dead = trials[victim.number]
    assert dead.state == TrialState.FAIL and not study_lib.is_surplus(dead)
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    closed = client.get_run(victim.user_attrs["mlflow_run_id"])
    assert closed.info.status == "FAILED" and "no heartbeat" in closed.data.tags["search.reason"]
    assert re.search(r"^2 workers ran on: \S+ \(CPU\) x2$", text, re.M)


@pytest.mark.slow
def test_a_worker_that_cannot_read_the_data_names_its_node_and_the_path(tmp_path, light_space,
                                                                       capsys, monkeypatch):
    """Every node must see the CSV at the same path: a worker that cannot read it stops with
    its node's address and the path, exit code 2 (here: one node, a path it lacks)."""
    pytest.importorskip("ray")
    from search.engines import work
    from search.settings import Settings
    from search.study.ray_workers import RayPool
    from search.study.session import Options

    monkeypatch.setenv("RAY_TMPDIR", RAY_ENV["RAY_TMPDIR"])
    settings = Settings.resolve(tmp_path / "runs")
    missing = tmp_path / "elsewhere" / "annotations.csv"
    pool = RayPool(Options(ray="local", workers=1), settings)
    try:
        codes = pool.launch(work, (settings, Options(space=str(light_space), data=str(missing),
                                                     heads=HEADS, progress=False)))
    finally:
        pool.close()
    err = capsys.readouterr().err
    assert codes == [2]
    assert re.search(rf"worker 1: error: on node \S+: .*{re.escape(str(missing))}", err), err
