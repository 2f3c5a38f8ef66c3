"""Backbones by name: feature extractors that map a float image (0..255) to a feature map.

timm style: plain factory functions registered with `@register`, created through `create`;
an unknown name fails in one place with the list of known names. Pretrained families wrap
`keras.applications` with the family's own `preprocess_input` inside the model.

ImageNet weights: `weights="imagenet"` first looks for the standard Keras weight file in the
folders of `$SEARCH_WEIGHTS_DIR` (colon-separated) and in Keras' cache (~/.keras/models), any
input size, and only then lets Keras download it.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras

from search.config import FAMILIES, TrialConfig
from search.errors import ConfigError

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
class Family:
    """A keras.applications family: constructor, preprocessing, weight file names."""

    build: Callable
    preprocess: Callable
    weight_files: Callable[[float], list[str]]  # alpha -> candidate file names
    has_alpha: bool = False


def _families() -> dict[str, Family]:
    apps = keras.applications
    return {
        "mobilenet_v2": Family(
            apps.MobileNetV2, apps.mobilenet_v2.preprocess_input,
            lambda a: [f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{_alpha(a)}_{r}_no_top.h5"
                       for r in (224, 192, 160, 128, 96)], has_alpha=True),
        "mobilenet": Family(
            apps.MobileNet, apps.mobilenet.preprocess_input,
            lambda a: [f"mobilenet_{_alpha_v1(a)}_{r}_tf_no_top.h5"
                       for r in (224, 192, 160, 128)], has_alpha=True),
        "resnet50": Family(
            apps.ResNet50, apps.resnet50.preprocess_input,
            lambda a: ["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]),
        "efficientnet_b0": Family(
            apps.EfficientNetB0, apps.efficientnet.preprocess_input,
            lambda a: ["efficientnetb0_notop.h5"]),
    }


def _alpha(a: float) -> str:
    return f"{a:g}" if a != 1 else "1.0"


def _alpha_v1(a: float) -> str:
    return {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}.get(a, f"{a:g}")


def create(config: TrialConfig) -> keras.Model:
    """The backbone named by config.backbone, as a Keras model image → feature map."""
    try:
        factory = _REGISTRY[config.backbone]
    except KeyError:
        raise ConfigError(f"unknown backbone {config.backbone!r}; known: "
                          f"{', '.join(sorted(_REGISTRY))}") from None
    return factory(config)


@register("separable")
def separable(config: TrialConfig) -> keras.Model:
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
    return keras.Model(inputs, x, name="separable")


@register("pretrained")
def pretrained(config: TrialConfig) -> keras.Model:
    """A keras.applications family, frozen or fine-tuned from the top fraction of its layers."""
    if config.family not in FAMILIES:
        raise ConfigError(f"unknown pretrained family {config.family!r}; known: "
                          f"{', '.join(FAMILIES)}")
    family = _families()[config.family]
    h, w = config.image_size
    kwargs = {"alpha": config.alpha} if family.has_alpha else {}
    weights = resolve_weights(config.weights, family, config.alpha, config.family)
    source = weights or "none"
    what = f"{config.family} (alpha {config.alpha})" if family.has_alpha else config.family
    build = functools.partial(family.build, include_top=False, input_shape=(h, w, 3), **kwargs)
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
    if scratch:  # random features are useless frozen: train everything, BatchNorm included
        base.trainable = True
    else:
        base.trainable = config.fine_tune_fraction > 0
        first = int(round(len(base.layers) * (1 - config.fine_tune_fraction)))
        for i, layer in enumerate(base.layers):
            # BatchNorm stays frozen: its statistics come from ImageNet, not our small batches.
            layer.trainable = base.trainable and i >= first and \
                not isinstance(layer, keras.layers.BatchNormalization)
    inputs = keras.Input((h, w, 3), name="image")
    x = FamilyPreprocess(config.family, name="preprocess_input")(inputs)
    x = base(x) if scratch else base(x, training=False)
    model = keras.Model(inputs, x, name=f"{config.family}")
    model.weights_source = source  # logged with the trial: what `auto` resolved to
    return model


@keras.saving.register_keras_serializable(package="search")
class FamilyPreprocess(keras.layers.Layer):
    """The family's own `preprocess_input`, as a layer that saves and loads in safe mode."""

    def __init__(self, family: str, **kwargs):
        super().__init__(**kwargs)
        self.family = family

    def call(self, x):
        return _families()[self.family].preprocess(x)

    def get_config(self):
        return {**super().get_config(), "family": self.family}


def resolve_weights(weights: str, family: Family, alpha: float, name: str) -> str | None:
    """'imagenet'/'auto' → a local weight file if one is found, else 'imagenet' (Keras
    downloads; for 'auto' a failed download falls back to random init, logged as such)."""
    if weights in ("none", "", None):
        return None
    if weights not in ("imagenet", "auto"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights file {path} does not exist (use imagenet, none, or a "
                              f"path to a *_no_top.h5 file)")
        return str(path)
    dirs = [d for d in os.environ.get("SEARCH_WEIGHTS_DIR", "").split(os.pathsep) if d]
    dirs.append(os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                             "models"))
    for folder in dirs:
        for filename in family.weight_files(alpha):
            candidate = Path(folder) / filename
            if candidate.is_file():
                return str(candidate)
    return "imagenet"
