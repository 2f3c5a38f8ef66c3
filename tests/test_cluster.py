"""The cluster as users run it, on this machine (issue 27; the same commands are in
docs/cluster.md, "A cluster on one machine"): the study in PostgreSQL (SEARCH_TEST_POSTGRES,
as .ci/run starts it; else SQLite, which two nodes of one host can share), an `mlflow server`
with --serve-artifacts, a Ray head from `ray start --head` and a second node joined with
`ray start --address` (Ray's CLI starts two nodes on one host, each with its own temp dir and
ports), each declaring one GPU it does not have (`--num-gpus 1`), Ray's token authentication
on; then `search run --ray HEAD --workers 4 --gpus-per-trial 0.5 --tracking-uri http://...`.
Checked: the four workers ran at once, two per declared GPU, each with the CUDA_VISIBLE_DEVICES
Ray assigned and memory growth set before TensorFlow was imported, and trials ran on both
nodes; every finished trial has its FINISHED run on the server, the champion is registered,
predicted and served from a folder that has no runs/ (the search's runs folder deleted), and
a node lost mid-trial (its raylet and workers SIGKILLed) fails that trial with a reason naming
the node, retries it and completes the study on the head.

One cluster for the module; every process it starts is stopped by id (its session), never by
name: other Ray instances may run on this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from search.study import study as study_lib

from conftest import ROOT
from test_model_server import b64, post
from test_ray import _ray_workers
from test_workers import (
    HEADS,
    LIGHT_SPACE,
    POSTGRES,
    POSTGRES_PASSWORD,
    check_study,
    finish,
    mid_trial,
    search,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("ray")]  # see test_ray

BIN = Path(sys.executable).parent  # ray and mlflow of this venv


@dataclass
class Cluster:
    ray: str  # the head's address, for --ray
    tracking: str  # the MLflow tracking server
    storage: str  # the study storage
    env: dict  # token authentication, for every process that talks to Ray
    second: subprocess.Popen  # `ray start --address ... --block`: the second node's leader


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def session_pids(leader: int) -> list[int]:
    """Every process of the session `leader` leads: a node's Ray daemons and its workers."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == leader:
                found.append(int(stat.parent.name))
    return found


def kill_session(leader: int, sig: int = signal.SIGKILL) -> None:
    for pid in session_pids(leader):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def start(command: list[str], log: Path, env: dict) -> subprocess.Popen:
    """A long-lived command leading its own session (so it and all it starts can be found)."""
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (`ray start --block` stops its node), then SIGKILL whatever of it is left."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    kill_session(process.pid)
    process.wait(timeout=30)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def started(process: subprocess.Popen, log: Path, words: str, what: str, timeout: float):
    def ready():
        if process.poll() is not None:
            raise AssertionError(f"{what} exited: {log.read_text()[-3000:]}")
        return words in log.read_text()
    wait_for(ready, what, timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """An MLflow tracking server and a two-node Ray cluster, as docs/cluster.md starts them."""
    folder = tmp_path_factory.mktemp("cluster")
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths are short
    token = secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    ray_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    mlflow_port, gcs, client, dashboard, agent, agent2 = free_ports(6)
    processes = []
    try:
        server_log = folder / "mlflow-server.log"
        server = start([str(BIN / "mlflow"), "server", "--backend-store-uri",
                        f"sqlite:///{folder / 'mlflow.db'}", "--serve-artifacts",
                        "--artifacts-destination", str(folder / "mlartifacts"),
                        "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
                       server_log, env)
        processes.append(server)
        head_log, second_log = folder / "ray-head.log", folder / "ray-second.log"
        head = start([str(BIN / "ray"), "start", "--head", "--block", "--port", str(gcs),
                      "--num-cpus", "2", "--num-gpus", "1", "--include-dashboard", "false",
                      "--dashboard-port", str(dashboard), "--ray-client-server-port",
                      str(client), "--dashboard-agent-listen-port", str(agent),
                      "--temp-dir", str(ray_tmp / "head"), "--disable-usage-stats"],
                     head_log, ray_env)
        processes.append(head)
        started(head, head_log, "Ray runtime started", "the Ray head", 120)
        second = start([str(BIN / "ray"), "start", "--address", f"127.0.0.1:{gcs}", "--block",
                        "--num-cpus", "1", "--num-gpus", "1",
                        "--dashboard-agent-listen-port", str(agent2),
                        "--temp-dir", str(ray_tmp / "second"), "--disable-usage-stats"],
                       second_log, ray_env)
        processes.append(second)
        started(second, second_log, "Ray runtime started", "the second Ray node", 120)
        status = [str(BIN / "ray"), "status", "--address", f"127.0.0.1:{gcs}"]
        wait_for(lambda: subprocess.run(status, env=ray_env, capture_output=True, text=True)
                 .stdout.split("Pending:")[0].count(" node_") == 2, "both Ray nodes", 60)
        tracking = f"http://127.0.0.1:{mlflow_port}"
        wait_for(lambda: answers(f"{tracking}/health") or server.poll() is not None,
                 "the MLflow server", 120)
        assert server.poll() is None, server_log.read_text()[-3000:]
        yield Cluster(ray=f"127.0.0.1:{gcs}", tracking=tracking, env=ray_env, second=second,
                      storage=POSTGRES or f"sqlite:///{folder / 'optuna.db'}")
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "light.yaml"
    path.write_text(LIGHT_SPACE)
    return path


def flags(cluster: Cluster, study: str, space: Path, csv: Path, runs: Path) -> list[str]:
    return ["--study", study, "--space", str(space), "--data", str(csv), "--heads",
            ",".join(HEADS), "--runs-dir", str(runs), "--storage", cluster.storage,
            "--tracking-uri", cluster.tracking, "--no-progress"]


def new_study() -> str:
    return f"cluster-{uuid.uuid4().hex[:8]}"


def searched(cluster, space, tiny_csv, folder: Path):
    """`search run --ray HEAD --workers 4 --gpus-per-trial 0.5 --cpus-per-trial 0.5` on the
    cluster (two declared GPUs, 3 CPUs): (study, its output, runs dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, runs, log = new_study(), folder / "runs", folder / "run.log"
    began = time.monotonic()
    text = finish(search(["run", "--ray", cluster.ray, "--workers", "4", "--trials", "4",
                          "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5",
                          *flags(cluster, study, space, tiny_csv, runs)], log, **cluster.env),
                  log)
    print(f"search run --ray on two nodes, 4 workers, 4 trials: {time.monotonic() - began:.0f} s")
    return study, text, runs


def test_four_workers_share_two_declared_gpus_then_the_champion_is_served_from_elsewhere(
        cluster, space, tiny_csv, tmp_path):
    """Two workers per declared GPU, all four at once: each joined the study before it was
    complete, and a worker stays until the study is complete, so all four held their half GPU
    together (Ray would have held a fifth back). Each saw the GPU Ray gave it, with memory
    growth set before TensorFlow was imported (no GPU here to see it work: what the worker
    set, in its first line). Then the champion is registered, predicted and served from a
    folder without runs/. One test, so the search runs once however the tests are ordered
    (as two tests sharing a fixture, xdist's order built the cluster and the search twice)."""
    study, text, runs = searched(cluster, space, tiny_csv, tmp_path / "search")
    try:
        _gpus_nodes_and_server(cluster, study, text, runs)
        _champion_from_elsewhere(cluster, study, runs, tiny_csv, tmp_path)
    finally:
        if POSTGRES:
            optuna.delete_study(study_name=study, storage=POSTGRES)


def _gpus_nodes_and_server(cluster, study: str, text: str, runs: Path) -> None:
    assert f"Ray: the Ray cluster at {cluster.ray}: 2 node(s), 3 CPUs, 2 GPUs" in text, \
        text[-3000:]
    assert "4 Ray worker task(s), each asking for 0.5 CPU, 0.5 GPU" in text
    summary = re.search(r"^4 workers ran on: \S+/(\w{8}) \(GPU 0\) x2, \S+/(\w{8}) "
                        r"\(GPU 0\) x2$", text, re.M)
    assert summary and summary[1] != summary[2], text[-3000:]
    print(summary[0])
    started = re.findall(r"worker (\d): pid (\d+) on \S+/\w{8} \(GPU (\d)\): (.*)$", text,
                         re.M)
    assert sorted(n for n, *_ in started) == ["1", "2", "3", "4"], text[-3000:]
    for _, _, gpu, device in started:
        assert device == (f"CUDA_VISIBLE_DEVICES='{gpu}', TF_FORCE_GPU_ALLOW_GROWTH=true, "
                          f"set before TensorFlow was imported"), device
    joined = dict(re.findall(rf"worker \S+:(\d+) joined study '{study}' on .*: (\d) of 4 "
                             rf"finished$", text, re.M))
    assert joined.keys() == {pid for _, pid, *_ in started}, text[-3000:]
    assert all(int(done) < 4 for done in joined.values()), joined
    trials = check_study(cluster.storage, study, runs, 4, tracking=cluster.tracking)
    finished = [t for t in trials if t.state in study_lib.FINISHED]
    overlap = (min(t.datetime_complete for t in finished)
               - max(t.datetime_start for t in finished)).total_seconds()
    print(f"the four trials overlapped for {overlap:.0f} s (first end minus last start), on "
          f"{len({t.user_attrs['worker'] for t in finished})} workers")
    nodes = {t.user_attrs[study_lib.NODE_ATTR] for t in finished}
    assert {n.removeprefix("ray:")[:8] for n in nodes} == {summary[1], summary[2]}
    assert not (runs / "mlflow.db").exists() and not (runs / "mlartifacts").exists()
    if POSTGRES_PASSWORD:
        assert POSTGRES_PASSWORD not in text


def _champion_from_elsewhere(cluster, study: str, runs: Path, tiny_csv, tmp_path) -> None:
    """From a folder without runs/ (and the search's runs folder deleted): everything comes
    from PostgreSQL and the tracking server."""
    shutil.rmtree(runs)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEARCH_STORAGE": cluster.storage,
           "MLFLOW_TRACKING_URI": cluster.tracking}

    def here(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=elsewhere,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return done

    here("best", "--study", study, "--register", "cluster-model")
    image = str(sorted((tiny_csv.parent / "images").iterdir())[0])
    predicted = here("predict", "--model", "models:/cluster-model@champion", image)
    assert json.loads(predicted.stdout.strip().splitlines()[-1])["gender"]["label"] in (
        "male", "female")
    assert not (elsewhere / "runs" / "mlflow.db").exists()

    port = free_ports(1)[0]
    log = tmp_path / "serve.log"
    began = time.monotonic()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", "models:/cluster-model@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", "")},
        cwd=elsewhere, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/ping") or server.poll() is not None,
                 "mlflow models serve", 180)
        assert server.poll() is None, log.read_text()[-3000:]
        print(f"mlflow models serve answered after {time.monotonic() - began:.0f} s")
        status, answer, _ = post(f"http://127.0.0.1:{port}",
                                 {"inputs": [b64(Path(image).read_bytes())]})
        assert status == 200, answer
        assert answer["predictions"][0]["gender"]["label"] in ("male", "female")
    finally:
        stop(server)


def test_a_client_without_ray_auth_mode_is_refused_in_one_line(cluster, space, tiny_csv,
                                                               tmp_path):
    """Ray 2.60: a client that names an address does not turn token authentication on by
    itself; the refusal says what to set, and nothing is written."""
    study, runs = new_study(), tmp_path / "runs"
    env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-m", "search.cli", "run", "--ray", cluster.ray,
                           *flags(cluster, study, space, tiny_csv, runs)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"--ray {cluster.ray}: the Ray cluster requires token authentication: export "
            f"RAY_AUTH_MODE=token here") in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not runs.exists()
    assert study not in optuna.get_all_study_names(cluster.storage)


def test_a_node_lost_mid_trial_fails_its_trial_naming_the_node_and_the_head_finishes(
        cluster, space, tiny_csv, tmp_path):
    """The second node's raylet, agents and workers SIGKILLed while a trial runs there, as
    a machine lost: the survivor on the head fails that trial by its heartbeat (not by a pid
    check: another Ray node, though the same host), with the node's id in the reason, runs
    its parameters again and completes the study; nothing stays RUNNING. Then the node comes
    back (the same `ray start --address`) and the same command, asking for more trials,
    resumes on both nodes."""
    study, runs, log = new_study(), tmp_path / "runs", tmp_path / "run.log"
    run = search(["run", "--ray", cluster.ray, "--workers", "2", "--trials", "2",
                  *flags(cluster, study, space, tiny_csv, runs)], log, **cluster.env)

    def on_second_node():
        there = set(session_pids(cluster.second.pid))
        for _, pid in _ray_workers(log.read_text()):
            trial = mid_trial(cluster.storage, study, pid) if pid in there else None
            if trial is not None:
                return trial
        return None

    try:
        victim = wait_for(on_second_node, "a trial on the second node", 300)
        kill_session(cluster.second.pid)
        lost_at = time.monotonic()
        text = finish(run, log)
    finally:
        if run.poll() is None:
            run.kill()
    print(f"the study completed {time.monotonic() - lost_at:.0f} s after the node was lost")
    node = victim.user_attrs[study_lib.NODE_ATTR].removeprefix("ray:")
    trials = check_study(cluster.storage, study, runs, 2, tracking=cluster.tracking)
    dead = trials[victim.number]
    reason = dead.user_attrs["fail_reason"]
    print(f"trial {dead.number}: {reason}")
    assert dead.state == TrialState.FAIL and f" on Ray node {node} stopped (no heartbeat" in reason
    assert not reason.endswith("its process is gone from this node)")  # not a local pid check
    assert f"trial {victim.number}: FAILED: its worker " in text
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs[study_lib.NODE_ATTR] != victim.user_attrs[study_lib.NODE_ATTR]
    closed = mlflow.MlflowClient(cluster.tracking).get_run(dead.user_attrs["mlflow_run_id"])
    assert closed.info.status == "FAILED" and node in closed.data.tags["search.reason"]

    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    back_log, (agent,) = tmp_path / "ray-back.log", free_ports(1)
    back = start([str(BIN / "ray"), "start", "--address", cluster.ray, "--block", "--num-cpus",
                  "1", "--num-gpus", "1", "--dashboard-agent-listen-port", str(agent),
                  "--temp-dir", str(ray_tmp), "--disable-usage-stats"], back_log, cluster.env)
    try:
        started(back, back_log, "Ray runtime started", "the second node, back", 120)
        status = [str(BIN / "ray"), "status", "--address", cluster.ray]
        wait_for(lambda: subprocess.run(status, env=cluster.env, capture_output=True, text=True)
                 .stdout.split("Pending:")[0].count(" node_") == 2,
                 "the lost node gone and the new one joined", 120)
        log = tmp_path / "resumed.log"
        text = finish(search(["run", "--ray", cluster.ray, "--workers", "2", "--trials", "4",
                              *flags(cluster, study, space, tiny_csv, runs)], log,
                             **cluster.env), log)
    finally:
        stop(back)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    summary = re.search(r"^2 workers ran on: \S+/(\w{8}) \(CPU\), \S+/(\w{8}) \(CPU\)$",
                        text, re.M)
    assert summary and summary[1] != summary[2] and node[:8] not in summary.groups(), text[-3000:]
    check_study(cluster.storage, study, runs, 4, tracking=cluster.tracking)
    if POSTGRES:
        optuna.delete_study(study_name=study, storage=POSTGRES)
