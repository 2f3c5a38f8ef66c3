"""Batch augmentation with real TensorFlow on tiny images: probabilities, areas, shapes, tf.data."""

import math

import numpy as np
import pytest
import tensorflow as tf

from search.data.augment import augment_batch
from search.errors import ConfigError

N = 4000


def _white(n=N, h=32, w=32):
    return tf.fill([n, h, w, 3], 255.0)


def _erased_fraction(out):
    """Per-image fraction of pixels that were set to 0 (any channel)."""
    erased = tf.reduce_any(out < 255.0, axis=-1)
    return tf.reduce_mean(tf.cast(erased, tf.float32), axis=[1, 2]).numpy()


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
def test_cutout_probability_is_exactly_p(p):
    out = augment_batch(_white(), flip=False, shift=0.0, cutout=p, seed=7)
    hit = (_erased_fraction(out) > 0).mean()
    if p == 0.0:
        assert hit == 0.0
    else:
        sigma = math.sqrt(p * (1 - p) / N)
        assert abs(hit - p) <= 4 * sigma + 1e-9, (hit, p)


@pytest.mark.parametrize("h,w", [(32, 32), (24, 40)])
def test_cutout_area_within_range_and_mean_near_uniform(h, w):
    lo, hi = 0.02, 0.4
    out = augment_batch(_white(h=h, w=w), flip=False, shift=0.0, cutout=1.0, seed=3)
    frac = _erased_fraction(out)
    assert frac.min() > 0
    slack = 0.5 / min(h, w) + 1e-6  # sides are whole pixels: off by at most half a row/column
    assert frac.min() >= lo - slack and frac.max() <= hi + slack, (frac.min(), frac.max())
    assert abs(frac.mean() - (lo + hi) / 2) < 0.015, frac.mean()
    # Erased pixels form one axis-aligned rectangle per image.
    for m in tf.reduce_any(out[:50] < 255, -1).numpy():
        rows, cols = np.where(m.any(1))[0], np.where(m.any(0))[0]
        assert m.sum() == len(rows) * len(cols)
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)


def test_cutout_area_bounds_are_respected():
    frac = _erased_fraction(augment_batch(_white(1000), flip=False, shift=0.0, cutout=1.0,
                                          cutout_area=(0.1, 0.15), seed=1))
    slack = 0.5 / 32 + 1e-6
    assert 0.1 - slack <= frac.min() and frac.max() <= 0.15 + slack


def test_identity_when_everything_off():
    x = tf.random.uniform([4, 24, 40, 3], maxval=255.0)
    out = augment_batch(x, flip=False, shift=0.0, cutout=0.0)
    np.testing.assert_array_equal(out.numpy(), x.numpy())


def test_flip_only_flips_about_half():
    x = tf.random.uniform([2000, 8, 12, 3], maxval=255.0, seed=0)
    out = augment_batch(x, flip=True, shift=0.0, cutout=0.0, seed=5).numpy()
    xn = x.numpy()
    same = np.all(out == xn, axis=(1, 2, 3))
    flipped = np.all(out == xn[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same ^ flipped)
    assert abs(flipped.mean() - 0.5) < 4 * math.sqrt(0.25 / 2000)


def test_shift_is_bounded_and_fills_zero():
    h, w, shift = 20, 30, 0.1
    x = _white(500, h, w)
    out = augment_batch(x, flip=False, shift=shift, cutout=0.0, seed=2).numpy()
    kept = np.all(out == 255.0, axis=-1)
    assert np.all((out == 0) | (out == 255))
    rows_kept, cols_kept = kept.any(2).sum(1), kept.any(1).sum(1)
    assert rows_kept.min() >= h - round(shift * h) and cols_kept.min() >= w - round(shift * w)
    assert (rows_kept < h).mean() > 0.5  # most images actually move


def test_shape_dtype_and_seed_determinism():
    x = tf.random.uniform([6, 24, 40, 3], maxval=255.0, seed=1)
    kw = dict(flip=True, shift=0.1, cutout=0.5)
    a = augment_batch(x, seed=11, **kw)
    b = augment_batch(x, seed=11, **kw)
    c = augment_batch(x, seed=12, **kw)
    assert a.shape == x.shape and a.dtype == tf.float32
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_works_in_the_training_pipeline_on_batches():
    """Through `search.data.table.train_dataset`, as a trial augments: every batch its own draws,
    fresh ones each epoch, and the same seed replays the whole sequence."""
    from search.data.table import train_dataset

    images = np.repeat(np.arange(1, 41, dtype=np.uint8), 24 * 40 * 3).reshape(40, 24, 40, 3)
    labels = {"gender": np.arange(40)}  # image i holds the value i + 1 everywhere

    def run(seed, epochs=1):
        ds = train_dataset(images, labels, batch_size=8, seed=seed, augment=lambda x, s:
                           augment_batch(x, flip=True, shift=0.1, cutout=1.0, seed=s))
        return [list(ds.as_numpy_iterator()) for _ in range(epochs)]

    batches, epoch2 = run(4, epochs=2)
    assert len(batches) == 5
    for x, y in batches:
        assert x.shape == (8, 24, 40, 3) and x.dtype == np.float32
        assert (x == 0).any(axis=(1, 2, 3)).all()  # cutout=1: every image erased
        assert [set(np.unique(image)) - {0} for image in x] == [{v + 1} for v in y["gender"]]
    assert not np.array_equal(batches[0][0], batches[1][0])
    assert not np.array_equal(batches[0][0], epoch2[0][0])
    (again,) = run(4)
    for (x1, _), (x2, _) in zip(batches, again):
        np.testing.assert_array_equal(x1, x2)


def test_unseeded_augment_batch_works_in_graph_mode():
    fn = tf.function(lambda x: augment_batch(x, flip=True, shift=0.0, cutout=0.5))
    out = fn(_white(64, 8, 8))
    assert out.shape == (64, 8, 8, 3) and 0 < (_erased_fraction(out) > 0).mean() < 1


@pytest.mark.parametrize("kw", [dict(cutout=1.5), dict(cutout=-0.1), dict(shift=1.0),
                                dict(cutout=0.5, cutout_area=(0.5, 0.1)),
                                dict(cutout_area=(0.0, 0.2))])
def test_rejects_bad_settings(kw):
    with pytest.raises(ConfigError):
        augment_batch(_white(1), **kw)
