"""The neck and the per-head towers, and the prior a head falls back to."""

import keras
import numpy as np

from search.model import heads
from search.space.config import TrialConfig

VOCAB = {"gender": ("female", "male"), "age": ("15-25", "25-35", "35-45")}


def test_one_float32_softmax_per_head_named_after_it():
    config = TrialConfig(neck_units=16, head_units=8, neck_dropout=0.1, head_dropout=0.1)
    model = heads.build(12, config, VOCAB)
    out = model(np.zeros((5, 12), dtype="float32"))
    assert set(out) == set(VOCAB)
    assert tuple(out["age"].shape) == (5, 3) and out["age"].dtype == "float32"
    np.testing.assert_allclose(np.asarray(out["gender"]).sum(axis=1), 1.0, rtol=1e-5)
    names = {layer.name for layer in model.layers}
    assert {"neck_dense", "towers", "gender", "age"} <= names


def test_rows_neck_keeps_each_row_of_the_map_averaged_across_its_width():
    """A cue's height on the figure survives the rows neck; global average pooling loses it."""
    fmap = np.zeros((2, 4, 3, 5), dtype="float32")
    fmap[0, 0] = 1.0  # a cue in the top row (a head)
    fmap[1, 3] = 1.0  # the same cue in the bottom row (feet)
    fmap[:, :, 0, :] += np.arange(4, dtype="float32")[None, :, None]  # varies across a row
    rows = heads.pool(TrialConfig(neck="rows"), fmap.shape)
    out = np.asarray(rows(fmap))
    np.testing.assert_allclose(out.reshape(2, 4, 5), fmap.mean(axis=2), rtol=1e-6)
    gap = np.asarray(heads.pool(TrialConfig(neck="gap"), fmap.shape)(fmap))
    np.testing.assert_allclose(gap[0], gap[1], rtol=1e-6)
    assert not np.allclose(out[0], out[1])


def test_zero_units_means_no_hidden_layer():
    model = heads.build(12, TrialConfig(neck_units=0, head_units=0, neck_dropout=0.0,
                                        head_dropout=0.0), VOCAB)
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    towers = model.get_layer("towers")
    assert [tuple(w.shape) for w in towers.weights] == [(2, 12, 3), (2, 3)]


def test_towers_compute_one_dense_tower_per_head():
    """Each head's logits are its own Dense(units)+ReLU then Dense(k), on its own weights."""
    keras.utils.set_random_seed(0)
    towers = heads.Towers([2, 3], units=4, name="towers")
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    logits = [np.asarray(z) for z in towers(x)]
    w1, b1, w2, b2 = (np.asarray(w) for w in towers.weights)
    for i, k in enumerate([2, 3]):
        hidden = np.maximum(x @ w1[i] + b1[i], 0.0)
        np.testing.assert_allclose(logits[i], (hidden @ w2[i] + b2[i])[:, :k], rtol=1e-5,
                                   atol=1e-6)
    assert [z.shape for z in logits] == [(6, 2), (6, 3)]
    limit = np.sqrt(6.0 / (5 + 4))  # Glorot uniform of a Dense(5 → 4)
    assert np.abs(w1).max() <= limit and np.abs(w1).max() > 0.5 * limit


def test_towers_drop_out_each_head_with_its_own_mask():
    keras.utils.set_random_seed(0)
    towers = heads.Towers([2, 2], dropout=0.5)
    towers.build((None, 64))
    towers.kernel.assign(np.ones((2, 64, 2), "float32"))  # both heads: the same weights
    x = np.ones((3, 64), dtype="float32")
    a, b = (np.asarray(z) for z in towers(x, training=True))
    assert not np.allclose(a, b)
    a, b = (np.asarray(z) for z in towers(x, training=False))
    np.testing.assert_allclose(a, b)


def test_towers_round_trip_through_their_config():
    towers = heads.Towers([2, 5, 3], units=8, dropout=0.2, name="towers")
    again = heads.Towers.from_config(towers.get_config())
    assert (again.classes, again.units, again.dropout) == ([2, 5, 3], 8, 0.2)


def test_prior_answers_the_class_frequencies_for_every_image():
    layer = heads.Prior([0.2, 0.7, 0.1], name="age")
    out = np.asarray(layer(np.zeros((4, 12), dtype="float32")))
    assert out.shape == (4, 3)
    assert (out.argmax(axis=1) == 1).all()
    again = heads.Prior.from_config(layer.get_config())
    assert again.prior == layer.prior
