"""Commands that read a study's results: best trial, registry, pull, predict."""

from __future__ import annotations

import json
from pathlib import Path

from search.errors import UsageError
from search.settings import Settings


def load_study(settings: Settings, name: str):
    import optuna

    from search.study import storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings.storage.startswith("sqlite:///"):
        db = Path(settings.storage.removeprefix("sqlite:///"))
        if not db.is_file():
            raise UsageError(f"no study storage at {db}: run `search run` first or pass --storage")
    try:
        return optuna.load_study(study_name=name, storage=storage(settings.storage))
    except KeyError:
        raise UsageError(f"no study named {name!r} in the storage; "
                         f"run `search run --study {name}` first") from None


def best(settings: Settings, study_name: str, register: str | None) -> int:
    study = load_study(settings, study_name)
    try:
        trial = study.best_trial
    except ValueError:
        raise UsageError(f"study {study_name!r} has no completed trial yet") from None
    print(f"best trial #{trial.number}: value {trial.value:.4f}")
    for head, acc in trial.user_attrs.get("head_accuracy", {}).items():
        print(f"  {head:<14}{acc:.3f}")
    if register:
        from search import registry
        from search.tracking import using

        uri = trial.user_attrs.get("model_uri")
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not uri:
            raise UsageError(f"trial #{trial.number} logged no model to MLflow")
        with using(settings.tracking_uri):
            version = registry.register(uri, register, run_id)
        print(f"registered {register} version {version}, alias "
              f"{registry.CHAMPION!r} → models:/{register}@{registry.CHAMPION}")
    return 0


def pull(settings: Settings, model_uri: str, out: str) -> int:
    from search import registry
    from search.tracking import using

    with using(settings.tracking_uri):
        folder = registry.pull(model_uri, Path(out))
    print(f"wrote {folder / registry.MODEL_FILE} and {folder / registry.LABELS_FILE}")
    return 0


def predict(settings: Settings, model: str, images: list[str]) -> int:
    from search import registry
    from search.data import decode
    from search.tracking import using

    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        raise UsageError(f"image file(s) not found: {', '.join(missing[:5])}")
    arrays = []
    for path in images:
        try:
            arrays.append(decode(path))
        except Exception as exc:  # PIL raises many types for unreadable files
            raise UsageError(f"cannot read image {path}: {exc}") from None
    with using(settings.tracking_uri):
        net, vocab = registry.load(model)
    for path, result in zip(images, registry.predict_arrays(net, vocab, arrays)):
        print(json.dumps({"image": path, **result}))
    return 0
