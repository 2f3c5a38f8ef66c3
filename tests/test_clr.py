"""Cyclical learning rate schedule and LR range test, with real (tiny) Keras models."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from search.errors import ConfigError
from search.train.clr import (
    CyclicalLearningRate,
    LRRangeResult,
    clr_value,
    lr_range_test,
    steps_from_epochs,
    suggest_bounds,
)
from search.views.lr_curve import save_lr_curve_html, schedule_figure

BASE, MAX, STEP = 0.001, 0.006, 10
STEPS = [0, 5, 10, 15, 20, 30, 50]  # 0, s/2, s, 1.5s, 2s, 3s, 5s

# Hand-computed from cycle = floor(1 + it/2s), x = |it/s - 2 cycle + 1|.
# it:      0  5    10 15   20 30 50
# cycle:   1  1    1  1    2  2  3
# 1 - x:   0  0.5  1  0.5  0  1  1
EXPECTED = {
    "triangular": [0.001, 0.0035, 0.006, 0.0035, 0.001, 0.006, 0.006],
    # scale 1/2**(cycle-1): 1, 1, 1, 1, 1/2, 1/2, 1/4
    "triangular2": [0.001, 0.0035, 0.006, 0.0035, 0.001, 0.0035, 0.00225],
    "exp_range": [
        0.001,
        0.001 + 0.005 * 0.5 * 0.99**5,
        0.001 + 0.005 * 0.99**10,
        0.001 + 0.005 * 0.5 * 0.99**15,
        0.001,
        0.001 + 0.005 * 0.99**30,
        0.001 + 0.005 * 0.99**50,
    ],
    "constant": [0.001] * 7,
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_schedule_matches_hand_computed_values(mode):
    gamma = 0.99 if mode == "exp_range" else 1.0
    schedule = CyclicalLearningRate(BASE, MAX, STEP, mode=mode, gamma=gamma)
    xla = tf.function(lambda step: schedule(step), jit_compile=True)
    for step, expected in zip(STEPS, EXPECTED[mode]):
        assert clr_value(step, BASE, MAX, STEP, mode, gamma) == pytest.approx(expected, rel=1e-9)
        eager = schedule(tf.constant(step, tf.int64))
        assert eager.dtype == tf.float32
        assert float(eager) == pytest.approx(expected, rel=1e-6)
        assert float(xla(tf.constant(step, tf.int64))) == pytest.approx(expected, rel=1e-6)


def test_steps_from_epochs():
    assert steps_from_epochs(4, 25) == 100
    assert steps_from_epochs(2.5, 3) == 8
    assert steps_from_epochs(0.01, 10) == 1


def test_schedule_drives_optimizer_per_step():
    # loss = |y - w| with y >> w and x = 1: the gradient is -1, so each SGD step adds its LR to w.
    keras.utils.set_random_seed(0)
    schedule = CyclicalLearningRate(0.01, 0.05, 4)
    dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")
    model = keras.Sequential([keras.Input((1,)), dense])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mae")
    x, y = np.ones((7, 1)), np.full((7, 1), 100.0)
    model.fit(x, y, batch_size=1, epochs=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == 7
    # it = 7: cycle = 1, x = |7/4 - 1| = 0.75 -> 0.01 + 0.04 * 0.25
    assert float(model.optimizer.learning_rate) == pytest.approx(0.02, rel=1e-6)
    used = [0.01, 0.02, 0.03, 0.04, 0.05, 0.04, 0.03]  # steps 0..6
    assert float(model.get_weights()[0][0, 0]) == pytest.approx(sum(used), rel=1e-5)


def test_serialization_round_trip(tmp_path):
    schedule = CyclicalLearningRate(1e-4, 1e-2, 50, mode="exp_range", gamma=0.999)
    config = schedule.get_config()
    assert CyclicalLearningRate.from_config(config).get_config() == config
    schedules = keras.optimizers.schedules
    restored = schedules.deserialize(schedules.serialize(schedule))
    assert isinstance(restored, CyclicalLearningRate) and restored.get_config() == config

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    lr = loaded.optimizer._learning_rate
    assert isinstance(lr, CyclicalLearningRate) and lr.get_config() == config


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"base_lr": 0.0}, "base_lr"),
        ({"base_lr": -1e-3}, "base_lr"),
        ({"max_lr": 0.0005}, "max_lr"),
        ({"max_lr": 0.001}, "max_lr"),  # equal bounds only allowed for "constant"
        ({"step_size": 0}, "step_size"),
        ({"step_size": 2.5}, "step_size"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"mode": "cosine"}, "triangular2"),
    ],
)
def test_invalid_arguments_raise_config_error(kwargs, name):
    args = {"base_lr": 0.001, "max_lr": 0.006, "step_size": 10, **kwargs}
    with pytest.raises(ConfigError, match=name):
        CyclicalLearningRate(**args)


def test_constant_mode_allows_equal_bounds():
    assert float(CyclicalLearningRate(0.01, 0.01, 5, mode="constant")(7)) == pytest.approx(0.01)


def test_suggest_bounds_on_synthetic_curve():
    lrs = list(np.logspace(-5, 0, 51))
    smoothed = [(math.log10(lr) + 2) ** 2 for lr in lrs]  # minimum at lr = 1e-2
    base, peak = suggest_bounds(lrs, smoothed, 1e-5, 1.0)
    assert peak == pytest.approx(1e-3) and base == pytest.approx(2.5e-4)
    base, peak = suggest_bounds(lrs[:3], [1.0, 2.0, 3.0], 1e-5, 1.0)  # never decreased
    assert 1e-5 <= base < peak <= 1.0


def _two_head_model():
    inputs = keras.Input((8, 8, 3))
    flat = keras.layers.Flatten()(inputs)
    outputs = {
        "a": keras.layers.Dense(2, "softmax", kernel_initializer="zeros", name="a")(flat),
        "b": keras.layers.Dense(3, "softmax", kernel_initializer="zeros", name="b")(flat),
    }
    model = keras.Model(inputs, outputs)
    loss = "sparse_categorical_crossentropy"
    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    model.compile(optimizer=optimizer, loss={"a": loss, "b": loss})
    return model


def _dataset(n=256, batch=32):
    # Labels follow a channel mean, 20% flipped: learnable but not separable, so a huge LR diverges.
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(n, 8, 8, 3)).astype("float32")
    a = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
    b = np.digitize(x[..., 1].mean(axis=(1, 2)), [-0.15, 0.15]).astype("int32")
    noisy = rng.random(n) < 0.2
    a[noisy], b[noisy] = 1 - a[noisy], (b[noisy] + 1) % 3
    return tf.data.Dataset.from_tensor_slices((x, {"a": a, "b": b})).batch(batch)


@pytest.fixture(scope="module")
def diverged():
    keras.utils.set_random_seed(0)
    model = _two_head_model()
    model.optimizer.build(model.trainable_variables)
    before = model.get_weights()
    opt_before = [v.numpy() for v in model.optimizer.variables]
    result = lr_range_test(model, _dataset(), min_lr=1e-4, max_lr=10.0, num_steps=100)
    return model, before, opt_before, result


def test_lr_range_test_stops_on_divergence(diverged):
    _, _, _, result = diverged
    n = len(result.lrs)
    assert result.stopped_early and 2 < n < 100  # 100 steps over an 8-batch dataset: it repeats
    assert len(result.losses) == len(result.smoothed) == n
    assert result.lrs[0] == pytest.approx(1e-4)
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:]))
    last = result.smoothed[-1]
    assert not math.isfinite(result.losses[-1]) or last > 4.0 * min(result.smoothed[:-1])
    assert max(result.losses) > 2 * min(result.losses)
    assert 1e-4 <= result.suggested_base_lr < result.suggested_max_lr <= 10.0
    assert result.suggested_max_lr < result.lrs[-1]


def test_lr_range_test_restores_model_and_optimizer(diverged):
    model, before, opt_before, _ = diverged
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, v in zip(opt_before, model.optimizer.variables):
        np.testing.assert_array_equal(a, v.numpy())
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


def test_lr_range_test_takes_class_weighted_batches():
    """`class_weighting: balanced` pipelines yield (x, y, sample weights): the range test
    used to unpack (x, y) and crashed every such trial (issue 12)."""
    keras.utils.set_random_seed(0)
    model = _two_head_model()
    weighted = _dataset().map(lambda x, y: (x, y, {h: tf.ones_like(v, tf.float32)
                                                   for h, v in y.items()}))
    result = lr_range_test(model, weighted, min_lr=1e-4, max_lr=1.0, num_steps=20)
    assert len(result.lrs) > 2 and all(math.isfinite(v) for v in result.losses[:2])


def test_lr_range_test_rejects_scheduled_optimizer():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(CyclicalLearningRate(0.01, 0.1, 5)), loss="mse")
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2)), np.zeros((4, 1)))).batch(2)
    with pytest.raises(ConfigError, match="learning_rate"):
        lr_range_test(model, ds)
    with pytest.raises(ConfigError, match="min_lr"):
        lr_range_test(model, ds, min_lr=1.0, max_lr=0.1)


def test_save_lr_curve_html(diverged, tmp_path):
    result = diverged[3]
    path = save_lr_curve_html(result, tmp_path / "nested" / "lr_curve.html")
    html = path.read_text()
    assert path.exists() and "plotly" in html
    for trace in ("smoothed loss", "suggested base_lr", "suggested max_lr"):
        assert trace in html
    assert '"type":"log"' in html.replace(" ", "")


def test_schedule_figure_uses_clr_value():
    fig = schedule_figure(0.001, 0.006, 10, "triangular2", 1.0, total_steps=60)
    ys = list(fig.data[0].y)
    assert len(ys) == 61 and ys[10] == pytest.approx(0.006) and ys[30] == pytest.approx(0.0035)


def test_result_is_frozen():
    result = LRRangeResult([1e-3], [1.0], [1.0], 1e-4, 1e-3, False)
    with pytest.raises(AttributeError):
        result.stopped_early = True
