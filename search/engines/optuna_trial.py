"""One Optuna trial's side of a search: what it records and how it ends.

`OptunaReporter` links `search.trial.run` to its Optuna trial: the user attributes that
`search best`, `report`, `train --from-trial` and the dashboard read later, per-epoch
reports for the pruner (and the heads rule, search.pruning), whether its model is worth
saving, and the dashboard's artifacts. `trial_line` is the line printed per finished trial.
"""

from __future__ import annotations

from optuna.trial import TrialState

from search import pruning
from search.pruning import stage_name
from search import study as study_lib
from search.engines.base import Ranked
from search.trial import Pruned, Reporter

USER_ATTRS = ("head_accuracy", "head_balanced_accuracy", "majority")


class OptunaReporter(Reporter):
    """A trial's link to its Optuna trial: what `search best`, `report`, `train --from-trial`
    and the dashboard read later (user attributes, artifacts), and per-epoch pruning."""

    def __init__(self, trial, session, progress=None, engine=None):
        self.trial = trial
        self.session = session
        self.progress = progress  # the tqdm bar, for per-epoch progress
        self.engine = engine  # for how many models are kept
        self.epochs = 0
        self.seen = 0  # epochs so far, over all stages (the progress bar's count)
        self.steps: list[int] = []  # the stage-aligned step of each epoch of `curve`
        self.curve: dict[str, list[float]] = {}  # per head, per epoch (search.pruning)
        spec = session.space.pruner
        self.rule = pruning.HeadRule.from_spec(spec) if spec["name"] == "heads" else None
        # Optuna's warm-up counts steps; with stage-aligned steps it must count each stage's
        # epochs, so the reporter applies it (a stage is not judged on its first epochs)
        self.warmup = int(spec.get("n_warmup_steps", 0))

    def started(self, config, run_id):
        self.trial.set_user_attr("config", config.to_dict())  # `search train --from-trial`
        self.trial.set_user_attr("seeds", self.session.seeds(config))
        if run_id:
            self.trial.set_user_attr("mlflow_run_id", run_id)
        self.epochs = config.epochs

    def epoch(self, step, logs, judged=True):
        self.seen += 1
        if self.progress is not None:
            self.progress.set_postfix_str(f"trial {self.trial.number}: epoch {self.seen}/"
                                          f"{self.epochs}", refresh=True)
        heads = {h: float(logs[f"val_{h}_accuracy"]) for h in self.session.table.heads}
        for head, value in heads.items():
            self.curve.setdefault(head, []).append(value)
        self.steps.append(step if judged else 0)  # 0: compared with nothing
        self.trial.set_user_attr(pruning.CURVE_ATTR, self.curve)
        self.trial.set_user_attr(pruning.STEPS_ATTR, self.steps)
        if not judged:
            return
        if self.rule is not None:
            earlier = [(t.user_attrs.get(pruning.CURVE_ATTR), t.user_attrs.get(
                pruning.STEPS_ATTR)) for t in self.trial.study.get_trials(
                deepcopy=False, states=study_lib.FINISHED) if t.number != self.trial.number]
            why = self.rule.prune(step, heads, pruning.at_step(earlier, step))
            if why:
                raise Pruned(why)
        if self.session.space.objectives:  # Optuna cannot prune multi-objective trials
            return
        value = float(logs[self.session.objective_key])
        self.trial.report(value, step=step)
        if pruning.stage_epoch(step) >= self.warmup and self.trial.should_prune():
            raise Pruned(f"pruned after {stage_name(step)} ({self.session.objective_key}="
                         f"{value:.4f})")

    def keeps(self, result):
        """Save the model only if it can be among those kept: better than the k-th best
        completed trial, or better on some head than every completed trial."""
        keep = self.engine.keep_count() if self.engine is not None else None
        if keep is None:
            return True
        rows = ranked(self.trial.study)
        if len(rows) < keep:
            return True
        if result.value > sorted((r.value for r in rows), reverse=True)[keep - 1]:
            return True
        return any(s["accuracy"] > max(r.heads.get(h, -1.0) for r in rows)
                   for h, s in result.scores.items())

    def finished(self, result):
        trial = self.trial
        trial.set_user_attr("config", result.config.to_dict())  # with LR range test bounds
        for name, key in zip(USER_ATTRS, ("accuracy", "balanced_accuracy", "majority")):
            trial.set_user_attr(name, {h: s[key] for h, s in result.scores.items()})
        trial.set_user_attr("params_count", result.params_count)
        trial.set_user_attr("best_epoch", result.best_epoch)
        if result.test:
            trial.set_user_attr("test_scores", result.test)
        if result.priors:
            trial.set_user_attr("fallback_heads", sorted(result.priors))
        trial.set_user_attr("mean_accuracy", result.summary["mean_accuracy"])
        trial.set_user_attr("mean_balanced_accuracy", result.summary["mean_balanced_accuracy"])
        if result.config.backbone == "pretrained":
            trial.set_user_attr("weights_resolved", result.weights_source)
        if result.model_uri:
            trial.set_user_attr("model_uri", result.model_uri)
        from search import artifacts

        artifacts.upload(artifacts.store(self.session.settings.runs_dir), trial,
                         config=result.config.to_dict(), history=result.history,
                         confusion=result.confusion)


def ranked(study) -> list[Ranked]:
    """The study's completed trials with a model, for model retention."""
    return [Ranked(t.user_attrs["mlflow_run_id"], study_lib.score(t),
                   t.user_attrs.get("head_accuracy", {}))
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("model_uri") and t.user_attrs.get("mlflow_run_id")]


def trial_line(frozen) -> str:
    """One line per finished trial: number, baseline name, value or why not, seconds."""
    if frozen.state == TrialState.COMPLETE:
        what = ", ".join(f"{v:.4g}" for v in frozen.values)
    elif frozen.state == TrialState.PRUNED:
        what = "pruned"
    elif study_lib.is_surplus(frozen):
        what = "surplus, not trained (the study's slots were taken by other workers)"
    else:
        what = f"FAILED: {frozen.user_attrs.get('fail_reason', '?')}"
    seconds = frozen.duration.total_seconds() if frozen.duration else 0.0
    baseline = frozen.user_attrs.get("baseline")
    label = f" [{baseline}]" if baseline else ""
    weights = _weights_note(frozen.user_attrs)
    note = f" [weights: {weights}]" if weights else ""
    return f"trial {frozen.number}{label}: {what}{note} ({seconds:.0f} s)"


def _weights_note(attrs: dict) -> str | None:
    """Shown when a pretrained trial did not get ImageNet weights (weights: auto offline)."""
    resolved = attrs.get("weights_resolved")
    return resolved if resolved and resolved.startswith("none") else None
