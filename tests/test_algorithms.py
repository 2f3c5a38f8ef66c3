"""Samplers and pruners by name: built from a space, checked when the space loads."""

from __future__ import annotations

import optuna
import pytest

from search import cli
from search.errors import ConfigError
from search.space import algorithms
from search.space import space as space_lib

from conftest import TINY_SPACE


@pytest.mark.parametrize("name, cls", [("tpe", "TPESampler"), ("random", "RandomSampler"),
                                       ("nsga2", "NSGAIISampler"), ("qmc", "QMCSampler")])
def test_samplers_by_name(name, cls):
    assert type(algorithms.sampler({"name": name}, seed=1)).__name__ == cls


@pytest.mark.parametrize("spec, cls", [
    ({"name": "median", "n_warmup_steps": 2}, "MedianPruner"),
    ({"name": "percentile", "percentile": 25.0}, "PercentilePruner"),
    ({"name": "hyperband"}, "HyperbandPruner"),
    ({"name": "successive_halving"}, "SuccessiveHalvingPruner"),
    ({"name": "wilcoxon"}, "WilcoxonPruner"),
    ({"name": "patient", "patience": 2, "wrapped": {"name": "median"}}, "PatientPruner"),
    ({"name": "heads"}, "NopPruner"), ({"name": "none"}, "NopPruner")])
def test_pruners_by_name(spec, cls):
    assert type(algorithms.pruner(spec)).__name__ == cls
    assert isinstance(algorithms.pruner(spec, multi_objective=True), optuna.pruners.NopPruner)


def _space(tmp_path, extra: str):
    path = tmp_path / "s.yaml"
    path.write_text(TINY_SPACE.read_text().replace("sampler: {name: tpe, n_startup_trials: 2}\n",
                                                   "").replace("pruner: {name: none}\n", "")
                    + extra)
    return path


@pytest.mark.parametrize("extra, message", [
    ("sampler: {name: annealing}\n", "sampler.name must be one of tpe, random, gp, cmaes"),
    ("pruner: {name: asha}\n", "pruner.name must be one of median, percentile"),
    ("pruner: {name: median, patience: 3}\n", "pruner {'name': 'median', 'patience': 3}"),
    ("pruner: {name: heads, median: 3}\n", "pruner heads: unknown key(s) median"),
    ("pruner: {name: heads, heads: 3}\n", "pruner heads: heads must be a list of head names"),
    ("pruner: {name: patient, patience: 1, wrapped: {name: nope}}\n",
     "pruner.wrapped.name must be one of")])
def test_bad_algorithms_are_refused_when_the_space_loads(tmp_path, tiny_csv, capsys, extra,
                                                         message):
    path = _space(tmp_path, extra)
    with pytest.raises(ConfigError, match="must be|unknown|pruner"):
        space_lib.load(path)
    runs = tmp_path / "runs"
    assert cli.main(["run", "--space", str(path), "--data", str(tiny_csv), "--runs-dir",
                     str(runs)]) == 2
    assert message in capsys.readouterr().err
    assert not (runs / "optuna.db").exists()


def test_a_sampler_whose_package_is_missing_says_what_to_install(tmp_path):
    import importlib.util

    if importlib.util.find_spec("cmaes") is not None:
        pytest.skip("cmaes is installed here")
    with pytest.raises(ConfigError, match="sampler cmaes needs the cmaes package: pip install"):
        space_lib.load(_space(tmp_path, "sampler: {name: cmaes}\n"))


@pytest.mark.e2e
def test_the_study_s_mlflow_parent_run_records_sampler_and_pruner(tmp_path, tiny_csv):
    import mlflow

    runs = tmp_path / "runs"
    path = _space(tmp_path, "sampler: {name: random}\npruner: {name: percentile, "
                            "percentile: 30.0}\n")
    assert cli.main(["run", "--space", str(path), "--data", str(tiny_csv), "--runs-dir",
                     str(runs), "--trials", "1", "--no-progress"]) == 0
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    parent = client.search_runs([client.get_experiment_by_name("default").experiment_id],
                                "tags.`search.role` = 'study'")[0]
    assert '"random"' in parent.data.params["sampler"]
    assert '"percentile"' in parent.data.params["pruner"]
