"""The files optuna-dashboard shows in a trial's view, stored through Optuna's artifact API."""

import json

import optuna
import yaml
from optuna.artifacts import download_artifact, get_all_artifact_meta

from search.track import artifacts


def test_a_trial_gets_its_config_curves_and_confusion(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="files", storage=storage)
    trial = study.ask()
    store = artifacts.store(tmp_path)
    history = {"val_gender_accuracy": [0.6, 0.7], "val_gender_balanced_accuracy": [0.5, 0.6],
               "loss": [1.0, 0.8]}
    confusion = {"labels": {"gender": ["female", "male"]}, "confusion": {"gender": [[3, 1],
                                                                                   [0, 4]]}}
    ids = artifacts.upload(store, trial, config={"width": 16, "image_size": [32, 32]},
                           history=history, confusion=confusion)
    assert len(ids) == 4
    metas = {m.filename: m.artifact_id for m in get_all_artifact_meta(trial)}
    assert set(metas) == {"config.yaml", "learning_curves.json", "confusion.json",
                          "learning_curves.html"}

    def text(name):
        path = tmp_path / f"down-{name}"
        download_artifact(artifact_store=store, artifact_id=metas[name], file_path=str(path))
        return path.read_text()

    assert yaml.safe_load(text("config.yaml")) == {"width": 16, "image_size": [32, 32]}
    assert json.loads(text("learning_curves.json")) == history
    assert json.loads(text("confusion.json")) == confusion
    page = text("learning_curves.html")
    assert page.count('"name":"gender"') == 1  # accuracy only: not balanced, not loss
    assert '"name":"gender_balanced"' not in page


def test_a_reader_does_not_create_the_folder(tmp_path):
    artifacts.store(tmp_path / "runs", create=False)
    assert not (tmp_path / "runs" / artifacts.STORE_DIR).exists()
