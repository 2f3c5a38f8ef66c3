"""The Optuna engine: a real 2-trial study end to end (Optuna trials, MLflow runs, registry, pull,
predict), resuming, and the loop's bookkeeping when workers race for the last slot."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from search import cli

import browser
from conftest import TINY_SPACE

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

HEADS = ("gender", "imagequality", "age", "weight", "carryingbag", "footwear", "emotion",
         "bodypose")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_csv):
    runs = tmp_path_factory.mktemp("runs")
    code = cli.main(["run", "--trials", "2", "--space", str(TINY_SPACE), "--data", str(tiny_csv),
                     "--study", "tiny", "--runs-dir", str(runs), "--no-progress"])
    assert code == 0
    return runs


def _study(runs):
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{runs / 'optuna.db'}")


def _client(runs):
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")


def test_trials_are_stored_with_per_head_results(study_dir):
    trials = _study(study_dir).get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        assert set(t.user_attrs["head_accuracy"]) == set(HEADS)
        assert 0.0 <= t.value <= 1.0
        assert t.user_attrs["mlflow_run_id"] and t.user_attrs["model_uri"]
        assert t.intermediate_values  # reported per epoch for the pruner
        from optuna.artifacts import get_all_artifact_meta

        names = {m.filename for m in get_all_artifact_meta(t, storage=_study(study_dir)._storage)}
        assert {"config.yaml", "learning_curves.json", "confusion.json",
                "learning_curves.html"} <= names  # shown in optuna-dashboard's trial view


def test_mlflow_has_parent_and_nested_trial_runs(study_dir):
    client = _client(study_dir)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("search.role") == "study"]
    children = [r for r in runs if r.data.tags.get("search.role") == "trial"]
    assert len(parents) == 1 and len(children) == 2
    parent_id = parents[0].info.run_id
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        assert child.info.status == "FINISHED"
        m = child.data.metrics
        for head in HEADS:
            for key in ("accuracy", "balanced_accuracy", "majority", "loss"):
                assert f"final_{head}_{key}" in m
        assert m["params_count"] > 0 and m["train_images_per_second"] > 0
        history = client.get_metric_history(child.info.run_id, "val_gender_accuracy")
        assert [h.step for h in history] == [1]
        assert child.data.params["clr_mode"] in ("triangular", "triangular2", "exp_range")


def test_same_command_resumes_the_same_study(study_dir, tiny_csv, capsys):
    args = ["run", "--space", str(TINY_SPACE), "--data", str(tiny_csv), "--study", "tiny",
            "--runs-dir", str(study_dir), "--no-progress"]
    assert cli.main(args + ["--trials", "2"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(args + ["--trials", "3"]) == 0
    assert len(_study(study_dir).get_trials(states=(TrialState.COMPLETE,))) == 3
    runs = _client(study_dir).search_runs(
        [_client(study_dir).get_experiment_by_name("tiny").experiment_id])
    assert sum(r.data.tags.get("search.role") == "study" for r in runs) == 1


def test_other_space_in_same_study_is_refused(study_dir, tiny_csv, capsys):
    code = cli.main(["run", "--trials", "5", "--space", str(TINY_SPACE), "--data", str(tiny_csv),
                     "--study", "tiny", "--runs-dir", str(study_dir), "--epochs", "2"])
    assert code == 2
    assert "different setup" in capsys.readouterr().err


def test_best_register_pull_predict(study_dir, tiny_csv, tmp_path, capsys):
    base = ["--runs-dir", str(study_dir)]
    assert cli.main(["best", "--study", "tiny", "--register", "tiny-model", *base]) == 0
    assert cli.main(["best", "--study", "tiny", "--register", "tiny-model", *base]) == 0
    out, err = capsys.readouterr()
    assert "champion" in out
    assert "Successfully registered" not in err and "already exists" not in err  # MLflow's
    client = _client(study_dir)
    champion = client.get_model_version_by_alias("tiny-model", "champion")
    study = _study(study_dir)
    best = study.best_trial
    assert champion.run_id == best.user_attrs["mlflow_run_id"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    aliased_trials = {best.number} | {
        max(complete, key=lambda t: t.user_attrs["head_accuracy"][h]).number for h in HEADS}
    versions = client.search_model_versions("name = 'tiny-model'")
    assert len(versions) == len(aliased_trials)  # registered twice, no duplicate versions
    for head in HEADS:
        top = max(complete, key=lambda t: t.user_attrs["head_accuracy"][head])
        aliased = client.get_model_version_by_alias("tiny-model", f"best-{head}")
        assert aliased.run_id == top.user_attrs["mlflow_run_id"]

    out = tmp_path / "pulled"
    assert cli.main(["pull", "models:/tiny-model@champion", "--out", str(out), *base]) == 0
    assert (out / "model.keras").is_file()
    vocab = json.loads((out / "labels.json").read_text())
    assert set(vocab) == set(HEADS) and "None" in vocab["carryingbag"]

    images = sorted((tiny_csv.parent / "images").glob("*.png"))[:2]
    capsys.readouterr()
    for model in (str(out), "models:/tiny-model@champion"):
        assert cli.main(["predict", "--model", model, *map(str, images), *base]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 2
        for line in lines:
            row = json.loads(line)
            for head in HEADS:
                assert row[head]["label"] in vocab[head]
                assert 0.0 <= row[head]["probability"] <= 1.0


def test_failing_trials_are_recorded_and_the_search_stops(tmp_path, tiny_csv, capsys):
    space = tmp_path / "nan.yaml"
    space.write_text(TINY_SPACE.read_text().replace(
        "base_lr: {type: float, low: 1.0e-3, high: 3.0e-3, log: true}",
        "base_lr: 1.0e+6\n  optimizer: sgd"))
    runs = tmp_path / "runs"
    code = cli.main(["run", "--trials", "3", "--space", str(space), "--data", str(tiny_csv),
                     "--study", "nan", "--runs-dir", str(runs), "--no-progress",
                     "--max-failures", "2"])
    assert code == 1
    assert "2 trials in a row failed" in capsys.readouterr().err
    trials = optuna.load_study(study_name="nan", storage=f"sqlite:///{runs / 'optuna.db'}").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert "NonFiniteLoss" in trials[0].user_attrs["fail_reason"]
    run = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}").get_run(
        trials[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "NonFiniteLoss" in run.data.tags["search.reason"]


def test_evaluate_matches_a_hand_count(study_dir, tiny_csv, tmp_path, capsys):
    import pandas as pd

    from search.data.table import decode
    from search.track import registry

    base = ["--runs-dir", str(study_dir)]
    assert cli.main(["best", "--study", "tiny", "--register", "eval-model", *base]) == 0
    rows = pd.read_csv(tiny_csv, keep_default_na=False).head(24)
    small = tiny_csv.parent / "small.csv"
    rows.to_csv(small, index=False)
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--model", "models:/eval-model@champion", "--data", str(small),
                     "--bootstrap", "200", "--json", str(out), *base]) == 0
    result = json.loads(out.read_text())["heads"]

    pulled = tmp_path / "m"
    cli.main(["pull", "models:/eval-model@champion", "--out", str(pulled), *base])
    net, vocab = registry.load(str(pulled))
    images = [decode(str(tiny_csv.parent / p)) for p in rows["image_path"]]
    probs = registry.predict_probs(net, images)
    for head in HEADS:
        predicted = [vocab[head][i] for i in probs[head].argmax(1)]
        hits = sum(p == t for p, t in zip(predicted, rows[head]))
        assert result[head]["accuracy"] == pytest.approx(hits / len(rows))
        majority = rows[head].value_counts().iloc[0] / len(rows)
        assert result[head]["majority"] == pytest.approx(majority)
        low, high = result[head]["accuracy_ci"]
        assert low <= result[head]["accuracy"] <= high
        low, high = result[head]["balanced_accuracy_ci"]
        assert low <= result[head]["balanced_accuracy"] <= high
    assert result["gender"]["n"] == 24

    rows.loc[3, "emotion"] = "Bored"
    rows.to_csv(small, index=False)
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(pulled), "--data", str(small), *base]) == 2
    err = capsys.readouterr().err
    assert "Bored" in err and "emotion" in err and "Traceback" not in err


def test_train_from_trial_retrains_the_same_config(study_dir, tiny_csv, capsys):
    study = _study(study_dir)
    number = study.best_trial.number
    base = ["--runs-dir", str(study_dir)]
    assert cli.main(["train", "--from-trial", f"tiny:{number}", "--epochs", "2",
                     "--register", "tiny-retrained", *base]) == 0
    client = _client(study_dir)
    version = client.get_model_version_by_alias("tiny-retrained", "retrained")
    run = client.get_run(version.run_id)
    assert run.data.tags["search.retrained_from"] == f"tiny:{number}"
    assert run.data.params["epochs"] == "2"
    original = study.best_trial.user_attrs["config"]
    assert run.data.params["width"] == str(original["width"])
    assert len(client.get_metric_history(run.info.run_id, "val_mean_accuracy")) == 2
    assert cli.main(["train", "--from-trial", "tiny", *base]) == 2
    assert "STUDY:NUMBER" in capsys.readouterr().err


def test_lr_find_prints_bounds_and_writes_the_curve(tmp_path, tiny_csv, capsys):
    out = tmp_path / "curve.html"
    assert cli.main(["lr-find", "--space", str(TINY_SPACE), "--data", str(tiny_csv),
                     "--runs-dir", str(tmp_path / "runs"), "--steps", "12", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "suggested base_lr" in text and "max_lr" in text
    html = out.read_text()
    assert "plotly" in html and "smoothed" in html
    assert not (tmp_path / "runs" / "optuna.db").exists()  # a range test creates no study


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command, path, expect", [
    ("dashboard", "/api/studies", "tiny"),
    ("mlflow-ui", "/ajax-api/2.0/mlflow/experiments/search?max_results=10", "tiny"),
])
def test_servers_answer_on_loopback(study_dir, command, path, expect):
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    study = ["--study", "tiny"] if command == "dashboard" else []
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", command, "--port", str(port),
                             "--runs-dir", str(study_dir), *study],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        body = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        assert body is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert expect in body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and any worker it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    first_line = proc.stdout.readline()
    assert f"http://127.0.0.1:{port}/" in first_line
    if command == "dashboard":  # with --study: the address of that study's own page
        assert f"http://127.0.0.1:{port}/dashboard/studies/" in first_line, first_line


def test_the_dashboard_refuses_an_unknown_study(study_dir, capsys):
    assert cli.main(["dashboard", "--study", "nope", "--runs-dir", str(study_dir)]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


class Watch:
    """`search run --workers 2` on the default SQLite storage, and `search dashboard` on it,
    polled while the run trains: what each side did."""

    def __init__(self, runs, port):
        self.runs, self.port = runs, port
        self.polls: list[tuple[str, object]] = []  # (path, trials seen, or why it failed)
        self.study_id = None
        self.run_code = None
        self.run_log = self.dashboard_log = ""

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return json.loads(r.read())

    def poll(self):
        """Alternately the study list and the study with its trials."""
        path = ("/api/studies" if len(self.polls) % 2 == 0 or self.study_id is None
                else f"/api/studies/{self.study_id}?after=0")
        try:
            body = self.get(path)
        except Exception as exc:  # a refused, failed or timed-out answer is the finding
            self.polls.append((path, f"{type(exc).__name__}: {exc}"))
            return
        if "study_summaries" in body:
            ids = [s["study_id"] for s in body["study_summaries"] if s["study_name"] == "watched"]
            self.study_id = ids[0] if ids else None
            self.polls.append((path, None))
        else:
            self.polls.append((path, [t["state"] for t in body["trials"]]))


@pytest.fixture(scope="module")
def watched(tmp_path_factory, tiny_csv):
    from test_workers import LIGHT_SPACE, wait_for, worker_pids
    from test_workers import search as start

    folder = tmp_path_factory.mktemp("watched")
    space = folder / "light.yaml"
    space.write_text(LIGHT_SPACE)
    watch = Watch(folder / "runs", _free_port())
    run_log, dashboard_log = folder / "run.log", folder / "dashboard.log"
    run = start(["run", "--workers", "2", "--trials", "4", "--study", "watched", "--space",
                 str(space), "--data", str(tiny_csv), "--heads", "gender,age", "--runs-dir",
                 str(watch.runs), "--no-progress"], run_log)
    dashboard = None
    try:
        wait_for(lambda: worker_pids(run_log), "the study to start", 120)  # it exists now
        dashboard = start(["dashboard", "--port", str(watch.port), "--runs-dir",
                           str(watch.runs)], dashboard_log)
        wait_for(lambda: _answers(watch), "the dashboard to listen", 60)
        deadline = time.monotonic() + 600
        while run.poll() is None and time.monotonic() < deadline:
            watch.poll()
            time.sleep(0.2)
        watch.run_code = run.wait(timeout=60)
        watch.poll()
        watch.poll()  # once more each, after the run ended
        watch.run_log, watch.dashboard_log = run_log.read_text(), dashboard_log.read_text()
        yield watch  # the dashboard keeps serving for the page test
    finally:
        for process in (run, dashboard):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def _answers(watch) -> bool:
    try:
        watch.get("/api/meta")
        return True
    except OSError:
        return False


def test_a_dashboard_beside_two_workers_neither_locks_nor_fails(watched):
    """optuna-dashboard#545 on the default storage: the dashboard opens runs/optuna.db
    read-only, so the run's writers never see "database is locked" and the dashboard answers
    every poll while they write, with the trials as they come."""
    assert watched.run_code == 0, watched.run_log[-3000:]
    study = _study_at(watched.runs, "watched")
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4
    failures = [(path, why) for path, why in watched.polls if isinstance(why, str)]
    assert failures == []
    seen = [states for _, states in watched.polls if isinstance(states, list)]
    assert len(seen) >= 5  # it was asked while the run trained ...
    assert any(states.count("Complete") < 4 for states in seen)  # ... saw it unfinished ...
    assert seen[-1].count("Complete") == 4  # ... and the end
    for log in (watched.run_log, watched.dashboard_log):
        assert "database is locked" not in log and "Traceback" not in log

    before = _system_attrs(watched.runs)
    note = urllib.request.Request(  # what the dashboard's note editor sends
        f"http://127.0.0.1:{watched.port}/api/studies/{watched.study_id}/note", method="PUT",
        data=json.dumps({"version": 1, "body": "a note"}).encode(),
        headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(note, timeout=30)
    assert refused.value.code == 500  # read-only: it cannot write, so it never locks
    assert _system_attrs(watched.runs) == before


@pytest.mark.skipif(browser.chromium_path() is None, reason="chromium is not installed")
def test_the_dashboard_pages_show_the_study_and_a_trial_s_artifacts(watched):
    """The page itself, in headless Chromium: the study list, the study's history named by
    its objective (not "Objective 0"), and one trial's artifacts; no console errors."""
    base = f"http://127.0.0.1:{watched.port}/dashboard"
    number = _study_at(watched.runs, "watched").best_trial.number
    pages = {"list": f"{base}", "history": f"{base}/studies/{watched.study_id}",
             "trial": f"{base}/studies/{watched.study_id}/trials?numbers={number}"}
    texts = {}
    for name, url in pages.items():
        dom, log = browser.render_url(url)
        assert browser.console_errors(log) == [], name
        texts[name] = browser.page_text(dom)
    assert "watched" in texts["list"] and "Direction: MAXIMIZE" in texts["list"]
    assert "y Axis mean_accuracy" in texts["history"] and "Objective 0" not in texts["history"]
    trial = texts["trial"]
    assert f"Trial {number} (trial_id=" in trial
    files = trial[trial.index("Artifacts"):]
    for name in ("config.yaml", "learning_curves.json", "learning_curves.html",
                 "confusion.json"):
        assert name in files, name


def _study_at(runs, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'optuna.db'}")


def _system_attrs(runs) -> dict:
    """The study's system attributes, where optuna-dashboard keeps notes."""
    store = optuna.storages.RDBStorage(f"sqlite:///{runs / 'optuna.db'}")
    return store.get_study_system_attrs(store.get_study_id_from_name("watched"))


def test_multi_objective_study_has_named_directions_and_no_pruning(tmp_path, tiny_csv, capsys):
    space = tmp_path / "multi.yaml"
    space.write_text(TINY_SPACE.read_text().replace(
        "pruner: {name: none}", "pruner: {name: median, n_startup_trials: 0}\n"
                                "objectives: [mean_accuracy, params, gender:max]"))
    runs = tmp_path / "runs"
    assert cli.main(["run", "--trials", "2", "--space", str(space), "--data", str(tiny_csv),
                     "--study", "multi", "--runs-dir", str(runs), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "pruning is off" in out and "Pareto front" in out
    study = optuna.load_study(study_name="multi", storage=f"sqlite:///{runs / 'optuna.db'}")
    assert study.metric_names == ["mean_accuracy", "params", "gender"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MAXIMIZE"]
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.values[0] == pytest.approx(t.user_attrs["mean_accuracy"])
        assert t.values[1] == t.user_attrs["params_count"]
        assert t.values[2] == pytest.approx(t.user_attrs["head_accuracy"]["gender"])
        assert not t.intermediate_values  # never reported, never pruned
    assert cli.main(["best", "--study", "multi", "--register", "multi-model",
                     "--runs-dir", str(runs)]) == 0
    assert cli.main(["pareto", "--study", "multi", "--runs-dir", str(runs)]) == 0


def test_a_lost_race_is_not_a_failure(tmp_path, tiny_csv, monkeypatch):
    """Another worker takes the last slot between this worker's check and its ask: this
    worker's trial is surplus, is not trained, and does not count towards --max-failures."""
    from search import engines
    from search.engines import loop
    from search.engines import trial as trial_lib
    from search.settings import Settings
    from search.study import study as study_lib
    from search.study.session import Options

    trained = []
    monkeypatch.setattr(trial_lib, "run", lambda *a, **k: trained.append(1))  # slots are tested
    options = Options(study="race", space=str(TINY_SPACE), data=str(tiny_csv), trials=1,
                      max_failures=1, progress=False)
    engine = engines.create("optuna", Settings.resolve(tmp_path / "runs"), options)
    engine.open()
    engine.start_tracking()
    study = engine.study
    ask = study.ask

    def racing_ask(*args, **kwargs):
        study.ask = ask
        other = ask()  # the other worker's trial comes first, claims and finishes
        study_lib.claim(other, n_trials=1)
        study.tell(other, 0.3)
        return ask(*args, **kwargs)

    study.ask = racing_ask
    outcome = loop.trials(engine)
    assert outcome.stopped is None and outcome.finished == 1
    assert not trained and study_lib.is_surplus(study.get_trials()[1])


def test_resuming_continues_the_sampler_instead_of_replaying_it(tmp_path, tiny_csv):
    """Each resume seeds the sampler anew from the trials held: no parameter set repeats;
    another study draws other start-up trials, the same study state the same ones."""
    def run(runs, study, trials):
        assert cli.main(["run", "--space", str(TINY_SPACE), "--data", str(tiny_csv),
                         "--study", study, "--runs-dir", str(runs), "--no-progress",
                         "--trials", str(trials)]) == 0
        return optuna.load_study(study_name=study, storage=f"sqlite:///{runs / 'optuna.db'}")

    for trials in (2, 3, 4):  # run, then resume twice
        study = run(tmp_path / "a", "resume", trials)
    params = [tuple(sorted(t.params.items())) for t in study.get_trials()]
    assert len(params) == 4 and len(set(params)) == 4
    other = run(tmp_path / "a", "other", 1).get_trials()[0].params
    assert other != study.get_trials()[0].params
    replay = run(tmp_path / "b", "resume", 1).get_trials()[0].params
    assert replay == study.get_trials()[0].params


def test_models_outside_the_best_are_deleted_and_disk_use_is_shown(tmp_path, tiny_csv, capsys):
    from search.track.tracking import MODEL_DELETED_TAG

    space = tmp_path / "keep.yaml"
    space.write_text(TINY_SPACE.read_text() + "keep_models: 1\n")
    runs = tmp_path / "runs"
    assert cli.main(["run", "--space", str(space), "--data", str(tiny_csv), "--study", "keep",
                     "--heads", "gender,age", "--runs-dir", str(runs), "--no-progress",
                     "--trials", "4"]) == 0
    assert "disk: " in capsys.readouterr().out
    study = optuna.load_study(study_name="keep", storage=f"sqlite:///{runs / 'optuna.db'}")
    client = _client(runs)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    kept = {study.best_trial.number}
    for head in ("gender", "age"):
        kept.add(max(trials, key=lambda t: t.user_attrs["head_accuracy"][head]).number)
    assert len(kept) < 4
    models = runs / "mlartifacts" / "keep" / "models"
    for t in trials:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        uri = t.user_attrs.get("model_uri")  # none: not saved, it could not be among the kept
        folder = models / uri.removeprefix("models:/") if uri else None
        if t.number in kept:
            assert MODEL_DELETED_TAG not in run.data.tags and folder.is_dir()
        else:
            assert run.data.tags[MODEL_DELETED_TAG] == "true"
            assert folder is None or not folder.exists()
    assert len(list(models.iterdir())) == len(kept)
    assert cli.main(["best", "--study", "keep", "--register", "kept", "--runs-dir",
                     str(runs)]) == 0


def test_a_pretrained_trial_without_imagenet_weights_says_so_everywhere(tmp_path, tiny_csv,
                                                                        capsys, monkeypatch):
    """weights: auto that fell back to random init shows in the trial's line, its user attrs,
    `search best` and the report, not only as an MLflow param (issue 12)."""
    from search.model import weights

    if weights.downloadable():
        pytest.skip("ImageNet weights can be downloaded here: nothing falls back")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached weight file either
    space = tmp_path / "space.yaml"  # MobileNet alpha 0.75: no file of it in ../shared
    space.write_text(TINY_SPACE.read_text().replace(
        "  backbone: separable\n",
        "  backbone: pretrained\n  family: mobilenet\n  alpha: 0.75\n  weights: auto\n"))
    runs = tmp_path / "runs"
    common = ["--study", "random-init", "--runs-dir", str(runs)]
    assert cli.main(["run", "--space", str(space), "--data", str(tiny_csv), "--trials", "1",
                     "--no-progress", *common]) == 0
    said = "[weights: none (imagenet unavailable"
    assert said in capsys.readouterr().out  # the trial's line and the summary
    (trial,) = optuna.load_study(study_name="random-init",
                                 storage=f"sqlite:///{runs / 'optuna.db'}").get_trials()
    assert trial.user_attrs["weights_resolved"].startswith("none (imagenet unavailable")
    assert cli.main(["best", *common]) == 0
    assert said in capsys.readouterr().out
    page = tmp_path / "report.html"
    assert cli.main(["report", "--out", str(page), *common]) == 0
    assert "trained from random weights" in page.read_text()


def test_a_missing_gradient_registry_is_said_once(monkeypatch, capsys):
    """free_trial_graphs relies on TensorFlow's private gradient registry; a release without
    it gets one warning (memory then grows per trial), not silence and not a crash."""
    from tensorflow.python.framework import ops

    from search.engines import base

    monkeypatch.setattr(ops, "_gradient_registry", None)
    monkeypatch.setattr(base, "_WARNED", set())
    base.free_trial_graphs()
    base.free_trial_graphs()
    err = capsys.readouterr().err
    assert err.count("gradient registry is gone") == 1 and "--isolate" in err


def test_a_stale_trial_waits_while_another_worker_beats_and_fails_once_none_does(
        tmp_path, monkeypatch):
    """The dead-trial rule on a real SQLite study (heartbeat times set in the database): a
    trial two intervals behind is left alone while another process still beats (a slow worker
    is not a dead one; the wait line says for how long at most), and failed with a reason,
    its parameters queued clean, once no other process beats."""
    import re
    import sqlite3

    from search.study.heartbeats import fail_dead_trials, waiting_line
    from search.study.storage import storage

    monkeypatch.setenv("SEARCH_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("SEARCH_HEARTBEAT_GRACE", "3600")
    db = tmp_path / "o.db"
    study = optuna.create_study(storage=storage(f"sqlite:///{db}"), study_name="beats")
    stale, live = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), study.ask()
    for trial, worker in ((stale, "elsewhere:1"), (live, "elsewhere:2")):
        trial.set_user_attr("worker", worker)
        study._storage.record_heartbeat(trial._trial_id)

    def beat_ago(trial, seconds):
        with sqlite3.connect(db) as con:
            con.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', ?) "
                        "WHERE trial_id = ?", (f"-{seconds} seconds", trial._trial_id))

    beat_ago(stale, 30)
    assert fail_dead_trials(study) == []
    assert re.search(r"waiting for 2 running trial\(s\) of other workers: a dead worker's trial "
                     r"fails within 3[56]\d\d s \(heartbeat grace period 3600 s",
                     waiting_line(study, 2))
    beat_ago(live, 30)
    lines = fail_dead_trials(study)
    assert [line.split(":")[0] for line in lines] == ["trial 0", "trial 1"]
    trials = study.get_trials()
    for trial, worker in zip(trials[:2], ("elsewhere:1", "elsewhere:2")):
        assert trial.state == TrialState.FAIL
        reason = trial.user_attrs["fail_reason"]
        assert reason.startswith(f"its worker {worker} stopped (no heartbeat since ")
        assert reason.endswith("and no other worker is alive)")
    retries = trials[2:]
    assert [t.system_attrs["failed_trial"] for t in retries] == [0, 1]
    assert all(t.state == TrialState.WAITING and not t.user_attrs for t in retries)
    assert fail_dead_trials(study) == []
