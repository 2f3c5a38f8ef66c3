"""The `refit` candidate: the best trial's config trained again on the training and validation
rows for the epochs its best epoch took, per stage, with no early stopping (AutoGluon's
`refit_full`); the study's `--test-fraction` rows stay held out. Built by
search.final.candidates beside the ensembles.
"""

from __future__ import annotations

import time

from search.final.champion import REFIT, Candidate, member
from search.final.runs import built, log, where
from search.study.trial_record import TrialRecord
from search.track.tags import KIND_TAG, MEMBERS_TAG


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


def build(session, champion, rows, out) -> Candidate:
    """The champion's config trained on train + validation rows for its best epochs, scored
    and logged (`rows`: the candidates' rows, search.final.candidates); a refit already built
    from the same trial is reused."""
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
