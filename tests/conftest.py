"""Shared fixtures: a tiny synthetic dataset, a tiny space, the real data and weights if present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TINY_SPACE = Path(__file__).with_name("tiny_space.yaml")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
if (SHARED / "weights").is_dir():  # genuine ImageNet files: this machine cannot download them
    os.environ.setdefault("SEARCH_WEIGHTS_DIR", str(SHARED / "weights"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Refuse a run whose xdist groups do not hold. `--dist loadgroup` (setup.cfg) keeps the
    tests marked `xdist_group("ray")` on one worker by suffixing their node ids with
    "@ray"; with pytest 9.2 the suffix silently stopped taking (pytest-dev/pytest-xdist#1386),
    two Ray instances and their PostgreSQL studies ran at once and the CI run failed with
    "remaining connection slots are reserved"."""
    if not getattr(config.option, "loadgroup", False):  # not an xdist worker with loadgroup
        return
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark and not item.nodeid.endswith("@" + str(mark.args[0] if mark.args else
                                                         mark.kwargs.get("name", "default"))):
            raise pytest.UsageError(
                f"pytest-xdist's --dist loadgroup is not grouping {item.nodeid} "
                "(pytest-dev/pytest-xdist#1386 with pytest 9.2): "
                "pip install -e '.[test]' to get a pytest this project supports")


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    """160 synthetic 32 px images with the 8 real heads and vocabularies."""
    from search.data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("tiny"), n=160, size=32, seed=1)


@pytest.fixture(scope="session")
def hvc_csv() -> Path:
    csv = SHARED / "hvc" / "hvc_annotations.csv"
    if not csv.is_file():
        pytest.skip("../shared/hvc is not present")
    return csv


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    folder = SHARED / "weights"
    if not folder.is_dir():
        pytest.skip("../shared/weights is not present")
    return folder


SMALL_SPACE = """
name: small
pruner: {name: none}
prune_below_majority: false   # both trials train to the end and log their model
params: {backbone: separable, width: 8, depth: 2, image_size: 32, batch_size: 32, epochs: 1}
enqueue:
  - name: separable-crop
    config: {backbone: separable, width: 8, depth: 2, neck_units: 16, head_units: 0,
             crop: auto, image_size: 32, batch_size: 32, epochs: 1}
  - name: separable-rows
    config: {backbone: separable, width: 8, depth: 2, neck: rows, neck_units: 16,
             head_units: 0, image_size: 32, batch_size: 32, epochs: 1}
  - name: frozen-mobilenet
    config: {backbone: pretrained, family: mobilenet_v2, alpha: 0.35, weights: auto,
             fine_tune_fraction: 0.0, neck_units: 16, head_units: 4, image_size: 32,
             batch_size: 32, epochs: 1}
"""


@pytest.fixture(scope="session")
def small_models(tmp_path_factory, tiny_csv):
    """Three trained, logged models (a separable net cropping black borders, one with the
    rows neck, a frozen MobileNetV2 0.35), the champion registered as `small`: (runs folder, {name: model URI})."""
    import mlflow

    from search import cli

    folder = tmp_path_factory.mktemp("small")
    space = folder / "space.yaml"
    space.write_text(SMALL_SPACE)
    runs = folder / "runs"
    common = ["--runs-dir", str(runs)]
    assert cli.main(["run", "--trials", "3", "--space", str(space), "--study", "small",
                     "--data", str(tiny_csv), "--no-progress", *common]) == 0
    assert cli.main(["best", "--study", "small", "--register", "small", *common]) == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("small")
    uris = {run.data.tags["search.baseline"]: run.data.tags["search.model_uri"]
            for run in client.search_runs([experiment.experiment_id],
                                          "tags.`search.role` = 'trial'")}
    return runs, uris


@pytest.fixture(scope="module")
def tiny_session(tmp_path_factory, tiny_csv):
    """A session on the tiny data with an empty space and its device set: what a test
    needs to prepare or fit a config directly (one per test module)."""
    from search.settings import Settings
    from search.space import space as space_lib
    from search.study.session import Options, Session

    made = Session.on_data(Settings.resolve(tmp_path_factory.mktemp("session") / "runs"),
                           Options(data=str(tiny_csv)), space_lib.Space(name="t", params=()))
    made.use_device()
    return made
