"""Datasets plus a compiled model from a config: what `fit` needs, and nothing else.

`prepare` is the one place that turns a `TrialConfig` and a session's data into a compiled
Keras model and its pipelines. Trials (`search.trial`), the LR range test (`search lr-find`,
`clr_bounds: lr_find`) and the benchmarks in bench/ all call it, so they time and test the real
training step rather than a copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.config import TrialConfig


@dataclass
class Training:
    """One compiled model with its data.

    model: the network being trained (images in); `net` is the same model, whose weights the
    exported raw-image model shares. train: (x, y[, sample weights]) batches, shuffled and
    augmented; val: validation inputs in order, with val_labels / train_labels per head.
    """

    config: TrialConfig
    model: object  # keras.Model, compiled
    net: object  # keras.Model: image → {head: probabilities}
    train: object  # tf.data.Dataset
    val: object  # tf.data.Dataset of inputs only
    train_labels: dict[str, np.ndarray]
    val_labels: dict[str, np.ndarray]
    steps_per_epoch: int
    train_images: int

    @property
    def weights_source(self) -> str:
        return getattr(self.net, "weights_source", "none")


def losses(heads) -> dict:
    return {h: "sparse_categorical_crossentropy" for h in heads}


def optimizer(config: TrialConfig, learning_rate):
    """The config's optimizer at `learning_rate` (a float or a schedule)."""
    import keras

    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=config.momentum)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def schedule(config: TrialConfig, steps_per_epoch: int):
    """The config's cyclical learning rate, its half-cycle in optimizer steps."""
    from search import clr

    return clr.CyclicalLearningRate(
        config.base_lr, config.max_lr,
        clr.steps_from_epochs(config.step_size_epochs, steps_per_epoch),
        mode=config.clr_mode, gamma=config.gamma)


def prepare(config: TrialConfig, session, *, learning_rate=None,
            jit_compile: bool | None = None) -> Training:
    """Build datasets and the compiled model of `config` on the session's split.

    learning_rate: a float overrides the config's CLR schedule (the LR range test needs a
    plain float it can sweep). The Keras session is cleared and seeded from config.seed.
    """
    import keras

    from search.data import eval_dataset

    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    table = session.table
    train_x, val_x = images(session, config)
    train_y, val_y = table.labels(session.train_rows), table.labels(session.val_rows)
    steps = max(1, len(train_x) // config.batch_size)
    if jit_compile is None:
        jit_compile = bool(getattr(session.device, "jit_compile", False))
    net = compiled_model(config, table.vocab, steps, learning_rate=learning_rate,
                         jit_compile=jit_compile)
    return Training(config=config, model=net, net=net,
                    train=train_pipeline(config, train_x, train_y, table.vocab),
                    val=eval_dataset(val_x, batch_size=max(config.batch_size, 128)),
                    train_labels=train_y, val_labels=val_y, steps_per_epoch=steps,
                    train_images=len(train_x))


def train_pipeline(config: TrialConfig, images, labels: dict, vocab: dict | None = None):
    """The shuffled, augmented training batches of `config` (with per-sample class weights
    under class_weighting: balanced, which needs `vocab`)."""
    from search.augment import make_augmenter
    from search.data import balanced_weights, train_dataset

    weights = (balanced_weights(labels, vocab) if config.class_weighting == "balanced"
               else None)
    # One generator for the whole fit: fresh draws every epoch, reproducible from the seed.
    augmenter = make_augmenter(config.flip, config.shift, config.cutout, seed=config.seed)
    return train_dataset(images, labels, batch_size=config.batch_size, seed=config.seed,
                         augment=lambda x: augmenter(x, None)[0], sample_weights=weights)


def compiled_model(config: TrialConfig, vocab: dict, steps_per_epoch: int, *,
                   learning_rate=None, jit_compile: bool = False):
    """`search.model.build` compiled with the config's optimizer and CLR schedule (or a
    float `learning_rate`), one loss and accuracy metric per head."""
    from search import model as model_lib

    net = model_lib.build(config, vocab)
    rate = schedule(config, steps_per_epoch) if learning_rate is None else learning_rate
    net.compile(optimizer=optimizer(config, rate), loss=losses(vocab),
                metrics={h: ["accuracy"] for h in vocab}, jit_compile=jit_compile)
    return net


def images(session, config: TrialConfig):
    """(train, val) uint8 image arrays at the config's size and crop; one size is kept in
    memory per process, the decoded cache on disk is shared by all processes."""
    from search.data import load_images

    key = ("images", config.image_size, config.crop)
    memo = session.extra
    if key not in memo:
        for old in [k for k in memo if k[0] == "images"]:
            del memo[old]  # keep one size in memory
        full = load_images(session.table, config.image_size, config.crop,
                           cache_dir=session.settings.cache_dir)
        memo[key] = (np.ascontiguousarray(full[session.train_rows]),
                     np.ascontiguousarray(full[session.val_rows]))
    return memo[key]
