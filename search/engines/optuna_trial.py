"""One Optuna trial's side of a search: what it records and how it ends.

`OptunaReporter` links `search.engines.trial.run` to its Optuna trial: the trial's record
(search.study.trial_record) that `search best`, `report`, `train --from-trial` and the dashboard
read later, per-epoch reports for the pruner (and the heads rule, search.study.pruning), whether its
model is worth saving, and the dashboard's artifacts. `trial_line` is the line printed per
finished trial.
"""

from __future__ import annotations

from optuna.trial import TrialState

from search.engines.trial import Pruned, Reporter
from search.study import pruning, trial_record, window
from search.study import study as study_lib
from search.study.trial_record import TrialRecord
from search.track.tags import BASELINE_TAG, WARM_START_TAG


class OptunaReporter(Reporter):
    """A trial's link to its Optuna trial: what `search best`, `report`, `train --from-trial`
    and the dashboard read later (its record, artifacts), and per-epoch pruning."""

    def __init__(self, trial, session, progress=None, engine=None):
        self.trial = trial
        self.session = session
        record = trial_record.read(trial)
        self.tags = {BASELINE_TAG: record.baseline} if record.baseline else {}
        if record.warm_start:
            self.tags[WARM_START_TAG] = record.warm_start
        # the LR range test finds the bounds (baselines keep theirs); recorded: the report
        # says where the bounds came from
        self.lr_range_test = not record.baseline and session.space.clr_bounds == "lr_find"
        self.progress = progress  # the tqdm bar, for per-epoch progress
        self.engine = engine  # for how many models are kept
        self.sampler_seed = (window.trial_seed(trial.study.sampler.seed, trial.number)
                             if engine is not None else None)  # this trial's
        self.epochs = 0
        self.seen = 0  # epochs so far, over all stages (the progress bar's count)
        self.steps: list[int] = []  # the stage-aligned step of each epoch of `curve`
        self.curve: dict[str, list[float]] = {}  # per head, per epoch (search.study.pruning)
        self.judge = pruning.Judge(session.space)

    def started(self, config, run_id):
        trial_record.write(self.trial, TrialRecord(  # the config: `search train --from-trial`
            self.trial.number, config=config.to_dict(),
            seeds=self.session.seeds(config, self.sampler_seed), run_id=run_id or None))
        self.epochs = config.epochs

    def epoch(self, step, logs, judged=True):
        if self.engine is not None:  # a Ctrl-C that Python dropped (raised in a finaliser,
            self.engine.interrupts.check()  # as SQLAlchemy's are) stops the trial here
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
        why = self.judge.verdict(self.trial, step, heads, self.session.objective_key, logs)
        if why:
            raise Pruned(why)

    def keeps(self, result):
        """Save the model only if it can be among those kept: better than the k-th best
        completed trial, or better on some head than every completed trial."""
        keep = self.engine.keep_count() if self.engine is not None else None
        if keep is None:
            return True
        rows = ranked(self.trial.study)
        if len(rows) < keep:
            return True
        if result.value > sorted((r.score for r in rows), reverse=True)[keep - 1]:
            return True
        return any(s["accuracy"] > max(r.accuracy.get(h, -1.0) for r in rows)
                   for h, s in result.scores.items())

    def finished(self, result):
        trial = self.trial
        trial_record.write(trial, trial_record.finished(  # the config with LR range test bounds
            trial.number, result, lr_range_test=self.lr_range_test))
        from search.track import artifacts

        artifacts.upload(artifacts.store(self.session.settings.runs_dir), trial,
                         config=result.config.to_dict(), history=result.history,
                         confusion=result.confusion)


def ranked(study) -> list[TrialRecord]:
    """The study's completed trials with a model, for model retention."""
    return [r for r in trial_record.read_all(study, (TrialState.COMPLETE,))
            if r.model_uri and r.run_id]


def trial_line(frozen) -> str:
    """One line per finished trial: number, baseline name, value or why not, seconds."""
    record = trial_record.read(frozen)
    if frozen.state == TrialState.COMPLETE:
        what = ", ".join(f"{v:.4g}" for v in frozen.values)
    elif frozen.state == TrialState.PRUNED:
        what = "pruned"
    elif study_lib.is_surplus(frozen):
        what = "surplus, not trained (the study's slots were taken by other workers)"
    else:
        what = f"FAILED: {record.fail_reason or '?'}"
    seconds = frozen.duration.total_seconds() if frozen.duration else 0.0
    label = f" [{record.baseline}]" if record.baseline else ""
    note = f" [weights: {record.weights_note}]" if record.weights_note else ""
    return f"trial {frozen.number}{label}: {what}{note} ({seconds:.0f} s)"
