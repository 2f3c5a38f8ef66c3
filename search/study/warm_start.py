"""Warm start: a search that begins with the best configs of earlier studies (`--warm-start`).

`plan` reads the named studies of the same storage (read-only, before anything is written),
refuses one that is missing or was run on other heads or label vocabularies, and picks their
best `--warm-start-top` distinct configs by `trial_record.score` (the ranking of `search
best`), fitted to this search's space; `enqueue` queues those the study does not hold yet.
`hint` is the one line that suggests the flag when a new study shares its data and heads
with one that exists.

Why the sampled params (`enqueue_trial(params)`) and not a whole config, as baselines are
enqueued (`FIXED_CONFIG_ATTR`): params are the space's own distributions. Each value is
checked against the space of this search (a key it no longer samples, a value out of range, a
choice it no longer offers, a pinned value that differs: the config is skipped, with one line
naming the trial and why); a key the space samples now but the earlier trial did not is drawn
as usual; the trial is an ordinary sampled one, so TPE learns from it like from any other and
conditions, pins and `lr_ratio` resolve as they do for every trial. A whole config would
bypass all of that and carry the earlier space's pins along. An earlier baseline, which has
no params, is skipped: the space's own baselines run again anyway (unless --no-baselines).

Enqueued only by the process that starts the search (`OptunaEngine.open`), never by workers
that join it. Each queued trial records where it came from (user attr `warm_start`,
'STUDY#N'), so running the same command again enqueues nothing twice; a config equal to one
the study already holds (same params) is not queued again either. The selection depends only
on the earlier studies' stored trials, in a fixed order (score, then study as named, then trial
number): the same command on the same state queues the same trials.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from search.errors import UsageError
from search.settings import Settings, mask
from search.space.param import SPLIT_CHOICES

PREFIX = "warm start: "


@dataclass(frozen=True)
class Candidate:
    """One earlier trial's params, fitted to this search's space."""

    ref: str  # 'STUDY#N'
    params: dict
    score: float


@dataclass(frozen=True)
class Plan:
    """What --warm-start queues, best first, and the lines saying what it left out."""

    sources: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    skipped: tuple[str, ...]


def plan(session) -> Plan | None:
    """The configs --warm-start asks for (None without the flag); reads only. A named study
    that does not exist, is this study itself, or has other heads or label vocabularies: a
    UsageError, before anything is written."""
    from search.study.study import setup

    opts = session.options
    if not opts.warm_start:
        return None
    if session.study in opts.warm_start:
        raise UsageError(f"--warm-start names study {session.study!r}, the one this search "
                         f"runs; name earlier studies (`search studies` lists them)")
    store, found = _studies(session.settings)
    for name in opts.warm_start:
        if name not in found:
            known = ", ".join(sorted(found)) or "none"
            raise UsageError(f"--warm-start: no study {name!r} in "
                             f"{mask(session.settings.storage)} (studies there: {known})")
        _check_compatible(name, setup(found[name]), session.table)
    ranked = _ranked(store, found, opts.warm_start)
    taken: list[Candidate] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for name, trial, score in ranked:
        if len(taken) >= opts.warm_start_top:
            break
        ref = f"{name}#{trial.number}"
        if not trial.params:
            skipped.append(f"{PREFIX}skipped {ref}: a baseline (a whole config, no sampled "
                           f"params); the space's own baselines run as usual")
            continue
        params, why = fit(session.space, trial.params)
        if why:
            skipped.append(f"{PREFIX}skipped {ref}: {why}")
            continue
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in seen:  # a config as good as a better-ranked one adds nothing
            seen.add(key)
            taken.append(Candidate(ref, params, score))
    return Plan(tuple(opts.warm_start), tuple(taken), tuple(skipped))


def _ranked(store, found: dict, names) -> list:
    """(study, frozen trial, score) of the named studies' COMPLETE trials, best first by
    `trial_record.score` in each study's direction (NaN last), then in the order the studies
    are named, then by trial number: one order, whatever the storage returns."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from search.study import trial_record

    keyed = []
    for order, name in enumerate(names):
        directions = found[name].directions
        sign = -1.0 if directions == [StudyDirection.MINIMIZE] else 1.0
        for t in store.get_all_trials(store.get_study_id_from_name(name), deepcopy=False,
                                      states=(TrialState.COMPLETE,)):
            score = trial_record.score(t)
            nan = math.isnan(score)
            keyed.append(((nan, 0.0 if nan else -sign * score, order, t.number), name, t, score))
    return [item[1:] for item in sorted(keyed, key=lambda item: item[0])]


def enqueue(study, chosen: Plan) -> list[str]:
    """Queue the plan's configs the study does not hold yet; the lines to print."""
    from search.study import trial_record

    trials = study.get_trials(deepcopy=False)
    refs = {trial_record.read(t).warm_start for t in trials}
    held = [t.system_attrs.get("fixed_params", t.params) for t in trials]
    queued, already = [], 0
    for c in chosen.candidates:
        if c.ref in refs or c.params in held:
            already += 1
            continue
        study.enqueue_trial(c.params, user_attrs=trial_record.warm_start_attrs(c.ref))
        held.append(c.params)
        queued.append(f"{c.ref} ({c.score:.4f})")
    lines = list(chosen.skipped)
    where = ", ".join(chosen.sources)
    if queued:
        lines.append(f"{PREFIX}queued {len(queued)} config(s) from {where}, best first: "
                     f"{', '.join(queued)}")
    if already:
        lines.append(f"{PREFIX}{already} config(s) from {where} already in the study, not "
                     f"queued again")
    if not chosen.candidates:
        lines.append(f"{PREFIX}nothing to queue: {where} holds no complete trial whose "
                     f"params fit this space")
    return lines


def fit(space, params: dict) -> tuple[dict | None, str | None]:
    """(the params to enqueue, None) when an earlier trial's params fit `space`, else (None,
    why not). A key the space pins to the same value is left out (nothing to suggest)."""
    by_name = {p.name: p for p in space.params}
    kept = {}
    for name, value in params.items():
        param = by_name.get(name)
        if param is None:
            return None, f"the space has no {name} (the trial had {value!r})"
        d = param.distribution
        if d is None:
            if _plain(name, param.value) != _plain(name, value):
                return None, f"{name} is pinned to {param.value!r} here, the trial had {value!r}"
            continue
        why = _outside(d, value)
        if why:
            return None, f"{name}={value!r} {why}"
        kept[name] = value
    return kept, None


def _outside(d, value) -> str | None:
    """Why `value` is not one `d` (an Optuna distribution) can draw, or None."""
    import optuna.distributions as od

    if isinstance(d, od.CategoricalDistribution):
        if any(value == c and isinstance(value, bool) == isinstance(c, bool)
               for c in d.choices):
            return None
        return f"is not one of the choices now ({', '.join(map(str, d.choices))})"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number, and the space samples numbers"
    if isinstance(d, od.IntDistribution) and value != int(value):
        return "is not a whole number, and the space samples whole numbers"
    if not d.low <= value <= d.high:
        return f"is outside the range now ({d.low:g} to {d.high:g})"
    if d.step is not None:
        steps = (value - d.low) / d.step
        if not math.isclose(steps, round(steps), abs_tol=1e-8):
            return f"is not on the range's steps now ({d.low:g}, {d.low + d.step:g}, ...)"
    return None


def _plain(name: str, value):
    """A value in one form, to compare a pin with a sampled value: an image size or a
    per-block list ('AxB' as Optuna stores it, an int for a square size) as a list."""
    if name in SPLIT_CHOICES and isinstance(value, str):
        value = [int(v) for v in value.split("x")]
    if name == "image_size" and isinstance(value, int):
        value = [value, value]
    return list(value) if isinstance(value, (list, tuple)) else value


def hint(session) -> str | None:
    """One line suggesting --warm-start when this study is new and another study of the same
    storage has complete trials on the same data and heads; else None. Reads only."""
    from optuna.trial import TrialState

    from search.study.study import setup

    if session.options.warm_start:
        return None
    store, found = _studies(session.settings)
    if session.study in found:
        return None
    data = session.table.fingerprint()
    same = [name for name, frozen in found.items()
            if setup(frozen).data_fingerprint == data
            and set(setup(frozen).heads) == set(session.table.heads)
            and store.get_all_trials(store.get_study_id_from_name(name), deepcopy=False,
                                     states=(TrialState.COMPLETE,))]
    if not same:
        return None
    names = ",".join(same)
    return (f"hint: {'study' if len(same) == 1 else 'studies'} {', '.join(map(repr, same))} "
            f"in this storage searched the same data and heads; add --warm-start {names} to "
            f"start from {'its' if len(same) == 1 else 'their'} best configs")


def _studies(settings: Settings):
    """(read-only storage or None, {name: FrozenStudy}) of the storage; a local SQLite file
    that does not exist yet holds none (and is not created)."""
    from search.study.storage import storage

    url = settings.storage
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None, {}
    store = storage(url, read_only=True)
    return store, {s.study_name: s for s in store.get_all_studies()}


def _check_compatible(name: str, earlier, table) -> None:
    """An earlier study of other heads or other label vocabularies tuned another task."""
    heads = tuple(table.heads)
    if earlier.heads and set(earlier.heads) != set(heads):
        raise UsageError(f"--warm-start: study {name!r} has heads {','.join(earlier.heads)}, "
                         f"this search {','.join(heads)}; warm-start from a study of the "
                         f"same heads")
    for head, labels in (earlier.labels or {}).items():
        mine = table.vocab.get(head)
        if mine is not None and set(labels) != set(mine):
            raise UsageError(f"--warm-start: head {head!r} has labels {', '.join(labels)} in "
                             f"study {name!r}, {', '.join(mine)} here; warm-start from a "
                             f"study of the same label vocabularies")
