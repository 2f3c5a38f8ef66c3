"""Device choice: float32 without XLA on CPU, forced precisions set the Keras policy, and the
heads stay float32 under mixed precision."""

from __future__ import annotations

import keras
import pytest
import tensorflow as tf

from search.model import assembly as model_lib
from search.space.config import TrialConfig
from search.train import device

VOCAB = {"gender": ("female", "male"), "age": ("15-25", "25-35", "35-45")}


@pytest.fixture(autouse=True)
def reset_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_auto_picks_by_hardware():
    assert device.auto_precision(None) == "float32"
    assert device.auto_precision((7, 5)) == "mixed_float16"
    assert device.auto_precision((9, 0)) == "mixed_bfloat16"


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="a GPU is visible")
def test_cpu_gets_float32_without_xla():
    choice = device.choose()
    assert (choice.gpus, choice.precision, choice.jit_compile) == (0, "float32", False)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert choice.as_params()["device.precision"] == "float32"


def test_forcing_sets_the_policy_and_xla():
    choice = device.choose("mixed_bfloat16", "on")
    assert choice.jit_compile and keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    config = TrialConfig(image_size=(32, 32), width=8, depth=2, neck_units=8, head_units=0)
    net = model_lib.build(config, VOCAB)
    assert net.get_layer("separable").get_layer("stem").compute_dtype == "bfloat16"
    outputs = net(tf.zeros((2, 32, 32, 3)))
    assert all(out.dtype == tf.float32 for out in outputs.values())


def test_float16_gets_loss_scaling_from_keras():
    device.choose("mixed_float16", "off")
    config = TrialConfig(image_size=(32, 32), width=8, depth=2, neck_units=8, head_units=0)
    net = model_lib.build(config, VOCAB)
    net.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss={h: "sparse_categorical_crossentropy" for h in VOCAB})
    assert isinstance(net.optimizer, keras.optimizers.LossScaleOptimizer)
