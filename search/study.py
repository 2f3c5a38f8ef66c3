"""The Optuna side of a search: storage, sampler, pruner, the trial loop and its progress bar.

`open_study` creates or resumes a study (running the same command again continues it) and
refuses to mix two different spaces or datasets in one study. `optimize` runs trials until the
study holds N finished (COMPLETE or PRUNED) trials, in any number of processes. A trial that
raises is recorded FAIL with its reason and the search goes on.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState

from search.errors import UsageError
from search.settings import mask
from search.space import FIXED_CONFIG_ATTR, Space

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_SECONDS = 30


def storage(url: str):
    """An Optuna storage for url: RDB with heartbeats (stale trials FAIL and are retried)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=HEARTBEAT_SECONDS * 4,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=2))
    except Exception as exc:  # bad URL, server down, missing driver
        raise UsageError(f"cannot open study storage {mask(url)}: {exc}") from None


def sampler(space: Space, seed: int | None):
    spec = {k: v for k, v in space.sampler.items() if k != "name"}
    if space.sampler["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, **spec)


def pruner(space: Space):
    spec = {k: v for k, v in space.pruner.items() if k != "name"}
    name = space.pruner["name"]
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**spec)
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(**spec)


def open_study(url: str, name: str, space: Space, *, seed: int | None,
               identity: dict) -> optuna.Study:
    """Create or resume. `identity` (space fingerprint, data, split) must match on resume."""
    study = optuna.create_study(storage=storage(url), study_name=name, direction="maximize",
                                sampler=sampler(space, seed), pruner=pruner(space),
                                load_if_exists=True)
    stored = {k: study.user_attrs.get(k) for k in identity}
    if not any(v is not None for v in stored.values()):
        for key, value in identity.items():
            study.set_user_attr(key, value)
        for entry in space.enqueue:
            study.enqueue_trial({}, user_attrs={FIXED_CONFIG_ATTR: entry["config"],
                                                "baseline": entry["name"]})
        return study
    differs = [k for k, v in identity.items() if stored.get(k) != v]
    if differs:
        detail = "; ".join(f"{k}: study has {stored.get(k)!r}, now {identity[k]!r}"
                           for k in differs)
        raise UsageError(f"study {name!r} was started with a different setup ({detail}). "
                         f"Use another --study name, or the same space, data and flags.")
    return study


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


@dataclass
class Outcome:
    ran: int
    finished: int
    stopped: str | None = None  # why the loop ended early, if it did


def optimize(study: optuna.Study, objective: Callable, *, n_trials: int,
             timeout: float | None = None, max_failures: int = 5,
             on_trial: Callable | None = None, progress: bool = True) -> Outcome:
    """Run trials until the study holds n_trials finished ones (across all workers)."""
    from tqdm.auto import tqdm

    start = time.monotonic()
    done = finished(study)
    bar = tqdm(total=n_trials, initial=min(done, n_trials), unit="trial", disable=not progress,
               dynamic_ncols=True)
    ran = 0
    failures = 0
    stopped = None
    try:
        while True:
            done = finished(study)
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if done >= n_trials:
                break
            if done + running >= n_trials and running:
                time.sleep(1.0)  # the last trials are running elsewhere: wait for them
                continue
            if timeout is not None and time.monotonic() - start > timeout:
                stopped = f"timeout of {timeout:g} s reached"
                break
            ours: list = []
            study.optimize(objective, n_trials=1, catch=(Exception,),
                           callbacks=[lambda _study, frozen: ours.append(frozen)])
            ran += 1
            last = ours[-1]
            failures = failures + 1 if last.state == TrialState.FAIL else 0
            bar.n = min(finished(study), n_trials)
            _best_postfix(study, bar)
            if on_trial is not None:
                on_trial(study, last, bar)
            if failures >= max_failures:
                stopped = (f"{failures} trials in a row failed (last: "
                           f"{last.user_attrs.get('fail_reason', 'see the log')}); stopping. "
                           f"Fix the cause or raise --max-failures")
                break
    finally:
        bar.close()
    return Outcome(ran=ran, finished=finished(study), stopped=stopped)


def _best_postfix(study: optuna.Study, bar) -> None:
    try:
        bar.set_postfix(best=f"{study.best_value:.4f}", refresh=True)
    except ValueError:  # no completed trial yet
        pass
