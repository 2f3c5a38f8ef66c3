"""A trial's input pipelines: the shuffled, augmented training batches and the ordered
evaluation batches, tf.data on the TensorFlow backend and numpy `PyDataset`s on the others
(search.data.arrays), and the per-sample choice of a cached view (`view_picker`)."""

from __future__ import annotations

import numpy as np

from search.space.config import TrialConfig


def train(config: TrialConfig, inputs, labels: dict, vocab: dict | None = None,
          transform=None):
    """The shuffled training batches of `config`: images augmented (flip, shift, cutout), or
    cached inputs through `transform` (which picks a view per sample); per-sample class
    weights under class_weighting: balanced (which needs `vocab`). A tf.data pipeline on the
    TensorFlow backend, a numpy PyDataset on the others (search.data.arrays)."""
    from search import backend
    from search.data.table import balanced_weights

    weights = (balanced_weights(labels, vocab) if config.class_weighting == "balanced"
               else None)
    if not backend.is_tensorflow():
        from search.data import arrays

        if transform is None:
            def transform(x, rng):
                return arrays.augment(x, rng, flip=config.flip, shift=config.shift,
                                      cutout=config.cutout)
        return arrays.TrainBatches(inputs, labels, batch_size=config.batch_size,
                                   seed=config.seed, transform=transform,
                                   sample_weights=weights, workers=2 if inputs.ndim == 4
                                   and inputs.dtype == np.uint8 else 1)
    from search.data.augment import augment_batch
    from search.data.table import train_dataset

    if transform is None:  # each batch brings its own seed: fresh draws every epoch
        def transform(x, seed):
            return augment_batch(x, flip=config.flip, shift=config.shift,
                                 cutout=config.cutout, seed=seed)
    return train_dataset(inputs, labels, batch_size=config.batch_size, seed=config.seed,
                         augment=transform, sample_weights=weights)


def evaluation(inputs, batch_size: int):
    """Validation or test inputs in order, float32 batches (tf.data on TensorFlow)."""
    from search import backend

    if not backend.is_tensorflow():
        from search.data.arrays import EvalBatches

        return EvalBatches(inputs, batch_size=batch_size)
    from search.data.table import eval_dataset

    return eval_dataset(inputs, batch_size=batch_size)


def view_picker(cache, config: TrialConfig):
    """For cached inputs [B, V, ...]: one view per sample, a cut-out view with probability
    config.cutout (when the cache has one), else one of the others; each batch draws from its
    own seed (see search.data.table.train_dataset) or generator (search.data.arrays)."""
    from search import backend

    plain, cut = cache.pools(config.flip, config.shift)
    p = config.cutout if cut else 0.0
    if not backend.is_tensorflow():
        def pick_np(x, rng):
            b = len(x)
            which = np.asarray(plain)[rng.integers(0, len(plain), b)]
            if p > 0:
                cut_view = np.asarray(cut)[rng.integers(0, len(cut), b)]
                which = np.where(rng.random(b) < p, cut_view, which)
            return x[np.arange(b), which]
        return pick_np

    import tensorflow as tf

    plain_t, cut_t = tf.constant(plain, tf.int32), tf.constant(cut or [0], tf.int32)

    def pick(x, seed):
        b = tf.shape(x)[0]
        s_plain, s_cut, s_apply = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        which = tf.gather(plain_t, tf.random.stateless_uniform(
            [b], s_plain, 0, len(plain), tf.int32))
        if p > 0:
            cut_view = tf.gather(cut_t, tf.random.stateless_uniform(
                [b], s_cut, 0, len(cut), tf.int32))
            which = tf.where(tf.random.stateless_uniform([b], s_apply) < p, cut_view, which)
        return tf.gather(x, which, batch_dims=1)

    return pick
