"""One trial, start to finish: config → model → fit with CLR and pruning → per-head scores →
everything logged to MLflow → the result.

`run(config, session, reporter)` trains and scores only, in four steps: `fit`, `score`, `log`,
`save`, inside `study_run.trial_run`, whose exit ends the MLflow run FINISHED, FAILED or KILLED
(a null run without tracking). What an engine needs along the way
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

from search.space.config import TrialConfig
from search.track import model_card, probabilities


class Pruned(Exception):
    """The engine (or the majority-baseline guard) stopped the trial early; not a failure."""


class Reporter:
    """What an engine hears from a running trial. Every method may be left as is."""

    sampler_seed: int | None = None  # the engine's sampler seed in this process, if it has one

    def started(self, config: TrialConfig, run_id: str | None) -> None:
        """The trial began; run_id is its MLflow run (None: no tracking). The config trained
        is `TrialResult.config` (an LR range test may set its bounds)."""

    def epoch(self, step: int, logs: dict, judged: bool = True) -> None:
        """An epoch ended; `step` is stage-aligned (search.train.steps.stage_step: a stage's
        epochs count from 1, fine-tuning's from 1001); raise `Pruned` to stop the trial.
        judged=False: a lead-in stage (the probe before fine-tuning), which pruners do not
        see (its accuracy does not predict the fine-tuned one, bench/RESULTS.md)."""

    def prune(self, reason: str) -> None:
        """The trial cannot win (below the majority baseline). Raising `Pruned` ends it;
        returning lets it finish early and be scored (engines without a pruned state)."""
        raise Pruned(reason)

    def keeps(self, result: "TrialResult") -> bool:
        """Whether the trial's model is worth saving (an engine that keeps only its best
        trials' models says no to one that cannot be among them)."""
        return True

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
    best_epoch: int = 0  # the epoch (counted over all stages) whose weights were kept
    notes: dict = field(default_factory=dict)  # how it trained: stages, inputs, cache
    test: dict | None = None  # per head on the held-out test rows, with 95% intervals
    priors: dict = field(default_factory=dict)  # heads answering their prior (fallback)
    # {"val"|"test": {head: [N, k]}} at the best epoch, as the saved model answers (fallback
    # heads answer their prior); stored with the run for the final step's selection
    probs: dict = field(default_factory=dict, repr=False)

    def values(self, objectives) -> tuple[float, ...]:
        """The values of a multi-objective trial, in the order of the space's `objectives`
        ((metric, direction) pairs; `search.space.space` checks the names when it loads)."""
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
    from search.track import study_run

    reporter = reporter or Reporter()
    with study_run.trial_run(session.tracking, session.study, number, tags,
                            killed=(Pruned,)) as run_:
        _log_inputs(run_, config, session, reporter.sampler_seed)
        reporter.started(config, run_.run_id)
        if find_lr is None:
            find_lr = session.space.clr_bounds == "lr_find"
        if find_lr:
            config = _found_bounds(config, session, run_)
        fitted = fit(config, session, reporter, run_)
        result = score(fitted, session)
        log(run_, result, session)
        save(run_, result, session, fitted.plan.net, reporter)
    result.run_id = run_.run_id
    reporter.finished(result)
    return result


def _log_inputs(run_, config: TrialConfig, session, sampler_seed: int | None) -> None:
    """What the trial starts from: its config, device, seeds, rows and annotation table."""
    device = session.device.as_params() if session.device is not None else {}
    seeds = {f"seed.{k}": v for k, v in session.seeds(config, sampler_seed).items()}
    run_.log_params({**config.to_dict(), **device, **seeds, **model_card.rows_params(session)})
    run_.log_data(session.table, session.csv)


@dataclass
class Fitted:
    """A trained trial, its network restored to the best epoch: what scoring needs."""

    config: TrialConfig
    plan: object  # search.train.training.Plan
    best: object  # search.train.callbacks.BestEpoch
    seconds: float  # in training epochs (TrainTimer)
    images: int  # training images seen, over all epochs
    steps_per_epoch: int  # of the last stage
    history: dict[str, list]


def fit(config: TrialConfig, session, reporter: Reporter, run_) -> Fitted:
    """Train the config's stages with the trial's callbacks (scores, best epoch, pruning,
    majority guard, early stopping, per-epoch metrics to run_), then restore the best epoch.
    Under use_ema every epoch is scored, kept and restored as its moving average of the
    weights (`cb.AveragedWeights`); a fine-tuning stage starts from the probe's last one."""
    from search.train import callbacks as cb
    from search.train import training

    plan = training.prepare(config, session)
    heads = session.table.heads
    expected = [f"val_{h}_accuracy" for h in heads] + [session.objective_key]
    timer = cb.TrainTimer()
    best = cb.BestEpoch(session.objective_key, plan.net)
    guard = session.space.prune_below_majority
    history: dict[str, list] = {}
    offset, images = 0, 0
    for index, stage in enumerate(plan.stages()):
        evaluator = cb.HeadEvaluator(stage.val, plan.val_labels, plan.train_labels)
        averaged = [cb.AveragedWeights()] if config.use_ema else []  # before any reader
        callbacks = [timer, *averaged, evaluator, best.watching(evaluator, stage, offset),
                     cb.StopOnNonFinite(), cb.EpochLogger(run_, expected, offset),
                     cb.ReportEpochs(reporter, stage.name,
                                  judged=index == plan.stage_count - 1)]
        stop = None
        if guard:
            stop = cb.PruneBelowMajority(guard["after_epoch"], guard["margin"], reporter.prune,
                                    offset)
            callbacks.append(stop)
        if config.patience:
            import keras

            callbacks.append(keras.callbacks.EarlyStopping(
                session.objective_key, patience=config.patience, mode="max"))
        done = stage.model.fit(stage.train, epochs=stage.epochs, callbacks=callbacks,
                               verbose=session.options.verbose, shuffle=False)
        for key, values in {**done.history, "stage": [stage.name] * len(done.epoch)}.items():
            history.setdefault(key, []).extend(values)
        plan.notes[f"{stage.name}.epochs"] = len(done.epoch)
        plan.notes[f"{stage.name}.inputs"] = stage.inputs
        offset += len(done.epoch)
        images += plan.train_images * len(done.epoch)
        if stop is not None and stop.stopped:
            plan.notes["stopped"] = stop.stopped
            break
    best.restore()
    return Fitted(config, plan, best, timer.seconds, images, stage.steps_per_epoch, history)


def score(fitted: Fitted, session) -> TrialResult:
    """The trial's result at its best epoch: per-head validation (and test) scores, heads
    falling back to their prior (`majority_fallback`), confusions. A non-finite objective
    fails the trial."""
    from search.train import callbacks as cb
    from search.train import metrics

    config, plan, best = fitted.config, fitted.plan, fitted.best
    val_probs, test_probs, fallback = best.probs, best.test_probs, {}
    if config.majority_fallback:
        fallback = metrics.weak_heads(plan.train_labels, plan.val_labels, best.probs,
                                      session.table.vocab)
        val_probs = metrics.with_priors(val_probs, fallback)
        test_probs = None if test_probs is None else metrics.with_priors(test_probs, fallback)
        plan.notes["fallback_heads"] = ",".join(fallback) or "none"
    scores = metrics.head_scores(plan.val_labels, val_probs, plan.train_labels)
    summary = metrics.summary(scores)
    value = summary[session.space.objective]
    if not math.isfinite(value):
        raise cb.NonFiniteLoss(f"objective is {value}")
    result = TrialResult(
        value=value, config=config, scores=scores, summary=summary,
        params_count=int(plan.net.count_params()), train_seconds=fitted.seconds,
        images_per_second=fitted.images / max(fitted.seconds, 1e-9),
        steps_per_epoch=fitted.steps_per_epoch, weights_source=plan.weights_source,
        history={k: [v if isinstance(v, str) else float(v) for v in vs]
                 for k, vs in fitted.history.items()},
        confusion=metrics.confusions(session.table.vocab, plan.val_labels, val_probs),
        best_epoch=best.epoch, notes=plan.notes, priors=fallback,
        probs={"val": val_probs, "test": test_probs})
    if test_probs is not None:
        from search.train.metrics import scores_with_ci as test_score

        result.test = test_score(plan.test_labels, test_probs)
    return result


def _found_bounds(config: TrialConfig, session, run_) -> TrialConfig:
    """The config with base_lr/max_lr from an LR range test on its own model and data."""
    from search.train import clr, training

    stage = next(training.prepare(config, session, learning_rate=config.base_lr).stages())
    found = clr.lr_range_test(stage.model, stage.train,
                              num_steps=min(100, 2 * stage.steps_per_epoch))
    config = config.replace(base_lr=found.suggested_base_lr, max_lr=found.suggested_max_lr)
    run_.log_params({"lr_find.base_lr": config.base_lr, "lr_find.max_lr": config.max_lr})
    if run_.tracked:  # the figure only to log it
        from search.views.lr_curve import save_lr_curve_html

        with tempfile.TemporaryDirectory() as tmp:
            run_.log_file(save_lr_curve_html(found, Path(tmp) / "lr_find.html"))
    return config


def log(run_, result: TrialResult, session) -> None:
    """The result's final metrics (per head, validation and test), notes, resolved weights,
    confusions and config, to the trial's run."""
    final = {"params_count": result.params_count, "train_seconds": result.train_seconds,
             "train_images_per_second": result.images_per_second,
             "steps_per_epoch": result.steps_per_epoch, "best_epoch": result.best_epoch,
             **{f"final_{k}": v for k, v in result.summary.items()}}
    for head, s in result.scores.items():
        for key, value in s.items():
            final[f"final_{head}_{key}"] = value
    for head, s in (result.test or {}).items():
        for key in ("accuracy", "balanced_accuracy"):
            final[f"test_{head}_{key}"] = s[key]
            final[f"test_{head}_{key}_low"], final[f"test_{head}_{key}_high"] = s[f"{key}_ci"]
        final[f"test_{head}_majority"] = s["majority"]
    if result.test:
        for key in ("accuracy", "balanced_accuracy"):
            final[f"test_mean_{key}"] = float(np.mean([s[key] for s in result.test.values()]))
    run_.log_metrics(final)
    run_.log_params({k: v for k, v in result.notes.items() if not k.endswith("_seconds")})
    if result.config.backbone == "pretrained":
        run_.log_params({"weights_resolved": result.weights_source})
    run_.log_metrics({k: v for k, v in result.notes.items() if k.endswith("_seconds")})
    run_.log_dict(result.confusion, "confusion.json")
    run_.log_dict(result.config.to_dict(), "config.json")
    probabilities.write(run_, {"val": session.val_rows, "test": session.test_rows},
                        result.probs)


def save(run_, result: TrialResult, session, net, reporter: Reporter) -> None:
    """The exported model (best epoch, fallback heads answering their prior) logged to the
    run as an MLflow model, its URI in `result.model_uri`; a model the reporter would not keep
    is never written, only tagged as deleted. Nothing without tracking or `log_models`."""
    from search.model import assembly as model_lib
    from search.track.tags import MODEL_DELETED_TAG, MODEL_URI_TAG

    if not (run_.tracked and session.log_models):
        return
    if not reporter.keeps(result):
        run_.set_tags({MODEL_DELETED_TAG: "true"})  # never saved: could not be among the kept
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model_lib.export(net, result.config, result.priors).save(path)
        result.model_uri = run_.log_model(path, session.table.vocab, result.config.to_dict())
    run_.set_tags({MODEL_URI_TAG: result.model_uri})
