"""The neck and the per-head towers, and the prior a head falls back to."""

import keras
import numpy as np

from search import heads
from search.config import TrialConfig

VOCAB = {"gender": ("female", "male"), "age": ("15-25", "25-35", "35-45")}


def test_one_float32_softmax_per_head_named_after_it():
    config = TrialConfig(neck_units=16, head_units=8, neck_dropout=0.1, head_dropout=0.1)
    model = heads.build(12, config, VOCAB)
    out = model(np.zeros((5, 12), dtype="float32"))
    assert set(out) == set(VOCAB)
    assert tuple(out["age"].shape) == (5, 3) and out["age"].dtype == "float32"
    np.testing.assert_allclose(np.asarray(out["gender"]).sum(axis=1), 1.0, rtol=1e-5)
    names = {layer.name for layer in model.layers}
    assert {"neck_dense", "gender_dense", "age_dense", "gender", "age"} <= names


def test_zero_units_means_no_dense_layer():
    model = heads.build(12, TrialConfig(neck_units=0, head_units=0, neck_dropout=0.0,
                                        head_dropout=0.0), VOCAB)
    dense = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert sorted(dense) == ["age", "gender"]


def test_prior_answers_the_class_frequencies_for_every_image():
    layer = heads.Prior([0.2, 0.7, 0.1], name="age")
    out = np.asarray(layer(np.zeros((4, 12), dtype="float32")))
    assert out.shape == (4, 3)
    assert (out.argmax(axis=1) == 1).all()
    again = heads.Prior.from_config(layer.get_config())
    assert again.prior == layer.prior
