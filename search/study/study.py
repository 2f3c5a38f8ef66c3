"""The Optuna study of a search: sampler, pruner, create or resume, and the trial slots.

`start_study` creates or resumes a study (running the same command again continues it),
`join_study` opens one that must exist (a worker's); both refuse to mix two different setups
in one study (`Session.check_identity`). Reading helpers
(`best`, `finished`, `load_study`) are shared by the engine and the result commands. The loop
that runs trials is `search.engines.optuna`; storages are `search.study.storage`.

Trial cap. Workers race: two can see N-1 finished trials and both start one. So every trial,
once created, claims a slot: if the trials numbered before it that are finished, running or
waiting already make N, it is surplus and trains nothing. Trial numbers are assigned under a
lock on the study row (SQLite: one writer at a time), so "numbered before" is one order all
workers agree on, and counting waiting trials covers queued trials (retries, baselines) that
start later. Optuna cannot delete a trial, so a surplus one ends FAIL with user attr
`surplus=True`; it counts neither as finished nor as a failure, and a queued trial it had
popped is queued again.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.data.split import Split
from search.errors import UsageError
from search.settings import Settings, mask
from search.space import algorithms
from search.space.space import FIXED_CONFIG_ATTR
from search.study import trial_record, window, workers
from search.study.storage import require_storage, storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# What a trial has to count before it may train: trials that took or hold a slot.
CLAIMED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
SURPLUS_ATTR = "surplus"
WORKER_ATTR = "worker"
NODE_ATTR = "node"  # where the worker's pid means something (node_name)
# The study's user attributes that StudySetup reads (split and heads: Session.identity's keys).
_SPLIT, _HEADS, _OBJECTIVE = "split", "heads", "objective"
_DATA = "data_fingerprint"  # Session.identity's too
_LABELS = "labels"  # {head: label vocabulary}: what --warm-start compares
_EXPERIMENT, _PARENT_RUN = "mlflow_experiment_id", "mlflow_parent_run_id"


class SurplusTrial(Exception):
    """The study already had its N trials when this one claimed a slot: it is not trained."""


class QuietSurplus(logging.Filter):
    """Optuna logs every FAIL with a traceback; a surplus trial is routine (see `claim`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SurplusTrial))


def quiet() -> None:
    """Optuna's own logging: failures are one line each, ours; surplus trials none."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("optuna.study._optimize").addFilter(QuietSurplus())


def join_study(session) -> optuna.Study:
    """The session's study, which must exist (workers join, they never start a study); its
    identity (space, data, split) must match."""
    url, name = session.settings.storage, session.study
    opened = storage(url)
    try:
        opened.get_study_id_from_name(name)
    except KeyError:
        raise UsageError(f"no study {name!r} in {mask(url)}: start it with `search run "
                         f"--study {name}` (same storage and flags), then join") from None
    return start_study(session, opened)


def start_study(session, opened=None) -> optuna.Study:
    """Create or resume the session's study; its identity (space, data, split) must match.
    Its sampler draws trial n from (--seed, study, n) and the trials of n's window
    (search.study.window). opened: the storage, where the caller has it open already (one
    storage per process: each holds a database connection)."""
    url, name, space = session.settings.storage, session.study, session.space
    directions = [{"max": "maximize", "min": "minimize"}[d] for _, d in space.objectives] \
        or ["maximize"]
    sampler = window.WindowedSampler(lambda s: algorithms.sampler(space.sampler, s),
                                     window.base_seed(session.options.seed, name))
    pruner = window.WindowedPruner(algorithms.pruner(space.pruner,
                                                     multi_objective=bool(space.objectives)))
    study = optuna.create_study(storage=opened or storage(url), study_name=name,
                                directions=directions, sampler=sampler, pruner=pruner,
                                load_if_exists=True)
    identity = session.identity()
    stored = {k: study.user_attrs.get(k) for k in identity}
    if any(v is not None for v in stored.values()):
        session.check_identity(stored, "study")
    else:
        for key, value in identity.items():
            study.set_user_attr(key, value)
        study.set_user_attr(_OBJECTIVE, space.objective)  # `search train` ranks the same way
        for entry in space.enqueue:
            study.enqueue_trial({}, user_attrs={FIXED_CONFIG_ATTR: entry["config"],
                                                **trial_record.baseline_attrs(entry["name"])})
    if study.user_attrs.get(_LABELS) is None and \
            study.user_attrs.get(_DATA) == identity["data_fingerprint"]:  # older studies too
        study.set_user_attr(_LABELS, {h: list(v) for h, v in session.table.vocab.items()})
    if study.metric_names is None:  # optuna-dashboard shows these, not "Objective 0"
        study.set_metric_names([metric for metric, _ in space.objectives] or [space.objective])
    return study


@dataclass(frozen=True)
class StudySetup:
    """How a study was run, as it recorded it: what `search train --from-trial`, `best` and
    the final model start from. None or empty: not recorded (a study of an older version)."""

    split: str | None  # search.data.split.Split.identity: '0.2:0:plain[:test=F]'
    heads: tuple[str, ...]
    objective: str | None  # the metric a single-objective study maximises
    experiment_id: str | None  # its MLflow experiment and parent run (record_tracking)
    parent_run_id: str | None
    data_fingerprint: str | None = None  # the table's content hash (Session.identity)
    labels: dict[str, list[str]] | None = None  # each head's vocabulary (newer studies only)

    @property
    def split_record(self) -> Split:
        """The split it was run with (search.data.split.Split)."""
        return Split.parse(self.split)


def setup(study) -> StudySetup:
    """The setup an Optuna study (or a storage's frozen study) recorded."""
    attrs = study.user_attrs
    heads = attrs.get(_HEADS)
    return StudySetup(split=attrs.get(_SPLIT), heads=tuple(heads.split(",")) if heads else (),
                      objective=attrs.get(_OBJECTIVE),
                      experiment_id=attrs.get(_EXPERIMENT), parent_run_id=attrs.get(_PARENT_RUN),
                      data_fingerprint=attrs.get(_DATA), labels=attrs.get(_LABELS))


def record_tracking(study: optuna.Study, experiment_id: str, parent_run_id: str) -> None:
    """Store where the study's MLflow runs are (StudySetup.experiment_id, parent_run_id)."""
    study.set_user_attr(_EXPERIMENT, experiment_id)
    study.set_user_attr(_PARENT_RUN, parent_run_id)


def best(study: optuna.Study):
    """The top trial by `trial_record.score`, or None before any trial completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=trial_record.score) if complete else None


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def is_surplus(frozen) -> bool:
    """A trial that claimed no slot (see the module docstring); not a failure."""
    return bool(frozen.user_attrs.get(SURPLUS_ATTR))


def worker_name() -> str:
    """host:pid, stored on every trial this process runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def node_name() -> str | None:
    """Where this process's pid can be checked, stored on each trial beside the worker
    (search.study.heartbeats fails a trial at once when its worker's pid is gone from the
    checking process's node): 'ray:NODE_ID' in a Ray worker task, since several Ray nodes
    may share a host yet each stands for a machine of its own; else the host, its boot and
    its pid namespace (machines may share a host name, containers a boot, but not their
    pids). None where these cannot be read (no /proc): then no pid is checked."""
    ray_node = os.environ.get(workers.RAY_NODE_ENV)
    if ray_node:
        return f"ray:{ray_node}"
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")  # 'pid:[4026531836]'
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{namespace}"


def claim(trial: optuna.Trial, n_trials: int) -> None:
    """Take one of the study's n_trials slots, or raise SurplusTrial (see module docstring)."""
    trial.set_user_attr(WORKER_ATTR, worker_name())
    node = node_name()
    if node:
        trial.set_user_attr(NODE_ATTR, node)
    trials = trial.study.get_trials(deepcopy=False)
    ahead = sum(t.number < trial.number and t.state in CLAIMED and not is_surplus(t)
                for t in trials)
    if ahead < n_trials:
        return
    trial.set_user_attr(SURPLUS_ATTR, True)
    mine = next(t for t in trials if t.number == trial.number)
    if mine.params or "fixed_params" in mine.system_attrs:  # popped from the queue: requeue
        trial.study.add_trial(optuna.create_trial(
            state=TrialState.WAITING, params=mine.params, distributions=mine.distributions,
            user_attrs={k: v for k, v in mine.user_attrs.items()
                        if k not in (SURPLUS_ATTR, WORKER_ATTR, NODE_ATTR)},
            system_attrs=mine.system_attrs))
    raise SurplusTrial(f"the {n_trials} trial slots are taken by trials before #{trial.number}; "
                       f"not trained (FAIL with user attr {SURPLUS_ATTR}=True, not counted)")


def load_study(settings: Settings, name: str):
    """The study, opened read-only: the reading commands run beside workers (read_only storage)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    require_storage(settings)
    try:
        return optuna.load_study(study_name=name,
                                 storage=storage(settings.storage, read_only=True))
    except KeyError:
        raise UsageError(f"no study named {name!r} in the storage; "
                         f"run `search run --study {name}` first") from None
