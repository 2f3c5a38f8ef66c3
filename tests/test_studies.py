"""`search studies` on one storage holding a real 2-trial study (trained, registered) and
studies written trial by trial (every trial state, surplus trials, a multi-objective study, an
empty one), with a real MLflow registry; and `search best --format csv|json`."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import subprocess
import sys
from datetime import datetime, timedelta

import mlflow
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from search import cli
from search.study.storage import storage

from conftest import TINY_SPACE

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

HEADS = ("gender", "age")
T0 = datetime(2026, 1, 2, 10, 0)
# The hand-made study "counts": every state a trial can end in, at known times.
COUNTS = {"study": "counts", "complete": 2, "pruned": 1, "failed": 1, "running": 1,
          "best": 0.65, "objective": "mean_accuracy", "heads": {"gender": 0.7, "age": 0.7},
          "started": "2026-01-02T10:00:00", "updated": "2026-01-02T11:00:00"}
COLUMNS = ["study", "complete", "pruned", "failed", "running", "best", "gender", "age",
           "champion", "started", "updated"]


def _trial(state, minutes, length=None, value=None, values=None, **attrs) -> FrozenTrial:
    start = T0 + timedelta(minutes=minutes)
    return FrozenTrial(number=0, state=state, value=value, values=values, datetime_start=start,
                       datetime_complete=None if length is None
                       else start + timedelta(minutes=length),
                       params={}, distributions={}, user_attrs=attrs, system_attrs={},
                       intermediate_values={}, trial_id=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_csv):
    runs = tmp_path_factory.mktemp("studies") / "runs"
    assert cli.main(["run", "--trials", "2", "--space", str(TINY_SPACE), "--data", str(tiny_csv),
                     "--heads", ",".join(HEADS), "--study", "tiny", "--runs-dir", str(runs),
                     "--no-progress", "--test-fraction", "0.25"]) == 0
    assert cli.main(["best", "--study", "tiny", "--register", "tiny-model",
                     "--runs-dir", str(runs)]) == 0
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.create_experiment("by-hand")
    counted_run, other_run = (client.create_run(experiment).info.run_id for _ in range(2))

    store = storage(f"sqlite:///{runs / 'optuna.db'}")
    counts = optuna.create_study(storage=store, study_name="counts", direction="maximize")
    counts.set_user_attr("objective", "mean_accuracy")
    for trial in (
            _trial(TrialState.COMPLETE, 0, 5, 0.6, head_accuracy={"gender": 0.7, "age": 0.5}),
            _trial(TrialState.COMPLETE, 10, 10, 0.65, head_accuracy={"gender": 0.6, "age": 0.7},
                   mlflow_run_id=counted_run),
            _trial(TrialState.PRUNED, 20, 1),
            _trial(TrialState.FAIL, 30, 1, fail_reason="NonFiniteLoss"),
            _trial(TrialState.FAIL, 40, 0, surplus=True),  # no failure: a slot already taken
            _trial(TrialState.RUNNING, 60)):
        counts.add_trial(trial)
    multi = optuna.create_study(storage=store, study_name="multi",
                                directions=["maximize", "minimize"])
    multi.add_trial(_trial(TrialState.COMPLETE, 24 * 60, 2, values=[0.5, 1000.0],
                           mean_accuracy=0.55, head_accuracy={"gender": 0.55}))
    optuna.create_study(storage=store, study_name="empty")

    for name, run_id in (("counts-model", counted_run), ("elsewhere", other_run)):
        client.create_registered_model(name)
        version = client.create_model_version(name, source=f"runs:/{run_id}/model",
                                              run_id=run_id).version
        client.set_registered_model_alias(name, "champion", version)
    return runs


def _search(capsys, runs, *args):
    code = cli.main([*args, "--runs-dir", str(runs)])
    out, err = capsys.readouterr()
    return code, out, err


def _tiny(runs):
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{runs / 'optuna.db'}")


def test_the_study_names_its_objective_for_the_dashboard(runs):
    assert _tiny(runs).metric_names == ["mean_accuracy"]


def test_table_one_row_per_study(runs, capsys):
    code, out, err = _search(capsys, runs, "studies")
    assert code == 0 and err == ""
    header, *lines = out.splitlines()
    assert header.split() == COLUMNS
    rows = {cells[0]: dict(zip(COLUMNS, cells))
            for cells in (re.split(r"\s{2,}", line.strip()) for line in lines)}
    assert list(rows) == ["counts", "empty", "multi", "tiny"]  # default: by name
    assert rows["counts"] == {"study": "counts", "complete": "2", "pruned": "1", "failed": "1",
                              "running": "1", "best": "0.6500", "gender": "0.700",
                              "age": "0.700", "champion": "counts-model v1 (#1)",
                              "started": "2026-01-02 10:00", "updated": "2026-01-02 11:00"}
    assert set(rows["empty"].values()) == {"empty", "0", "-"}
    assert rows["multi"]["best"] == "0.5500" and rows["multi"]["age"] == "-"
    assert rows["tiny"]["champion"].startswith("tiny-model v1 (#")


def test_json_matches_the_storage_and_the_registry(runs, capsys):
    code, out, err = _search(capsys, runs, "studies", "--format", "json")
    assert code == 0 and err == ""
    rows = {r["study"]: r for r in json.loads(out)}
    assert {k: rows["counts"][k] for k in COUNTS} == COUNTS
    assert rows["counts"]["champion"] == [{"model": "counts-model", "version": "1", "trial": 1}]
    assert rows["multi"]["best"] == 0.55 and rows["multi"]["objective"] == "mean_accuracy"
    assert rows["empty"] == {"study": "empty", "complete": 0, "pruned": 0, "failed": 0,
                             "running": 0, "best": None, "objective": None, "heads": {},
                             "champion": [], "started": None, "updated": None}

    study = _tiny(runs)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    tiny = rows["tiny"]
    assert tiny["complete"] == 2 and tiny["best"] == study.best_value
    assert tiny["heads"] == {h: max(t.user_attrs["head_accuracy"][h] for t in trials)
                             for h in HEADS}
    assert tiny["started"] == min(t.datetime_start for t in trials).isoformat(timespec="seconds")
    assert tiny["updated"] == max(t.datetime_complete for t in trials).isoformat(
        timespec="seconds")
    version = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}").get_model_version_by_alias(
        "tiny-model", "champion")
    number = next(t.number for t in trials if t.user_attrs["mlflow_run_id"] == version.run_id)
    assert number == study.best_trial.number
    assert tiny["champion"] == [{"model": "tiny-model", "version": str(version.version),
                                 "trial": number}]


def _order(runs, capsys, column):
    code, out, _ = _search(capsys, runs, "studies", "--format", "csv", "--sort", column)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == COLUMNS
    return [r["study"] for r in rows], rows


def test_csv_sorted_by_any_column(runs, capsys):
    names, rows = _order(runs, capsys, "age")  # the best age accuracy, highest first
    ages = {r["study"]: float(r["age"]) for r in rows if r["age"]}
    assert set(ages) == {"counts", "tiny"}
    assert names == sorted(ages, key=lambda n: -ages[n]) + ["empty", "multi"]  # blanks last
    assert _order(runs, capsys, "started")[0] == ["tiny", "multi", "counts", "empty"]
    assert _order(runs, capsys, "failed")[0] == ["counts", "empty", "multi", "tiny"]
    assert _order(runs, capsys, "champion")[0] == ["counts", "tiny", "empty", "multi"]
    counts = next(r for r in rows if r["study"] == "counts")
    assert counts["started"] == COUNTS["started"] and counts["best"] == "0.65"


def test_an_unknown_sort_column_is_one_line_listing_the_columns(runs, capsys):
    code, out, err = _search(capsys, runs, "studies", "--sort", "shoes")
    assert code == 2 and out == ""
    assert err == ("search studies: error: --sort: unknown column 'shoes'; the columns are: "
                   + ", ".join(COLUMNS) + "\n")


def test_no_storage_file_and_an_empty_storage(tmp_path, capsys):
    code, out, err = _search(capsys, tmp_path / "runs", "studies")
    assert code == 2 and out == ""
    assert f"no study storage at {tmp_path / 'runs' / 'optuna.db'}: run `search run`" in err
    assert not (tmp_path / "runs").exists()  # reading creates nothing
    storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert _search(capsys, tmp_path, "studies")[1].startswith("no studies in sqlite:///")
    assert _search(capsys, tmp_path, "studies", "--format", "json")[1] == "[]\n"


def test_without_a_registry_the_champion_column_is_empty(runs, tmp_path, capsys):
    missing = tmp_path / "mlflow.db"
    code, out, err = _search(capsys, runs, "studies", "--format", "json",
                             "--tracking-uri", f"sqlite:///{missing}")
    assert code == 0 and err == ""
    assert all(row["champion"] == [] for row in json.loads(out))
    assert not missing.exists()  # no empty store is created to look

    with socket.socket() as s:  # a port nobody listens on: the server is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = datetime.now()
    code, out, err = _search(capsys, runs, "studies", "--tracking-uri", f"http://127.0.0.1:{port}")
    assert code == 0 and "counts" in out
    assert err.startswith(f"champion column left empty: cannot read the MLflow model registry "
                          f"at http://127.0.0.1:{port}: ") and err.count("\n") == 1
    assert datetime.now() - started < timedelta(seconds=60)  # MLflow alone retries for minutes


def test_best_json_holds_heads_test_scores_and_registered_versions(runs, capsys):
    code, out, err = _search(capsys, runs, "best", "--study", "tiny", "--format", "json",
                             "--register", "tiny-model")
    assert code == 0
    doc = json.loads(out)  # stdout is the JSON document and nothing else
    study = _tiny(runs)
    champion = study.best_trial
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert doc["trial"] == champion.number and doc["value"] == champion.value
    assert doc["objective"] == "mean_accuracy" and doc["model_uri"] == champion.user_attrs[
        "model_uri"]
    test = champion.user_attrs["test_scores"]
    for h in HEADS:
        top = max(trials, key=lambda t: t.user_attrs["head_accuracy"][h])
        assert doc["heads"][h] == {"accuracy": champion.user_attrs["head_accuracy"][h],
                                   "best_accuracy": top.user_attrs["head_accuracy"][h],
                                   "best_trial": top.number, "test": test[h]}
    assert doc["test_mean_accuracy"] == pytest.approx(sum(test[h]["accuracy"] for h in HEADS) / 2)

    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    registered = doc["registered"]
    assert registered["model"] == "tiny-model" and registered["not_set"] == []
    for entry in registered["versions"]:
        for alias in entry["aliases"]:
            assert str(client.get_model_version_by_alias("tiny-model", alias).version) == \
                entry["version"]
    assert sorted(a for e in registered["versions"] for a in e["aliases"]) == sorted(
        ["champion", "best-gender", "best-age"])
    assert "use it: search predict --model models:/tiny-model@champion" in err  # not on stdout


def test_best_csv_one_row_per_head(runs, capsys):
    code, out, err = _search(capsys, runs, "best", "--study", "tiny", "--format", "csv")
    assert code == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    champion = _tiny(runs).best_trial
    assert [r["head"] for r in rows] == list(HEADS)
    for r in rows:
        test = champion.user_attrs["test_scores"][r["head"]]
        assert int(r["champion_trial"]) == champion.number
        assert float(r["champion_accuracy"]) == champion.user_attrs["head_accuracy"][r["head"]]
        assert [float(r[k]) for k in ("test_accuracy", "test_accuracy_low",
                                      "test_accuracy_high")] == [test["accuracy"],
                                                                 *test["accuracy_ci"]]


def test_reading_commands_do_not_import_tensorflow(runs):
    code = ("import sys; from search import cli\n"
            f"for args in (['studies'], ['best', '--study', 'tiny', '--format', 'json']):\n"
            f"    assert cli.main([*args, '--runs-dir', {str(runs)!r}]) == 0\n"
            "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
