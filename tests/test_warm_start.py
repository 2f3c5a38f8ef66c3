"""`search run --warm-start`: a new study starts with an earlier study's best distinct configs.

The fast tests build the earlier study through `start_study` (a real SQLite Optuna study with
the identity and labels a search records) and add COMPLETE trials with chosen params and
values, so ranking, distinctness and the fit to a changed space are checked without training;
opening the new study (`OptunaEngine.open`) queues its trials. The e2e test runs two real
searches.
"""

from __future__ import annotations

import shutil

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from search import cli
from search.engines.optuna import OptunaEngine
from search.settings import Settings
from search.study import study as study_lib
from search.study import trial_record
from search.study.session import Options, Session

from conftest import TINY_SPACE

BASE = {"width": 16, "dropout": 0.1, "cutout": 0.2, "clr_mode": "triangular",
        "base_lr": 2e-3, "lr_ratio": 3.0}
# (params, value) of study A's trials, numbered 0.. in this order.
TRIALS = [
    (BASE, 0.30),
    ({**BASE, "dropout": 0.15, "clr_mode": "triangular2"}, 0.50),
    ({**BASE, "dropout": 0.15, "clr_mode": "triangular2"}, 0.45),  # same params as #1
    ({**BASE, "width": 8}, 0.40),
    ({**BASE, "clr_mode": "exp_range", "gamma": 0.995}, 0.35),
    ({**BASE, "lr_ratio": 2.5}, 0.33),
    ({**BASE, "dropout": 0.18}, 0.32),
]
# Study B's space: width choices moved, gamma gone, lr_ratio pinned, dropout narrowed.
B_SPACE = (TINY_SPACE.read_text()
           .replace("choices: [8, 16]", "choices: [16, 32]")
           .replace("lr_ratio: {type: float, low: 2.0, high: 4.0}", "lr_ratio: 3.0")
           .replace("dropout: {type: float, low: 0.0, high: 0.2}",
                    "dropout: {type: float, low: 0.0, high: 0.16}"))
B_SPACE = "\n".join(line for line in B_SPACE.splitlines() if "gamma" not in line) + "\n"


def _session(runs, csv, study, *, space=TINY_SPACE, heads=None, **options):
    extra = {"heads": tuple(heads.split(","))} if heads else {}
    return Session.build(Settings.resolve(runs), Options(study=study, space=str(space),
                                                         data=str(csv), **extra, **options))


def _earlier(runs, csv, name="A", trials=TRIALS, **kw):
    """Study `name` as a search records it, with COMPLETE `trials` (params, value)."""
    session = _session(runs, csv, name, **kw)
    session.settings.ensure()
    study = study_lib.start_study(session)
    dists = {p.name: p.distribution for p in session.space.params if p.distribution}
    for params, value in trials:
        study.add_trial(optuna.create_trial(
            params=params, distributions={k: dists[k] for k in params}, value=value))
    return study


def _open(runs, csv, study, **options) -> OptunaEngine:
    engine = OptunaEngine(_session(runs, csv, study, **options))
    engine.open()
    return engine


def _queued(engine):
    waiting = engine.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return [(trial_record.read(t).warm_start, t.system_attrs["fixed_params"]) for t in waiting]


def test_the_best_distinct_configs_are_queued_best_first(tmp_path, tiny_csv):
    runs = tmp_path / "runs"
    _earlier(runs, tiny_csv)
    engine = _open(runs, tiny_csv, "B", warm_start=("A",), warm_start_top=3)
    assert _queued(engine) == [("A#1", TRIALS[1][0]), ("A#3", TRIALS[3][0]),
                               ("A#4", TRIALS[4][0])]  # A#2 repeats A#1's params
    assert engine.notes() == ["warm start: queued 3 config(s) from A, best first: A#1 (0.5000), "
                              "A#3 (0.4000), A#4 (0.3500)"]
    # The same command on the same state queues the same trials (here: a sibling study).
    assert _queued(_open(runs, tiny_csv, "C", warm_start=("A",), warm_start_top=3)) == \
        _queued(engine)


def test_configs_that_no_longer_fit_the_space_are_skipped_with_a_line(tmp_path, tiny_csv):
    runs = tmp_path / "runs"
    _earlier(runs, tiny_csv)
    space = tmp_path / "b.yaml"
    space.write_text(B_SPACE)
    engine = _open(runs, tiny_csv, "B", space=space, warm_start=("A",))
    fitted = {k: v for k, v in TRIALS[1][0].items() if k != "lr_ratio"}  # pinned: not a param
    assert _queued(engine) == [("A#1", fitted),
                               ("A#0", {k: v for k, v in BASE.items() if k != "lr_ratio"})]
    assert engine.notes() == [
        "warm start: skipped A#3: width=8 is not one of the choices now (16, 32)",
        "warm start: skipped A#4: the space has no gamma (the trial had 0.995)",
        "warm start: skipped A#5: lr_ratio is pinned to 3.0 here, the trial had 2.5",
        "warm start: skipped A#6: dropout=0.18 is outside the range now (0 to 0.16)",
        "warm start: queued 2 config(s) from A, best first: A#1 (0.5000), A#0 (0.3000)"]


def test_running_the_same_command_again_queues_nothing_twice(tmp_path, tiny_csv):
    runs = tmp_path / "runs"
    _earlier(runs, tiny_csv)
    first = _queued(_open(runs, tiny_csv, "B", warm_start=("A",), warm_start_top=2))
    again = _open(runs, tiny_csv, "B", warm_start=("A",), warm_start_top=2)
    assert _queued(again) == first and len(first) == 2
    assert again.notes() == ["warm start: 2 config(s) from A already in the study, not "
                             "queued again"]
    more = _open(runs, tiny_csv, "B", warm_start=("A",), warm_start_top=3)  # one more asked
    assert [ref for ref, _ in _queued(more)] == ["A#1", "A#3", "A#4"]


def test_a_new_study_on_the_same_data_and_heads_gets_a_hint(tmp_path, tiny_csv):
    runs = tmp_path / "runs"
    _earlier(runs, tiny_csv)
    _earlier(runs, tiny_csv, "other-heads", heads="gender,age")
    assert _open(runs, tiny_csv, "B").notes() == [
        "hint: study 'A' in this storage searched the same data and heads; add --warm-start A "
        "to start from its best configs"]
    assert _open(runs, tiny_csv, "B").notes() == []  # B exists now: a resume, no hint
    assert _open(runs, tiny_csv, "D", heads="gender,age").notes() == [
        "hint: study 'other-heads' in this storage searched the same data and heads; add "
        "--warm-start other-heads to start from its best configs"]


def test_a_study_of_an_earlier_version_records_its_labels_when_resumed(tmp_path, tiny_csv):
    """Studies made before --warm-start recorded no label vocabularies; resumed on the same
    data, they do, so a later --warm-start from them is checked too."""
    session = _session(tmp_path / "runs", tiny_csv, "older")
    session.settings.ensure()
    older = optuna.create_study(study_name="older", storage=session.settings.storage)
    for key, value in session.identity().items():  # what an earlier version stored
        older.set_user_attr(key, value)
    assert study_lib.setup(older).labels is None
    resumed = study_lib.start_study(session)
    assert study_lib.setup(resumed).labels == {h: list(v) for h, v in
                                               session.table.vocab.items()}


def _refused(runs, csv, *flags) -> str:
    """Run `search run` with flags that must be refused before anything is written: the
    error line. No new study, no MLflow store."""
    db = runs / "optuna.db"
    before = sorted(s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")) \
        if db.exists() else None
    code = cli.main(["run", "--trials", "1", "--space", str(TINY_SPACE), "--data", str(csv),
                     "--study", "B", "--runs-dir", str(runs), "--no-progress", *flags])
    assert code == 2
    after = sorted(s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")) \
        if db.exists() else None
    assert after == before and not (runs / "mlflow.db").exists()
    return code


def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, tiny_csv, capsys):
    runs = tmp_path / "runs"

    def error(*flags) -> str:
        _refused(runs, tiny_csv, *flags)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        return err.removeprefix("search run: error: ")

    assert error("--warm-start", "A") == (
        f"--warm-start: no study 'A' in sqlite:///{runs / 'optuna.db'} (studies there: none)")
    assert not runs.exists()
    _earlier(runs, tiny_csv, "gender-age", heads="gender,age")
    relabelled = tmp_path / "relabelled"
    shutil.copytree(tiny_csv.parent, relabelled)
    csv = relabelled / tiny_csv.name
    csv.write_text(csv.read_text().replace(",female,", ",woman,"))
    _earlier(runs, csv, "relabelled")
    assert error("--warm-start", "nope").startswith("--warm-start: no study 'nope' in ")
    assert error("--warm-start", "gender-age") == (
        "--warm-start: study 'gender-age' has heads gender,age, this search "
        "gender,imagequality,age,weight,carryingbag,footwear,emotion,bodypose; warm-start "
        "from a study of the same heads")
    assert error("--warm-start", "relabelled") == (
        "--warm-start: head 'gender' has labels male, woman in study 'relabelled', female, male "
        "here; warm-start from a study of the same label vocabularies")
    assert error("--warm-start", "B").startswith("--warm-start names study 'B', the one")
    assert error("--warm-start", "A,,C") == ("--warm-start takes study names separated by "
                                             "commas, got 'A,,C'")
    assert error("--warm-start-top", "3").startswith("--warm-start-top N sets how many")
    assert error("--warm-start", "A", "--warm-start-top", "0") == (
        "--warm-start-top must be at least 1, got 0")
    assert error("--warm-start", "gender-age", "--engine", "keras-tuner", "--no-baselines") \
        .startswith("--warm-start enqueues an earlier Optuna study's params, which a "
                    "keras-tuner oracle cannot take")


@pytest.mark.e2e
def test_a_second_search_starts_with_the_first_one_s_best_configs(tmp_path, tiny_csv, capsys):
    """Study A searches 3 trials; study B with --warm-start A trains A's two best configs
    first, reading the image cache A wrote (same data, same network: same cache keys)."""
    runs = tmp_path / "runs"
    common = ["--space", str(TINY_SPACE), "--data", str(tiny_csv), "--runs-dir", str(runs),
              "--no-progress"]
    assert cli.main(["run", "--trials", "3", "--study", "A", *common]) == 0
    capsys.readouterr()
    cache = {p.name: p.stat().st_mtime_ns for p in (runs / "cache").iterdir()}
    assert cli.main(["run", "--trials", "2", "--study", "B", "--warm-start", "A",
                     "--warm-start-top", "2", *common]) == 0
    storage = f"sqlite:///{runs / 'optuna.db'}"
    a = optuna.load_study(study_name="A", storage=storage)
    b = optuna.load_study(study_name="B", storage=storage)
    best = sorted(a.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: -t.value)[:2]
    trials = b.get_trials()
    assert [t.params for t in trials] == [t.params for t in best]
    assert [trial_record.read(t).warm_start for t in trials] == [f"A#{t.number}" for t in best]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert "warm start: queued 2 config(s) from A, best first: " in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (runs / "cache").iterdir()} == cache
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    tagged = client.search_runs([client.get_experiment_by_name("B").experiment_id],
                                "tags.`search.role` = 'trial'")
    assert sorted(r.data.tags["search.warm_start"] for r in tagged) == \
        sorted(f"A#{t.number}" for t in best)
