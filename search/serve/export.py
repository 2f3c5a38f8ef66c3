"""`search export`: a search model as an artifact that TensorFlow or Keras loads alone.

A logged model needs this package (its layers are registered here) and MLflow. TF Serving, a
TFLite runtime or a plain Keras program have neither, so `export` writes one of:

- `savedmodel`: a TF SavedModel whose `serving_default` (also `serve`) signature takes a
  uint8 batch of any HxW ([None, None, None, 3], input `images`) and returns {head: [N, k]
  probabilities}; the graph is traced, so cropping, resizing and normalisation are inside and
  no Python class is needed to load it (`tf.saved_model.load`, TF Serving).
- `tflite`: that SavedModel converted to `model.tflite` with TFLite's built-in ops only (the
  same signature; the input size is set per call). A model that crops black borders
  (`crop: auto`) needs an op TFLite lacks and is refused: export a savedmodel.
- `keras`: `model.keras` rebuilt from standard Keras layers (search's own layers replaced by
  equivalent ones with the same weights), loadable with `keras.models.load_model` in safe
  mode; float input [N, H, W, 3], 0..255. Not for `crop: auto` either.

Each format is a folder OUT holding the artifact and `labels.json` (the class names per head,
in the order of the probabilities), so OUT is all a user needs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from search.errors import UsageError

FORMATS = ("savedmodel", "tflite", "keras")
TFLITE_FILE = "model.tflite"
KERAS_FILE = "model.keras"


def export(net, vocab: dict, fmt: str, out: Path) -> Path:
    """Write net (a loaded search model) to the empty or new folder out as fmt."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    out = Path(out)
    check_out(out)
    if fmt != "keras" and importlib.util.find_spec("tensorflow") is None:
        raise UsageError(f"{fmt}: a TensorFlow SavedModel needs TensorFlow, which is not "
                         f"installed here (pip install tensorflow), on any Keras backend; "
                         f"--format keras needs only Keras")
    if fmt != "savedmodel" and crops(net):
        raise UsageError(f"{fmt}: this model crops black borders (crop: auto), a per-image "
                         f"crop (search.model.preprocess) that no standard Keras layer has "
                         f"and that is not checked against TFLite's built-in ops; export "
                         f"--format savedmodel instead")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "out"
        staged.mkdir()
        if fmt == "savedmodel":
            saved_model(net, staged)
        elif fmt == "tflite":
            saved_model(net, Path(tmp) / "savedmodel")
            (staged / TFLITE_FILE).write_bytes(tflite(Path(tmp) / "savedmodel"))
        else:
            standard_keras(net).save(staged / KERAS_FILE)
        (staged / "labels.json").write_text(json.dumps({h: list(v) for h, v in vocab.items()},
                                                       indent=2))
        out.mkdir(parents=True, exist_ok=True)
        for item in staged.iterdir():
            shutil.move(str(item), out / item.name)
    return out


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder: choose a new OUT")


def saved_model(net, folder: Path) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint(
        "serve", lambda images: net(tf.cast(images, tf.float32), training=False),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.write_out(str(folder), verbose=False)


def tflite(saved: Path) -> bytes:
    """The SavedModel's `serve` signature as TFLite built-in ops (a runtime without the
    Flex delegate, as on a phone or in tf.lite.Interpreter, runs nothing else)."""
    import re

    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serve"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with _stderr_to(Path(saved) / "converter.log"):  # MLIR prints its diagnostics there
        try:
            return converter.convert()
        except Exception as exc:  # ConverterError: a long MLIR dump
            ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither", str(exc))))
            raise UsageError(f"tflite: ops TFLite's built-in set lacks: "
                             f"{', '.join(ops) or str(exc).splitlines()[0]}; export "
                             f"--format savedmodel instead") from None


@contextlib.contextmanager
def _stderr_to(path: Path):
    """File descriptor 2 (C++ code writes to it directly) redirected to path."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "wb") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def crops(net) -> bool:
    """Whether any Prepare layer in net (nested models included) crops black borders."""
    from search.model import preprocess

    stack = [net]
    while stack:
        layer = stack.pop()
        if isinstance(layer, preprocess.Prepare) and layer.crop != "none":
            return True
        stack.extend(getattr(layer, "layers", []))
    return False


def standard_keras(net):
    """net with every search layer replaced by standard Keras layers holding its weights."""
    import keras

    return keras.models.clone_model(net, clone_function=_standard, recursive=True)


def _standard(layer):
    """A layer as standard Keras layers: shared if it is one, else an equivalent."""
    from search.model import backbones, heads, preprocess

    if isinstance(layer, preprocess.Prepare):
        return _resizing(layer)
    if isinstance(layer, backbones.FamilyPreprocess):
        return _family_preprocess(layer)
    if isinstance(layer, heads.Towers):
        return _towers(layer)
    if isinstance(layer, heads.Prior):
        return _prior(layer)
    if type(layer).__module__.startswith("search."):
        raise UsageError(f"keras: no standard equivalent of layer {layer.name} "
                         f"({type(layer).__name__}); export --format savedmodel instead")
    return layer


def _resizing(layer):
    import keras

    # Prepare(crop none) is tf.image.resize(bilinear, no antialias), as Resizing is.
    return keras.layers.Resizing(*layer.size, interpolation="bilinear", name=layer.name)


def _family_preprocess(layer):
    """keras.applications' preprocess_input: MobileNets' is x / 127.5 - 1, EfficientNet's
    takes 0..255 as is, ResNet50's flips RGB to BGR and subtracts the ImageNet mean (a fixed
    1x1 convolution)."""
    import keras
    import numpy as np

    if layer.family in ("mobilenet_v2", "mobilenet"):
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=layer.name)
    if layer.family == "efficientnet_b0":
        return keras.layers.Identity(name=layer.name)
    if layer.family == "resnet50":
        conv = keras.layers.Conv2D(3, 1, name=layer.name, trainable=False)
        conv.build((None, None, None, 3))
        flip = np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3)
        conv.set_weights([flip, -np.array([103.939, 116.779, 123.68], np.float32)])
        return conv
    raise UsageError(f"keras: no standard preprocessing for family {layer.family!r}; export "
                     f"--format savedmodel instead")


def _towers(layer):
    """Towers (every head's Dense layers in stacked weights) as one Dense (and its hidden
    Dense+ReLU) per head, in a small model of its own returning the same list of logits."""
    import keras

    features = int(layer.kernel.shape[1] if not layer.units else layer.hidden_kernel.shape[1])
    x = inputs = keras.Input((features,))
    logits = []
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    for i, k in enumerate(layer.classes):
        z = x
        if layer.units:
            hidden = keras.layers.Dense(layer.units, activation="relu", name=f"tower{i}_hidden")
            z = hidden(z)
            hidden.set_weights([layer.hidden_kernel.numpy()[i], layer.hidden_bias.numpy()[i]])
        dense = keras.layers.Dense(k, name=f"tower{i}_logits")
        logits.append(dense(z))
        dense.set_weights([kernel[i, :, :k], bias[i, :k]])
    return keras.Model(inputs, logits, name=layer.name)


def _prior(layer):
    """A head answering fixed probabilities: softmax of a zero-kernel Dense whose bias is
    their logarithm."""
    import keras
    import numpy as np

    prior = np.asarray(layer.prior, np.float32)
    inputs = keras.Input((len(prior),))
    dense = keras.layers.Dense(len(prior), activation="softmax", name=f"{layer.name}_logits")
    outputs = dense(inputs)
    dense.set_weights([np.zeros((len(prior), len(prior)), np.float32),
                       np.log(np.maximum(prior, 1e-30))])
    return keras.Model(inputs, outputs, name=layer.name)


def run(settings, model: str, fmt: str, out: str) -> int:
    """`search export`: load model (a models:/ URI or a pulled folder), write OUT."""
    from search.track import registry
    from search.track.tracking import using

    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    check_out(Path(out))  # before the model is downloaded
    with using(settings.tracking_uri):
        net, vocab = registry.load(model)
    folder = export(net, vocab, fmt, Path(out))
    print(f"wrote {fmt} to {folder} (labels: {folder / 'labels.json'})")
    return 0
