"""Models saved before the stage packages (search/heads.py, search/registry.py, ... flat) still
load and predict the same with the current code: a saved Keras model names its layers as
registered (`search>Towers`), and an MLflow model carries its own copy of the package.

The old code is the commit before the move, taken from this checkout's git history; without
that history (a tarball, a shallow clone) the test skips.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e  # subprocesses that import TensorFlow

BEFORE_LAYOUT = "3533b60"  # main's last commit with the flat search/ package
ROOT = Path(__file__).resolve().parents[1]

# Run by the old code: save a model (separable, rows neck, one head answered by its prior, so
# every registered layer class is in it), log it to MLflow, and print its predictions.
SAVE = """
import json, sys
from pathlib import Path
import numpy as np
old, out = sys.argv[1], Path(sys.argv[2])
import search
assert search.__file__.startswith(old), search.__file__
from search import model as model_lib
from search.config import TrialConfig
from search.tracking import Tracker
vocab = {"gender": ("female", "male"), "age": ("15-25", "25-35", "35-45")}
config = TrialConfig(width=8, depth=2, image_size=(32, 32), neck="rows", neck_units=8,
                     head_units=0)
folder = out / "folder"
folder.mkdir()
model_lib.export(model_lib.build(config, vocab), config,
                 priors={"age": [0.2, 0.5, 0.3]}).save(folder / "model.keras")
(folder / "labels.json").write_text(json.dumps({h: list(v) for h, v in vocab.items()}))
(folder / "config.json").write_text(json.dumps(config.to_dict()))
tracker = Tracker(f"sqlite:///{out / 'mlflow.db'}", "layout", artifact_root=out / "mlartifacts")
with tracker.trial_run(tracker.study_run("layout"), "layout", 0) as trial:
    uri = trial.log_model(folder / "model.keras", vocab, config.to_dict())
images = np.load(out / "images.npy")
import keras
probs = keras.models.load_model(folder / "model.keras", compile=False).predict(images, verbose=0)
print(json.dumps({"uri": uri, "probs": {h: p.tolist() for h, p in probs.items()}}))
"""
# Run by the current code, in a fresh process: the pyfunc of the old logged model.
PYFUNC = """
import json, sys
import mlflow, numpy as np
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
images = np.load(sys.argv[3])
print(json.dumps(model.predict([image for image in images])))
"""


@pytest.fixture(scope="module")
def old_model(tmp_path_factory):
    """(folder, tracking URI, model URI, probabilities) of a model the old code saved."""
    try:
        archive = subprocess.run(["git", "archive", BEFORE_LAYOUT, "search"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"commit {BEFORE_LAYOUT} is not in this checkout's git history")
    out = tmp_path_factory.mktemp("layout")
    old = out / "old"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(old, filter="data")
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 30, 3)).astype(np.uint8)
    np.save(out / "images.npy", images)
    done = subprocess.run([sys.executable, "-c", SAVE, str(old), str(out)], cwd=old,
                          env={**_env(), "PYTHONPATH": str(old)}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(done.stdout.strip().splitlines()[-1])
    return out, f"sqlite:///{out / 'mlflow.db'}", saved["uri"], saved["probs"], images


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_old_saved_model_loads_and_predicts_the_same_with_the_current_code(old_model):
    from search.track import registry

    out, _, _, probs, images = old_model
    model, vocab = registry.load_folder(out / "folder")
    assert set(vocab) == {"gender", "age"}
    now = registry.predict_probs(model, list(images))
    for head, expected in probs.items():
        np.testing.assert_allclose(now[head], np.array(expected), atol=1e-6)
    np.testing.assert_allclose(now["age"], [[0.2, 0.5, 0.3]] * 3, atol=1e-6)  # the prior


def test_the_old_logged_pyfunc_model_serves_with_its_own_code(old_model):
    out, tracking_uri, model_uri, probs, _ = old_model
    done = subprocess.run([sys.executable, "-c", PYFUNC, tracking_uri, model_uri,
                           str(out / "images.npy")], cwd=out, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(answers) == 3
    vocab = {"gender": ("female", "male"), "age": ("15-25", "25-35", "35-45")}
    for i, answer in enumerate(answers):
        for head, labels in vocab.items():
            best = int(np.argmax(probs[head][i]))
            assert answer[head]["label"] == labels[best]
            # the served answer rounds to 4 decimals
            assert answer[head]["probability"] == pytest.approx(probs[head][i][best], abs=1e-4)
