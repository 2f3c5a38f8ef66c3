"""`search report`: one self-contained HTML page about a study, readable offline and shareable
as a single file (plotly.js is inlined once).

This module gathers numbers from the Optuna study (COMPLETE trials, so a running study works);
`search.views.best_trial` reads the best trial's MLflow run for its sections, and
`search.views.figures` draws them. Whatever cannot be read becomes a note in its section, never
an error.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

from search.errors import UsageError
from search.settings import Settings, mask
from search.study import trial_record
from search.study.pareto import Row, choose_heads, front_rows, require_rows
from search.study.trial_record import TrialRecord
from search.views import best_trial, figures
from search.views.page import Section, write

TOP = 5  # best trials compared with the baselines


def report(settings: Settings, study_name: str, *, out: str | None = None,
           pair: str | None = None) -> int:
    """Write the report (default runs/report-<study>.html) and print its path."""
    from search.study.study import load_study

    study = load_study(settings, study_name)
    rows = require_rows(study)
    heads = choose_heads(rows, None)
    chosen = choose_pair(rows, heads, pair)
    path = Path(out) if out else default_out(settings, study_name)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    records = {n: trial_record.read(t) for n, t in trials.items()}
    best = records[max(rows, key=lambda r: r.value).trial]
    run = best_trial.run_files(settings, best.run_id)
    objective = objective_name(best)
    sections = [
        pareto_set(rows, heads),
        pair_section(rows, chosen, best.majority or None),
        parameters(rows, trials, objective),
        baselines(rows, records, heads),
        progress(study, objective),
        importance(study, len(rows), objective),
        best_trial.schedule(best, run),
        best_trial.confusions(best, run, heads),
    ]
    write(path, header(study, settings, best, objective), sections, f"Study {study_name}")
    print(f"report: {path}")
    return 0


def default_out(settings: Settings, study_name: str) -> Path:
    return settings.runs_dir / f"report-{study_name}.html"


def choose_pair(rows: list[Row], heads: list[str], wanted: str | None) -> tuple[str, str] | None:
    """--pair, or the two heads whose accuracy varies most across trials (None: one head)."""
    if wanted:
        pair = choose_heads(rows, wanted, flag="--pair")
        if len(pair) != 2:
            raise UsageError(f"--pair needs exactly two heads, e.g. --pair {','.join(heads[:2])}")
        return pair[0], pair[1]
    if len(heads) < 2:
        return None
    spread = {h: max(r.head_accuracy[h] for r in rows) - min(r.head_accuracy[h] for r in rows)
              for h in heads}
    first, second = sorted(heads, key=lambda h: -spread[h])[:2]
    return first, second


def objective_name(record: TrialRecord) -> str:
    """Which recorded mean the objective value is (the study does not store its name)."""
    for key in ("mean_accuracy", "mean_balanced_accuracy"):
        if getattr(record, key) == record.score:
            return key
    return "objective"


# ---------------------------------------------------------------------------------------------
# Sections, in page order


def pareto_set(rows: list[Row], heads: list[str]) -> Section:
    front = front_rows(rows, heads)
    return Section("pareto-set", "Pareto set", [figures.pareto_table(front, heads)],
                   f"{len(front)} of {len(rows)} completed trial(s) are Pareto-optimal over the "
                   f"{len(heads)} heads' validation accuracy: no other trial is at least as "
                   f"accurate on every head and more accurate on one. Best mean first.")


def pair_section(rows: list[Row], pair: tuple[str, str] | None,
                 majority: dict | None) -> Section:
    if pair is None:
        return Section("pareto-pair", "Trade-off between two heads",
                       [figures.note("the trials have a single head")])
    return Section("pareto-pair", f"Trade-off: {pair[0]} vs {pair[1]}",
                   [figures.pareto_scatter(rows, pair, majority)],
                   "Red: the trials no other trial beats on both heads. The default pair is the "
                   "two heads whose accuracy varies most; choose with --pair.")


def parameters(rows: list[Row], trials: dict, objective: str) -> Section:
    kinds = param_kinds([trials[r.trial] for r in rows])
    title = "Parameters against per-head accuracy"
    if not kinds:
        return Section("parameters", title, [figures.note("no trial sampled any parameter")])
    fig = figures.parallel_coordinates(
        [trials[r.trial].params for r in rows], [r.head_accuracy for r in rows],
        [r.value for r in rows], kinds, objective)
    return Section("parameters", title, [fig],
                   "One line per completed trial, coloured by the objective; drag along an axis "
                   "to filter. Categorical parameters are evenly spaced ticks, log-scaled ones "
                   "are on a log axis, and 'unset' marks parameters a trial did not sample "
                   "(conditional ones and enqueued baselines).")


def param_kinds(trials) -> dict[str, str]:
    """categorical, log or linear for every parameter any of the trials sampled."""
    from optuna.distributions import CategoricalDistribution

    kinds: dict[str, str] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            kinds.setdefault(name, "categorical" if isinstance(dist, CategoricalDistribution)
                             else "log" if getattr(dist, "log", False) else "linear")
    return kinds


def baselines(rows: list[Row], records: dict, heads: list[str]) -> Section:
    top = sorted(rows, key=lambda r: (-r.value, r.trial))[:TOP]
    marked = [r for r in rows if records[r.trial].baseline is not None and r not in top]
    groups = [(_label(r, records[r.trial]), r.head_accuracy, None) for r in top + marked]
    majority = records[top[0].trial].majority
    if majority:
        groups.append(("majority class", majority, figures.OTHERS))
    return Section("baselines", "Best trials against the baselines",
                   [figures.grouped_bars(groups, heads)],
                   f"The top {len(top)} trials by objective, every completed enqueued baseline "
                   f"trial and the majority-class accuracy (always predicting the commonest "
                   f"training label).")


def _label(row: Row, record: TrialRecord) -> str:
    name = record.baseline
    return f"#{row.trial}{f' {name}' if name else ''} ({row.value:.3f})"


def progress(study, objective: str) -> Section:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)])
              for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
              if t.intermediate_values]
    return Section("history", "Objective over time",
                   [figures.history([(t.number, trial_record.score(t)) for t in done], pruned,
                                    objective)])


def importance(study, complete: int, objective: str) -> Section:
    title = "Parameter importances"
    if complete < 2:
        return Section("importance", title, [figures.note(
            f"importances need at least 2 completed trials; this study has {complete}")])
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():  # "fewer than 2 trials in a regime": expected early on
            warnings.simplefilter("ignore", UserWarning)
            values = optuna.importance.get_param_importances(study)
    except Exception as exc:  # too few or identical trials, a dynamic space: say so, go on
        return Section("importance", title, [figures.note(
            f"importances could not be computed: {exc}")])
    if not values:
        return Section("importance", title, [figures.note("no parameter to assess")])
    return Section("importance", title, [figures.importances(values, objective)],
                   "How much each parameter explains the objective "
                   "(optuna.importance.get_param_importances, its default evaluator).")


# ---------------------------------------------------------------------------------------------
# The page


def header(study, settings: Settings, best: TrialRecord, objective: str) -> str:
    states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(states.items()))
    return (f"<p>storage <code>{html.escape(mask(settings.storage))}</code> · MLflow "
            f"<code>{html.escape(mask(settings.tracking_uri))}</code></p>"
            f"<p>{sum(states.values())} trial(s): {html.escape(counts)} · best trial "
            f"#{best.number}: {html.escape(objective)} = {best.score:.4f}"
            + weights_note(best) + "</p>" + test_table(best))


def weights_note(record: TrialRecord) -> str:
    """Said when a 'pretrained' trial had no ImageNet weights (weights: auto, offline)."""
    if not record.weights_note:
        return ""
    return (f" · <strong>trained from random weights</strong> "
            f"({html.escape(record.weights_note)})")


def test_table(best: TrialRecord) -> str:
    """The champion on the held-out test rows (`--test-fraction`) beside its validation
    accuracy, per head with 95% bootstrap intervals; '' when the study has no test rows."""
    test = best.test
    if not test:
        return ""
    val = best.accuracy
    rows = "".join(
        f"<tr><td>{html.escape(h)}</td><td>{val.get(h, float('nan')):.3f}</td>"
        f"<td>{s['accuracy']:.3f} [{s['accuracy_ci'][0]:.3f}, {s['accuracy_ci'][1]:.3f}]</td>"
        f"<td>{s['balanced_accuracy']:.3f}</td><td>{s['majority']:.3f}</td></tr>"
        for h, s in test.items())
    return (f"<table id='test'><caption>Best trial on the {best.test_rows} held-out test rows "
            f"(no trial trained or validated on them)</caption><tr><th>head</th>"
            f"<th>validation</th><th>test [95% CI]</th><th>test balanced</th>"
            f"<th>test majority</th></tr>"
            f"{rows}</table>")
