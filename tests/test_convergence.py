"""--until-converged: the rule on hand-made studies (flat values converge, a rising series does
not), a tiny real study that stops before --trials and says so, and the refusals."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution

from search import cli
from search.study import convergence

from conftest import TINY_SPACE

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

HEADS = ("gender", "age")


def _study(values, heads=None, direction="maximize"):
    study = optuna.create_study(direction=direction)
    for i, value in enumerate(values):
        attrs = {"head_accuracy": heads(value)} if heads else {}
        study.add_trial(optuna.create_trial(
            params={"x": i / 100}, distributions={"x": FloatDistribution(0, 1)}, value=value,
            user_attrs=attrs))
    return study


def test_flat_values_converge_and_a_rising_series_does_not():
    flat = _study([0.60, 0.61, 0.60, 0.605, 0.61, 0.60, 0.608, 0.609, 0.61, 0.607],
                  heads=lambda v: {"gender": v + 0.1, "age": v - 0.1})
    verdict = convergence.verdict(flat, n_val=100, min_trials=10)
    assert verdict.converged and verdict.window == 5
    assert verdict.improvement == pytest.approx(0.0)
    assert verdict.noise == pytest.approx(
        (convergence.standard_error(0.71, 100) + convergence.standard_error(0.51, 100)) / 2)
    assert verdict.line().startswith("converged after 10 complete trials: the best rose by "
                                     "0.0000 in the last 5 of them, below the validation "
                                     "noise 0.0")

    rising = _study([0.30 + 0.04 * i for i in range(10)])  # no head attrs: value as accuracy
    verdict = convergence.verdict(rising, n_val=100, min_trials=10)
    assert not verdict.converged and verdict.improvement == pytest.approx(0.20)
    assert verdict.noise == pytest.approx(convergence.standard_error(0.66, 100))
    assert verdict.line().startswith("not converged: the best rose by 0.2000")


def test_the_rule_waits_for_min_trials_and_takes_minimised_studies():
    early = convergence.verdict(_study([0.5] * 9), n_val=50, min_trials=10)
    assert not early.converged and early.improvement is None and early.trials == 9
    assert "9 of at least 10 complete trials" in early.line()
    falling = _study([1.0 - 0.1 * i for i in range(6)], direction="minimize")
    verdict = convergence.verdict(falling, noise=0.05, min_trials=6)
    assert not verdict.converged and verdict.improvement == pytest.approx(0.3)
    assert convergence.verdict(falling, noise=0.5, min_trials=6).converged
    with pytest.raises(ValueError, match="single-objective"):
        convergence.verdict(optuna.create_study(directions=["maximize", "minimize"]), 10)


def test_a_search_of_near_identical_trials_stops_before_its_target(tmp_path, tiny_csv, capsys):
    """Trials that differ by a dropout of at most 0.001 score alike: after 3 complete trials the
    best has not moved by the validation noise, so the run stops (exit 0) and says why."""
    space = tmp_path / "flat.yaml"
    space.write_text("\n".join(
        "  dropout: {type: float, low: 0.0, high: 0.001}" if line.startswith("  dropout:")
        else line for line in TINY_SPACE.read_text().splitlines()
        if not line.startswith(("  width:", "  cutout:", "  clr_mode:", "  base_lr:",
                                "  lr_ratio:", "  gamma:"))) + "\n")
    runs = tmp_path / "runs"
    code = cli.main(["run", "--trials", "8", "--until-converged", "3", "--space", str(space),
                     "--data", str(tiny_csv), "--heads", ",".join(HEADS), "--study", "flat",
                     "--runs-dir", str(runs), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "converged after 3 complete trials: the best rose by" in out
    assert "(--until-converged)" in out and "5 of --trials 8 left for the final model" in out
    study = optuna.load_study(study_name="flat", storage=f"sqlite:///{runs / 'optuna.db'}")
    assert len(study.trials) == 3


def test_until_converged_is_refused_with_several_objectives_or_keras_tuner(tmp_path, tiny_csv,
                                                                          capsys):
    space = tmp_path / "multi.yaml"
    space.write_text(TINY_SPACE.read_text() + "objectives: [mean_accuracy:max, params:min]\n")
    runs = tmp_path / "runs"
    for flags in (["--space", str(space)],
                  ["--space", str(TINY_SPACE), "--engine", "keras-tuner", "--no-baselines"]):
        code = cli.main(["run", "--until-converged", *flags, "--data", str(tiny_csv),
                         "--runs-dir", str(runs)])
        err = capsys.readouterr().err
        assert code == 2 and "--until-converged" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not runs.exists()
