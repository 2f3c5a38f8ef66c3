"""Datasets plus compiled models from a config: the stages a trial fits, and nothing else.

`prepare` is the one place that turns a `TrialConfig` and a session's data into what `fit`
needs. Trials (`search.trial`), the LR range test (`search lr-find`, `clr_bounds: lr_find`)
and the benchmarks in bench/ all call it, so they run and time the real training step.

A trial is one or two stages, each a compiled model with its own inputs:
- train: the whole network on images (a from-scratch backbone, or a pretrained one without
  ImageNet weights or without the feature cache);
- probe: the heads alone on cached backbone features (`search.train.features`): a frozen pretrained
  backbone costs nothing per epoch;
- fine_tune (fine_tune_fraction > 0, after the probe): the top of the backbone and the heads,
  at the config's learning rates times fine_tune_lr_scale, on the cached outputs of the frozen
  layers below the cut (or on images without the cache). Starting from trained heads keeps
  the first large gradients of random heads from wrecking the pretrained features.
Every stage shares its layers with `Plan.net`, the whole image → heads network that is saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from search.space.config import TrialConfig
from search.train import pipelines


@dataclass
class Stage:
    """One fit: a compiled model, its shuffled training batches and its evaluation inputs."""

    name: str  # train | probe | fine_tune
    model: object  # keras.Model, compiled
    train: object  # (x, y[, sample weights]) batches: tf.data.Dataset or keras PyDataset
    val: object  # validation inputs, in order (likewise)
    test: object | None  # likewise for the held-out test rows, if any
    epochs: int
    steps_per_epoch: int
    inputs: str  # images | features | activations below <layer>


@dataclass
class Plan:
    """A config's network and the stages that train it, built one at a time (`stages`)."""

    config: TrialConfig
    net: object  # keras.Model: image → {head: probabilities}; what gets exported
    parts: object  # search.model.assembly.Parts of `net`
    train_labels: dict[str, np.ndarray]
    val_labels: dict[str, np.ndarray]
    test_labels: dict[str, np.ndarray] | None
    train_images: int
    notes: dict = field(default_factory=dict)  # what a trial logs about how it trained
    _builders: list = field(default_factory=list, repr=False)

    @property
    def weights_source(self) -> str:
        return self.parts.backbone.weights_source

    @property
    def stage_count(self) -> int:
        return len(self._builders)

    def stages(self) -> Iterator[Stage]:
        """Each stage is built when the previous one has trained (it unfreezes layers)."""
        for builder in self._builders:
            yield builder()


def losses(heads) -> dict:
    return {h: "sparse_categorical_crossentropy" for h in heads}


def optimizer(config: TrialConfig, learning_rate):
    """The config's optimizer at `learning_rate` (a float or a schedule). Under use_ema it
    also keeps a moving average of the trainable weights, which never feeds back into
    training (no ema_overwrite_frequency): a trial scores and keeps the average through
    `search.train.callbacks.AveragedWeights`, and a fit without it ends on the average
    (Keras's `finalize_variable_values`)."""
    import keras

    ema = dict(use_ema=True, ema_momentum=config.ema_momentum) if config.use_ema else {}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=config.momentum,
                                    **ema)
    return keras.optimizers.Adam(learning_rate=learning_rate, **ema)


def schedule(config: TrialConfig, steps_per_epoch: int, scale: float = 1.0):
    """The config's cyclical learning rate (bounds times `scale`), half-cycle in steps."""
    from search.train import clr

    return clr.CyclicalLearningRate(
        config.base_lr * scale, config.max_lr * scale,
        clr.steps_from_epochs(config.step_size_epochs, steps_per_epoch),
        mode=config.clr_mode, gamma=config.gamma)


def compile_model(model, config: TrialConfig, steps_per_epoch: int, *, learning_rate=None,
                  scale: float = 1.0, jit_compile: bool = False):
    """Compile with the config's optimizer and CLR schedule (or a float `learning_rate`),
    one loss and accuracy metric per head."""
    heads = list(model.output)
    rate = schedule(config, steps_per_epoch, scale) if learning_rate is None else learning_rate
    model.compile(optimizer=optimizer(config, rate), loss=losses(heads),
                  metrics={h: ["accuracy"] for h in heads}, jit_compile=jit_compile)
    # The optimizer's slots made now, eagerly: made on the first step instead, inside the
    # traced train function, they cost a short trial about a second more (bench/RESULTS.md).
    model.optimizer.build(model.trainable_variables)
    return model


def prepare(config: TrialConfig, session, *, learning_rate=None,
            jit_compile: bool | None = None) -> Plan:
    """The network of `config` and its stages on the session's split (see the module
    docstring). learning_rate: a float instead of the first stage's CLR schedule (the LR
    range test sweeps it). The Keras session is cleared and seeded from config.seed."""
    import keras

    from search import backend
    from search.model import assembly as model_lib

    keras.backend.clear_session()
    backend.set_random_seed(config.seed)
    table = session.table
    test_rows = session.test_rows
    built = model_lib.assemble(config, table.vocab)
    plan = Plan(config=config, net=built.model, parts=built.parts,
                train_labels=table.labels(session.train_rows),
                val_labels=table.labels(session.val_rows),
                test_labels=table.labels(test_rows) if len(test_rows) else None,
                train_images=len(session.train_rows))
    if jit_compile is None:
        jit_compile = bool(getattr(session.device, "jit_compile", False))
    ctx = _Context(config, session, plan, learning_rate, jit_compile)
    parts = plan.parts
    pretrained = parts.backbone.base is not None and not parts.backbone.scratch
    fine_tune = pretrained and config.fine_tune_fraction > 0
    cut = None
    if fine_tune:
        from search.model.backbones import cut_layer

        cut = cut_layer(parts.backbone.base, config.fine_tune_fraction)
        plan.notes["fine_tune.cut_layer"] = cut or "input"
    cached = pretrained and config.feature_cache and ctx.fits(ctx.pooled_shape())
    if not pretrained:
        plan._builders = [ctx.on_images("train", config.epochs)]
    elif not fine_tune:
        plan._builders = [ctx.probe(config.epochs) if cached
                          else ctx.on_images("train", config.epochs)]
    else:
        first = ctx.probe(config.probe_epochs) if cached \
            else ctx.on_images("probe", config.probe_epochs)
        plan._builders = ([first] if config.probe_epochs else []) + [ctx.fine_tune(cut)]
    plan.notes["features"] = ("cached" if cached else "computed per epoch" if not pretrained
                              or not config.feature_cache else "computed per epoch (the "
                              "cache would be too large)")
    return plan


class _Context:
    """The stage builders of one plan (they share the config, session and network)."""

    def __init__(self, config, session, plan, learning_rate, jit_compile):
        self.config, self.session, self.plan = config, session, plan
        self.learning_rate, self.jit_compile = learning_rate, jit_compile
        self.first = True  # a float learning_rate applies to the first stage only

    def _rate(self):
        rate, self.first = (self.learning_rate if self.first else None), False
        return rate

    def _rows(self):
        s = self.session
        return s.train_rows, s.val_rows, s.test_rows if len(s.test_rows) else None

    def _stage(self, name, model, inputs, epochs, data, transform=None, scale=1.0,
               rate=None) -> Stage:
        """A stage on `data` ([N, ...] for every table row) split into train/val/test."""
        config = self.config
        train, val, test = self._rows()
        batch = max(config.batch_size, 128)
        steps = max(1, len(train) // config.batch_size)
        compile_model(model, config, steps, learning_rate=rate, scale=scale,
                      jit_compile=self.jit_compile)
        view0 = (lambda rows: data[rows, 0]) if transform is not None else (lambda r: data[r])
        return Stage(
            name=name, model=model, epochs=epochs, steps_per_epoch=steps, inputs=inputs,
            train=pipelines.train(config, np.ascontiguousarray(data[train]),
                                 self.plan.train_labels, self.session.table.vocab, transform),
            val=pipelines.evaluation(np.ascontiguousarray(view0(val)), batch),
            test=None if test is None else pipelines.evaluation(np.ascontiguousarray(view0(test)),
                                                         batch))

    def on_images(self, name: str, epochs: int):
        def build() -> Stage:
            images = all_images(self.session, self.config)
            return self._stage(name, self.plan.net, "images", epochs, images,
                               rate=self._rate())
        return build

    def probe(self, epochs: int):
        def build() -> Stage:
            import keras

            parts = self.plan.parts
            cache = self._cache("pooled", lambda: keras.Model(
                self.plan.net.input, parts.pool(parts.backbone.model(self.plan.net.input))))
            inputs = keras.Input(cache.array.shape[2:], name="features")
            model = keras.Model(inputs, parts.heads(inputs), name="probe")
            return self._stage("probe", model, "features", epochs, cache.array,
                               pipelines.view_picker(cache, self.config), rate=self._rate())
        return build

    def fine_tune(self, cut: str | None):
        def build() -> Stage:
            import keras

            from search.model import backbones

            config, parts = self.config, self.plan.parts
            backbones.unfreeze_top(parts.backbone, cut)
            scale = config.fine_tune_lr_scale
            if cut is None or not config.feature_cache:
                images = all_images(self.session, config)
                return self._stage("fine_tune", self.plan.net, "images", config.epochs,
                                   images, scale=scale, rate=self._rate())
            cache = self._cache(cut, lambda: backbones.below(parts.backbone, cut))
            inputs = keras.Input(cache.array.shape[2:], name=f"below_{cut}")
            top = backbones.top_of(parts.backbone.base, cut)
            model = keras.Model(inputs, parts.heads(parts.pool(top(inputs))), name="fine_tune")
            self.plan.notes["fine_tune.trainable_params"] = int(
                sum(np.prod(v.shape) for v in model.trainable_weights))
            return self._stage("fine_tune", model, f"activations below {cut}", config.epochs,
                               cache.array, pipelines.view_picker(cache, config), scale=scale,
                               rate=self._rate())
        return build

    def pooled_shape(self) -> tuple:
        parts = self.plan.parts
        return tuple(parts.pool.compute_output_shape(parts.backbone.model.output.shape)[1:])

    def fits(self, shape) -> bool:
        from search.train import features

        return features.nbytes(self.config.views, len(self.session.table), shape) \
            <= features.MAX_BYTES

    def _cache(self, cut: str, extractor):
        """The session's cached inputs of this kind (memoised in the process)."""
        from search.train import features

        config, session = self.config, self.session
        key = features.key(
            table=session.table.fingerprint(), family=config.family, alpha=config.alpha,
            weights=features.weights_digest(self.plan.weights_source), crop=config.crop,
            image_size=config.image_size, cut=f"{cut}:{config.neck}", count=config.views)
        memo_key = ("features", str(sorted(key.items())))
        if memo_key not in session.caches:
            for old in [k for k in session.caches if k[0] == "features"][:-1]:
                del session.caches[old]  # keep the two most recent kinds in memory
            session.caches[memo_key] = features.load(
                key, session.settings.cache_dir, all_images(session, config), extractor)
        cache = session.caches[memo_key]
        kind = "probe" if cut == "pooled" else "fine_tune"
        self.plan.notes[f"{kind}.cache_seconds"] = round(cache.built_seconds, 1)
        cache.built_seconds = 0.0  # paid by this trial; the next ones read it from memory
        self.plan.notes[f"{kind}.cache_bytes"] = int(cache.array.nbytes)
        return cache


def all_images(session, config: TrialConfig) -> np.ndarray:
    """Every image of the table, uint8 at the config's size and crop; one size is kept in
    memory per process, the decoded cache on disk is shared by all processes."""
    from search.data.table import load_images

    key = ("images", config.image_size, config.crop)
    memo = session.caches
    if key not in memo:
        for old in [k for k in memo if k[0] == "images"]:
            del memo[old]  # keep one size in memory
        memo[key] = np.asarray(load_images(session.table, config.image_size, config.crop,
                                           cache_dir=session.settings.cache_dir))
    return memo[key]
