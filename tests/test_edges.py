"""The edge check (search.study.edges) on trials of a space with spaces/hvc.yaml's levers as
issue 30 found them: each trial's config is what `Space.sample` makes of its values, its score
is set by the test. A range's bound and the end of an ordered choice are found with their
figures; an interior best, unordered choices, pinned keys and too few trials say nothing; a
conditional key counts only where it was active. Then the lines in `search best` and in
`search run`'s summary, on real SQLite studies (trials added with their params and records,
nothing trained)."""

from __future__ import annotations

import optuna
import yaml

from search import cli
from search.space import space as space_lib
from search.study import edges, trial_record
from search.study.trial_record import TrialRecord

from conftest import TINY_SPACE

# spaces/hvc.yaml's searched keys and some of its pins when issue 30 was filed (a copy, so
# that widening the shipped space does not move these figures).
HVC_YAML = """
name: hvc-issue-30
params:
  backbone:           pretrained
  family_alpha:       {choices: ["mobilenet_v2:0.5", "mobilenet_v2:0.35", "mobilenet:0.25"]}
  image_size:         {choices: [[224, 128], [160, 96]]}
  crop:               auto
  fine_tune_fraction: {choices: [0.0, 0.25, 0.5]}
  probe_epochs:       {type: int, low: 4, high: 10, when: {fine_tune_fraction: [0.25, 0.5]}}
  fine_tune_lr_scale: {type: float, low: 0.03, high: 0.3, log: true,
                       when: {fine_tune_fraction: [0.25, 0.5]}}
  neck_units:         {choices: [0, 256, 512]}
  neck_dropout:       {type: float, low: 0.0, high: 0.5}
  head_units:         {choices: [0, 64, 128]}
  head_dropout:       {type: float, low: 0.0, high: 0.4}
  shift:              0.08
  cutout:             {type: float, low: 0.0, high: 0.6}
  clr_mode:           {choices: [triangular, triangular2, exp_range]}
  base_lr:            {type: float, low: 1.0e-4, high: 1.5e-3, log: true}
  lr_ratio:           {type: float, low: 2.0, high: 8.0, log: true}
  step_size_epochs:   {type: float, low: 1.0, high: 6.0}
  gamma:              {type: float, low: 0.999, high: 0.99995, when: {clr_mode: exp_range}}
  batch_size:         {choices: [128, 256]}
  epochs:             24
  patience:           5
"""
HVC = space_lib.parse(yaml.safe_load(HVC_YAML))
# One value per searched key, each inside its range.
MIDDLE = {"family_alpha": "mobilenet_v2:0.5", "image_size": "224x128",
          "fine_tune_fraction": 0.25, "probe_epochs": 7, "fine_tune_lr_scale": 0.1,
          "neck_units": 256, "neck_dropout": 0.25, "head_units": 64, "head_dropout": 0.2,
          "cutout": 0.3, "clr_mode": "triangular", "base_lr": 4e-4, "lr_ratio": 4.0,
          "step_size_epochs": 3.0, "batch_size": 128}


def record(number: int, score: float, **values) -> TrialRecord:
    """A finished trial of the HVC space with these values (the others in the middle)."""
    params = {**MIDDLE, **values}
    if params["clr_mode"] == "exp_range":
        params.setdefault("gamma", 0.9995)
    config = HVC.sample(optuna.trial.FixedTrial(params))
    return TrialRecord(number, values=(score,), config=config.to_dict(),
                       accuracy={"gender": score})


def found(records) -> dict[str, edges.Edge]:
    return {e.name: e for e in edges.find(HVC.params, records)}


def test_a_range_bound_is_found_with_its_figures():
    """base_lr (log range 1e-4..1.5e-3): the best three crowd the high bound."""
    lrs = [1.45e-3, 1.4e-3, 1.48e-3, 2e-4, 5e-4, 1e-4, 8e-4, 3e-4]
    got = found([record(n, 0.70 - 0.01 * n, base_lr=lr) for n, lr in enumerate(lrs)])
    edge = got["base_lr"]
    assert (edge.side, edge.best, edge.bound, edge.near, edge.top) == \
        ("high", 1.45e-3, 1.5e-3, 3, 3)
    assert edge.line == ("base_lr: best 1.45e-3, the top 3 within 3% of the range (log scale) "
                         "from the high bound 1.5e-3; widen high")
    # The same best trial alone near the bound, or with one of its two runners-up: no edge.
    for lrs in ([1.45e-3, 2e-4, 3e-4, 1e-4, 5e-4, 8e-4], [1.45e-3, 1.4e-3, 3e-4, 1e-4, 5e-4]):
        assert "base_lr" not in found([record(n, 0.70 - 0.01 * n, base_lr=lr)
                                       for n, lr in enumerate(lrs)])
    # Among 40 trials the top few are four: three of them near the bound suffice.
    lrs = [1.45e-3, 1.4e-3, 3e-4, 1.48e-3] + [1e-4 + 2e-5 * n for n in range(36)]
    edge = found([record(n, 0.70 - 0.001 * n, base_lr=lr) for n, lr in enumerate(lrs)])[
        "base_lr"]
    assert (edge.near, edge.top, edge.trials) == (3, 4, 40)
    assert "3 of the top 4 within 3% of the range" in edge.line


def test_an_ordered_choice_at_its_end_gives_the_best_score_per_choice():
    """The issue's figures: 0.652 (none) → 0.681 (a quarter) → 0.682 (half)."""
    scores = [(0.0, 0.652), (0.0, 0.640), (0.25, 0.681), (0.25, 0.660), (0.5, 0.682),
              (0.5, 0.600)]
    got = found([record(n, s, fine_tune_fraction=f) for n, (f, s) in enumerate(scores)])
    assert got["fine_tune_fraction"].line == (
        "fine_tune_fraction: the best trials sit at the largest choice 0.5 (best per choice: "
        "0.0 0.652, 0.25 0.681, 0.5 0.682); widen it in the space")
    # The best at the end but the middle choice below the first: no rising trend; a rise
    # of under MIN_RISE (0.01) from the first choice to the last: flat, nothing said.
    for scores in ([(0.0, 0.670), (0.25, 0.660), (0.5, 0.682), (0.5, 0.6), (0.0, 0.6)],
                   [(0.0, 0.676), (0.25, 0.679), (0.5, 0.682), (0.5, 0.6), (0.0, 0.6)]):
        assert "fine_tune_fraction" not in found(
            [record(n, s, fine_tune_fraction=f) for n, (f, s) in enumerate(scores)])


def test_nothing_lies_below_zero_off_is_no_edge():
    """neck_units 0 (no neck) and cutout 0.0 (none) win at the low end with a clear trend
    (as in a real hvc study: 0 0.663, 256 0.657, 512 0.641): no line, there is no lower."""
    units = [(0, 0.663), (0, 0.650), (256, 0.657), (256, 0.640), (512, 0.641), (512, 0.630)]
    cutouts = [0.0, 0.01, 0.005, 0.3, 0.5, 0.6]
    got = found([record(n, s, neck_units=u, cutout=c)
                 for n, ((u, s), c) in enumerate(zip(units, cutouts))])
    assert "neck_units" not in got and "cutout" not in got
    # the best crowding a low bound that is not 0 is an edge
    lrs = [1.02e-4, 1.05e-4, 1.01e-4, 4e-4, 8e-4, 1.2e-3]
    edge = found([record(n, 0.70 - 0.01 * n, base_lr=lr) for n, lr in enumerate(lrs)])[
        "base_lr"]
    assert (edge.side, edge.bound) == ("low", 1e-4)


def test_an_interior_best_says_nothing():
    lrs = [4e-4, 3.5e-4, 4.5e-4, 1e-4, 1.5e-3, 2e-4, 1e-3]
    cutouts = [0.3, 0.28, 0.33, 0.0, 0.6, 0.1, 0.5]
    records = [record(n, 0.7 - 0.01 * n, base_lr=lr, cutout=c)
               for n, (lr, c) in enumerate(zip(lrs, cutouts))]
    assert edges.find(HVC.params, records) == []
    assert edges.lines([]) == []


def test_unordered_choices_and_pinned_keys_are_no_levers():
    """clr_mode's last choice and family_alpha's first win with a 'rising' trend in their
    listed order; the pinned keys (patience, epochs, shift, crop) are the same in every trial."""
    modes = ["exp_range", "exp_range", "triangular2", "triangular2", "triangular",
             "triangular"]
    nets = ["mobilenet_v2:0.5", "mobilenet_v2:0.5", "mobilenet_v2:0.35", "mobilenet_v2:0.35",
            "mobilenet:0.25", "mobilenet:0.25"]
    records = [record(n, 0.7 - 0.01 * n, clr_mode=m, family_alpha=f)
               for n, (m, f) in enumerate(zip(modes, nets))]
    assert edges.find(HVC.params, records) == []


def test_a_conditional_key_counts_only_where_it_was_active():
    """probe_epochs is sampled only when fine-tuning; the frozen trials' configs hold its
    default (8, inside the range) and score best, but they never used it."""
    active = [record(n, 0.65 - 0.01 * n, fine_tune_fraction=0.25, probe_epochs=e)
              for n, e in enumerate([10, 10, 10, 5, 6])]
    frozen = [record(10 + n, 0.70 - 0.01 * n, fine_tune_fraction=0.0) for n in range(4)]
    assert frozen[0].config["probe_epochs"] == 8
    edge = found(active + frozen)["probe_epochs"]
    assert (edge.side, edge.best, edge.trials) == ("high", 10, 5)
    assert edge.line == "probe_epochs: best 10, the top 3 at the high bound 10; widen high"
    # Four active trials: too few, whatever the inactive ones hold.
    assert "probe_epochs" not in found(active[:4] + frozen)


def test_too_few_trials_and_baselines_say_nothing():
    scores = [(0.0, 0.652), (0.25, 0.681), (0.5, 0.682), (0.5, 0.6)]
    records = [record(n, s, fine_tune_fraction=f) for n, (f, s) in enumerate(scores)]
    assert edges.find(HVC.params, records) == []
    baseline = record(9, 0.5, fine_tune_fraction=0.0)
    baseline = TrialRecord(9, values=(0.5,), config=baseline.config, baseline="frozen",
                           accuracy={"gender": 0.5})
    assert edges.find(HVC.params, records + [baseline]) == []  # still four


def test_sizes_are_ordered_when_every_side_grows():
    text = HVC_YAML.replace("[[224, 128], [160, 96]]", "[[224, 128], [160, 96], [112, 64]]")
    space = space_lib.parse(yaml.safe_load(text))
    scores = [("112x64", 0.60), ("160x96", 0.65), ("224x128", 0.68), ("224x128", 0.5),
              ("112x64", 0.55)]
    records = [TrialRecord(n, values=(s,), accuracy={"gender": s}, config=space.sample(
        optuna.trial.FixedTrial({**MIDDLE, "image_size": size})).to_dict())
        for n, (size, s) in enumerate(scores)]
    [edge] = edges.find(space.params, records)
    assert edge.line.startswith("image_size: the best trials sit at the largest choice "
                                "224x128 (best per choice: 112x64 0.600, 160x96 0.650,")
    swapped = space_lib.parse(yaml.safe_load(text.replace(
        "[112, 64]", "[96, 160]")))
    assert edges.find(swapped.params, records) == []  # 96x160 vs 160x96: no order


def _study_with(storage: str, name: str, space, rows) -> None:
    """A real SQLite study holding finished trials of `space` with these params and scores,
    each with the record a trial of this harness writes."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for params, score in rows:
        config = space.sample(optuna.trial.FixedTrial(params))
        distributions = {p.name: p.distribution for p in space.params
                         if p.distribution is not None and p.name in params}
        attrs = trial_record.attrs(TrialRecord(0, config=config.to_dict(), mean_accuracy=score,
                                               accuracy={"gender": score}))
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=score, user_attrs=attrs))


def test_search_best_names_the_edges(tmp_path, capsys):
    """`search best` reads the levers from the study's trials (it has no space file); the
    params Optuna stored count, so the inactive gamma of non-exp_range trials is no lever."""
    runs = tmp_path / "runs"
    runs.mkdir()
    scores = [(0.0, 0.652), (0.0, 0.640), (0.25, 0.681), (0.25, 0.660), (0.5, 0.682),
              (0.5, 0.600)]
    rows = [({**MIDDLE, "fine_tune_fraction": f}, s) for f, s in scores]
    for params, _ in rows:
        if params["fine_tune_fraction"] == 0.0:
            del params["probe_epochs"], params["fine_tune_lr_scale"]
    _study_with(f"sqlite:///{runs / 'optuna.db'}", "edgy", HVC, rows)
    assert cli.main(["best", "--study", "edgy", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "best trial #4: value 0.6820" in out
    assert ("  fine_tune_fraction: the best trials sit at the largest choice 0.5 (best per "
            "choice: 0.0 0.652, 0.25 0.681, 0.5 0.682); widen it in the space") in out
    assert out.count("widen") == 1


def test_the_run_summary_names_the_edges(tmp_path, tiny_csv, capsys):
    """`search run` on a study that already holds its trials prints the summary only."""
    runs = tmp_path / "runs"
    runs.mkdir()
    space = space_lib.load(TINY_SPACE)
    lrs = [2.9e-3, 2.95e-3, 2.8e-3, 1.1e-3, 1.5e-3, 2e-3]
    rows = [({"width": 8, "dropout": 0.1, "cutout": 0.2, "clr_mode": "triangular",
              "base_lr": lr, "lr_ratio": 3.0}, 0.5 - 0.01 * n) for n, lr in enumerate(lrs)]
    _study_with(f"sqlite:///{runs / 'optuna.db'}", "edgy", space, rows)
    assert cli.main(["run", "--study", "edgy", "--trials", "6", "--space", str(TINY_SPACE),
                     "--data", str(tiny_csv), "--runs-dir", str(runs), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out
    assert "  base_lr: best 2.9e-3, the top 3 within 6% of the range (log scale) from the " \
           "high bound 3e-3; widen high" in out
