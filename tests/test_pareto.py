"""`search pareto`: the front against a brute-force definition, ties, and the CLI on a real
study."""

from __future__ import annotations

import csv
import io
import json
import random

import optuna
import pytest

from search import cli
from search.study.pareto import pareto_front

import tiny_study


def brute_force(points: dict[int, dict[str, float]]) -> list[int]:
    """The definition, O(n²): n is out if some q is >= on every head and > on one."""
    def beats(q, p):
        return all(q[h] >= p[h] for h in p) and any(q[h] > p[h] for h in p)

    return sorted(n for n, p in points.items()
                  if not any(beats(q, p) for m, q in points.items() if m != n))


@pytest.mark.parametrize("seed", range(40))
def test_front_equals_brute_force_on_random_points(seed):
    rng = random.Random(seed)
    heads = [f"h{i}" for i in range(rng.randint(1, 5))]
    coarse = rng.random() < 0.5  # few distinct values: many ties and duplicates
    draw = (lambda: rng.randint(0, 3) / 4) if coarse else rng.random
    points = {n: {h: draw() for h in heads} for n in rng.sample(range(1000), rng.randint(1, 60))}
    assert pareto_front(points) == brute_force(points)


@pytest.mark.parametrize("points, front", [
    ({}, []),
    ({7: {"a": 0.1}}, [7]),
    ({1: {"a": 0.5, "b": 0.5}, 2: {"a": 0.5, "b": 0.5}}, [1, 2]),  # equal everywhere: both stay
    ({1: {"a": 1.0, "b": 0.0}, 2: {"a": 0.0, "b": 1.0}}, [1, 2]),  # a trade-off
    ({1: {"a": 0.6, "b": 0.5}, 2: {"a": 0.5, "b": 0.5}}, [1]),  # equal on b, better on a
    ({1: {"a": 0.9, "b": 0.9}, 2: {"a": 0.5, "b": 0.5}, 3: {"a": 0.5, "b": 0.5}}, [1]),
    ({1: {"a": 0.9, "b": 0.1}, 2: {"a": 0.9, "b": 0.1}, 3: {"a": 0.1, "b": 0.9},
      4: {"a": 0.1, "b": 0.8}}, [1, 2, 3]),
    ({5: {"a": 0.5}, 3: {"a": 0.5}, 4: {"a": 0.4}}, [3, 5]),  # one head: the ties of the max
])
def test_hand_cases(points, front):
    assert pareto_front(points) == front == brute_force(points)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_csv):
    return tiny_study.runs_dir(tmp_path_factory, tiny_csv)


def _trials(runs):
    study = optuna.load_study(study_name=tiny_study.STUDY,
                              storage=f"sqlite:///{runs / 'optuna.db'}")
    return {t.number: t for t in study.trials if t.state.name == "COMPLETE"}


@pytest.mark.e2e
def test_table_lists_exactly_the_front(runs, capsys):
    trials = _trials(runs)
    assert len(trials) == 3
    expected = brute_force({n: t.user_attrs["head_accuracy"] for n, t in trials.items()})
    assert cli.main(["pareto", "--study", tiny_study.STUDY, "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"study 'tiny': {len(expected)} of 3 completed trial(s)")
    header, body = out[1].split(), [line.split() for line in out[2:]]
    assert header[:4] == ["trial", "mlflow", "run", "id"] and header[-2:] == ["params", "mean"]
    assert sorted(int(cells[0]) for cells in body) == expected
    for cells in body:
        t = trials[int(cells[0])]
        assert cells[1] == t.user_attrs["mlflow_run_id"]
        assert [float(c) for c in cells[2:10]] == pytest.approx(
            list(t.user_attrs["head_accuracy"].values()), abs=6e-4)  # 3 decimals
        assert int(cells[10]) == t.user_attrs["params_count"]


@pytest.mark.e2e
def test_json_rows_and_chosen_heads(runs, capsys):
    trials = _trials(runs)
    heads = ["age", "carryingbag"]
    assert cli.main(["pareto", "--study", tiny_study.STUDY, "--runs-dir", str(runs), "--json",
                     "--heads", ",".join(heads)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = brute_force({n: {h: t.user_attrs["head_accuracy"][h] for h in heads}
                            for n, t in trials.items()})
    assert sorted(r["trial"] for r in rows) == expected
    for r in rows:
        t = trials[r["trial"]]
        assert list(r["head_accuracy"]) == heads
        assert r["run_id"] == t.user_attrs["mlflow_run_id"] and r["value"] == t.value
        assert r["params_count"] == t.user_attrs["params_count"]


@pytest.mark.e2e
def test_format_json_is_one_document_and_csv_holds_the_same_rows(runs, capsys):
    """--format json: one document whose front is what the deprecated --json prints line by
    line; --format csv: the same rows, one per line under a header."""
    base = ["pareto", "--study", tiny_study.STUDY, "--runs-dir", str(runs),
            "--heads", "age,gender"]
    assert cli.main([*base, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert cli.main([*base, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "study": tiny_study.STUDY, "heads": ["age", "gender"], "completed": 3, "front": lines}
    assert cli.main([*base, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["trial", "run_id", "age", "gender", "params_count",
                             "mean_accuracy", "value"]
    assert [[int(r["trial"]), r["run_id"], float(r["age"]), float(r["gender"]),
             int(r["params_count"]), float(r["mean_accuracy"]), float(r["value"])]
            for r in rows] == [[line["trial"], line["run_id"], line["head_accuracy"]["age"],
                                line["head_accuracy"]["gender"], line["params_count"],
                                line["mean_accuracy"], line["value"]] for line in lines]
    with pytest.raises(SystemExit):
        cli.main(["pareto", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--format {table,csv,json}" in text and "--json deprecated" in text


@pytest.mark.e2e
@pytest.mark.parametrize("args, message", [
    (["--heads", "age,shoes"], "--heads: unknown head(s) 'shoes'; the trials have: gender,"),
    (["--heads", "age,age"], "--heads: a head is listed twice"),
    (["--study", "nope"], "no study named 'nope'"),
])
def test_user_mistakes_are_one_line_errors(runs, capsys, args, message):
    assert cli.main(["pareto", "--runs-dir", str(runs), "--study", "tiny", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
