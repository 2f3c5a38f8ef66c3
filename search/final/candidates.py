"""The final-model candidates: what `search best --refit --ensemble K` builds from a study,
scores on the rows no trial trained on; `search.final.champion` says which one becomes the
`champion`.

Beside the study's best trial (`best-trial`) it builds:
- `refit`: the best trial's config trained again on the training and validation rows for the
  epochs its best epoch took, per stage, with no early stopping (AutoGluon's `refit_full`);
  the study's `--test-fraction` rows stay held out;
- `ensemble-K`: one Keras model averaging the probabilities of the K best kept trials' models
  (kept: their model was not deleted by `keep_models`);
- `per-head`: one Keras model whose each head is the head of the kept trial best at it;
- `selection`: per head, a weighted average of kept trials chosen by ensemble selection on the
  validation rows (`search.final.selection`) from the probabilities every finished trial
  stored (`search.track.probabilities`), with test-time flips (the image and its mirror
  averaged) on the heads where they help on those rows. Pruned trials take no part: they
  stopped before their best epoch, and neither stored probabilities nor kept a model.

Every candidate is a plain saved Keras model (raw RGB of any size in, {head: probabilities}
out; an ensemble holds its members whole, as named sub-models `member_<trial>`) logged as an
MLflow model the way a trial's is, so `predict`, `evaluate`, `pull` and serving take it
unchanged. Each is scored per head on the validation rows (not the refit: it trained on them)
and on the study's test rows, through its saved model on the images prepared as the trials
saw them. `choose` gives `champion` to the best mean test accuracy, or, without test rows, to
the selection where a cross-validated check on the validation rows says it beats the best
trial, else the refit, else the mean ensemble, else the best trial (validation figures were
selected on the rows they are measured on, see `choose`). A
candidate already built from the same members (MLflow tags) is reused, not built again.
"""

from __future__ import annotations

import time

import numpy as np

from search.errors import UsageError
from search.final import selected as selected_lib  # the selection: built on _Members and _Rows
from search.final.champion import (
    BEST_TRIAL,
    ENSEMBLE,
    PER_HEAD,
    REFIT,
    Candidate,
    Final,
    choose,
    member,
)
from search.final.runs import built, log, where
from search.settings import Settings
from search.study.trial_record import TrialRecord, best_per_head
from search.track.tags import KIND_TAG, MEMBERS_TAG

# ---------------------------------------------------------------------------------------------
# Which trials, and bad input


def kept_trials(settings: Settings, study, complete: list[TrialRecord]) -> list[TrialRecord]:
    """The completed trials whose model is still there (logged, not deleted by keep_models),
    best first by the study's objective (TrialRecord.score)."""
    deleted = _deleted_runs(settings, study)
    kept = [r for r in complete if r.model_uri and r.run_id not in deleted]
    return sorted(kept, key=lambda r: r.score, reverse=True)


def _deleted_runs(settings: Settings, study) -> set[str]:
    """Run ids of the study's trials whose model retention deleted (one MLflow search)."""
    from mlflow import MlflowClient

    from search.track.tags import MODEL_DELETED_TAG

    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(study.study_name)
    if experiment is None:
        return set()
    found, token = set(), None
    while True:
        page = client.search_runs([experiment.experiment_id],
                                  f"tags.`{MODEL_DELETED_TAG}` = 'true'", max_results=1000,
                                  page_token=token)
        found |= {r.info.run_id for r in page}
        token = page.token
        if not token:
            return found


def check(study_name: str, champion, kept: list, refit: bool, ensemble: int | None) -> None:
    """Refuse, before anything is built or registered, what cannot be built."""
    flags = " and ".join(f for f, on in (("--refit", refit), ("--ensemble", ensemble is not None))
                         if on)
    if not kept:
        raise UsageError(f"study {study_name!r} has no kept models (keep_models deleted them, "
                         f"or none was logged): nothing for {flags} to build on or compare "
                         f"with; run the search with --keep-models K, or retrain the best "
                         f"with `search train --from-trial {study_name}:{champion.number}`")
    if kept[0].number != champion.number:
        raise UsageError(f"the best trial #{champion.number} of {study_name!r} has no model any "
                         f"more; retrain it with `search train --from-trial "
                         f"{study_name}:{champion.number}`")
    if ensemble is not None and not 2 <= ensemble <= len(kept):
        available = (f"the {len(kept)} kept models" if len(kept) > 1
                     else "it has only 1 kept model, so no ensemble can be built")
        raise UsageError(f"--ensemble K must be between 2 and the number of kept models of "
                         f"study {study_name!r} ({available}), got {ensemble}")
    if refit and champion.config is None:
        raise UsageError(f"trial #{champion.number} of {study_name!r} stored no config to "
                         f"refit")


# ---------------------------------------------------------------------------------------------
# Building and scoring


def build(settings: Settings, study, champion, kept: list, *, refit: bool,
          ensemble: int | None, out) -> Final:
    """Build and score every candidate (progress lines to `out`), from the kept trials
    (`kept_trials`, flags already `check`ed); nothing is registered here."""
    from search.final import retrain

    session = retrain.study_session(settings, study, champion)
    session.use_device()
    rows = _Rows(session)
    print(f"final model candidates of {study.study_name!r}: scored on {len(session.val_rows)} "
          f"validation rows" + (f" and {len(session.test_rows)} held-out test rows"
                                if rows.has_test else " (no test rows: --test-fraction)"),
          file=out)
    candidates = []
    refitted = _refit(session, champion, rows, out) if refit else None  # trains: clears Keras
    members = _Members(settings, rows)
    single = Candidate(BEST_TRIAL, BEST_TRIAL, [member(champion)],
                       model_uri=champion.model_uri, run_id=champion.run_id)
    rows.score(single, members.probs(champion))
    candidates.append(single)
    if refitted is not None:
        candidates.append(refitted)
    if ensemble is not None:
        candidates.append(_mean_ensemble(session, kept[:ensemble], members, rows, out))
        per_head = best_per_head(kept, champion.accuracy)
        if {t.number for t in per_head.values()} == {champion.number}:
            print(f"{PER_HEAD}: trial #{champion.number} is the best kept trial at every head: "
                  f"the same model as {BEST_TRIAL}, not built", file=out)
        else:
            candidates.append(_per_head_ensemble(session, per_head, members, rows, out))
        selected = selected_lib.build(session, kept, members, rows, out)
        if selected is not None:
            candidates.append(selected)
    chosen, why = choose(candidates, len(session.test_rows))
    return Final(candidates, chosen, why, len(session.val_rows), len(session.test_rows))


class _Rows:
    """The study's validation and test rows: labels, images as each config's trials saw them
    (search.train.training.all_images, the same `prepare` the saved model runs on raw images), and
    scoring."""

    def __init__(self, session):
        self.session = session
        table = session.table
        self.has_test = bool(len(session.test_rows))
        self.labels = {"val": table.labels(session.val_rows)}
        if self.has_test:
            self.labels["test"] = table.labels(session.test_rows)

    def predict(self, net, config, *, mirrored: bool = False) -> dict:
        """{"val"|"test": {head: probabilities}} of a saved (raw-image) model; `mirrored`: of
        the images mirrored left to right (test-time flips)."""
        from search.train import training

        images = training.all_images(self.session, config)
        rows = {"val": self.session.val_rows, "test": self.session.test_rows}
        flip = (slice(None), slice(None), slice(None, None, -1)) if mirrored else ()
        return {part: _predict(net, images[rows[part]][flip]) for part in self.labels}

    def score(self, candidate: Candidate, probs: dict, *, trained_on_val: bool = False) -> None:
        from search.train.metrics import scores_with_ci as score

        candidate.probs = probs
        if not trained_on_val:
            candidate.val = score(self.labels["val"], probs["val"])
        if self.has_test:
            candidate.test = score(self.labels["test"], probs["test"])


def _predict(net, images: np.ndarray) -> dict:
    out = net.predict(np.asarray(images, np.float32), batch_size=64, verbose=0)
    return {h: np.asarray(p) for h, p in out.items()}


class _Members:
    """The kept trials' saved models, loaded once each, with their probabilities."""

    def __init__(self, settings: Settings, rows: _Rows):
        self.settings, self.rows = settings, rows
        self.nets: dict[int, object] = {}
        self.vocab: dict[int, dict] = {}
        self._probs: dict[tuple[int, bool], dict] = {}

    def net(self, trial):
        from search.track import registry
        from search.track.tracking import using

        if trial.number not in self.nets:
            with using(self.settings.tracking_uri):
                net, vocab = registry.load(trial.model_uri)
            net.name = f"member_{trial.number}"  # unique inside an ensemble
            self.nets[trial.number], self.vocab[trial.number] = net, vocab
        return self.nets[trial.number]

    def probs(self, trial, *, mirrored: bool = False) -> dict:
        from search.space.config import TrialConfig

        key = (trial.number, mirrored)
        if key not in self._probs:
            config = TrialConfig.from_dict(trial.config)
            self._probs[key] = self.rows.predict(self.net(trial), config, mirrored=mirrored)
        return self._probs[key]

    def shared_vocab(self, trials) -> dict:
        """The label vocabulary every member has; an ensemble of differing ones is refused."""
        first = trials[0]
        self.net(first)
        for other in trials[1:]:
            self.net(other)
            if self.vocab[other.number] != self.vocab[first.number]:
                heads = [h for h in self.vocab[first.number]
                         if self.vocab[first.number][h] != self.vocab[other.number].get(h)]
                raise UsageError(f"trials #{first.number} and #{other.number} do not share the "
                                 f"label vocabulary (head {', '.join(heads) or '?'}): their "
                                 f"probabilities cannot be averaged")
        return self.vocab[first.number]


def _mean_ensemble(session, trials: list, members: _Members, rows: _Rows, out) -> Candidate:
    """The mean of the trials' probabilities, as one saved model."""
    import keras

    name = f"{ENSEMBLE}-{len(trials)}"
    candidate = Candidate(name, ENSEMBLE, [member(t) for t in trials])
    vocab = members.shared_vocab(trials)
    heads = list(vocab)
    probs = [members.probs(t) for t in trials]
    rows.score(candidate, {part: {h: np.mean([p[part][h] for p in probs], axis=0)
                                  for h in heads} for part in probs[0]})
    key = ",".join(str(n) for n in sorted(t.number for t in trials))

    def model():
        inputs = keras.Input((None, None, 3), name="raw_image")
        outputs = [members.net(t)(inputs) for t in trials]
        return keras.Model(inputs, {h: keras.layers.Average(name=f"{_layer(h)}_mean")(
            [o[h] for o in outputs]) for h in heads}, name="search_ensemble")

    config = {"final": ENSEMBLE, "combine": "mean",
              "members": [{**member(t), "config": t.config} for t in trials]}
    log(session, candidate, {KIND_TAG: ENSEMBLE, MEMBERS_TAG: key}, model, vocab, config,
         {"members": ",".join(f"#{t.number}" for t in trials),
          **{f"member_{t.number}.run_id": t.run_id for t in trials}})
    print(f"{name}: the mean of trials "
          f"{', '.join(f'#{t.number} (run {_short(t)})' for t in trials)}{where(candidate)}",
          file=out)
    return candidate


def _per_head_ensemble(session, per_head: dict, members: _Members, rows: _Rows,
                       out) -> Candidate:
    """Each head from the kept trial best at it (each distinct member in the model once)."""
    import keras

    distinct = list({t.number: t for t in per_head.values()}.values())
    candidate = Candidate(PER_HEAD, PER_HEAD, [
        {**member(t), "heads": [h for h, top in per_head.items() if top.number == t.number]}
        for t in distinct])
    vocab = members.shared_vocab(distinct)
    rows.score(candidate, {part: {h: members.probs(t)[part][h] for h, t in per_head.items()}
                           for part in rows.labels})
    candidate.note = ", ".join(f"{h} #{t.number}" for h, t in per_head.items())
    key = ",".join(f"{h}={t.number}" for h, t in per_head.items())

    def model():
        inputs = keras.Input((None, None, 3), name="raw_image")
        outputs = {t.number: members.net(t)(inputs) for t in distinct}
        return keras.Model(inputs, {h: outputs[t.number][h] for h, t in per_head.items()},
                           name="search_per_head")

    config = {"final": PER_HEAD, "heads": {h: t.number for h, t in per_head.items()},
              "members": [{**member(t), "config": t.config} for t in distinct]}
    log(session, candidate, {KIND_TAG: PER_HEAD, MEMBERS_TAG: key}, model, vocab, config,
         {"members": ",".join(f"#{t.number}" for t in distinct),
          **{f"head.{h}": t.number for h, t in per_head.items()},
          **{f"member_{t.number}.run_id": t.run_id for t in distinct}})
    print(f"{PER_HEAD}: {candidate.note}{where(candidate)}", file=out)
    return candidate


def refit_epochs(trial: TrialRecord, params: dict) -> tuple[object, str]:
    """The trial's config for a refit: each stage's epochs up to its best epoch, no early
    stopping. The best epoch (`TrialRecord.best_epoch`) counts over all stages from 1; a stage
    trained the epochs its MLflow run logged (`probe.epochs`, `fine_tune.epochs`, ...)."""
    from search.space.config import TrialConfig

    config = TrialConfig.from_dict(trial.config).replace(patience=0)
    best = int(trial.best_epoch or 0)
    if params:
        fine_tune = "fine_tune.epochs" in params or (
            "probe.epochs" in params and config.fine_tune_fraction > 0)
    else:  # no MLflow run to read: the stages the config asks for
        fine_tune = config.backbone == "pretrained" and config.fine_tune_fraction > 0
    if fine_tune:
        probe = int(params.get("probe.epochs", config.probe_epochs))
        best = best or probe + int(params.get("fine_tune.epochs", config.epochs))
        if best <= probe:  # the best weights came before fine-tuning began
            return (config.replace(fine_tune_fraction=0.0, epochs=best),
                    f"{_epochs(best, 'probe ')} (its best epoch came before fine-tuning)")
        return (config.replace(probe_epochs=probe, epochs=best - probe),
                f"{probe} probe + {_epochs(best - probe, 'fine-tune ')}")
    best = best or config.epochs
    return config.replace(epochs=best), _epochs(best)


def _epochs(n: int, kind: str = "") -> str:
    return f"{n} {kind}epoch{'' if n == 1 else 's'}"


def _refit(session, champion, rows: _Rows, out) -> Candidate:
    """The champion's config trained on train + validation rows for its best epochs."""
    from search.final import retrain
    from search.model import assembly as model_lib
    from search.train import metrics, training

    tracker = session.tracking.tracker
    run_id = champion.run_id
    params = tracker.client.get_run(run_id).data.params if run_id else {}
    config, epochs = refit_epochs(champion, params)
    candidate = Candidate(REFIT, REFIT, [member(champion)], note=epochs)
    session = session.with_train_rows(retrain.train_and_validation(session))
    held = f", the {len(session.test_rows)} test rows held out" if rows.has_test else ""
    tags = {KIND_TAG: REFIT, MEMBERS_TAG: str(champion.number), "search.refit_epochs": epochs}
    found = built(session, tags)
    if found:
        candidate.run_id, candidate.model_uri = found
        candidate.reused = True
        from search.track import registry
        from search.track.tracking import using

        with using(session.settings.tracking_uri):
            net, _ = registry.load(candidate.model_uri)
        rows.score(candidate, rows.predict(net, config), trained_on_val=True)
        print(f"{REFIT}: trial #{champion.number}'s config, {epochs} on the train + validation "
              f"rows{held}{where(candidate)}", file=out)
        return candidate
    print(f"{REFIT}: training trial #{champion.number}'s config for {epochs} on the "
          f"{len(session.train_rows)} train + validation rows{held} ...", file=out, flush=True)
    start = time.perf_counter()
    plan = training.prepare(config, session)
    for stage in plan.stages():
        stage.model.fit(stage.train, epochs=stage.epochs, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    fallback = champion.fallback_heads
    priors = {h: p for h, p in metrics.priors(plan.train_labels, session.table.vocab).items()
              if h in fallback}
    net = model_lib.export(plan.net, config, priors)
    rows.score(candidate, rows.predict(net, config), trained_on_val=True)
    log(session, candidate, tags, lambda: net, session.table.vocab, config.to_dict(),
         {**config.to_dict(), "refit_of": f"{session.study}:{champion.number}",
          "refit_of.run_id": run_id, "refit.epochs": epochs,
          "train_rows": len(session.train_rows), "test_rows_held_out": len(session.test_rows)},
         metrics={"train_seconds": seconds})
    print(f"{REFIT}: trained in {seconds:.0f} s{where(candidate)}", file=out)
    return candidate


def _layer(head: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in head)


def _short(trial) -> str:
    return (trial.run_id or "?")[:8]
