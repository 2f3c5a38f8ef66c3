"""Averaged weights (use_ema): off by default and in every config stored before; when on, each
epoch is scored, kept and saved as the optimizer's moving average, and training itself goes on
from the raw weights."""

from __future__ import annotations

import keras
import numpy as np
import optuna
import pytest
import yaml

from search.engines import trial as trial_lib
from search.space import space as space_lib
from search.space.config import TrialConfig
from search.track.study_run import NullRun
from search.train import callbacks as cb
from search.train import training

from conftest import ROOT

TINY = dict(width=8, depth=2, image_size=(32, 32), neck_units=16, head_units=0, batch_size=32,
            clr_mode="triangular", base_lr=0.003, max_lr=0.01, epochs=1)


def test_configs_stored_before_load_with_averaging_off():
    old = TrialConfig().to_dict()
    del old["use_ema"], old["ema_momentum"]
    config = TrialConfig.from_dict(old)
    assert config == TrialConfig() and config.use_ema is False
    assert TrialConfig.from_dict({"use_ema": True, "ema_momentum": 0.95}).ema_momentum == 0.95


def test_the_space_samples_the_momentum_only_when_averaging_is_on():
    space = space_lib.parse(yaml.safe_load("""
        params:
          use_ema: {type: categorical, choices: [false, true]}
          ema_momentum: {type: float, low: 0.9, high: 0.98, when: {use_ema: true}}
    """))
    off = space.sample(optuna.trial.FixedTrial({"use_ema": False}))
    assert (off.use_ema, off.ema_momentum) == (False, TrialConfig.ema_momentum)
    on = space.sample(optuna.trial.FixedTrial({"use_ema": True, "ema_momentum": 0.93}))
    assert (on.use_ema, on.ema_momentum) == (True, 0.93)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):  # a real study: the child is suggested exactly when its parent is true
        trial = study.ask()
        config = space.sample(trial)
        assert ("ema_momentum" in trial.params) == config.use_ema
        study.tell(trial, 0.5)
    hvc = space_lib.load(ROOT / "spaces" / "hvc.yaml")
    levers = {p.name: p for p in hvc.params}
    assert levers["use_ema"].distribution.choices == (False, True)
    assert levers["ema_momentum"].when == {"use_ema": (True,)}


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_the_optimizer_averages_only_when_asked(name):
    off = training.optimizer(TrialConfig(optimizer=name), 1e-3)
    on = training.optimizer(TrialConfig(optimizer=name, use_ema=True, ema_momentum=0.9), 1e-3)
    assert not off.use_ema
    assert on.use_ema and on.ema_momentum == pytest.approx(0.9)
    assert on.ema_overwrite_frequency is None  # the average never feeds back into training


def _tiny_fit(callbacks, stop_after: int | None = None, epochs: int = 3):
    """A small real regression trained by Adam with averaging; returns the model."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], "float32"))[:, None]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.8),
                  loss="mse")
    if stop_after is not None:  # how EarlyStopping or the majority guard stop a stage
        callbacks = [*callbacks, keras.callbacks.LambdaCallback(on_epoch_end=lambda e, _: (
            setattr(model, "stop_training", e + 1 >= stop_after)))]
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return model


def _average(model) -> list[np.ndarray]:
    return [a.numpy() for a in model.optimizer._model_variables_moving_average]


def test_averaged_weights_leave_training_alone_and_a_stage_stopped_early_ends_on_them():
    seen = []
    reader = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, _: seen.append([w.numpy() for w in reader.model.weights]))
    with_swaps = _tiny_fit([cb.AveragedWeights(), reader], stop_after=2)
    plain = _tiny_fit([], stop_after=2)
    # the same raw trajectory, so the same average: the swaps never touch what trains
    for a, b in zip(_average(with_swaps), _average(plain)):
        np.testing.assert_array_equal(a, b)
    # a reader after it saw the average at each epoch's end, and the stage ends on it
    for a, b in zip(seen[-1], _average(with_swaps)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(with_swaps.get_weights(), _average(with_swaps)):
        np.testing.assert_array_equal(a, b)
    # keras.callbacks.SwapEMAWeights ends the same early-stopped stage on the raw weights
    swapped = _tiny_fit([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)], stop_after=2)
    assert not np.allclose(swapped.get_weights()[0], _average(with_swaps)[0])


@pytest.fixture(scope="module")
def session(tiny_session):
    return tiny_session


def _fit(config, session):
    return trial_lib.fit(config, session, trial_lib.Reporter(), NullRun())


def test_a_trial_scores_and_keeps_the_average_not_the_raw_weights(session):
    config = TrialConfig(**TINY, use_ema=True, ema_momentum=0.8)
    on = _fit(config, session)
    net = on.plan.net
    kept = [v.numpy() for v in net.trainable_weights]
    for a, b in zip(kept, _average(net)):  # one epoch: the best one, kept as its average
        np.testing.assert_array_equal(a, b)
    raw = [v.numpy() for v in _fit(config.replace(use_ema=False), session).plan.net
           .trainable_weights]  # the same seed: the weights the averaged trial trained
    assert any(not np.allclose(a, b) for a, b in zip(kept, raw))
    images = training.all_images(session, config)[session.val_rows]
    predicted = net.predict(images, verbose=0)
    for head, probs in on.best.probs.items():  # what was scored is what is saved
        np.testing.assert_allclose(predicted[head], probs, atol=1e-5)


@pytest.mark.e2e
def test_probe_then_fine_tuning_keeps_the_best_epochs_average(session, weights_dir):
    config = TrialConfig(backbone="pretrained", family="mobilenet_v2", alpha=0.35,
                         weights="imagenet", image_size=(32, 32), neck_units=8, head_units=0,
                         batch_size=32, views=3, fine_tune_fraction=0.25, probe_epochs=2,
                         epochs=2, use_ema=True, ema_momentum=0.8)
    fitted = _fit(config, session)
    assert fitted.history["stage"] == ["probe"] * 2 + ["fine_tune"] * 2
    images = training.all_images(session, config)[session.val_rows]
    predicted = fitted.plan.net.predict(images.astype("float32"), verbose=0)
    for head, probs in fitted.best.probs.items():
        np.testing.assert_allclose(predicted[head], probs, atol=2e-3)  # float16 cache
