"""Backbones by name: feature extractors that map a float image (0..255) to a feature map.

timm style: plain factory functions registered with `@register`, created through `create`;
an unknown name fails in one place with the list of known names. Pretrained families wrap
`keras.applications` with the family's own `preprocess_input` inside the model.

ImageNet weights: `weights="imagenet"` first looks for a local Keras weight file
(`search.model.weights`) and only then lets Keras download it.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from search.errors import ConfigError
from search.model import weights as weights_lib
from search.space.config import TrialConfig
from search.space.families import FAMILIES

_REGISTRY: dict[str, Callable] = {}
# Keras' default BN momentum (0.99) needs thousands of steps before its moving statistics are
# usable; short trials validate with garbage statistics. 0.9 settles within an epoch.
BN_MOMENTUM = 0.9


def register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn
    return wrap


@dataclass(frozen=True)
class Backbone:
    """A built backbone: the Keras model image → feature map, and what a trial needs to know
    of it (kept here, not as attributes on the Keras model)."""

    model: keras.Model
    base: keras.Model | None = None  # the pretrained network inside `model`, or None
    scratch: bool = True  # random weights: trains everything (pretrained ones start frozen)
    weights_source: str = "none"  # logged with the trial: what `weights: auto` resolved to


def create(config: TrialConfig) -> Backbone:
    """The backbone named by config.backbone (its model: image → feature map)."""
    try:
        factory = _REGISTRY[config.backbone]
    except KeyError:
        raise ConfigError(f"unknown backbone {config.backbone!r}; known: "
                          f"{', '.join(sorted(_REGISTRY))}") from None
    return factory(config)


@register("separable")
def separable(config: TrialConfig) -> Backbone:
    """From-scratch depthwise-separable convnet: blocks of SeparableConv2D+BN+ReLU, pool, dropout."""
    h, w = config.image_size
    inputs = keras.Input((h, w, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(config.width, 3, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    convs = config.convs_per_block
    for b in range(config.depth):
        filters = min(config.width * 2 ** b, config.max_filters)
        n = convs[b] if isinstance(convs, tuple) else convs
        for c in range(n):
            x = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False,
                                             name=f"block{b + 1}_sep{c + 1}")(x)
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM,
                                                name=f"block{b + 1}_bn{c + 1}")(x)
            x = keras.layers.ReLU(name=f"block{b + 1}_relu{c + 1}")(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"block{b + 1}_pool")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"block{b + 1}_drop")(x)
    return Backbone(keras.Model(inputs, x, name="separable"))


@register("pretrained")
def pretrained(config: TrialConfig) -> Backbone:
    """A keras.applications family, frozen or fine-tuned from the top fraction of its layers."""
    if config.family not in FAMILIES:
        raise ConfigError(f"unknown pretrained family {config.family!r}; known: "
                          f"{', '.join(FAMILIES)}")
    family = FAMILIES[config.family]
    h, w = config.image_size
    kwargs = {"alpha": config.alpha} if family.has_alpha else {}
    weights = weights_lib.resolve(config.weights, config.family, config.alpha)
    source = weights or "none"
    what = f"{config.family} (alpha {config.alpha})" if family.has_alpha else config.family
    build = functools.partial(family.build(), include_top=False, input_shape=(h, w, 3), **kwargs)
    with warnings.catch_warnings():  # "weights for (224, 224) will be loaded": intended
        warnings.filterwarnings("ignore", message=".*will be loaded as the default", category=UserWarning)
        try:
            base = build(weights=weights)
        except ValueError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        except Exception as exc:  # Keras raises a bare Exception when the download fails
            if weights != "imagenet":
                raise
            reason = str(exc).split(" -- ")[-1][:200]
            if config.weights != "auto":
                raise ConfigError(
                    f"cannot download ImageNet weights for {what}: {reason}. Offline? Put the "
                    f"Keras *_no_top.h5 file in a folder named by SEARCH_WEIGHTS_DIR, pass a "
                    f"file path as weights, or use weights: auto/none") from None
            base = build(weights=None)
            source = f"none (imagenet unavailable: {reason})"
    scratch = weights is None or source.startswith("none")
    # Pretrained weights start frozen (BatchNorm included: its statistics come from ImageNet,
    # not our small batches); training stages unfreeze the top (`unfreeze_top`). Random
    # features are useless frozen: a scratch backbone trains everything, BatchNorm included.
    base.trainable = scratch
    inputs = keras.Input((h, w, 3), name="image")
    x = FamilyPreprocess(config.family, name="preprocess_input")(inputs)
    x = base(x) if scratch else base(x, training=False)
    return Backbone(keras.Model(inputs, x, name=f"{config.family}"), base=base, scratch=scratch,
                    weights_source=source)


_CUTS: dict[tuple, str | None] = {}  # cut_layer's answers, per network and fraction


def cut_layer(base: keras.Model, fraction: float) -> str | None:
    """The layer after which the top `fraction` of a pretrained network's layers is trained.
    It must be a block boundary (its output alone feeds everything above it, so the layers
    below can be cached as one array); near that depth (within a tenth of the layers) the
    narrowest such output wins, since it is what gets cached (a block's output, not its 6x
    wider expansion). None: no such layer; train from the input."""
    key = (base.name, tuple(base.input.shape[1:]), len(base.layers), fraction)
    if key not in _CUTS:  # the search below builds a model per candidate: ~0.7 s
        _CUTS[key] = _find_cut(base, fraction)
    return _CUTS[key]


def _find_cut(base: keras.Model, fraction: float) -> str | None:
    layers = base.layers
    target = int(round(len(layers) * (1 - fraction)))
    window = max(3, len(layers) // 10)
    found = [(int(np.prod(layer.output.shape[1:])), abs(i - target), layer.name)
             for i, layer in enumerate(layers)
             if 1 <= i < len(layers) - 1 and abs(i - target) <= window
             and _separates(base, layer)]
    return min(found)[2] if found else None


def _separates(base: keras.Model, layer) -> bool:
    try:
        keras.Model(layer.output, base.output)
    except ValueError:  # "not connected to inputs": a residual branch skips over it
        return False
    return True


def top_of(base: keras.Model, cut: str) -> keras.Model:
    """The part of a pretrained network above the `cut` layer (its layers, shared)."""
    return keras.Model(base.get_layer(cut).output, base.output, name=f"{base.name}_top")


def below(backbone: Backbone, cut: str) -> keras.Model:
    """image → the cut layer's output: preprocessing and the frozen bottom of the network."""
    base = backbone.base
    bottom = keras.Model(base.input, base.get_layer(cut).output, name=f"{base.name}_bottom")
    image = backbone.model.input
    x = backbone.model.get_layer("preprocess_input")(image)
    return keras.Model(image, bottom(x, training=False), name="below_cut")


def unfreeze_top(backbone: Backbone, cut: str | None) -> None:
    """Train the layers above `cut` (all of them when None), BatchNorm excepted."""
    base = backbone.base
    base.trainable = True  # sets every layer; now choose
    above = cut is None
    for layer in base.layers:
        layer.trainable = above and not isinstance(layer, keras.layers.BatchNormalization)
        above = above or layer.name == cut


@keras.saving.register_keras_serializable(package="search")
class FamilyPreprocess(keras.layers.Layer):
    """The family's own `preprocess_input`, as a layer that saves and loads in safe mode."""

    def __init__(self, family: str, **kwargs):
        super().__init__(**kwargs)
        self.family = family

    def call(self, x):
        return FAMILIES[self.family].preprocess(x)

    def get_config(self):
        return {**super().get_config(), "family": self.family}
