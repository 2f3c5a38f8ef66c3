"""Input geometry that travels inside the saved model: raw RGB of any size → network input.

The training cache is made by the very same function (`prepare`) that the exported model runs
on raw images at predict time, so training and serving see identical pixels. With
`crop="auto"`, uniform black side borders (the padded person crops of the real data) are
trimmed per image before resizing.
"""

from __future__ import annotations

import keras
from keras import ops

BLACK = 16.0  # a column whose brightest value is below this counts as padding


def prepare(images, size: tuple[int, int], crop: str = "none"):
    """images: [B, H, W, 3] (any dtype, 0..255) → float32 [B, size[0], size[1], 3], 0..255.

    Keras ops only, so it runs inside the model on every backend and in every export. The
    resize is bilinear with half-pixel centres (tf.image.resize); the crop samples like
    tf.image.crop_and_resize (corners aligned), which it replaced."""
    images = ops.cast(images, "float32")
    if crop == "none":
        return ops.image.resize(images, size, interpolation="bilinear")
    if crop != "auto":
        raise ValueError(f"crop must be none or auto, got {crop!r}")
    height, width = ops.shape(images)[1], ops.shape(images)[2]
    column_max = ops.max(images, axis=(1, 3))  # [B, W]
    content = column_max >= BLACK
    cols = ops.expand_dims(ops.arange(width), 0)
    first = ops.min(ops.where(content, cols, width + 1), axis=1)
    last = ops.max(ops.where(content, cols, -1), axis=1)
    empty = first > last  # an all-black image keeps its full width
    first = ops.cast(ops.where(empty, 0, first), "float32")
    last = ops.cast(ops.where(empty, width - 1, last), "float32")
    # Rows: the whole height; columns: [first, last] of each image, both end points sampled.
    rows = _grid(size[0], 0.0, ops.cast(height - 1, "float32"))  # [h]
    steps = _grid(size[1], 0.0, 1.0)  # [w] in [0, 1]
    xs = ops.expand_dims(first, 1) + ops.expand_dims(last - first, 1) * steps  # [B, w]
    images = _lerp_rows(images, rows)
    return _lerp_cols(images, xs, width)


def _grid(count: int, lo, hi):
    """`count` points from lo to hi, both included (the centre when count is 1)."""
    if count == 1:
        return ops.reshape((lo + hi) / 2.0, (1,))
    return lo + (hi - lo) * ops.arange(count, dtype="float32") / float(count - 1)


def _lerp_rows(images, ys):
    """Bilinear rows at positions ys (the same for every image): [B, len(ys), W, C]."""
    top = ops.floor(ys)
    frac = ops.reshape(ys - top, (1, -1, 1, 1))
    # Rounding can put the last position a hair past the last row; JAX fills an index out of
    # range with NaN (TensorFlow's CPU gather raises), so every index is clipped.
    last = ops.shape(images)[1] - 1
    top = ops.minimum(ops.cast(top, "int32"), last)
    bottom = ops.minimum(ops.cast(ops.ceil(ys), "int32"), last)
    above, below = ops.take(images, top, axis=1), ops.take(images, bottom, axis=1)
    return above + (below - above) * frac


def _lerp_cols(images, xs, width):
    """Bilinear columns at per-image positions xs [B, w]: [B, H, w, C]."""
    left = ops.floor(xs)
    frac = ops.expand_dims(ops.expand_dims(xs - left, 1), 3)  # [B, 1, w, 1]
    right = ops.minimum(ops.cast(ops.ceil(xs), "int32"), width - 1)
    left = ops.minimum(ops.cast(left, "int32"), width - 1)
    shape = (ops.shape(images)[0], ops.shape(images)[1], ops.shape(xs)[1], ops.shape(images)[3])

    def gather(index):
        index = ops.broadcast_to(ops.expand_dims(ops.expand_dims(index, 1), 3), shape)
        return ops.take_along_axis(images, index, axis=2)

    a, b = gather(left), gather(right)
    return a + (b - a) * frac


@keras.saving.register_keras_serializable(package="search")
class Prepare(keras.layers.Layer):
    """The model's first layer: crop/resize raw RGB images to the trained input size."""

    def __init__(self, size, crop: str = "none", **kwargs):
        super().__init__(**kwargs)
        self.size = (int(size[0]), int(size[1]))
        self.crop = crop

    def call(self, images):
        return prepare(images, self.size, self.crop)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size[0], self.size[1], 3)

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "crop": self.crop}


@keras.saving.register_keras_serializable(package="search")
class Mirror(keras.layers.Layer):
    """Images mirrored left to right ([B, H, W, C]): the second view of test-time flips, whose
    probabilities a final model averages with the image's own (search.final.selection)."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape
