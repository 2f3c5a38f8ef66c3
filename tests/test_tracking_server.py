"""The MLflow tracking server stopped mid-trial and started again (issue 27, item 2): the trial
waits on MLflow's own retries and completes, no trial is lost, none is left RUNNING in Optuna
or MLflow, every finished trial's run is complete on the server, and the run says in one line
that the server does not answer (and for how long MLflow retries), and in one that it answers
again. search.track.outage does the telling; the retrying is MLflow's.
"""

from __future__ import annotations

import http.server
import logging
import os
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest

from search.track import outage

from test_cluster import BIN, answers, free_ports, start, stop
from test_workers import (
    HEADS,
    LIGHT_SPACE,
    POSTGRES,
    check_study,
    finish,
    mid_trial,
    search,
    wait_for,
)

OUTAGE_S = 2  # the server is down this long, plus the ~12 s it takes to start again
DOWN = "MLflow tracking server {} does not answer ("
UP = "MLflow tracking server {} answers again after "


def mlflow_server(folder: Path, port: int):
    """`mlflow server` on this port, its runs in folder/mlflow.db; answering when returned."""
    log = folder / f"mlflow-server-{time.monotonic_ns()}.log"
    server = start([str(BIN / "mlflow"), "server", "--backend-store-uri",
                    f"sqlite:///{folder / 'mlflow.db'}", "--serve-artifacts",
                    "--artifacts-destination", str(folder / "mlartifacts"), "--host",
                    "127.0.0.1", "--port", str(port), "--workers", "1"], log,
                   dict(os.environ))
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/health") or server.poll() is not None,
             "the MLflow server", 120)
    assert server.poll() is None, log.read_text()[-3000:]
    return server


@pytest.mark.slow
@pytest.mark.e2e
def test_a_tracking_server_restarted_mid_trial_loses_nothing(tiny_csv, tmp_path):
    folder, runs, log = tmp_path / "server", tmp_path / "runs", tmp_path / "run.log"
    folder.mkdir()
    port = free_ports(1)[0]
    tracking = f"http://127.0.0.1:{port}"
    study = f"outage-{uuid.uuid4().hex[:8]}"
    storage = POSTGRES or f"sqlite:///{runs / 'optuna.db'}"
    space = tmp_path / "light.yaml"
    space.write_text(LIGHT_SPACE)
    server = mlflow_server(folder, port)
    run = None
    try:
        began = time.monotonic()
        run = search(["run", "--trials", "1", "--study", study, "--space", str(space), "--data",
                      str(tiny_csv), "--heads", ",".join(HEADS), "--runs-dir", str(runs),
                      "--storage", storage, "--tracking-uri", tracking, "--no-progress"], log,
                     MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1")  # tries 2, 4, 8, 16 s apart
        wait_for(lambda: f"study {study!r} on" in log.read_text(), "the study", 120)
        wait_for(lambda: mid_trial(storage, study), "a trial with its MLflow run", 300)
        stop(server)
        time.sleep(OUTAGE_S)
        server = mlflow_server(folder, port)
        text = finish(run, log)
        print(f"search run, 1 trial, the tracking server down mid-trial: "
              f"{time.monotonic() - began:.0f} s")
        said = [line for line in text.splitlines() if line.startswith("MLflow tracking server")]
        print("\n".join(said))
        assert len(said) == 2, text[-3000:]
        assert said[0].startswith(DOWN.format(tracking)) and said[0].endswith(
            "MLflow retries for about 2 min (MLFLOW_HTTP_REQUEST_MAX_RETRIES=7, "
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1) while the trial waits")
        assert said[1].startswith(UP.format(tracking))
        assert "Retrying" not in text and "Traceback" not in text
        trials = check_study(storage, study, runs, 1, tracking=tracking)
        assert [t.state.name for t in trials] == ["COMPLETE"]
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        stop(server)
        if POSTGRES:
            optuna.delete_study(study_name=study, storage=POSTGRES)


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def watched():
    """search.track.outage watching a loopback port; its filter taken off afterwards."""
    port = free_ports(1)[0]
    outage.watch(f"http://127.0.0.1:{port}")
    yield port
    logger = logging.getLogger(outage.LOGGER)
    logger.removeFilter(outage._watch)
    logger.setLevel(logging.NOTSET)
    outage._watch = None


def test_a_refused_request_is_said_once_and_an_answer_ends_it(watched, monkeypatch, capsys):
    """Real urllib3 retries (MLflow's session) against a closed port, then a server there."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    creds = MlflowHostCreds(f"http://127.0.0.1:{watched}")
    for _ in range(2):
        with pytest.raises(MlflowException):
            http_request(creds, "/health", "GET", backoff_jitter=0)
    assert outage.down()
    server = http.server.HTTPServer(("127.0.0.1", watched), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        http_request(creds, "/health", "GET")
    finally:
        server.shutdown()
    assert not outage.down()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert err[0] == (f"MLflow tracking server http://127.0.0.1:{watched} does not answer ([Errno "
                      f"111] Connection refused); MLflow retries for about 0 s (MLFLOW_HTTP_"
                      f"REQUEST_MAX_RETRIES=2, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=0) while the "
                      f"trial waits")
    assert err[1].startswith(f"MLflow tracking server http://127.0.0.1:{watched} answers again")
