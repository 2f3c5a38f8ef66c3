"""Batch-level training augmentation: horizontal flip, small shifts, cutout.

Applied inside a `tf.data` pipeline on whole batches (`[B, H, W, C]`, H may differ from W) so it
costs a handful of vectorised tf ops per batch rather than Python per image. Every random draw is
per image. Written with plain tf ops instead of Keras preprocessing layers because the cutout
probability must mean what it says: `keras.layers.RandomErasing(factor=p)` samples the probability
uniformly in `[0, p]`. This is the TensorFlow backend's tf.data path; search.data.arrays draws
the same distributions in numpy for the other backends and for the feature cache.

Randomness. `augment_batch(seed=int or shape-[2] int tensor)` is a pure function of its inputs
(stateless ops). Training (`search.data.table.train_dataset`) hands every batch its own seed from a
seeded stream that draws anew each epoch: fresh augmentation every epoch, and the same draws
whatever order a parallel map runs in, so a trial replays exactly. `augment_batch(seed=None)`
uses TF's stateful random ops instead; inside `Dataset.map` their state restarts with every new
iterator (every Keras epoch repeats the same draws per batch position).
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from search.data.arrays import LOG_ASPECT as _LOG_ASPECT
from search.data.arrays import check as _check


def _seed_tensor(seed) -> tf.Tensor:
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
    if isinstance(seed, numbers.Integral):
        return tf.constant([seed, 0], dtype=tf.int64)
    return tf.cast(tf.reshape(seed, [2]), tf.int64)


def _flip_cols(cols, w, seed):
    """Column indices [B, W] read right to left for a random half of the images."""
    do = tf.random.stateless_uniform([tf.shape(cols)[0]], seed=seed) < 0.5
    return tf.where(do[:, None], w - 1 - cols, cols)


def _shift_offsets(b, size, shift, seed):
    """Per-image integer offsets in [-shift*size, shift*size]."""
    u = tf.random.stateless_uniform([b], minval=-shift, maxval=shift, seed=seed)
    return tf.cast(tf.round(u * tf.cast(size, tf.float32)), tf.int32)


def _cutout_mask(b, h, w, p, area, seed):
    """[B, H, W] bool: each image, with probability exactly `p`, one rectangle to erase.

    The rectangle's area is uniform in `area` (fraction of the image); its aspect ratio is
    log-uniform, then the sides are clipped to the image while keeping the area where possible.
    """
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    s_apply, s_area, s_aspect, s_y, s_x = tf.unstack(
        tf.random.experimental.stateless_split(seed, 5))

    def uniform(s, lo=0.0, hi=1.0):
        return tf.random.stateless_uniform([b], minval=lo, maxval=hi, seed=s)

    apply = uniform(s_apply) < p
    target = uniform(s_area, *area) * hf * wf  # in pixels
    aspect = tf.exp(uniform(s_aspect, *_LOG_ASPECT))
    eh = tf.clip_by_value(tf.sqrt(target * aspect), 1.0, hf)
    ew = tf.clip_by_value(target / eh, 1.0, wf)
    eh = tf.clip_by_value(target / ew, 1.0, hf)
    # Round one side to whole pixels and derive the other from the target area, so the area is
    # off by at most half a row or column: round first the side that spans the image, else the
    # shorter one.
    w_first = (ew >= wf) | ((ew <= eh) & (eh < hf))

    def to_px(v, size):
        return tf.clip_by_value(tf.cast(tf.round(v), tf.int32), 1, size)

    ew1 = to_px(ew, w)
    eh1 = to_px(target / tf.cast(ew1, tf.float32), h)
    eh2 = to_px(eh, h)
    ew2 = to_px(target / tf.cast(eh2, tf.float32), w)
    eh, ew = tf.where(w_first, eh1, eh2), tf.where(w_first, ew1, ew2)

    def start(size, extent, s):  # uniform integer in [0, size - extent]
        room = tf.cast(size - extent + 1, tf.float32)
        return tf.minimum(tf.cast(tf.floor(uniform(s) * room), tf.int32), size - extent)

    y0, x0 = start(h, eh, s_y), start(w, ew, s_x)
    r = tf.range(h)[None, :]
    c = tf.range(w)[None, :]
    in_rows = (r >= y0[:, None]) & (r < (y0 + eh)[:, None])  # [B, H]
    in_cols = (c >= x0[:, None]) & (c < (x0 + ew)[:, None])  # [B, W]
    return in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]


def augment_batch(images, *, flip: bool = True, shift: float = 0.1, cutout: float = 0.0,
                  cutout_area=(0.02, 0.4), seed=None):
    """Augment a batch `[B, H, W, C]`: flip (p=0.5), shift (fill 0), then cutout (fill 0).

    With `flip=False, shift=0, cutout=0` the input is returned unchanged. Shape and dtype are
    preserved. Pure tf ops, so it runs eagerly, in `tf.function` and in `Dataset.map`.
    """
    area = _check(shift, cutout, cutout_area)
    if not flip and shift == 0 and cutout == 0:
        return images
    images = tf.convert_to_tensor(images)
    static_shape = images.shape
    s_flip, s_shift, s_cut = tf.unstack(
        tf.random.experimental.stateless_split(_seed_tensor(seed), 3))
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    # Flip and shift are one gather per axis (output pixel reads a computed source pixel);
    # the shift's vacated border and the cutout rectangle are one multiplicative mask. Fewer
    # passes over the pixels than flip, shift and erase applied one after the other.
    rows = tf.tile(tf.range(h)[None, :], [b, 1])
    cols = tf.tile(tf.range(w)[None, :], [b, 1])
    keep = None
    if flip:
        cols = _flip_cols(cols, w, s_flip)
    if shift > 0:
        s_rows, s_cols = tf.unstack(tf.random.experimental.stateless_split(s_shift, 2))
        rows = rows - _shift_offsets(b, h, float(shift), s_rows)[:, None]
        cols = cols - _shift_offsets(b, w, float(shift), s_cols)[:, None]
        keep = (((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :])
        rows = tf.clip_by_value(rows, 0, h - 1)
        cols = tf.clip_by_value(cols, 0, w - 1)
        images = tf.gather(images, rows, axis=1, batch_dims=1)
    if flip or shift > 0:
        images = tf.gather(images, cols, axis=2, batch_dims=1)
    if cutout > 0:
        erase = _cutout_mask(b, h, w, float(cutout), area, s_cut)
        keep = ~erase if keep is None else keep & ~erase
    if keep is not None:
        images = images * tf.cast(keep, images.dtype)[..., None]
    images.set_shape(static_shape)
    return images
