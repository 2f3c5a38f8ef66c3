"""`search export`: each format loads and predicts in a fresh process where neither `search`
nor MLflow can be imported, with the probabilities `search predict` computes (<= 1e-5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from search import cli

from test_registry import HIDE_SEARCH

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

# argv: JSON {format: exported folder}, images .npz (one array per size) →
# {format: {head: [[p, ...], ...]}}
PREDICT = HIDE_SEARCH + """
import numpy as np
exported, images = json.loads(sys.argv[1]), sys.argv[2]
batches = list(np.load(images).values())
found = {}
for fmt, folder in exported.items():
    labels = json.load(open(os.path.join(folder, 'labels.json')))
    if fmt == 'savedmodel':
        import tensorflow as tf
        serve = tf.saved_model.load(folder).signatures['serving_default']
        outputs = [{h: p.numpy() for h, p in serve(images=tf.constant(b)).items()}
                   for b in batches]
    elif fmt == 'tflite':
        import tensorflow as tf
        serve = tf.lite.Interpreter(os.path.join(folder, 'model.tflite')).get_signature_runner(
            'serve')
        outputs = [serve(images=b) for b in batches]
    else:
        import keras
        net = keras.models.load_model(os.path.join(folder, 'model.keras'))  # safe mode
        outputs = [net.predict(b, verbose=0) for b in batches]
    found[fmt] = {h: np.concatenate([o[h] for o in outputs]).tolist() for h in labels}
assert 'mlflow' not in sys.modules and 'search' not in sys.modules
print(json.dumps(found))
"""
# The crop: auto model exports as a SavedModel only (see test_export_errors_...).
FORMATS = {"separable-crop": ["savedmodel"],
           "separable-rows": ["savedmodel", "tflite", "keras"],
           "frozen-mobilenet": ["savedmodel", "tflite", "keras"]}


def _images(tiny_csv) -> list[np.ndarray]:
    """Batches of three sizes: the data's own 32 px, a 50x70 with black side borders, 97x41."""
    from search.data.table import decode

    files = sorted((tiny_csv.parent / "images").iterdir())[:3]
    rng = np.random.default_rng(0)
    bordered = rng.integers(0, 256, (2, 50, 70, 3)).astype(np.uint8)
    bordered[:, :, :12] = 0
    return [np.stack([decode(str(f)) for f in files]), bordered,
            rng.integers(0, 256, (1, 97, 41, 3)).astype(np.uint8)]


@pytest.mark.parametrize("name", FORMATS)
def test_export_predicts_as_search_predict_without_search(small_models, tiny_csv, tmp_path,
                                                           name):
    from search.track import registry
    from search.track.tracking import using

    runs, uris = small_models
    exported = {fmt: str(tmp_path / fmt) for fmt in FORMATS[name]}
    for fmt, out in exported.items():
        assert cli.main(["export", "--model", uris[name], "--format", fmt, out,
                         "--runs-dir", str(runs)]) == 0
    batches = _images(tiny_csv)
    np.savez(tmp_path / "images.npz", *batches)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-I", "-c", PREDICT, json.dumps(exported),
                           str(tmp_path / "images.npz")], cwd=elsewhere, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    with using(f"sqlite:///{runs / 'mlflow.db'}"):
        net, vocab = registry.load(uris[name])
    want = registry.predict_probs(net, [image for batch in batches for image in batch])
    for fmt, got in found.items():
        labels = json.loads((tmp_path / fmt / "labels.json").read_text())
        assert labels == {h: list(v) for h, v in vocab.items()} and set(got) == set(vocab)
        worst = max(float(np.abs(np.asarray(got[h]) - want[h]).max()) for h in vocab)
        print(f"{name} {fmt}: max abs probability difference {worst:.2e}")
        assert worst <= 1e-5, fmt


def test_export_errors_are_one_line_exit_2(small_models, tmp_path, capsys):
    runs, uris = small_models
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    cases = [
        (["--model", uris["frozen-mobilenet"], "--format", "savedmodel", str(busy)],
         "exists and is not an empty folder"),
        (["--model", "models:/no-such-model@champion", "--format", "savedmodel",
          str(tmp_path / "a")], "cannot download"),
        (["--model", str(tmp_path / "missing"), "--format", "keras", str(tmp_path / "b")],
         "neither a folder nor a models:/ URI"),
        (["--model", uris["separable-crop"], "--format", "tflite", str(tmp_path / "c")],
         "crops black borders"),
        (["--model", uris["separable-crop"], "--format", "keras", str(tmp_path / "d")],
         "crops black borders"),
    ]
    for args, words in cases:
        assert cli.main(["export", *args, "--runs-dir", str(runs)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit) as caught:  # argparse: exit 2, one usage line and error
        cli.main(["export", "--model", "x", "--format", "onnx", str(tmp_path / "e")])
    assert caught.value.code == 2
    assert "invalid choice: 'onnx'" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_test_time_flips_travel_in_savedmodel_and_tflite(small_models, tiny_csv, tmp_path,
                                                          capsys):
    """A model that averages an image's and its mirror's probabilities on some heads (the
    `selection` candidate's flips: search.model.preprocess.Mirror) exports to SavedModel and
    TFLite with the same answers; the plain Keras format, which has no standard flip layer,
    refuses it in one line."""
    import keras

    from search.model.preprocess import Mirror
    from search.track import registry
    from search.track.tracking import using

    runs, uris = small_models
    with using(f"sqlite:///{runs / 'mlflow.db'}"):
        net, vocab = registry.load(uris["separable-rows"])
    raw = keras.Input((None, None, 3), name="raw_image")
    plain, seen = net(raw), net(Mirror(name="mirror")(raw))
    flipped = {"gender", "bodypose"}
    outputs = {h: keras.layers.Average(name=f"{h}_flip")([plain[h], seen[h]])
               if h in flipped else plain[h] for h in vocab}
    folder = tmp_path / "flipped"
    folder.mkdir()
    keras.Model(raw, outputs).save(folder / registry.MODEL_FILE)
    (folder / registry.LABELS_FILE).write_text(json.dumps({h: list(v)
                                                          for h, v in vocab.items()}))
    loaded, _ = registry.load(str(folder))
    batches = _images(tiny_csv)
    images = [image for batch in batches for image in batch]
    want = registry.predict_probs(loaded, images)
    mirrored = registry.predict_probs(net, [image[:, ::-1] for image in images])
    alone = registry.predict_probs(net, images)
    assert np.allclose(want["gender"], (alone["gender"] + mirrored["gender"]) / 2, atol=1e-6)
    assert np.allclose(want["age"], alone["age"], atol=1e-6)
    exported = {fmt: str(tmp_path / fmt) for fmt in ("savedmodel", "tflite")}
    for fmt, out in exported.items():
        assert cli.main(["export", "--model", str(folder), "--format", fmt, out]) == 0
    np.savez(tmp_path / "images.npz", *batches)
    done = subprocess.run([sys.executable, "-I", "-c", PREDICT, json.dumps(exported),
                           str(tmp_path / "images.npz")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    for fmt, got in json.loads(done.stdout.strip().splitlines()[-1]).items():
        worst = max(float(np.abs(np.asarray(got[h]) - want[h]).max()) for h in vocab)
        assert worst <= 1e-5, fmt
    capsys.readouterr()
    assert cli.main(["export", "--model", str(folder), "--format", "keras",
                     str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Mirror" in err and "savedmodel" in err and len(err.splitlines()) == 1, err
