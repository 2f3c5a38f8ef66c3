"""`search train --from-trial STUDY:NUMBER`: one trial's exact config, trained again outside
the search — longer, on other data, or on all rows — logged to MLflow and optionally
registered.

The config is the trial's resolved config (its record's, search.study.trial_record: every trial
stores it, with the bounds an LR range test found), so the retrained model is the same
architecture and schedule, with only the overrides changed. By default the data, heads and
split (validation share, seed, stratification, held-out test rows: search.study.study.StudySetup)
are the study's own, and every seed the trial used is its config's, so without overrides the
retrained model replays the trial: on a CPU exactly (each batch's augmentation has its own
seed, whatever order the pipeline runs in), on a GPU with --exact (TensorFlow's op
determinism).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from search.errors import UsageError
from search.settings import Settings
from search.space.config import OBJECTIVES
from search.track.tags import RETRAINED_FROM_TAG


def parse_ref(ref: str) -> tuple[str, int]:
    study, _, number = ref.rpartition(":")
    if not study or not number.isdigit():
        raise UsageError(f"--from-trial must look like STUDY:NUMBER (e.g. default:7), got {ref!r}")
    return study, int(number)


def retrain(settings: Settings, ref: str, *, data: str | None, epochs: int | None,
            all_data: bool, register: str | None, alias: str, seed: int | None,
            val_fraction: float | None, exact: bool = False) -> int:
    from search.engines.trial import run
    from search.space.config import TrialConfig
    from search.study import trial_record
    from search.study.study import load_study

    study_name, number = parse_ref(ref)
    study = load_study(settings, study_name)
    records = [r for r in trial_record.read_all(study) if r.number == number]
    if not records or records[0].config is None:
        raise UsageError(f"study {study_name!r} has no trial #{number} with a stored config")
    if records[0].state != "COMPLETE":
        raise UsageError(f"trial #{number} of {study_name!r} did not finish "
                         f"({records[0].state}); retrain a completed trial (search best "
                         f"--study {study_name} shows the best)")
    config = TrialConfig.from_dict(records[0].config)
    if epochs:
        config = config.replace(epochs=epochs)
    session = study_session(settings, study, records[0], data=data, seed=seed,
                            val_fraction=val_fraction)
    rows = ""
    if all_data:
        session = session.with_train_rows(train_and_validation(session))
        rows = " on all rows (validation rows seen in training" + (
            f"; the study's {len(session.test_rows)} test rows held out)"
            if len(session.test_rows) else ")")
    if exact:  # CPU kernels replay anyway; this makes GPU ones deterministic too (slower)
        from search import backend

        if backend.is_tensorflow():
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        elif backend.name() == "torch":
            import torch

            torch.use_deterministic_algorithms(True, warn_only=True)
    session.use_device()
    tags = {RETRAINED_FROM_TAG: f"{study_name}:{number}",
            "search.all_data": str(all_data).lower(), "search.exact": str(exact).lower()}
    print(f"retraining trial #{number} of {study_name!r} on {session.csv} for {config.epochs} "
          f"epochs{rows}")
    result = run(config, session, number=number, tags=tags, find_lr=False)
    print(f"mean accuracy {result.summary['mean_accuracy']:.4f}; MLflow run {result.run_id}")
    if register:
        from search.track import registry
        from search.track.tracking import using

        with using(settings.tracking_uri):
            version = registry.register(result.model_uri, register, result.run_id, [alias])
        print(f"registered {register} version {version}, alias {alias!r}")
    return 0


def study_session(settings: Settings, study, trial, *, data: str | None = None,
                  seed: int | None = None, val_fraction: float | None = None):
    """A Session on the study's data, heads and split (its held-out test rows included), with
    tracking under the study's MLflow parent run and this process's device chosen: what a
    retrain of one of its trials (`trial`: its TrialRecord), or a final model built from them,
    starts from."""
    from search.space import space as space_lib
    from search.study.session import Options, Session
    from search.study.study import setup

    recorded = setup(study)
    split = recorded.split_record
    options = Options(study=study.study_name, data=data, heads=tuple(study_heads(study, trial)),
                      seed=split.seed if seed is None else seed,
                      val_fraction=split.val_fraction if val_fraction is None else val_fraction,
                      stratify=split.stratify, test_fraction=split.test_fraction, verbose=1)
    parent = recorded.parent_run_id
    space = space_lib.Space(name="retrain", params=(),
                            objective=recorded.objective or OBJECTIVES[0])
    if data is None:
        from search.track.tracking import Tracker

        tracker = Tracker(settings.tracking_uri, study.study_name, settings.artifact_root)
        options = dataclasses.replace(options, data=_study_data(tracker, parent))
    session = Session.on_data(settings, options, space)
    if parent is None:  # a study of an older version: a parent run of its own
        session.start_tracking()
    else:
        session.join_tracking(parent)
    return session


def train_and_validation(session) -> np.ndarray:
    """The rows a retrain on "all data" trains on: train and validation, never the study's
    held-out test rows (`--test-fraction`)."""
    return np.sort(np.concatenate([session.train_rows, session.val_rows]))


def study_split(study):
    """The split a study was run with (search.data.split.Split)."""
    from search.study.study import setup

    return setup(study).split_record


def study_heads(study, trial) -> list[str]:
    """The heads the trial (a TrialRecord) scored, else those the study recorded."""
    from search.study.study import setup

    heads = list(trial.accuracy) or list(setup(study).heads)
    if not heads:
        raise UsageError("the study does not record its heads; pass --data and check --heads")
    return heads


def _study_data(tracker, parent: str | None) -> str:
    """The CSV the study was run on, from its MLflow parent run's params."""
    if parent:
        path = tracker.client.get_run(parent).data.params.get("data")
        if path:
            return path
    raise UsageError("cannot tell which data the study used; pass --data CSV")
