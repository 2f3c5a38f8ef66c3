"""Keras 3 backends (search.backend): a search, its final model and predict on JAX with
TensorFlow not importable; the model it saved loads and answers the same on TensorFlow; the
study resumes on TensorFlow; a backend that is not installed is one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from search import backend, cli
from search.errors import UsageError

SPACE = """
name: jax
pruner: {name: none}
prune_below_majority: false
params: {backbone: separable, width: 8, depth: 2, image_size: 32, batch_size: 32, epochs: 1}
enqueue:
  - name: separable-crop
    config: {backbone: separable, width: 8, depth: 2, neck_units: 16, head_units: 0,
             crop: auto, image_size: 32, batch_size: 32, epochs: 2, cutout: 0.5}
  - name: frozen-mobilenet
    config: {backbone: pretrained, family: mobilenet_v2, alpha: 0.35, weights: auto,
             fine_tune_fraction: 0.0, neck_units: 16, head_units: 4, image_size: 32,
             batch_size: 32, epochs: 1}
"""

# Runs `search` as on a machine without TensorFlow: importing it fails, as when it is not
# installed (Keras itself looks for "tensorflow" in sys.modules, so it is not put there).
WITHOUT_TENSORFLOW = textwrap.dedent("""
    import sys

    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoTensorFlow())
    from search.cli import main

    for argv in sys.argv[1:]:
        code = main(argv.split("\\x1f"))
        if code:
            raise SystemExit(code)
    assert not any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
""")


def _without_tensorflow(*commands: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW,
                           *("\x1f".join(c) for c in commands)],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, **env})


@pytest.mark.jax
@pytest.mark.e2e  # a subprocess CLI: about a minute of JAX compiling on 2 cores
def test_a_search_its_final_model_and_predict_run_on_jax_without_tensorflow(tmp_path,
                                                                           tiny_csv):
    pytest.importorskip("jax")
    import mlflow

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    image = next((tiny_csv.parent / "images").iterdir())
    common = ["--runs-dir", str(runs)]
    done = _without_tensorflow(
        ["run", "--backend", "jax", "--trials", "2", "--space", str(space), "--study", "jx",
         "--data", str(tiny_csv), "--no-progress", *common],
        ["best", "--study", "jx", "--register", "jx", "--ensemble", "2", *common],
        ["predict", "--model", "models:/jx@champion", "--runs-dir", str(runs), str(image)],
        env={"KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best trial #" in done.stdout, done.stdout[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    heads = ["gender", "imagequality", "age", "weight", "carryingbag", "footwear", "emotion",
             "bodypose"]
    assert [k for k in answer if k != "image"] == heads  # JAX sorts dict keys; we do not

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    trial = client.search_runs([client.get_experiment_by_name("jx").experiment_id],
                               "tags.`search.role` = 'trial'")[0]
    assert trial.data.params["device.backend"] == "jax"
    # The logged model asks for JAX, not TensorFlow, and says it was saved on JAX; it loads and
    # answers the same on TensorFlow, and where nothing chose a backend, on JAX. In fresh
    # processes: loading a pyfunc puts its copy of `search` in sys.modules.
    serve = textwrap.dedent(f"""
        import json, os, mlflow
        from mlflow.models import Model
        from search.data.table import decode
        local = mlflow.artifacts.download_artifacts("models:/jx@champion")
        with open(os.path.join(local, "requirements.txt")) as f:
            names = [line.split("==")[0] for line in f.read().split()]
        model = mlflow.pyfunc.load_model("models:/jx@champion")
        import keras  # after the model chose its backend
        print(json.dumps([keras.backend.backend(), Model.load(local).metadata, names,
                          model.predict([decode({str(image)!r})])[0]]))
    """)
    for chosen, expected in (({"KERAS_BACKEND": "tensorflow"}, "tensorflow"), ({}, "jax")):
        env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
        served = subprocess.run([sys.executable, "-c", serve], capture_output=True, text=True,
                                timeout=300, env={**env, **chosen,
                                                  "MLFLOW_TRACKING_URI": client.tracking_uri})
        assert served.returncode == 0, served.stderr[-2000:]
        loaded_on, metadata, names, ours = json.loads(served.stdout.strip().splitlines()[-1])
        assert loaded_on == expected and metadata["keras_backend"] == "jax"
        assert "jax" in names and "tensorflow" not in names
        for head in heads:
            assert ours[head]["label"] == answer[head]["label"]
            assert ours[head]["probability"] == pytest.approx(answer[head]["probability"],
                                                              abs=2e-4)
    # The study, made on JAX, resumes on TensorFlow: configs name no backend.
    assert cli.main(["run", "--trials", "3", "--space", str(space), "--study", "jx",
                     "--data", str(tiny_csv), "--no-progress", *common]) == 0
    import optuna

    study = optuna.load_study(study_name="jx", storage=f"sqlite:///{runs / 'optuna.db'}")
    assert len([t for t in study.trials if t.state.is_finished()]) == 3


def test_a_backend_that_is_not_installed_is_one_line_and_writes_nothing(tmp_path, capsys):
    missing = next((b for b in ("torch", "jax") if importlib.util.find_spec(b) is None), None)
    if missing is None:
        pytest.skip("every backend is installed here")
    runs = tmp_path / "runs"
    assert cli.main(["run", "--backend", missing, "--trials", "1", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the {missing} package is not installed" in err[0]
    assert "pip install" in err[0] and not runs.exists()


def test_an_unknown_backend_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["predict", "--backend", "mxnet", "--model", "x", "a.png"])
    assert stop.value.code == 2 and "mxnet" in capsys.readouterr().err


def test_keras_already_loaded_on_another_backend_is_refused(monkeypatch):
    import keras  # noqa: F401  loaded on TensorFlow by this test process

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert backend.select(None) == "tensorflow" and backend.is_tensorflow()
    if importlib.util.find_spec("jax") is not None:
        with pytest.raises(UsageError, match="already loaded on tensorflow"):
            backend.select("jax")


def test_every_verb_that_loads_keras_takes_backend():
    parser = cli.build_parser()
    actions = {a.dest: a for a in parser._subparsers._group_actions}["command"].choices
    takes = sorted(name for name, sub in actions.items()
                   if any(a.dest == "backend" for a in sub._actions))
    assert takes == ["best", "evaluate", "export", "lr-find", "predict", "run", "train",
                     "worker"]


@pytest.mark.jax
def test_the_in_model_crop_gives_the_same_pixels_on_jax(tmp_path):
    """The Prepare layer's resize and per-image crop (Keras ops) on JAX: no index past the
    last row or column (JAX would fill it with NaN) and TensorFlow's pixels, within 0.01; and
    seeding a trial does not import TensorFlow there."""
    pytest.importorskip("jax")
    from keras import ops

    from search.model.preprocess import prepare

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 224, 224, 3)).astype(np.uint8)
    images[:, :, :40] = 0  # black side borders, as the real person crops have
    images[:3, :, -25:] = 0
    np.save(tmp_path / "in.npy", images)
    sizes = [(224, 128), (160, 96), (96, 64), (33, 17)]
    code = textwrap.dedent(f"""
        import numpy as np
        from keras import ops
        from search.model.preprocess import prepare
        x = np.load({str(tmp_path / 'in.npy')!r})
        for h, w in {sizes!r}:
            for crop in ("none", "auto"):
                np.save({str(tmp_path)!r} + f"/{{h}}-{{w}}-{{crop}}.npy",
                        ops.convert_to_numpy(prepare(x, (h, w), crop)))
        import sys
        from search import backend
        backend.set_random_seed(3)  # Keras's own seeds TensorFlow, importing it, if installed
        assert "tensorflow" not in sys.modules, "TensorFlow was imported on JAX"
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-2000:]
    for h, w in sizes:
        for crop in ("none", "auto"):
            on_jax = np.load(tmp_path / f"{h}-{w}-{crop}.npy")
            assert np.isfinite(on_jax).all() and on_jax.shape == (6, h, w, 3)
            here = ops.convert_to_numpy(prepare(images, (h, w), crop))
            assert np.abs(on_jax - here).max() < 0.01, (h, w, crop)
