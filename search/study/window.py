"""The window: what trial n sees of its study, so that K workers draw what the same command
draws every time, whichever of their trials happens to finish first.

Optuna's sampler and pruner read the trials finished at the moment they are called; with
several workers that depends on timing, so two runs of the same command draw different trials.
Here trial n's sampler and pruner see exactly the finished trials numbered n - width or lower
(`visible`), and its sampler is seeded from (--seed, study, n) (`WindowedSampler`). With one
worker the width is 1: trial n sees every trial before it, as in Optuna's own loop. With K
workers it is 2K (`width_for`): trial n first waits until the trials numbered n - 2K or lower
have all finished, which costs a worker something only when one trial outlasts about 2K - 1 of
its successors (a fine-tune among pruned trials); the wait is recorded per trial (user attr
`window_wait_s`). `search run` stores the width on the study (`set_width`), so every worker,
`search worker` too, uses the run's.

Optuna offers no such view (TPE's `constant_liar` hides nothing, it adds guesses), so this wraps
any Optuna sampler and pruner, as Optuna's HyperbandPruner does with its per-bracket study.
Nothing else is done by hand: trials, states and heartbeats are Optuna's.
"""

from __future__ import annotations

import copy
import hashlib
import time
import warnings
from typing import Callable

import optuna
from optuna.trial import TrialState

from search.study.storage import rdb_backend

WIDTH_ATTR = "window"
WAITED_ATTR = "window_wait_s"
POLL_S = 0.5
_CACHE = "_search_window"  # on the study object: trial number -> the finished trials it sees


def width_for(workers: int) -> int:
    """The window of a run with `workers` processes (or Ray tasks) training at once."""
    return 1 if workers <= 1 else 2 * workers


def set_width(study, width: int) -> None:
    if study.user_attrs.get(WIDTH_ATTR) != width:
        study.set_user_attr(WIDTH_ATTR, width)


def width(study) -> int:
    return int(study.user_attrs.get(WIDTH_ATTR, 1))


def base_seed(seed: int, study_name: str) -> int:
    """A study's sampler seed, from --seed and its name: two studies do not share draws."""
    return int(hashlib.sha256(f"{seed}:{study_name}".encode()).hexdigest()[:8], 16)


def trial_seed(base: int | None, number: int) -> int | None:
    """Trial `number`'s sampler seed: whichever worker draws it, the same."""
    if base is None:
        return None
    return int(hashlib.sha256(f"{base}:{number}".encode()).hexdigest()[:8], 16)


def visible(study, number: int, check: Callable[[], object] | None = None) -> "Visible":
    """The study as trial `number` sees it: its finished trials numbered `number - width` or
    lower. With width > 1 (several workers) this waits until those have all finished, calling
    `check` between polls (to stop on Ctrl-C and to fail the trials of dead workers)."""
    try:  # kept on the study object, so that it dies with it; those trials no longer change
        seen = vars(study).setdefault(_CACHE, {})
    except (AttributeError, TypeError):  # a study proxy (Optuna's bracket study): no cache
        seen = {}
    if number not in seen:
        if len(seen) >= 16:
            seen.pop(min(seen))
        seen[number] = _finished_up_to(study, number - width(study), check)
    return Visible(study, seen[number])


def waited(study, number: int, check: Callable[[], object] | None = None) -> float:
    """Wait for trial `number`'s window (see `visible`): the seconds it took."""
    start = time.monotonic()
    visible(study, number, check)
    return time.monotonic() - start


def wait(trial, check: Callable[[], object] | None = None) -> None:
    """Wait for the trial's window; a wait of a second or more is recorded on the trial."""
    seconds = waited(trial.study, trial.number, check)
    if seconds >= 1.0:
        trial.set_user_attr(WAITED_ATTR, round(seconds, 1))


def _finished_up_to(study, last: int, check) -> list:
    """The finished trials numbered `last` or lower, once none of them runs any more. One
    worker (width 1) never waits: the trials before its own are over or belong to the dead,
    which only the heartbeat check can settle. Queued (WAITING) trials are not waited for."""
    while True:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number <= last]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if not running or width(study) <= 1 or not _has_heartbeats(study):
            return [t for t in trials if t.state.is_finished()]
        if check is not None:
            check()
        time.sleep(POLL_S)


def _has_heartbeats(study) -> bool:
    """Without heartbeats (journal, in-memory storage) a dead worker's trial stays RUNNING
    for ever: waiting for it would never end, so such storages get no wait."""
    return getattr(rdb_backend(study), "heartbeat_interval", None) is not None


class Visible:
    """A study seen through the window: its trials are the fixed list `trials`; everything else
    is the study's own."""

    def __init__(self, study, trials: list):
        self._study = study
        self._trials = trials

    def __getattr__(self, name):
        return getattr(self._study, name)

    def _get_trials(self, deepcopy=True, states=None, use_cache=False) -> list:
        trials = [t for t in self._trials if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trials(self, deepcopy=True, states=None) -> list:
        return self._get_trials(deepcopy, states)

    @property
    def trials(self) -> list:
        return self.get_trials()


class WindowedSampler(optuna.samplers.BaseSampler):
    """Any Optuna sampler, made per trial from `make(seed)` with the trial's seed
    (`trial_seed`), reading the study through the trial's window."""

    def __init__(self, make: Callable[[int | None], optuna.samplers.BaseSampler],
                 seed: int | None):
        self._make = make
        self.seed = seed
        self._made: dict[int, optuna.samplers.BaseSampler] = {}  # by trial number, recent

    def inner(self, number: int) -> optuna.samplers.BaseSampler:
        """Trial `number`'s sampler: made once, so its random state advances over its draws
        (threads of `optimize(n_jobs=...)` interleave trials, hence a few at once)."""
        if number not in self._made:
            if len(self._made) >= 16:
                self._made.pop(min(self._made))
            with warnings.catch_warnings():  # experimental options warn once per instance
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._made[number] = self._make(trial_seed(self.seed, number))
        return self._made[number]

    def infer_relative_search_space(self, study, trial):
        return self.inner(trial.number).infer_relative_search_space(
            visible(study, trial.number), trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner(trial.number).sample_relative(
            visible(study, trial.number), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner(trial.number).sample_independent(
            visible(study, trial.number), trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.inner(trial.number).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner(trial.number).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # each trial's seed is fixed by its number
        pass


class WindowedPruner(optuna.pruners.BasePruner):
    """Any Optuna pruner, judging trial n against the trials of its window only."""

    def __init__(self, inner: optuna.pruners.BasePruner):
        self.inner = inner

    def prune(self, study, trial) -> bool:
        return self.inner.prune(visible(study, trial.number), trial)
