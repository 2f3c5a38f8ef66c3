"""One trial, start to finish: config → model → fit with CLR and pruning → per-head scores →
everything logged to MLflow → the result.

`run(config, session, reporter)` trains and scores only. What an engine needs along the way
(pruning decisions, its own bookkeeping, artifacts) goes through a `Reporter`, whose defaults
do nothing, so `search train` and the benchmarks call the very same function without an
engine. It never samples anything and never imports Optuna.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.config import TrialConfig


class Pruned(Exception):
    """The engine (or the majority-baseline guard) stopped the trial early; not a failure."""


class Reporter:
    """What an engine hears from a running trial. Every method may be left as is."""

    def started(self, config: TrialConfig, run_id: str | None) -> None:
        """The trial began; run_id is its MLflow run (None: no tracking). The config trained
        is `TrialResult.config` (an LR range test may set its bounds)."""

    def epoch(self, step: int, logs: dict) -> None:
        """An epoch ended (step counts from 1); raise `Pruned` to stop the trial."""

    def finished(self, result: "TrialResult") -> None:
        """The trial trained and was scored and logged."""


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
    confusion: dict = field(default_factory=dict)
    weights_source: str = "none"

    def values(self, objectives) -> tuple[float, ...]:
        """The values of a multi-objective trial, in the order of the space's `objectives`
        ((metric, direction) pairs; `search.space` checks the names when it loads)."""
        extra = {"params": float(self.params_count), "train_seconds": self.train_seconds}
        heads = {h: s["accuracy"] for h, s in self.scores.items()}
        return tuple(float({**self.summary, **extra, **heads}[name]) for name, _ in objectives)


def run(config: TrialConfig, session, reporter: Reporter | None = None, *, number: int = 0,
        tags: dict | None = None, find_lr: bool | None = None) -> TrialResult:
    """Train and score one config on the session's split, logged as a nested MLflow run when
    the session has tracking. Exceptions propagate after the run is closed as FAILED (KILLED
    when pruned or interrupted), with the reason. `find_lr` (default: the space's
    `clr_bounds: lr_find`) replaces the config's LR bounds with an LR range test's;
    baselines pass False to keep their own."""
    reporter = reporter or Reporter()
    run_ = None
    if session.tracking is not None:
        tracking = session.tracking
        run_ = tracking.tracker.start_trial(tracking.parent_run_id, session.study, number, tags)
        device = session.device.as_params() if session.device is not None else {}
        run_.log_params({**config.to_dict(), **device})
    reporter.started(config, run_.run_id if run_ is not None else None)
    try:
        if find_lr is None:
            find_lr = session.space.clr_bounds == "lr_find"
        result = _fit_and_score(config, session, reporter, run_, find_lr)
    except BaseException as exc:
        if run_ is not None:
            pruned = isinstance(exc, Pruned)
            run_.set_tags({"search.state": "PRUNED" if pruned else "FAILED",
                           "search.reason": f"{type(exc).__name__}: {exc}"})
            run_.end("KILLED" if pruned or isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    if run_ is not None:
        run_.set_tags({"search.state": "COMPLETE"})
        run_.end("FINISHED")
        result.run_id = run_.run_id
    reporter.finished(result)
    return result


def _fit_and_score(config: TrialConfig, session, reporter: Reporter, run_,
                   find_lr: bool) -> TrialResult:
    from search import callbacks as cb
    from search import metrics, training

    if find_lr:
        config = _found_bounds(config, session, run_)
    fit = training.prepare(config, session)
    if run_ is not None and config.backbone == "pretrained":
        run_.log_params({"weights_resolved": fit.weights_source})

    timer = cb.TrainTimer()
    evaluator = cb.HeadEvaluator(fit.val, fit.val_labels, fit.train_labels)
    expected = [f"val_{h}_accuracy" for h in session.table.heads] + [session.objective_key]
    callbacks = [timer, evaluator, cb.StopOnNonFinite(), cb.EpochLogger(run_, expected),
                 cb.Reporting(reporter)]
    history = fit.model.fit(fit.train, epochs=config.epochs, callbacks=callbacks,
                            verbose=session.options.verbose, shuffle=False)

    scores = evaluator.scores
    summary = metrics.summary(scores)
    value = summary[session.space.objective]
    if not math.isfinite(value):
        raise cb.NonFiniteLoss(f"objective is {value}")
    result = TrialResult(
        value=value, config=config, scores=scores, summary=summary,
        params_count=int(fit.net.count_params()), train_seconds=timer.seconds,
        images_per_second=fit.train_images * timer.epochs / max(timer.seconds, 1e-9),
        steps_per_epoch=fit.steps_per_epoch, weights_source=fit.weights_source,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        confusion=_confusions(session, evaluator))
    if run_ is not None:
        _log_final(run_, result, session, fit.net)
    return result


def _found_bounds(config: TrialConfig, session, run_) -> TrialConfig:
    """The config with base_lr/max_lr from an LR range test on its own model and data."""
    from search import clr, training

    fit = training.prepare(config, session, learning_rate=config.base_lr)
    found = clr.lr_range_test(fit.model, fit.train,
                              num_steps=min(100, 2 * fit.steps_per_epoch))
    config = config.replace(base_lr=found.suggested_base_lr, max_lr=found.suggested_max_lr)
    if run_ is not None:
        from search.views.lr_curve import save_lr_curve_html

        run_.log_params({"lr_find.base_lr": config.base_lr, "lr_find.max_lr": config.max_lr})
        with tempfile.TemporaryDirectory() as tmp:
            run_.log_file(save_lr_curve_html(found, Path(tmp) / "lr_find.html"))
    return config


def _confusions(session, evaluator) -> dict:
    """{"labels": {head: [...]}, "confusion": {head: k×k counts, rows = true class}}."""
    from search import metrics

    vocab = session.table.vocab
    val_y = evaluator.val_labels
    return {"labels": {h: list(v) for h, v in vocab.items()},
            "confusion": {h: metrics.confusion(val_y[h], np.asarray(evaluator.probs[h]).argmax(1),
                                               len(vocab[h])).tolist() for h in vocab}}


def _log_final(run_, result: TrialResult, session, net) -> None:
    from search import model as model_lib

    final = {"params_count": result.params_count, "train_seconds": result.train_seconds,
             "train_images_per_second": result.images_per_second,
             "steps_per_epoch": result.steps_per_epoch,
             **{f"final_{k}": v for k, v in result.summary.items()}}
    for head, s in result.scores.items():
        for key, value in s.items():
            final[f"final_{head}_{key}"] = value
    run_.log_metrics(final)
    run_.log_dict(result.confusion, "confusion.json")
    run_.log_dict(result.config.to_dict(), "config.json")
    if session.log_models:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            model_lib.export(net, result.config).save(path)
            result.model_uri = run_.log_model(path, session.table.vocab,
                                              result.config.to_dict())
        run_.set_tags({"search.model_uri": result.model_uri})
