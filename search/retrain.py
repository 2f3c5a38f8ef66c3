"""`search train --from-trial STUDY:NUMBER`: one trial's exact config, trained again outside
the search — longer, on other data, or on all rows — logged to MLflow and optionally
registered.

The config is the trial's resolved `config` user attribute (every trial stores it), so the
retrained model is the same architecture and schedule, with only the overrides changed.
"""

from __future__ import annotations

import numpy as np

from search.errors import UsageError
from search.settings import Settings


def parse_ref(ref: str) -> tuple[str, int]:
    study, _, number = ref.rpartition(":")
    if not study or not number.isdigit():
        raise UsageError(f"--from-trial must look like STUDY:NUMBER (e.g. default:7), got {ref!r}")
    return study, int(number)


def retrain(settings: Settings, ref: str, *, data: str | None, epochs: int | None,
            all_data: bool, register: str | None, alias: str, seed: int,
            val_fraction: float) -> int:
    from search import device
    from search.config import TrialConfig
    from search.data import read_table, split
    from search.results import load_study
    from search.tracking import Tracker
    from search.trial import Workbench, run

    study_name, number = parse_ref(ref)
    study = load_study(settings, study_name)
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials or "config" not in trials[0].user_attrs:
        raise UsageError(f"study {study_name!r} has no trial #{number} with a stored config")
    config = TrialConfig.from_dict(trials[0].user_attrs["config"])
    if epochs:
        config = config.replace(epochs=epochs)
    tracker = Tracker(settings.tracking_uri, study_name, settings.artifact_root)
    csv = data or _study_data(tracker, study)
    heads = tuple(trials[0].user_attrs.get("head_accuracy") or config_heads(study))
    table = read_table(csv, heads)
    train_rows, val_rows = split(len(table), val_fraction=val_fraction, seed=seed)
    if all_data:
        train_rows = np.arange(len(table))
    parent = study.user_attrs.get("mlflow_parent_run_id") or tracker.study_run(study_name)
    bench = Workbench(table=table, train_rows=train_rows, val_rows=val_rows, settings=settings,
                      tracker=tracker, parent_run_id=parent, study_name=study_name,
                      device=device.choose(), verbose=1)
    tags = {"search.retrained_from": f"{study_name}:{number}",
            "search.all_data": str(all_data).lower()}
    print(f"retraining trial #{number} of {study_name!r} on {csv} for {config.epochs} epochs"
          f"{' on all rows (validation rows seen in training)' if all_data else ''}")
    result = run(config, bench, number=number, tags=tags)
    print(f"mean accuracy {result.summary['mean_accuracy']:.4f}; MLflow run {result.run_id}")
    if register:
        from search import registry
        from search.tracking import using

        with using(settings.tracking_uri):
            version = registry.register(result.model_uri, register, result.run_id, [alias])
        print(f"registered {register} version {version}, alias {alias!r}")
    return 0


def config_heads(study) -> list[str]:
    heads = study.user_attrs.get("heads")
    if not heads:
        raise UsageError("the study does not record its heads; pass --data and check --heads")
    return heads.split(",")


def _study_data(tracker, study) -> str:
    """The CSV the study was run on, from its MLflow parent run's params."""
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent:
        path = tracker.client.get_run(parent).data.params.get("data")
        if path:
            return path
    raise UsageError("cannot tell which data the study used; pass --data CSV")
