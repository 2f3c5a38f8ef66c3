"""Backbones + heads: output names and shapes; the exported model takes raw images."""

from __future__ import annotations

import numpy as np
import pytest

from search.errors import ConfigError
from search.space.config import TrialConfig

VOCAB = {"gender": ("female", "male"), "age": ("15-25", "25-35", "35-45"),
         "carryingbag": ("Daily/Office/Work Bag", "Grocery/Home/Plastic Bag", "None")}


def test_separable_outputs_one_softmax_per_head():
    from search.model import assembly as model

    config = TrialConfig(width=8, depth=3, convs_per_block=(1, 2, 1), image_size=(32, 48),
                         neck_units=16, head_units=8)
    built = model.assemble(config, VOCAB)
    net = built.model
    out = net(np.random.rand(2, 32, 48, 3).astype("float32") * 255)
    assert set(out) == set(VOCAB)
    for head, labels in VOCAB.items():
        assert out[head].shape == (2, len(labels))
        assert np.allclose(out[head].numpy().sum(axis=1), 1.0, atol=1e-5)
    names = {layer.name for layer in net.get_layer("heads").layers}
    assert "gender" in names and "towers" in names
    assert built.parts.heads is net.get_layer("heads") and built.parts.backbone.base is None
    sep = net.get_layer("separable")
    assert sum("sep" in layer.name for layer in sep.layers) == 4


def test_unknown_backbone_lists_known_names():
    from search.model import backbones

    with pytest.raises(ConfigError, match="separable"):
        backbones.create(TrialConfig(backbone="vit"))
    with pytest.raises(ConfigError, match="mobilenet_v2"):
        backbones.create(TrialConfig(backbone="pretrained", family="vgg99", weights="none"))


def test_pretrained_mobilenet_v2_loads_local_imagenet_weights(weights_dir, monkeypatch):
    import keras

    from search.model import assembly as model

    monkeypatch.setenv("SEARCH_WEIGHTS_DIR", str(weights_dir))
    config = TrialConfig(backbone="pretrained", family="mobilenet_v2", alpha=0.35,
                         weights="imagenet", image_size=(48, 48), fine_tune_fraction=0.3)
    from search.model import backbones

    built = model.assemble(config, VOCAB)
    net = built.model
    assert built.parts.backbone.weights_source.endswith("0.35_224_no_top.h5")
    base = net.get_layer("mobilenet_v2").get_layer("mobilenetv2_0.35_48")
    assert base is built.parts.backbone.base and not base.trainable_weights  # starts frozen
    cut = backbones.cut_layer(base, config.fine_tune_fraction)
    backbones.unfreeze_top(built.parts.backbone, cut)
    trainable = [layer for layer in base.layers if layer.trainable_weights]
    assert 0 < len(trainable) < len([l for l in base.layers if l.weights])  # top 30% only
    names = [layer.name for layer in base.layers]
    assert min(names.index(layer.name) for layer in trainable) > names.index(cut)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    out = net(np.zeros((1, 48, 48, 3), "float32"))
    assert out["age"].shape == (1, 3)


def test_auto_weights_fall_back_when_unavailable(monkeypatch, tmp_path):
    from search.model import assembly as model

    monkeypatch.setenv("SEARCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    config = TrialConfig(backbone="pretrained", family="mobilenet", alpha=0.25, weights="auto",
                         image_size=(32, 32))
    try:
        source = model.assemble(config, VOCAB).parts.backbone.weights_source
    except ConfigError:  # pragma: no cover
        pytest.fail("auto must fall back to random init")
    assert source == "imagenet" or source.startswith("none")


def test_export_takes_raw_images_of_any_size_and_round_trips(tmp_path):
    import keras

    from search.model import assembly as model
    from search.track import registry

    config = TrialConfig(width=8, depth=2, image_size=(32, 32), neck_units=8, head_units=0,
                         crop="auto")
    net = model.build(config, VOCAB)
    exported = model.export(net, config)
    path = tmp_path / "m.keras"
    exported.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    for shape in ((1, 224, 224, 3), (2, 60, 40, 3)):
        raw = np.random.randint(0, 255, shape).astype("float32")
        a, b = exported.predict(raw, verbose=0), loaded.predict(raw, verbose=0)
        assert a["gender"].shape == (shape[0], 2)
        np.testing.assert_allclose(a["age"], b["age"], rtol=1e-5, atol=1e-6)
    result = registry.predict_arrays(loaded, VOCAB, [np.zeros((50, 30, 3), np.uint8),
                                                     np.zeros((20, 20, 3), np.uint8)])
    assert result[0]["carryingbag"]["label"] in VOCAB["carryingbag"]


def test_a_mixed_precision_network_is_exported_in_float32(tmp_path):
    """Trained under mixed_bfloat16 (as on a GPU), the saved model computes in float32 and
    answers what the trained network answers."""
    import keras

    from search.model import assembly as model

    config = TrialConfig(width=8, depth=2, image_size=(32, 32), neck_units=8, head_units=0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        net = model.build(config, VOCAB)
        exported = model.export(net, config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = tmp_path / "m.keras"
    exported.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    layers = [l for l in loaded.get_layer("search_model").get_layer("separable").layers]
    assert {l.dtype_policy.compute_dtype for l in layers} == {"float32"}
    images = np.random.randint(0, 255, (2, 32, 32, 3)).astype("float32")
    trained = net.predict(images, verbose=0)
    served = loaded.predict(images, verbose=0)
    for head in VOCAB:
        np.testing.assert_allclose(served[head], np.asarray(trained[head], np.float32),
                                   atol=0.02)
