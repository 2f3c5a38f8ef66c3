"""The neck and one softmax tower per head, as a model of its own on pooled features.

`pool` turns the backbone's feature map into a vector (global average pooling or flatten);
`build` maps that vector to {head: probabilities}: a shared Dense neck, then per head an
optional Dense layer and its softmax. Being a model of its own, the same heads serve the whole
network (image → backbone → pool → heads) and a trial that trains on cached features
(vector → heads), sharing weights. Head names (gender, age, ...) are kept in layer names, so
Keras metrics, MLflow keys and the label file all use the attribute's own name. Softmax outputs
are float32 even under mixed precision, so losses and probabilities stay exact.
"""

from __future__ import annotations

import keras

from search.config import TrialConfig


def pool(config: TrialConfig) -> keras.layers.Layer:
    """Feature map → vector, as the config's neck says."""
    if config.neck == "flatten":
        return keras.layers.Flatten(name="neck_flatten")
    return keras.layers.GlobalAveragePooling2D(name="neck_pool")


def build(features: int, config: TrialConfig, vocab: dict[str, tuple[str, ...]]) -> keras.Model:
    """A `features`-long vector → {head: softmax probabilities}."""
    inputs = keras.Input((features,), name="features")
    x = inputs
    if config.neck_units:
        x = keras.layers.Dense(config.neck_units, activation="relu", name="neck_dense")(x)
    if config.neck_dropout:
        x = keras.layers.Dropout(config.neck_dropout, name="neck_drop")(x)
    outputs = {}
    for head, labels in vocab.items():
        h = x
        if config.head_dropout:
            h = keras.layers.Dropout(config.head_dropout, name=f"{head}_drop")(h)
        if config.head_units:
            h = keras.layers.Dense(config.head_units, activation="relu", name=f"{head}_dense")(h)
        outputs[head] = keras.layers.Dense(len(labels), activation="softmax", dtype="float32",
                                           name=head)(h)
    return keras.Model(inputs, outputs, name="heads")


@keras.saving.register_keras_serializable(package="search")
class Prior(keras.layers.Layer):
    """A head that learned nothing better than its majority class (`majority_fallback`)
    answers the training class frequencies for every image: it always predicts the majority
    class, which beats a head whose guesses are worse than that."""

    def __init__(self, prior, **kwargs):
        super().__init__(**kwargs)
        self.prior = [float(p) for p in prior]

    def call(self, x):
        import keras.ops as ops

        prior = ops.convert_to_tensor([self.prior], dtype="float32")
        return ops.tile(prior, [ops.shape(x)[0], 1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.prior))

    def get_config(self):
        return {**super().get_config(), "prior": self.prior}
