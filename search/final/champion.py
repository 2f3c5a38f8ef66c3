"""Which final-model candidate becomes the `champion`, and telling the user: the rule
(`choose`) over `Candidate` records, the table `search best` prints, and the registry
versions and aliases. The candidates themselves are built and scored in `search.final.candidates`.
No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean

from search.settings import Settings

BEST_TRIAL, REFIT, ENSEMBLE, PER_HEAD = "best-trial", "refit", "ensemble", "per-head"  # aliases
SELECTION = "selection"


def member(trial) -> dict:
    """A candidate's record of one member trial (a TrialRecord): what its members list holds."""
    return {"trial": trial.number, "run_id": trial.run_id}


@dataclass
class Candidate:
    """One final model: its members ([{"trial", "run_id"}, ...], per-head: with "heads") and
    its per-head scores (search.train.metrics.scores_with_ci) on the validation and test rows."""

    name: str  # best-trial | refit | ensemble-K | per-head | selection
    alias: str  # its own registry alias
    members: list[dict]
    model_uri: str | None = None
    run_id: str | None = None
    val: dict | None = None  # None: it trained on the validation rows (refit)
    test: dict | None = None  # None: the study has no test rows
    note: str = ""  # how it was made (the refit's epochs, the per-head map, the flips)
    reused: bool = False  # found already built, from an earlier `search best`
    probs: dict = field(default_factory=dict, repr=False)  # {"val"|"test": {head: [N, k]}}
    details: dict = field(default_factory=dict)  # more to report (selection: without flips)

    @property
    def val_mean(self) -> float | None:
        return mean_accuracy(self.val)

    @property
    def test_mean(self) -> float | None:
        return mean_accuracy(self.test)

    def document(self) -> dict:
        return {"name": self.name, "alias": self.alias, "members": self.members,
                "note": self.note, "model_uri": self.model_uri, "mlflow_run_id": self.run_id,
                "reused": self.reused, "trained_on_validation": self.val is None,
                "val_mean_accuracy": self.val_mean, "test_mean_accuracy": self.test_mean,
                "val": self.val, "test": self.test, **self.details}


@dataclass
class Final:
    """The candidates built, the one chosen as champion, and why."""

    candidates: list[Candidate]
    chosen: Candidate
    why: str
    val_rows: int
    test_rows: int

    def document(self) -> dict:
        return {"candidates": [c.document() for c in self.candidates],
                "champion": self.chosen.name, "why": self.why,
                "validation_rows": self.val_rows, "test_rows": self.test_rows}


def mean_accuracy(scores: dict | None) -> float | None:
    """The mean over heads of per-head scores' accuracy; None without scores."""
    return None if not scores else fmean(s["accuracy"] for s in scores.values())


def choose(candidates: list[Candidate], test_rows: int) -> tuple[Candidate, str]:
    """The champion and one line why: the best mean test accuracy. Without test rows there
    is no fair comparison: every validation figure here was selected on those very rows (the
    best trial is the maximum over trials, the per-head model takes each head's maximum) and
    the refit trained on them. One check is honest there: the selection chosen on one half of
    the validation rows and scored on the other, against the best trial chosen and scored the
    same way, over three random 2-fold splits (`search.final.selection.cross_validated`);
    where it wins, the selection is champion (that check compares it with the single best
    trial only: the refit and the mean ensemble cannot be checked on rows they did not see,
    and the flips are decided afterwards on all the rows). Otherwise the order is fixed by
    what more data and averaging buy: the refit (the best config on 25% more rows, AutoGluon's
    refit_full default), else the mean ensemble (averaging K models rarely scores below its
    best member), else the best trial; per-head is never chosen on validation alone. Ties go to the candidate listed first (the single
    best trial, then the refit: cheaper to serve)."""
    if test_rows:
        chosen = max(candidates, key=lambda c: c.test_mean)
        others = "; ".join(f"{c.name} {c.test_mean:.4f}" for c in candidates if c is not chosen)
        return chosen, (f"best mean accuracy on the {test_rows} held-out test rows "
                        f"({chosen.test_mean:.4f}" + (f" vs {others})" if others else ")"))
    by_alias = {c.alias: c for c in candidates}
    checked = by_alias.get(SELECTION) and by_alias[SELECTION].details.get("cross_validated")
    if checked and checked["selection"] > checked["best_trial"]:
        return by_alias[SELECTION], (
            f"the ensemble selection: without held-out test rows (run the search with "
            f"--test-fraction to compare every candidate) it is the one whose gain was checked "
            f"on rows it was not chosen on: cross-validated on the validation rows, "
            f"{checked['selection']:.4f} vs the single best trial's (chosen the same way) "
            f"{checked['best_trial']:.4f}")
    for alias, why in ((REFIT, "the best trial's config trained on the train + validation "
                               "rows"),
                       (ENSEMBLE, "the mean of the best kept models"),
                       (BEST_TRIAL, "the best trial")):
        if alias in by_alias:
            chosen = by_alias[alias]
            break
    return chosen, (f"{why}: without held-out test rows (run the search with --test-fraction "
                    f"to compare them) the validation figures are no fair comparison: they "
                    f"were selected on those rows, and the refit trained on them")


def print_table(final: Final, out) -> None:
    """candidate, members, val mean, test mean, the choice; then one line why."""
    test = final.test_rows > 0
    print(f"  {'candidate':<13}{'members':<22}{'val mean':>11}"
          + (f"{'test mean':>11}" if test else ""), file=out)
    for c in final.candidates:
        members = ", ".join(f"#{m['trial']}" for m in c.members)
        if c.alias == REFIT:
            members += f" ({c.note})"
        if len(members) > 21:
            members = members[:18] + "..."
        val = f"{c.val_mean:>11.4f}" if c.val is not None else f"{'trained on':>11}"
        line = f"  {c.name:<13}{members:<22}{val}" + (f"{c.test_mean:>11.4f}" if test else "")
        print(line + ("  <- champion" if c is final.chosen else ""), file=out)
    print(f"champion: {final.chosen.name}: {final.why}", file=out)


def register(settings: Settings, name: str, final: Final, out) -> list[dict]:
    """Register every built candidate but the best trial (search.final.results registers that) under
    `name`, each with its own alias and `champion` on the chosen one; [{version, candidate,
    aliases}]."""
    from search.track import registry
    from search.track.tracking import using

    done = []
    with using(settings.tracking_uri):
        for c in final.candidates:
            if c.alias == BEST_TRIAL:
                continue
            aliases = [c.alias] + ([registry.CHAMPION] if c is final.chosen else [])
            version = registry.register(c.model_uri, name, c.run_id, aliases)
            print(f"{name} version {version} ({c.name}): {', '.join(aliases)}", file=out)
            done.append({"version": version, "candidate": c.name, "aliases": aliases})
    return done
