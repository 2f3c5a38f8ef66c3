"""One trial, start to finish: config → model → fit with CLR and pruning → per-head scores →
everything logged to MLflow → the objective value.

The same `run` serves every engine (Optuna, keras-tuner) and `search train`: it takes a frozen
`TrialConfig` and a `Workbench` (what all trials of a study share) and never samples anything.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.config import TrialConfig
from search.data import Table
from search.errors import ConfigError
from search.settings import Settings


@dataclass
class Workbench:
    """What every trial of a study shares: data, split, settings, tracker, device choice."""

    table: Table
    train_rows: np.ndarray
    val_rows: np.ndarray
    settings: Settings
    objective: str = "mean_accuracy"
    objectives: tuple = ()  # multi-objective mode: ((metric, direction), ...); no pruning
    clr_bounds: str = "sample"
    tracker: object | None = None  # search.tracking.Tracker
    parent_run_id: str | None = None
    study_name: str = "default"
    verbose: int = 0
    device: object | None = None  # search.device.DeviceChoice
    log_models: bool = True
    artifact_store: object | None = None  # optuna artifact store for dashboard files
    _images: dict = field(default_factory=dict, repr=False)

    def images(self, config: TrialConfig):
        """(train, val) uint8 image arrays at the config's size and crop, cached."""
        from search.data import load_images

        key = (config.image_size, config.crop)
        if key not in self._images:
            self._images.clear()  # keep one size in memory
            full = load_images(self.table, config.image_size, config.crop,
                               cache_dir=self.settings.cache_dir)
            self._images[key] = (np.ascontiguousarray(full[self.train_rows]),
                                 np.ascontiguousarray(full[self.val_rows]))
        return self._images[key]

    @property
    def objective_key(self) -> str:
        return f"val_{self.objective}"


@dataclass
class TrialResult:
    value: float
    config: TrialConfig
    scores: dict[str, dict[str, float]]
    summary: dict[str, float]
    params_count: int
    train_seconds: float
    images_per_second: float
    steps_per_epoch: int = 0
    run_id: str | None = None
    model_uri: str | None = None
    history: dict = field(default_factory=dict)


def objective_values(result: TrialResult, objectives) -> tuple[float, ...]:
    """The values of a multi-objective trial, in the order of the space's `objectives`."""
    extra = {"params": float(result.params_count), "train_seconds": result.train_seconds}
    values = []
    for name, _direction in objectives:
        if name in result.summary:
            values.append(result.summary[name])
        elif name in extra:
            values.append(extra[name])
        elif name in result.scores:
            values.append(result.scores[name]["accuracy"])
        else:
            raise ConfigError(f"objectives: unknown metric {name!r}; use mean_accuracy, "
                              f"mean_balanced_accuracy, params, train_seconds or a head "
                              f"({', '.join(result.scores)})")
    return tuple(values)


def run(config: TrialConfig, bench: Workbench, *, trial=None, number: int = 0,
        tags: dict | None = None, find_lr: bool | None = None) -> TrialResult:
    """Train and score one config. `trial` (Optuna) enables pruning; exceptions propagate
    after the MLflow run is closed as FAILED (or KILLED when pruned) with the reason.
    `find_lr` (default: the space's `clr_bounds: lr_find`) replaces the config's LR bounds
    with an LR range test's; baselines pass False to keep their own."""
    run_ = None
    if trial is not None:
        trial.set_user_attr("config", config.to_dict())  # `search train --from-trial` reads it
    if bench.tracker is not None:
        run_ = bench.tracker.start_trial(bench.parent_run_id, bench.study_name, number, tags)
        run_.log_params({**config.to_dict(), **_device_params(bench)})
        if trial is not None:
            trial.set_user_attr("mlflow_run_id", run_.run_id)
    try:
        if find_lr is None:
            find_lr = bench.clr_bounds == "lr_find"
        result = _fit_and_score(config, bench, trial, run_, find_lr)
    except BaseException as exc:
        if run_ is not None:
            pruned = type(exc).__name__ == "TrialPruned"
            run_.set_tags({"search.state": "PRUNED" if pruned else "FAILED",
                           "search.reason": f"{type(exc).__name__}: {exc}"})
            run_.end("KILLED" if pruned or isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    if run_ is not None:
        run_.set_tags({"search.state": "COMPLETE"})
        run_.end("FINISHED")
        result.run_id = run_.run_id
    return result


def _device_params(bench: Workbench) -> dict:
    return bench.device.as_params() if bench.device is not None else {}


def _fit_and_score(config: TrialConfig, bench: Workbench, trial, run_,
                   find_lr: bool) -> TrialResult:
    import keras

    from search import callbacks as cb
    from search import clr, metrics, model as model_lib
    from search.augment import make_augmenter
    from search.data import balanced_weights, eval_dataset, train_dataset

    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    table = bench.table
    train_x, val_x = bench.images(config)
    train_y, val_y = table.labels(bench.train_rows), table.labels(bench.val_rows)
    weights = balanced_weights(train_y, table.vocab) if config.class_weighting == "balanced" \
        else None

    # One generator for the whole fit: fresh draws every epoch, reproducible from the seed.
    augmenter = make_augmenter(config.flip, config.shift, config.cutout, seed=config.seed)

    def augment(x):
        return augmenter(x, None)[0]

    train_ds = train_dataset(train_x, train_y, batch_size=config.batch_size, seed=config.seed,
                             augment=augment, sample_weights=weights)
    val_ds = eval_dataset(val_x, batch_size=max(config.batch_size, 128))
    steps_per_epoch = max(1, len(train_x) // config.batch_size)

    net = model_lib.build(config, table.vocab)
    params_count = int(net.count_params())
    if run_ is not None and config.backbone == "pretrained":
        run_.log_params({"weights_resolved": net.weights_source})
    jit = bool(getattr(bench.device, "jit_compile", False))
    losses = {h: "sparse_categorical_crossentropy" for h in table.heads}
    head_metrics = {h: ["accuracy"] for h in table.heads}

    if find_lr:
        net.compile(optimizer=_optimizer(config, config.base_lr), loss=losses, jit_compile=jit)
        found = clr.lr_range_test(net, train_ds, num_steps=min(100, 2 * steps_per_epoch))
        config = config.replace(base_lr=found.suggested_base_lr, max_lr=found.suggested_max_lr)
        if run_ is not None:
            run_.log_params({"lr_find.base_lr": config.base_lr, "lr_find.max_lr": config.max_lr})
            with tempfile.TemporaryDirectory() as tmp:
                run_.log_file(clr.save_lr_curve_html(found, Path(tmp) / "lr_find.html"))
        if trial is not None:
            trial.set_user_attr("lr_find", {"base_lr": config.base_lr, "max_lr": config.max_lr})

    schedule = clr.CyclicalLearningRate(
        config.base_lr, config.max_lr, clr.steps_from_epochs(config.step_size_epochs,
                                                             steps_per_epoch),
        mode=config.clr_mode, gamma=config.gamma)
    net.compile(optimizer=_optimizer(config, schedule), loss=losses, metrics=head_metrics,
                jit_compile=jit)

    timer = cb.TrainTimer()
    evaluator = cb.HeadEvaluator(val_ds, val_y, train_y)
    expected = [f"val_{h}_accuracy" for h in table.heads] + [bench.objective_key]
    callbacks = [timer, evaluator, cb.StopOnNonFinite(), cb.EpochLogger(run_, expected)]
    if trial is not None and not bench.objectives:  # Optuna cannot prune multi-objective
        callbacks.append(cb.PruningReporter(trial, bench.objective_key))
    history = net.fit(train_ds, epochs=config.epochs, callbacks=callbacks,
                      verbose=bench.verbose, shuffle=False)  # the dataset shuffles itself

    scores = evaluator.scores
    summary = metrics.summary(scores)
    value = summary[bench.objective]
    if not math.isfinite(value):
        raise cb.NonFiniteLoss(f"objective is {value}")
    images_per_second = len(train_x) * timer.epochs / max(timer.seconds, 1e-9)
    result = TrialResult(value=value, config=config, scores=scores, summary=summary,
                         params_count=params_count, train_seconds=timer.seconds,
                         images_per_second=images_per_second, steps_per_epoch=steps_per_epoch,
                         history={k: [float(v) for v in vs] for k, vs in history.history.items()})
    if run_ is not None:
        _log_final(run_, result, evaluator, bench, net, config)
    if trial is not None and bench.artifact_store is not None:
        from search import artifacts

        artifacts.upload(bench.artifact_store, trial, config=config.to_dict(),
                         history=result.history, confusion=_confusions(bench, evaluator))
    if trial is not None:
        trial.set_user_attr("head_accuracy", {h: s["accuracy"] for h, s in scores.items()})
        trial.set_user_attr("head_balanced_accuracy",
                            {h: s["balanced_accuracy"] for h, s in scores.items()})
        trial.set_user_attr("majority", {h: s["majority"] for h, s in scores.items()})
        trial.set_user_attr("params_count", params_count)
        trial.set_user_attr("mean_accuracy", summary["mean_accuracy"])
        trial.set_user_attr("mean_balanced_accuracy", summary["mean_balanced_accuracy"])
        if result.model_uri:
            trial.set_user_attr("model_uri", result.model_uri)
    return result


def _optimizer(config: TrialConfig, learning_rate):
    import keras

    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=config.momentum)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def _confusions(bench: Workbench, evaluator) -> dict:
    """{"labels": {head: [...]}, "confusion": {head: k×k counts, rows = true class}}."""
    from search import metrics

    vocab = bench.table.vocab
    val_y = bench.table.labels(bench.val_rows)
    return {"labels": {h: list(v) for h, v in vocab.items()},
            "confusion": {h: metrics.confusion(val_y[h], np.asarray(evaluator.probs[h]).argmax(1),
                                               len(vocab[h])).tolist() for h in vocab}}


def _log_final(run_, result: TrialResult, evaluator, bench: Workbench, net, config) -> None:
    from search import model as model_lib

    final = {"params_count": result.params_count, "train_seconds": result.train_seconds,
             "train_images_per_second": result.images_per_second,
             "steps_per_epoch": result.steps_per_epoch,
             **{f"final_{k}": v for k, v in result.summary.items()}}
    for head, s in result.scores.items():
        for key, value in s.items():
            final[f"final_{head}_{key}"] = value
    run_.log_metrics(final)
    vocab = bench.table.vocab
    run_.log_dict(_confusions(bench, evaluator), "confusion.json")
    run_.log_dict(config.to_dict(), "config.json")
    if bench.log_models:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            model_lib.export(net, config).save(path)
            result.model_uri = run_.log_model(path, vocab, config.to_dict())
        run_.set_tags({"search.model_uri": result.model_uri})
