"""Input geometry that travels inside the saved model: raw RGB of any size → network input.

The training cache is made by the very same function (`prepare`) that the exported model runs
on raw images at predict time, so training and serving see identical pixels. With
`crop="auto"`, uniform black side borders (the padded person crops of the real data) are
trimmed per image before resizing.
"""

from __future__ import annotations

import keras
import tensorflow as tf

BLACK = 16.0  # a column whose brightest value is below this counts as padding


def prepare(images, size: tuple[int, int], crop: str = "none"):
    """images: [B, H, W, 3] (any dtype, 0..255) → float32 [B, size[0], size[1], 3], 0..255."""
    images = tf.cast(images, tf.float32)
    if crop == "none":
        return tf.image.resize(images, size)
    if crop != "auto":
        raise ValueError(f"crop must be none or auto, got {crop!r}")
    column_max = tf.reduce_max(images, axis=[1, 3])  # [B, W]
    width = tf.shape(images)[2]
    content = column_max >= BLACK
    cols = tf.range(width)[tf.newaxis, :]
    big = width + 1
    first = tf.reduce_min(tf.where(content, cols, big), axis=1)
    last = tf.reduce_max(tf.where(content, cols, -1), axis=1)
    empty = first > last  # an all-black image keeps its full width
    first = tf.where(empty, 0, first)
    last = tf.where(empty, width - 1, last)
    denom = tf.cast(tf.maximum(width - 1, 1), tf.float32)
    x1 = tf.cast(first, tf.float32) / denom
    x2 = tf.cast(last, tf.float32) / denom
    batch = tf.shape(images)[0]
    zeros, ones = tf.zeros_like(x1), tf.ones_like(x1)
    boxes = tf.stack([zeros, x1, ones, x2], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), size)


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
