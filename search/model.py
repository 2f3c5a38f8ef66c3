"""Model assembly: backbone + heads for training, and the raw-image model that gets saved.

`build` makes the training model (input: float images at config.image_size, 0..255).
`export` wraps it so the saved model takes raw RGB images of any size: cropping and resizing
(`search.preprocess.Prepare`) and the family's normalisation are layers inside it.
"""

from __future__ import annotations

import keras

from search import backbones, heads
from search.config import TrialConfig
from search.preprocess import Prepare


def build(config: TrialConfig, vocab: dict[str, tuple[str, ...]]) -> keras.Model:
    h, w = config.image_size
    inputs = keras.Input((h, w, 3), name="image")
    backbone = backbones.create(config)
    model = keras.Model(inputs, heads.attach(backbone(inputs), config, vocab), name="search_model")
    model.weights_source = getattr(backbone, "weights_source", "none")
    return model


def export(model: keras.Model, config: TrialConfig) -> keras.Model:
    """The serving model: raw RGB of any size in, one softmax per head out. It carries no
    optimizer, loss or learning-rate schedule (a fresh process loads it with nothing but
    Keras and this package's layers): the trained graph is re-wrapped, uncompiled, sharing
    the trained layers and weights."""
    inference = keras.Model(model.input, model.output, name=model.name)
    raw = keras.Input((None, None, 3), name="raw_image")
    x = Prepare(config.image_size, config.crop, name="prepare")(raw)
    return keras.Model(raw, inference(x), name="search_export")
