"""Stages of a trial: what trains on what, and that cached inputs give the network's outputs.

Pretrained stages need the genuine ImageNet files in ../shared/weights (skipped without them):
the feature cache only makes sense for a backbone with real, frozen weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from search.settings import Settings
from search.space import space as space_lib
from search.space.config import TrialConfig
from search.study.session import Options, Session
from search.train import pipelines, training

PRETRAINED = dict(backbone="pretrained", family="mobilenet_v2", alpha=0.35, weights="imagenet",
                  image_size=(32, 32), neck_units=8, head_units=0, batch_size=32, views=3,
                  epochs=1, probe_epochs=1)


@pytest.fixture(scope="module")
def session(tiny_session):
    return tiny_session


def _stages(config, session):
    plan = training.prepare(config, session)
    found = []
    for stage in plan.stages():
        found.append(stage)
        stage.model.fit(stage.train, epochs=1, verbose=0)
    return plan, found


def test_a_separable_net_trains_on_images_in_one_stage(session):
    plan, stages = _stages(TrialConfig(width=8, depth=2, image_size=(32, 32), neck_units=8,
                                       head_units=0, batch_size=32, epochs=1), session)
    assert [(s.name, s.inputs) for s in stages] == [("train", "images")]
    assert stages[0].model is plan.net and plan.notes["features"] == "computed per epoch"
    assert stages[0].test is None  # no --test-fraction


@pytest.mark.e2e
def test_a_frozen_backbone_trains_its_heads_on_cached_features(session, weights_dir):
    plan, stages = _stages(TrialConfig(**PRETRAINED), session)
    assert [(s.name, s.inputs) for s in stages] == [("probe", "features")]
    assert plan.notes["features"] == "cached"
    probe = stages[0].model
    heads = plan.parts.heads
    assert {id(v) for v in probe.trainable_weights} == {id(v) for v in heads.trainable_weights}
    base = plan.parts.backbone.base
    assert not base.trainable_weights  # frozen: only the heads learn


@pytest.mark.e2e
def test_only_the_trial_that_built_the_cache_logs_its_build_time(tmp_path, tiny_csv,
                                                                  weights_dir):
    fresh = Session.on_data(Settings.resolve(tmp_path / "runs"), Options(data=str(tiny_csv)),
                            space_lib.Space(name="t", params=()))
    seconds = []
    for _ in range(2):  # the second trial of this process reads the cache from memory
        plan = training.prepare(TrialConfig(**PRETRAINED), fresh)
        next(plan.stages())
        seconds.append(plan.notes["probe.cache_seconds"])
    assert seconds[0] > 0 and seconds[1] == 0


def test_cached_features_give_the_networks_own_outputs(session, weights_dir):
    """The heads on view 0 of the cache answer what the whole network answers on the images
    (float16 storage aside): training on the cache trains the saved model."""
    config = TrialConfig(**PRETRAINED)
    plan = training.prepare(config, session)
    stage = next(plan.stages())
    cached = stage.model.predict(stage.val, verbose=0)
    images = training.all_images(session, config)[session.val_rows].astype("float32")
    direct = plan.net.predict(images, verbose=0)
    for head in direct:
        np.testing.assert_allclose(cached[head], direct[head], atol=2e-3)


@pytest.mark.e2e
def test_fine_tuning_probes_first_then_trains_the_top_on_cached_activations(session,
                                                                            weights_dir):
    import keras

    plan, stages = _stages(TrialConfig(**{**PRETRAINED, "fine_tune_fraction": 0.3}), session)
    cut = plan.notes["fine_tune.cut_layer"]
    assert [s.name for s in stages] == ["probe", "fine_tune"]
    assert stages[1].inputs == f"activations below {cut}"
    base = plan.parts.backbone.base
    names = [layer.name for layer in base.layers]
    trained = [layer for layer in base.layers if layer.trainable_weights]
    assert trained and min(names.index(layer.name) for layer in trained) > names.index(cut)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trained)
    assert plan.notes["fine_tune.trainable_params"] > 0


@pytest.mark.e2e
def test_without_the_cache_both_stages_train_on_images(session, weights_dir):
    plan, stages = _stages(TrialConfig(**{**PRETRAINED, "fine_tune_fraction": 0.3,
                                          "feature_cache": False}), session)
    assert [(s.name, s.inputs) for s in stages] == [("probe", "images"),
                                                     ("fine_tune", "images")]


@pytest.mark.e2e
def test_random_init_trains_the_whole_backbone_on_images(session):
    plan, stages = _stages(TrialConfig(**{**PRETRAINED, "weights": "none"}), session)
    assert [(s.name, s.inputs) for s in stages] == [("train", "images")]
    assert plan.parts.backbone.base.trainable_weights


def test_a_learning_rate_float_replaces_the_first_stage_schedule(session):
    config = TrialConfig(width=8, depth=2, image_size=(32, 32), batch_size=32)
    stage = next(training.prepare(config, session, learning_rate=0.01).stages())
    assert float(stage.model.optimizer.learning_rate) == pytest.approx(0.01)


def test_views_are_drawn_with_the_trials_cutout_probability(session, weights_dir):
    """With cutout p, about p of the samples come from the cut-out views."""
    import tensorflow as tf

    from search.train import features

    cache = features.Cache(np.zeros((1, 4, 1), np.float16), features.views(4), None, 0.0)
    marked = tf.constant(np.arange(4, dtype=np.float32).reshape(1, 4, 1).repeat(4000, 0))
    pick = pipelines.view_picker(cache, TrialConfig(cutout=0.3, seed=1))
    chosen = pick(marked, tf.constant([1, 2], tf.int64)).numpy().ravel()
    assert set(np.unique(chosen)) == {0.0, 1.0, 2.0, 3.0}
    assert abs(np.mean(chosen == 3.0) - 0.3) < 0.03  # view 3 is the cut-out view
    never = pipelines.view_picker(cache, TrialConfig(cutout=0.0, flip=False, shift=0.0))
    assert set(np.unique(never(marked, tf.constant([3, 4], tf.int64)).numpy())) == {0.0}
