"""A space without what can only fail or mislead here for want of ImageNet weight files:
the edits `search run` makes to a space before its first trial, each with one line saying
why (search.model.weights says what is available)."""

from __future__ import annotations

import dataclasses

from search.model import weights
from search.space.param import Param, family_alpha
from search.space.space import Space


def without_missing_weights(space: Space) -> tuple[Space, list[str]]:
    """The space without what can only fail or mislead here for want of ImageNet weights
    (no local file, no download): baselines that need them are dropped, and a sampled choice
    of pretrained backbones under `weights: auto` (which would train them from random
    weights) is pinned to the from-scratch net. Each with one line saying why."""
    notes = []
    how = ("put the Keras *_no_top.h5 files in a folder named by SEARCH_WEIGHTS_DIR "
           "(or connect to the internet)")
    kept = []
    for entry in space.enqueue:
        config = entry["config"]
        if config.get("backbone") == "pretrained" and config.get("weights") in (
                "imagenet", "auto") and not weights.available(config["family"],
                                                              config.get("alpha", 0.35)):
            notes.append(f"skipped baseline {entry['name']}: no ImageNet weights for "
                         f"{config['family']} here; {how}")
        else:
            kept.append(entry)
    space = dataclasses.replace(space, enqueue=tuple(kept))
    space, note = _without_missing_nets(space, how)
    notes += note
    params = {p.name: p for p in space.params}
    backbone, chosen = params.get("backbone"), params.get("weights")
    if backbone is None or backbone.distribution is None or chosen is None \
            or chosen.value != "auto":
        return space, notes
    options = {name: (p.distribution.choices if p.distribution is not None else [p.value])
               for name, p in params.items() if name in ("family", "alpha")}
    families = options.get("family", ["mobilenet_v2"])
    pairs = [(f, a) for f in families for a in options.get("alpha", [0.35])]
    if "family_alpha" in params:
        nets = params["family_alpha"]
        pairs = [family_alpha(c) for c in (nets.distribution.choices if nets.distribution
                                           is not None else [nets.value])]
        families = sorted({f for f, _ in pairs})
    if any(weights.available(f, a) for f, a in pairs):
        return space, notes
    notes.append(f"pretrained backbones left out: no ImageNet weights for "
                 f"{', '.join(families)} here (weights: auto would train them from random "
                 f"weights); {how}")
    return space.pin(backbone="separable"), notes


def _without_missing_nets(space: Space, how: str) -> tuple[Space, list]:
    """A sampled `family_alpha` without the choices whose ImageNet weights cannot be had
    here (under weights imagenet or auto), with one line naming them: such a trial could
    only fail or train a "pretrained" net from random weights. When no choice has weights,
    the key is left as it is, for the backbone rule below (or the trial's own error)."""
    import optuna.distributions as od  # only here: a session imports no Optuna otherwise

    params = {p.name: p for p in space.params}
    nets, chosen = params.get("family_alpha"), params.get("weights")
    if nets is None or nets.distribution is None or (
            chosen is not None and chosen.value not in ("imagenet", "auto")):
        return space, []
    choices = list(nets.distribution.choices)
    kept = [c for c in choices if weights.available(*family_alpha(c))]
    if not kept or kept == choices:
        return space, []
    missing = [c for c in choices if c not in kept]
    narrowed = (Param(name=nets.name, value=kept[0], when=nets.when) if len(kept) == 1 else
                Param(name=nets.name, distribution=od.CategoricalDistribution(kept),
                      when=nets.when))
    space = dataclasses.replace(space, params=tuple(
        narrowed if p.name == nets.name else p for p in space.params))
    return space, [f"family_alpha choice(s) {', '.join(missing)} left out: no ImageNet "
                   f"weights for them here; {how}"]
