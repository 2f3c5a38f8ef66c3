"""`TrialConfig`: the frozen, fully resolved description of one model and its training.

Everything that builds or trains a model reads this and nothing else: it never sees Optuna,
YAML or the CLI. Defaults are flat, grouped and commented next to their value (nanoGPT
style); `TrialConfig.from_dict` rejects unknown keys and wrong types with a `ConfigError` that
names the key. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from search.errors import ConfigError
from search.space import families

# One list per concept: validation, the CLI's choices and the registries all read these.
BACKBONES = ("separable", "pretrained")  # search.model.backbones registers exactly these
FAMILIES = tuple(families.FAMILIES)  # pretrained families (search.space.families)
CLR_MODES = ("triangular", "triangular2", "exp_range", "constant")
OPTIMIZERS = ("sgd", "adam")
# What a single-objective study maximises; the first is the default. A multi-objective study
# maximises each head's accuracy and is summarised by the first.
OBJECTIVES = ("mean_accuracy", "mean_balanced_accuracy")
NECKS = ("gap", "flatten", "rows")
CLASS_WEIGHTINGS = ("none", "balanced")
CROPS = ("none", "auto")


@dataclass(frozen=True)
class TrialConfig:
    # --- backbone -----------------------------------------------------------------------
    backbone: str = "separable"  # separable (from scratch) | pretrained (keras.applications)
    family: str = "mobilenet_v2"  # pretrained only: one of FAMILIES
    alpha: float = 0.35  # pretrained MobileNet width multiplier
    weights: str = "imagenet"  # pretrained: imagenet | auto (imagenet, else none) | none | path
    fine_tune_fraction: float = 0.0  # pretrained: top fraction of layers trained (0 = frozen)
    feature_cache: bool = True  # pretrained with weights: train on cached backbone outputs
    views: int = 4  # cached views per image: plain, flipped, then shifted / cut out
    probe_epochs: int = 8  # fine-tuning: epochs of heads alone on frozen features first
    fine_tune_lr_scale: float = 0.1  # fine-tuning: the CLR bounds times this after the probe
    width: int = 32  # separable: filters of the first block, doubled per block
    max_filters: int = 256  # separable: cap on filters per block
    depth: int = 4  # separable: number of blocks (each halves the resolution)
    convs_per_block: int | tuple[int, ...] = 1  # separable: convs per block, or one per block
    dropout: float = 0.1  # separable: dropout after each block
    # --- neck and heads -------------------------------------------------------------------
    neck: str = "gap"  # gap (global average pooling) | flatten | rows (each row, averaged)
    neck_units: int = 128  # Dense after pooling, shared by all heads (0 = none)
    neck_dropout: float = 0.2
    head_units: int = 64  # Dense per head before its softmax (0 = none)
    head_dropout: float = 0.2
    class_weighting: str = "none"  # none | balanced: per-head loss weights by inverse frequency
    majority_fallback: bool = False  # heads no better than their majority class: the prior
    # --- input and augmentation -----------------------------------------------------------
    image_size: tuple[int, int] = (48, 48)  # height, width the network sees
    crop: str = "none"  # none | auto: trim uniform black side borders before resizing
    flip: bool = True
    shift: float = 0.1  # max translation as a fraction of the side
    cutout: float = 0.0  # probability that an image gets one erased rectangle
    # --- optimisation ---------------------------------------------------------------------
    optimizer: str = "adam"  # sgd (momentum) | adam
    momentum: float = 0.9  # sgd only
    clr_mode: str = "triangular"  # triangular | triangular2 | exp_range | constant
    base_lr: float = 1e-3
    max_lr: float = 6e-3
    step_size_epochs: float = 2.0  # half a CLR cycle, in epochs
    gamma: float = 0.99994  # exp_range only: per-step decay of the amplitude
    use_ema: bool = False  # score, keep and save each epoch's moving average of the weights
    ema_momentum: float = 0.99  # use_ema: the old average's share per step (~1/(1-m) steps)
    batch_size: int = 64
    epochs: int = 3  # of the main stage: training, the probe of a frozen backbone, fine-tuning
    patience: int = 0  # stop a stage after this many epochs without a better objective (0: off)
    seed: int = 0

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        """Build from plain values (YAML, Optuna params): unknown keys and bad types raise."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(known)}"
            )
        coerced = {name: _coerce(name, known[name].default, v) for name, v in values.items()}
        config = cls(**coerced)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, e.g. for MLflow params and the saved model's metadata."""
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size)
        if isinstance(self.convs_per_block, tuple):
            out["convs_per_block"] = list(self.convs_per_block)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> "TrialConfig":
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        _choice("backbone", self.backbone, BACKBONES)
        _choice("clr_mode", self.clr_mode, CLR_MODES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("neck", self.neck, NECKS)
        _choice("class_weighting", self.class_weighting, CLASS_WEIGHTINGS)
        _choice("crop", self.crop, CROPS)
        h, w = self.image_size
        if h < 32 or w < 32:
            raise ConfigError(f"image_size must be at least 32x32, got {h}x{w}")
        for name in ("dropout", "neck_dropout", "head_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("cutout", "fine_tune_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.shift < 1.0:  # search.data.augment's range: a whole-side shift is blank
            raise ConfigError(f"shift must be in [0, 1), got {self.shift}")
        for name in ("width", "depth", "batch_size", "epochs", "max_filters", "views",
                     "probe_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience}")
        if not 0.0 < self.fine_tune_lr_scale <= 1.0:
            raise ConfigError(f"fine_tune_lr_scale must be in (0, 1], got "
                              f"{self.fine_tune_lr_scale}")
        if self.base_lr <= 0:
            raise ConfigError(f"base_lr must be > 0, got {self.base_lr}")
        if self.clr_mode != "constant" and self.max_lr <= self.base_lr:
            raise ConfigError(
                f"max_lr ({self.max_lr}) must be greater than base_lr ({self.base_lr})"
            )
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 <= self.ema_momentum < 1.0:  # 1 would freeze the average at the first step
            raise ConfigError(f"ema_momentum must be in [0, 1), got {self.ema_momentum}")
        if isinstance(self.convs_per_block, tuple) and len(self.convs_per_block) != self.depth:
            raise ConfigError(
                f"convs_per_block lists {len(self.convs_per_block)} blocks but depth is {self.depth}"
            )


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _coerce(name: str, default: Any, value: Any) -> Any:
    """Type-check a value against the field's default (ints may stand for floats)."""
    if name == "image_size":
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, value)
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            return (int(value[0]), int(value[1]))
        raise ConfigError(f"image_size must be an int or [height, width], got {value!r}")
    if name == "convs_per_block":
        if isinstance(value, (list, tuple)):
            if not value or not all(isinstance(v, int) and v >= 1 for v in value):
                raise ConfigError(f"convs_per_block list must hold ints >= 1, got {value!r}")
            return tuple(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        raise ConfigError(f"convs_per_block must be an int >= 1 or a list, got {value!r}")
    if name == "weights" and value is None:
        return "none"
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{name} must be a {kind.__name__}, got {value!r}")
