"""The Optuna study: the global trial cap across workers (without training), and refusing to
mix setups in one study."""

from __future__ import annotations

import os

import optuna
import pytest
from optuna.trial import TrialState

from search.study import study as study_lib
from search.study.storage import storage

# The cap tests ask() trials by hand, outside optimize (where heartbeats beat): expected.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture
def sqlite_study(tmp_path):
    return optuna.create_study(storage=storage(f"sqlite:///{tmp_path / 'o.db'}"),
                               study_name="cap")


def test_a_trial_beyond_the_cap_is_surplus_and_trains_nothing(sqlite_study):
    study = sqlite_study
    study.add_trial(optuna.create_trial(state=TrialState.COMPLETE, value=0.5))
    running = study.ask()  # another worker's trial, still training
    late = study.ask()
    study_lib.claim(running, n_trials=2)  # 1 finished ahead of it: takes the second slot
    with pytest.raises(study_lib.SurplusTrial, match="2 trial slots are taken"):
        study_lib.claim(late, n_trials=2)
    study.tell(late, state=TrialState.FAIL)
    frozen = study.get_trials()[late.number]
    assert study_lib.is_surplus(frozen) and frozen.user_attrs["worker"].endswith(
        f":{os.getpid()}")
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 0  # nothing was queued


def test_a_surplus_queued_trial_is_queued_again(sqlite_study):
    study = sqlite_study
    study.add_trial(optuna.create_trial(state=TrialState.COMPLETE, value=0.5))
    study.enqueue_trial({"x": 1.0}, user_attrs={"baseline": "b"})
    popped = study.ask()  # the queued trial, but the only slot is taken
    with pytest.raises(study_lib.SurplusTrial):
        study_lib.claim(popped, n_trials=1)
    again = study.get_trials(states=(TrialState.WAITING,))
    assert len(again) == 1 and again[0].system_attrs["fixed_params"] == {"x": 1.0}
    assert again[0].user_attrs == {"baseline": "b"}
