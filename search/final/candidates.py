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

import numpy as np

from search.errors import UsageError
from search.final import refit as refit_lib
from search.final import selected as selected_lib  # the selection: built on _Members and _Rows
from search.final.champion import (
    BEST_TRIAL,
    ENSEMBLE,
    PER_HEAD,
    Candidate,
    Final,
    choose,
    member,
)
from search.final.runs import log, where
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
    if ensemble is not None and ensemble < 2:
        raise UsageError(f"--ensemble K must be 2 or more (the most kept models an ensemble "
                         f"averages), got {ensemble}")
    if ensemble is not None and len(kept) < 2:
        raise UsageError(f"--ensemble {ensemble}: study {study_name!r} has only 1 kept model, "
                         f"so no ensemble can be built; run the search longer, or with "
                         f"--keep-models K")
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
    refitted = refit_lib.build(session, champion, rows, out) if refit else None  # trains: clears Keras
    members = _Members(settings, rows)
    single = Candidate(BEST_TRIAL, BEST_TRIAL, [member(champion)],
                       model_uri=champion.model_uri, run_id=champion.run_id)
    rows.score(single, members.probs(champion))
    candidates.append(single)
    if refitted is not None:
        candidates.append(refitted)
    if ensemble is not None:
        if ensemble > len(kept):  # K is the most it averages: a short search keeps fewer
            print(f"--ensemble {ensemble}: the study kept {len(kept)} models; the mean "
                  f"ensemble averages those {len(kept)}", file=out)
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


def _layer(head: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in head)


def _short(trial) -> str:
    return (trial.run_id or "?")[:8]
