"""The shared neck and one softmax tower per head.

Head names (gender, age, ...) are kept in layer names, so Keras metrics, MLflow keys and the
label file all use the attribute's own name. Softmax outputs are float32 even under mixed
precision, so losses and probabilities stay exact.
"""

from __future__ import annotations

import keras

from search.config import TrialConfig


def attach(features, config: TrialConfig, vocab: dict[str, tuple[str, ...]]) -> dict:
    """features (a feature map tensor) → {head: softmax probabilities}."""
    if config.neck == "flatten":
        x = keras.layers.Flatten(name="neck_flatten")(features)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="neck_pool")(features)
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
    return outputs
