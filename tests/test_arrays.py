"""The numpy input pipeline of the JAX and PyTorch backends (search.data.arrays): the same
augmentation distributions as the tf.data one (search.data.augment), and batches that replay
from their seed and reshuffle every epoch."""

import math

import numpy as np
import pytest

from search.data import arrays
from search.errors import ConfigError

N = 4000


def _white(n=N, h=32, w=32):
    return np.full((n, h, w, 3), 255, np.uint8)


def _erased(out):
    return (out < 255).any(-1).mean(axis=(1, 2))


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
def test_cutout_probability_is_exactly_p(p):
    hit = (_erased(arrays.augment(_white(), np.random.default_rng(7), flip=False, shift=0.0,
                                  cutout=p)) > 0).mean()
    assert abs(hit - p) <= 4 * math.sqrt(p * (1 - p) / N) + 1e-9, (hit, p)


@pytest.mark.parametrize("h,w", [(32, 32), (24, 40)])
def test_cutout_is_one_rectangle_with_its_area_in_range(h, w):
    out = arrays.augment(_white(h=h, w=w), np.random.default_rng(3), flip=False, shift=0.0,
                         cutout=1.0)
    frac = _erased(out)
    slack = 0.5 / min(h, w) + 1e-6
    assert frac.min() >= 0.02 - slack and frac.max() <= 0.4 + slack
    assert abs(frac.mean() - 0.21) < 0.015, frac.mean()
    for m in (out[:50] < 255).any(-1):
        rows, cols = np.where(m.any(1))[0], np.where(m.any(0))[0]
        assert m.sum() == len(rows) * len(cols)


def test_the_same_distributions_as_the_tensorflow_pipeline():
    """Erased share and its spread, flips, shifted-in zeros: numpy and tf.data agree."""
    tf = pytest.importorskip("tensorflow")
    from search.data.augment import augment_batch

    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (N, 24, 40, 3)).astype(np.uint8)
    kw = dict(flip=True, shift=0.1, cutout=0.5)
    ours = arrays.augment(x, np.random.default_rng(1), **kw)
    theirs = augment_batch(tf.constant(x), seed=1, **kw).numpy()
    zeros = [(a == 0).all(-1).mean(axis=(1, 2)) for a in (ours, theirs)]
    assert abs(zeros[0].mean() - zeros[1].mean()) < 0.01
    assert abs(zeros[0].std() - zeros[1].std()) < 0.01
    flipped = [(a[:, :, ::-1] == x).mean() for a in (ours, theirs)]  # unshifted flips match
    assert abs(flipped[0] - flipped[1]) < 0.02


def test_flip_and_shift_move_pixels_and_fill_zeros():
    x = np.arange(8 * 5 * 6 * 3, dtype=np.int64).reshape(8, 5, 6, 3).astype(np.uint16)
    out = arrays.augment(x, np.random.default_rng(5), flip=True, shift=0.0, cutout=0.0)
    for a, b in zip(out, x):
        assert (a == b).all() or (a == b[:, ::-1]).all()
    out = arrays.augment(x, np.random.default_rng(2), flip=False, shift=0.34, cutout=0.0)
    assert (out == 0).any() and out.dtype == x.dtype and out.shape == x.shape


def test_off_is_the_identity_and_bad_arguments_say_which():
    x = _white(2)
    assert arrays.augment(x, np.random.default_rng(0), flip=False, shift=0.0, cutout=0.0) is x
    with pytest.raises(ConfigError, match="cutout probability"):
        arrays.augment(x, np.random.default_rng(0), cutout=1.5)
    with pytest.raises(ConfigError, match="shift"):
        arrays.augment(x, np.random.default_rng(0), shift=1.0)


def _batches(seed, **kw):
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1) * np.ones((1, 4, 4, 3), np.uint8)
    labels = {"a": np.arange(50, dtype=np.int32)}

    def transform(x, rng):
        return arrays.augment(x, rng, flip=True, shift=0.25, cutout=0.5)
    return arrays.TrainBatches(images, labels, batch_size=16, seed=seed, transform=transform,
                               **kw)


def _epoch(ds):
    out = [ds[i] for i in range(len(ds))]
    ds.on_epoch_end()
    return out


def test_batches_replay_from_their_seed_and_change_every_epoch():
    a, b, c = _batches(1), _batches(1), _batches(2)
    first, again, other = _epoch(a), _epoch(b), _epoch(c)
    assert len(a) == 3  # 50 rows, batches of 16: the partial one is dropped
    for (x1, y1), (x2, y2) in zip(first, again):
        assert (x1 == x2).all() and (y1["a"] == y2["a"]).all() and x1.dtype == np.float32
        assert (x1[:, 0, 0, 0] == y1["a"]).any()  # rows and labels travel together
    assert any((x1 != x3).any() for (x1, _), (x3, _) in zip(first, other))
    second = _epoch(a)
    assert any(set(y1["a"]) != set(y2["a"]) for (_, y1), (_, y2) in zip(first, second))
    seen = np.concatenate([y["a"] for _, y in second])
    assert len(set(seen)) == len(seen) == 48


def test_sample_weights_and_eval_batches():
    images = np.zeros((10, 2, 2, 3), np.uint8)
    ds = arrays.TrainBatches(images, {"a": np.zeros(10, np.int32)}, batch_size=32, seed=0,
                             sample_weights={"a": np.ones(10, np.float32)})
    x, y, w = ds[0]
    assert len(ds) == 1 and len(x) == 10 and w["a"].shape == (10,)
    ev = arrays.EvalBatches(np.arange(10, dtype=np.float16).reshape(10, 1), batch_size=4)
    assert len(ev) == 3 and np.concatenate([ev[i][0] for i in range(3)]).ravel().tolist() \
        == list(range(10))
