"""The neck and one softmax tower per head, as a model of its own on pooled features.

`pool` turns the backbone's feature map into a vector (global average pooling, flatten, or
rows: each row of the map averaged across its width, PCB-style horizontal stripes that keep
where on the body a cue is: head, torso, hands, feet);
`build` maps that vector to {head: probabilities}: a shared Dense neck, then per head an
optional dropout and Dense+ReLU layer and its logits (`Towers`, all heads at once), and a
softmax named after the head. Being a model of its own, the same heads serve the whole
network (image → backbone → pool → heads) and a trial that trains on cached features
(vector → heads), sharing weights. Head names (gender, age, ...) are the names of the softmax
layers, so Keras metrics, MLflow keys and the label file all use the attribute's own name.
Softmax outputs are float32 even under mixed precision, so losses and probabilities stay exact.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from search.space.config import TrialConfig


def pool(config: TrialConfig, feature_shape) -> keras.layers.Layer:
    """Feature map (shape `feature_shape`, batch first) → vector, as the config's neck says.

    Global average pooling throws away where a cue is; a person crop is laid out the same way
    every time (head on top, feet at the bottom), so `rows` keeps the vertical position (a bag
    at the hip, shoes, a face or the back of a head) at the cost of height-times more features.
    Standard Keras layers only, so exports need nothing of this package."""
    if config.neck == "flatten":
        return keras.layers.Flatten(name="neck_flatten")
    if config.neck == "rows":
        width = int(feature_shape[2])
        return keras.Sequential([keras.layers.AveragePooling2D((1, width), name="row_mean"),
                                 keras.layers.Flatten(name="row_flatten")], name="neck_rows")
    return keras.layers.GlobalAveragePooling2D(name="neck_pool")


def build(features: int, config: TrialConfig, vocab: dict[str, tuple[str, ...]]) -> keras.Model:
    """A `features`-long vector → {head: softmax probabilities}."""
    inputs = keras.Input((features,), name="features")
    x = inputs
    if config.neck_units:
        x = keras.layers.Dense(config.neck_units, activation="relu", name="neck_dense")(x)
    if config.neck_dropout:
        x = keras.layers.Dropout(config.neck_dropout, name="neck_drop")(x)
    logits = Towers([len(labels) for labels in vocab.values()], units=config.head_units,
                    dropout=config.head_dropout, name="towers")(x)
    outputs = {head: keras.layers.Activation("softmax", dtype="float32", name=head)(z)
               for head, z in zip(vocab, logits)}
    return keras.Model(inputs, outputs, name="heads")


@keras.saving.register_keras_serializable(package="search")
class Towers(keras.layers.Layer):
    """Every head's tower at once: per head its own dropout mask on the shared vector, a
    Dense(units)+ReLU layer (none when units is 0) and a Dense layer to its logits.

    The same function as one Dense layer per head (each head has its own weights, initialised
    as Keras' Glorot-uniform Dense would be), held in four weight tensors instead of four per
    head: a train step with Adam then traces about twice as fast, and tracing is most of what
    a short trial on cached features costs (bench/RESULTS.md). Returns one logits tensor per
    head, in the order of `classes`."""

    def __init__(self, classes, units: int = 0, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.classes = [int(k) for k in classes]
        self.units, self.dropout = int(units), float(dropout)
        self.drop = keras.layers.Dropout(self.dropout) if self.dropout else None

    def build(self, input_shape):
        heads, width = len(self.classes), int(input_shape[-1])
        if self.units:
            self.hidden_kernel = self._kernel("hidden_kernel", heads, width, self.units)
            self.hidden_bias = self.add_weight(name="hidden_bias", shape=(heads, self.units),
                                               initializer="zeros")
            width = self.units
        self.kernel = self._kernel("kernel", heads, width, max(self.classes))
        self.bias = self.add_weight(name="bias", shape=(heads, max(self.classes)),
                                    initializer="zeros")

    def _kernel(self, name: str, heads: int, fan_in: int, fan_out: int):
        limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform of one head's Dense
        return self.add_weight(name=name, shape=(heads, fan_in, fan_out),
                               initializer=keras.initializers.RandomUniform(-limit, limit))

    def call(self, x, training=None):
        heads = len(self.classes)
        if self.drop is not None:  # [B, F] → [B, heads, F]: a mask of its own per head
            x = self.drop(ops.repeat(ops.expand_dims(x, 1), heads, axis=1), training=training)
        if self.units:
            x = ops.relu(self._dense(x, self.hidden_kernel, self.hidden_bias))
        logits = self._dense(x, self.kernel, self.bias)
        return [logits[:, i, :k] for i, k in enumerate(self.classes)]

    @staticmethod
    def _dense(x, kernel, bias):
        equation = "bf,hfu->bhu" if len(x.shape) == 2 else "bhf,hfu->bhu"
        return ops.einsum(equation, x, ops.cast(kernel, x.dtype)) + ops.cast(bias, x.dtype)

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], k) for k in self.classes]

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "units": self.units,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="search")
class Prior(keras.layers.Layer):
    """A head that learned nothing better than its majority class (`majority_fallback`)
    answers the training class frequencies for every image: it always predicts the majority
    class, which beats a head whose guesses are worse than that."""

    def __init__(self, prior, **kwargs):
        super().__init__(**kwargs)
        self.prior = [float(p) for p in prior]

    def call(self, x):
        prior = ops.convert_to_tensor([self.prior], dtype="float32")
        return ops.tile(prior, [ops.shape(x)[0], 1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.prior))

    def get_config(self):
        return {**super().get_config(), "prior": self.prior}
