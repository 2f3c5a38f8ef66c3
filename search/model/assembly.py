"""Model assembly: backbone → pool → heads for training, and the raw-image model that is saved.

`assemble` makes the network (input: float images at config.image_size, 0..255) with its
parts (`Net.parts`), so a trial can train the heads, or the top of the backbone with the
heads, on cached inputs while the whole network shares their weights; `build` is the network
alone. `export` wraps it so the saved model takes raw RGB images of any size: cropping and
resizing (`search.model.preprocess.Prepare`) and the family's normalisation are layers inside
it.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from search.model import backbones, heads
from search.model.preprocess import Prepare
from search.space.config import TrialConfig


@dataclass(frozen=True)
class Parts:
    """The pieces of a built network, shared with it (same layers, same weights)."""

    backbone: backbones.Backbone  # image → feature map, and its pretrained base if any
    pool: keras.layers.Layer  # feature map → vector
    heads: keras.Model  # vector → {head: probabilities}


@dataclass(frozen=True)
class Net:
    """A built network and its parts."""

    model: keras.Model  # image → {head: probabilities}
    parts: Parts


def build(config: TrialConfig, vocab: dict[str, tuple[str, ...]]) -> keras.Model:
    """The network image → {head: probabilities} of `config`."""
    return assemble(config, vocab).model


def assemble(config: TrialConfig, vocab: dict[str, tuple[str, ...]]) -> Net:
    h, w = config.image_size
    inputs = keras.Input((h, w, 3), name="image")
    backbone = backbones.create(config)
    features = backbone.model(inputs)
    pool = heads.pool(config, features.shape)
    pooled = pool(features)
    head = heads.build(int(pooled.shape[-1]), config, vocab)
    return Net(keras.Model(inputs, head(pooled), name="search_model"),
               Parts(backbone, pool, head))


def _float32_copy(model: keras.Model, config: TrialConfig) -> keras.Model:
    """The same network built under the float32 policy, with the trained weights (weights do
    not depend on trainable flags for their order, and are float32 under mixed precision)."""
    policy = keras.mixed_precision.global_policy()
    vocab = {head: tuple(range(int(output.shape[-1]))) for head, output in model.output.items()}
    keras.mixed_precision.set_global_policy("float32")
    try:
        fresh = build(config.replace(weights="none"), vocab)  # the weights are copied next
    finally:
        keras.mixed_precision.set_global_policy(policy)
    fresh.set_weights(model.get_weights())
    return fresh


def export(model: keras.Model, config: TrialConfig, priors: dict | None = None) -> keras.Model:
    """The serving model: raw RGB of any size in, one softmax per head out. It carries no
    optimizer, loss or learning-rate schedule (a fresh process loads it with nothing but
    Keras and this package's layers): the trained graph is re-wrapped, uncompiled, sharing
    the trained layers and weights. A network trained under mixed precision is rebuilt in
    float32 with the trained weights, so it serves on any CPU. Heads named in `priors`
    answer that prior instead (`majority_fallback`)."""
    if keras.mixed_precision.global_policy().compute_dtype != "float32":
        model = _float32_copy(model, config)
    inference = keras.Model(model.input, model.output, name=model.name)
    raw = keras.Input((None, None, 3), name="raw_image")
    x = Prepare(config.image_size, config.crop, name="prepare")(raw)
    outputs = inference(x)
    for head, prior in (priors or {}).items():
        outputs[head] = heads.Prior(prior, name=f"{head}_prior")(outputs[head])
    return keras.Model(raw, outputs, name="search_export")
