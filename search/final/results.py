"""Commands that read a study's results: best trial, registry, pull, predict."""

from __future__ import annotations

import sys
from pathlib import Path

from search.errors import UsageError
from search.formats import csv_text, head_lines, json_text
from search.settings import Settings
from search.study import trial_record
from search.study.study import load_study
from search.study.trial_record import TrialRecord


def best(settings: Settings, study_name: str, register: str | None, fmt: str = "table",
         refit: bool = False, ensemble: int | None = None) -> int:
    """Print the best trial; with register, alias `champion` → the objective-best trial's
    model and `best-<head>` → the model best on each head (re-pointed as better ones appear).
    With refit or ensemble, final-model candidates are built and compared too
    (search.final.candidates), and `champion` goes to the best of them on the held-out rows.
    In csv and json stdout holds the data only: registration lines go to stderr, and the JSON
    document also lists the registered versions (`registered`) and the candidates (`final`)."""
    study = load_study(settings, study_name)
    complete = trial_record.complete(study)
    if not complete:
        raise UsageError(f"study {study_name!r} has no completed trial yet")
    champion = max(complete, key=lambda r: r.score)
    per_head = trial_record.best_per_head(complete, champion.accuracy)
    out = sys.stdout if fmt == "table" else sys.stderr
    final = kept = None
    if refit or ensemble is not None:
        from search.final import candidates as final_model
        from search.final import champion as champion_lib

        kept = final_model.kept_trials(settings, study, complete)
        final_model.check(study_name, champion, kept, refit, ensemble)  # before any output
    if fmt == "table":
        _best_table(champion, per_head)
    _print_edges(study, complete, out)
    if kept is not None:
        final = final_model.build(settings, study, champion, kept, refit=refit,
                                  ensemble=ensemble, out=out)
        champion_lib.print_table(final, out)
    registered = None
    if register:
        from search.track import registry

        own = [registry.CHAMPION]
        if final is not None:
            own = [champion_lib.BEST_TRIAL] + (
                [registry.CHAMPION] if final.chosen.alias == champion_lib.BEST_TRIAL else [])
        registered = _register(settings, study_name, register, champion, per_head, out=out,
                               champion_aliases=own)
        if final is not None:
            registered["versions"] += champion_lib.register(settings, register, final, out)
        print(f"use it: search predict --model models:/{register}@{registry.CHAMPION} "
              f"IMAGE...", file=out)
    elif final is not None:
        print(f"not registered: add --register NAME to register the candidates "
              f"(champion: {final.chosen.name})", file=out)
    if fmt == "json":
        from search.space.config import OBJECTIVES
        from search.study.study import setup

        objective = (setup(study).objective if len(study.directions) == 1 else None) \
            or OBJECTIVES[0]
        document = _best_document(study_name, objective, champion, per_head, registered)
        if final is not None:
            document["final"] = final.document()
        print(json_text(document))
    elif fmt == "csv":
        test = champion.test or {}
        print(csv_text(BEST_CSV, [
            [h, champion.number, champion.accuracy[h], top.accuracy[h], top.number,
             *(_test_cells(test[h]) if h in test else (None, None, None))]
            for h, top in per_head.items()]))
    return 0


BEST_CSV = ["head", "champion_trial", "champion_accuracy", "best_accuracy", "best_trial",
            "test_accuracy", "test_accuracy_low", "test_accuracy_high"]


def _test_cells(scores: dict) -> tuple:
    low, high = scores["accuracy_ci"]
    return scores["accuracy"], low, high


def _best_table(champion: TrialRecord, per_head: dict) -> None:
    note = f" [weights: {champion.weights_note}]" if champion.weights_note else ""
    epoch = champion.best_epoch
    print(f"best trial #{champion.number}: value {champion.score:.4f}"
          + (f" (its epoch {epoch})" if epoch else "") + note)
    test = champion.test or {}
    rows = {h: [f"{champion.accuracy[h]:.3f}", f"{top.accuracy[h]:.3f}", f"#{top.number}"]
            for h, top in per_head.items()}
    print("\n".join(head_lines([("champion", 9), ("best", 8), ("trial", 7)], rows, test,
                               "champion on test [95% CI]")))
    if test:
        print(f"  mean accuracy on the {champion.test_rows} held-out test rows: "
              f"{champion.test_mean:.4f} (validation: {champion.mean_accuracy or 0:.4f})")


def _print_edges(study, complete: list[TrialRecord], out) -> None:
    """The levers whose best trials sit on the edge of the space the study sampled (its
    trials' distributions: `search best` has the study, not its space file)."""
    from optuna.trial import TrialState

    from search.study import edges

    levers = edges.levers_of(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    for line in edges.lines(edges.find(levers, complete)):
        print(line, file=out)


def _best_document(study_name: str, objective: str, champion: TrialRecord, per_head: dict,
                   registered: dict | None) -> dict:
    """`search best --format json`: the champion, each head's best trial, test scores."""
    test = champion.test or {}
    return {
        "study": study_name, "objective": objective, "trial": champion.number,
        "value": champion.score, "mean_accuracy": champion.mean_accuracy,
        "best_epoch": champion.best_epoch, "weights": champion.weights,
        "mlflow_run_id": champion.run_id, "model_uri": champion.model_uri,
        "heads": {h: {"accuracy": champion.accuracy[h],
                      "best_accuracy": top.accuracy[h],
                      "best_trial": top.number, "test": test.get(h)}
                  for h, top in per_head.items()},
        "test_mean_accuracy": champion.test_mean,
        "registered": registered,
    }


def _register(settings: Settings, study_name: str, name: str, champion, per_head: dict,
              out, champion_aliases: list[str] | None = None) -> dict:
    """Register the champion's and each head's best model under `name` and point the aliases
    (the champion trial's: `champion_aliases`, default `champion`); progress lines go to
    `out`. {"model", "versions": [{version, trial, aliases}], "not_set": [{trial, aliases,
    why}]}."""
    from search.track import registry
    from search.track.tracking import using

    aliases: dict[int, list[str]] = {champion.number: list(champion_aliases
                                                           or [registry.CHAMPION])}
    for h, t in per_head.items():
        aliases.setdefault(t.number, []).append(registry.head_alias(h))
    by_number = {t.number: t for t in (champion, *per_head.values())}
    done: dict = {"model": name, "versions": [], "not_set": []}
    with using(settings.tracking_uri):
        for number, names in aliases.items():
            trial = by_number[number]
            uri = trial.model_uri
            if not uri or _model_deleted(settings, trial):
                why = "logged no model" if not uri else "has no model any more (keep_models)"
                if number == champion.number:
                    raise UsageError(f"trial #{number} {why}; retrain it with `search train "
                                     f"--from-trial {study_name}:{number} --register "
                                     f"{name}`")
                print(f"trial #{number} {why}: {', '.join(names)} not set", file=out)
                done["not_set"].append({"trial": number, "aliases": names, "why": why})
                continue
            version = registry.register(uri, name, trial.run_id, names)
            print(f"{name} version {version} (trial #{number}): {', '.join(names)}", file=out)
            done["versions"].append({"version": version, "trial": number, "aliases": names})
    return done


def _model_deleted(settings: Settings, trial: TrialRecord) -> bool:
    """Whether model retention deleted the trial's logged model (search.track.tracking)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from search.track.tags import MODEL_DELETED_TAG

    run_id = trial.run_id
    if not run_id:
        return False
    try:
        tags = MlflowClient(settings.tracking_uri).get_run(run_id).data.tags
    except MlflowException:
        return False
    return tags.get(MODEL_DELETED_TAG) == "true"


def pull(settings: Settings, model_uri: str, out: str) -> int:
    from search.track import registry
    from search.track.tracking import using

    with using(settings.tracking_uri):
        folder = registry.pull(model_uri, Path(out))
    print(f"wrote {folder / registry.MODEL_FILE}, {folder / registry.LABELS_FILE} and "
          f"{folder / registry.CONFIG_FILE}")
    return 0


def predict(settings: Settings, model: str, images: list[str], *, table: str | None = None,
            out: str | None = None, fmt: str | None = None, batch_size: int = 64,
            progress: bool = True) -> int:
    """One row per image (search.serve.batch_predict) to stdout or `out`; 1 when some image could
    not be read (its row says why), else 0."""
    from search.serve import batch_predict
    from search.track import registry
    from search.track.tracking import using

    paths = batch_predict.image_paths(images, table)
    fmt = batch_predict.output_format(out, fmt)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    with using(settings.tracking_uri):
        net, vocab = registry.load(model)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="", encoding="utf-8") as stream:
            summary = batch_predict.predict(net, vocab, paths, stream, fmt, batch_size,
                                            progress=progress and sys.stderr.isatty())
        print(f"wrote {summary.images - summary.failed} prediction(s) to {out}",
              file=sys.stderr)
    else:
        summary = batch_predict.predict(net, vocab, paths, sys.stdout, fmt, batch_size)
    if summary.failed:
        print(f"{summary.failed} of {summary.images} image(s) could not be read: their rows "
              f"say why", file=sys.stderr)
        return 1
    return 0
