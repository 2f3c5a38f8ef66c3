"""The session: what a study is about, checked before anything is written."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from search import cli
from search.errors import UsageError
from search.settings import Settings
from search.study.session import Options, Session

from conftest import TINY_SPACE


def _build(tmp_path, csv_path, **options):
    return Session.build(Settings.resolve(tmp_path / "runs"),
                         Options(space=str(TINY_SPACE), data=str(csv_path), **options))


def test_the_split_is_seeded_disjoint_and_complete(tmp_path, tiny_csv):
    a, b = _build(tmp_path, tiny_csv), _build(tmp_path, tiny_csv)
    np.testing.assert_array_equal(a.val_rows, b.val_rows)
    assert len(a.val_rows) == 32 and len(a.train_rows) == 128 and not len(a.test_rows)
    other = _build(tmp_path, tiny_csv, seed=1)
    assert set(other.val_rows) != set(a.val_rows)


def test_a_test_split_comes_off_first_and_joins_the_identity(tmp_path, tiny_csv):
    plain = _build(tmp_path, tiny_csv)
    held = _build(tmp_path, tiny_csv, test_fraction=0.2)
    rows = [set(held.train_rows), set(held.val_rows), set(held.test_rows)]
    assert sum(map(len, rows)) == 160 and len(rows[2]) == 32
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert held.identity()["split"] == "0.2:0:plain:test=0.2"
    assert plain.identity()["split"] == "0.2:0:plain"  # studies made before: unchanged
    assert "/ 32 test images" in held.describe()


def test_identity_mismatches_are_refused_but_missing_keys_are_not(tmp_path, tiny_csv):
    session = _build(tmp_path, tiny_csv)
    mine = session.identity()
    session.check_identity({**mine, "newer_key": None}, "study")
    session.check_identity({k: None for k in mine}, "study")
    with pytest.raises(UsageError, match="split: study has '0.3:0:plain'"):
        session.check_identity({**mine, "split": "0.3:0:plain"}, "study")


@pytest.mark.parametrize("fraction", ["0", "0.6", "-0.1"])
def test_a_test_fraction_outside_its_range_writes_nothing(tmp_path, tiny_csv, capsys,
                                                           fraction):
    runs = tmp_path / "runs"
    code = cli.main(["run", "--space", str(TINY_SPACE), "--data", str(tiny_csv),
                     "--runs-dir", str(runs), "--test-fraction", fraction])
    assert code == 2 and "--test-fraction must be in (0, 0.5]" in capsys.readouterr().err
    assert not (runs / "optuna.db").exists() and not (runs / "mlflow.db").exists()


def test_a_class_missing_from_the_training_rows_is_an_error(tmp_path, tiny_csv, capsys):
    """A label found on one row only can land in the test split."""
    rows = list(csv.DictReader(open(tiny_csv, newline="")))
    rows[0] = {**rows[0], "gender": "unknown"}
    path = tiny_csv.parent / "rare-label.csv"  # beside the images it names
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    try:
        for seed in range(50):  # find a seed whose test split takes the rare row
            try:
                session = _build(tmp_path, path, test_fraction=0.5, seed=seed)
            except UsageError as exc:
                assert "leaves no training row with gender='unknown'" in str(exc)
                break
            assert 0 in session.train_rows  # kept for training: try another seed
        else:
            pytest.fail("no seed put the rare row out of the training rows")
    finally:
        path.unlink()


def test_multi_objective_names_are_checked_before_training(tmp_path, tiny_csv, capsys):
    space = tmp_path / "multi.yaml"
    space.write_text(TINY_SPACE.read_text() + "objectives: [mean_accuracy, hair_colour]\n")
    runs = tmp_path / "runs"
    code = cli.main(["run", "--space", str(space), "--data", str(tiny_csv),
                     "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and "'hair_colour'" in err and "gender" in err
    assert not (runs / "optuna.db").exists()


OFFLINE_SPACE = """
params:
  backbone: {type: categorical, choices: [separable, pretrained]}
  family: mobilenet_v2
  alpha: {type: categorical, choices: [0.35, 0.5], when: {backbone: pretrained}}
  weights: auto
  image_size: 32
  epochs: 1
include: BASELINES
"""


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No weight file anywhere and the download host refusing connections (a closed port)."""
    from search.model import weights

    monkeypatch.setenv("SEARCH_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))
    monkeypatch.setattr(weights, "DOWNLOAD_HOST", ("127.0.0.1", 9))
    monkeypatch.setattr(weights, "_REACHABLE", [])


def _offline_space(tmp_path):
    from conftest import ROOT

    path = tmp_path / "offline.yaml"
    path.write_text(OFFLINE_SPACE.replace("BASELINES", str(ROOT / "spaces" / "baselines.yaml")))
    return path


def test_offline_without_weights_nothing_is_scheduled_that_can_only_fail(tmp_path, tiny_csv,
                                                                       offline):
    session = Session.build(Settings.resolve(tmp_path / "runs"),
                            Options(space=str(_offline_space(tmp_path)), data=str(tiny_csv)))
    backbone = next(p for p in session.space.params if p.name == "backbone")
    assert backbone.distribution is None and backbone.value == "separable"
    assert [e["name"] for e in session.space.enqueue] == ["model-1-separable"]
    assert any(n.startswith("skipped baseline model-2-resnet50-clr: no ImageNet weights")
               for n in session.notes)
    assert any(n.startswith("pretrained backbones left out") and "SEARCH_WEIGHTS_DIR" in n
               for n in session.notes)
    declared = Session.on_data(session.settings, session.options,
                               __import__("search.space.space").space.space.load(_offline_space(tmp_path)))
    assert session.identity()["space_fingerprint"] == declared.identity()["space_fingerprint"]


def test_with_local_weights_pretrained_trials_stay(tmp_path, tiny_csv, weights_dir,
                                                   monkeypatch):
    from search.model import weights

    monkeypatch.setenv("SEARCH_WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setattr(weights, "DOWNLOAD_HOST", ("127.0.0.1", 9))
    monkeypatch.setattr(weights, "_REACHABLE", [])
    session = Session.build(Settings.resolve(tmp_path / "runs"),
                            Options(space=str(_offline_space(tmp_path)), data=str(tiny_csv)))
    backbone = next(p for p in session.space.params if p.name == "backbone")
    assert backbone.distribution is not None
    assert not any(n.startswith("pretrained backbones left out") for n in session.notes)


def test_a_network_without_its_weight_file_is_left_out_of_the_choice(tmp_path, tiny_csv,
                                                                    weights_dir, monkeypatch):
    """Only some files present: the sampled family_alpha keeps the networks that have one."""
    from search.model import weights

    some = tmp_path / "some-weights"
    some.mkdir()
    kept = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5"
    (some / kept).symlink_to(weights_dir / kept)
    monkeypatch.setenv("SEARCH_WEIGHTS_DIR", str(some))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))
    monkeypatch.setattr(weights, "DOWNLOAD_HOST", ("127.0.0.1", 9))
    monkeypatch.setattr(weights, "_REACHABLE", [])
    path = tmp_path / "nets.yaml"
    path.write_text("name: nets\nparams:\n  backbone: pretrained\n  weights: imagenet\n"
                    "  family_alpha: {choices: ['mobilenet_v2:0.5', 'mobilenet_v2:0.35', "
                    "'mobilenet:0.25']}\n  image_size: 32\n  epochs: 1\n")
    session = Session.build(Settings.resolve(tmp_path / "runs"),
                            Options(space=str(path), data=str(tiny_csv)))
    nets = next(p for p in session.space.params if p.name == "family_alpha")
    assert nets.value == "mobilenet_v2:0.5"
    said = [n for n in session.notes if "left out" in n]
    assert said == [next(n for n in said)] and "mobilenet_v2:0.35, mobilenet:0.25" in said[0]
