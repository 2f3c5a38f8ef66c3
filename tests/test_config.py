"""TrialConfig: what every model is built from. Bad values fail at load with the key's name."""

import json

import pytest

from search.errors import ConfigError
from search.space.config import BACKBONES, CLR_MODES, TrialConfig


def test_round_trips_through_plain_values():
    config = TrialConfig.from_dict({"image_size": [96, 64], "convs_per_block": [1, 2, 1, 2],
                                    "base_lr": 1, "max_lr": 3, "weights": None})
    assert config.image_size == (96, 64) and config.convs_per_block == (1, 2, 1, 2)
    assert config.base_lr == 1.0 and isinstance(config.base_lr, float)  # ints stand for floats
    assert config.weights == "none"
    plain = json.loads(config.to_json())
    assert plain["image_size"] == [96, 64]
    assert TrialConfig.from_dict(plain) == config


def test_an_int_image_size_is_square():
    assert TrialConfig.from_dict({"image_size": 64}).image_size == (64, 64)


def test_replace_validates_too():
    config = TrialConfig()
    assert config.replace(epochs=7).epochs == 7
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        config.replace(epochs=0)


@pytest.mark.parametrize("values, message", [
    ({"widht": 8}, "unknown config key(s) widht"),
    ({"backbone": "vit"}, "backbone must be one of " + ", ".join(BACKBONES)),
    ({"clr_mode": "cosine"}, "clr_mode must be one of " + ", ".join(CLR_MODES)),
    ({"flip": "yes"}, "flip must be true or false"),
    ({"epochs": 2.5}, "epochs must be a int"),
    ({"epochs": True}, "epochs must be a int"),
    ({"image_size": [16, 64]}, "image_size must be at least 32x32"),
    ({"image_size": [64, 64, 3]}, "image_size must be an int or [height, width]"),
    ({"cutout": 1.5}, "cutout must be in [0, 1]"),
    ({"shift": 1.0}, "shift must be in [0, 1)"),
    ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ({"base_lr": 0.01, "max_lr": 0.001}, "max_lr (0.001) must be greater than base_lr"),
    ({"fine_tune_lr_scale": 0.0}, "fine_tune_lr_scale must be in (0, 1]"),
    ({"patience": -1}, "patience must be >= 0"),
    ({"ema_momentum": 1.0}, "ema_momentum must be in [0, 1)"),
    ({"use_ema": "yes"}, "use_ema must be true or false"),
    ({"depth": 3, "convs_per_block": [1, 2]}, "convs_per_block lists 2 blocks but depth is 3"),
    ({"convs_per_block": [0]}, "convs_per_block list must hold ints >= 1"),
])
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError) as error:
        TrialConfig.from_dict(values)
    assert message in str(error.value)


def test_constant_schedule_needs_no_range():
    config = TrialConfig.from_dict({"clr_mode": "constant", "base_lr": 0.01, "max_lr": 0.001})
    assert config.clr_mode == "constant"
