"""The window (search.study.window): parallel workers draw what the same command always draws.

Real Optuna studies in SQLite with heartbeats, trials run by threads that finish in a random
order; no TensorFlow.
"""

from __future__ import annotations

import random
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from search.study import window


def _study(tmp_path, name="w", width=4, heartbeat=True, seed=7):
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=30) \
        if heartbeat else optuna.storages.InMemoryStorage()
    sampler = window.WindowedSampler(
        lambda s: optuna.samplers.TPESampler(n_startup_trials=3, seed=s), seed)
    pruner = window.WindowedPruner(optuna.pruners.MedianPruner(n_startup_trials=1))
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                pruner=pruner, direction="maximize")
    window.set_width(study, width)
    return study


def _search(study, order_seed: int, n_trials=14, jobs=2, waits=None):
    """Optimise with `jobs` threads whose trials take random times (order_seed)."""
    pace = random.Random(order_seed)
    lock = threading.Lock()

    def objective(trial):
        seconds = window.waited(trial.study, trial.number)
        if waits is not None:
            waits.append(seconds)
        x = trial.suggest_float("x", -3, 3)
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        with lock:
            nap = pace.uniform(0.0, 0.15)
        time.sleep(nap)
        return -(x - 1) ** 2 + {"a": 0, "b": 0.5, "c": 0.2}[kind]

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(objective, n_trials=n_trials, n_jobs=jobs)
    return {t.number: t.params for t in study.get_trials(states=(TrialState.COMPLETE,))}


def test_two_workers_draw_the_same_trials_whichever_finishes_first(tmp_path):
    a = _search(_study(tmp_path / "a"), order_seed=1)
    b = _search(_study(tmp_path / "b"), order_seed=2)
    assert len(a) == 14 and a == b
    # a different --seed draws differently: the sameness above is not a constant
    c = _search(_study(tmp_path / "c", seed=8), order_seed=1)
    assert c != a


def test_trial_n_sees_only_the_trials_numbered_n_minus_width_or_lower(tmp_path):
    study = _study(tmp_path, width=3)
    for value in range(6):
        study.add_trial(optuna.create_trial(value=float(value)))
    seen = window.visible(study, 6)
    assert [t.number for t in seen.get_trials(deepcopy=False)] == [0, 1, 2, 3]
    assert [t.number for t in seen.trials] == [0, 1, 2, 3]
    assert seen.study_name == study.study_name  # everything else is the study's own


def test_a_running_trial_in_the_window_is_waited_for_and_check_is_called(tmp_path):
    study = _study(tmp_path, width=2)
    study.add_trial(optuna.create_trial(value=0.0))
    running = study.ask()  # trial 1, still running
    checks = []
    finisher = threading.Timer(1.2, lambda: study.tell(running, 1.0))
    finisher.start()
    seconds = window.waited(study, 3, check=lambda: checks.append(1))
    finisher.join()
    assert seconds >= 1.0 and checks
    assert [t.number for t in window.visible(study, 3).trials] == [0, 1]


def test_one_worker_and_storages_without_heartbeats_never_wait(tmp_path):
    for width, heartbeat in ((1, True), (4, False)):
        study = _study(tmp_path / f"{width}{heartbeat}", width=width, heartbeat=heartbeat)
        study.add_trial(optuna.create_trial(value=0.0))
        study.ask()  # a RUNNING trial (a dead worker's, say) that would never finish
        assert window.waited(study, 9) < 0.5
        assert [t.number for t in window.visible(study, 9).trials] == [0]


def test_the_pruner_judges_against_the_window_only(tmp_path):
    study = _study(tmp_path, width=3)
    study.add_trial(optuna.create_trial(value=0.0, intermediate_values={1: 0.9}))
    for _ in range(2):  # trials 1, 2: bad, but inside the window of trial 3
        study.add_trial(optuna.create_trial(value=0.0, intermediate_values={1: 0.1}))
    trial = study.ask()
    trial.report(0.5, step=1)
    assert trial.should_prune()  # below trial 0, the only one it sees
    vars(study).pop(window._CACHE)  # a new width is read for trials not yet seen
    window.set_width(study, 1)
    assert not trial.should_prune()  # all three seen: 0.5 is above their median 0.1


@pytest.mark.parametrize("workers, width", [(1, 1), (2, 4), (3, 6)])
def test_width_for(workers, width):
    assert window.width_for(workers) == width
