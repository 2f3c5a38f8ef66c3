"""Optuna's samplers and pruners by name, as a space's `sampler:` and `pruner:` mappings.

    sampler: {name: tpe, n_startup_trials: 8}        # tpe | random | gp | cmaes | nsga2 | qmc
    pruner:  {name: median, n_warmup_steps: 4}       # median | percentile | hyperband |
                                                     # successive_halving | wilcoxon |
                                                     # patient | heads | none
    pruner:  {name: patient, patience: 2, wrapped: {name: median}}

Every other key goes to the Optuna class as a keyword argument. `check` builds each once when
the space loads, so an unknown name, a wrong argument or a missing optional package (gp needs
torch, cmaes the cmaes package) is reported then, naming the key, before anything is written.
`heads` is this project's rule over per-head accuracies (search.study.pruning); for Optuna it is no
pruner at all. The tables live with the space, which checks them when it loads; the study
builds from them (search.study.study).
"""

from __future__ import annotations

from search.errors import ConfigError

SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "gp": "GPSampler",
            "cmaes": "CmaEsSampler", "nsga2": "NSGAIISampler", "qmc": "QMCSampler"}
PRUNERS = {"median": "MedianPruner", "percentile": "PercentilePruner",
           "hyperband": "HyperbandPruner", "successive_halving": "SuccessiveHalvingPruner",
           "wilcoxon": "WilcoxonPruner", "patient": "PatientPruner", "heads": None,
           "none": "NopPruner"}
NEEDS = {"gp": "torch", "cmaes": "cmaes", "qmc": "scipy"}
# The `heads` pruner's keys and defaults (search.study.pruning.HeadRule applies the rule).
HEAD_RULE = {"min_heads": 5, "percentile": 50.0, "warmup_epochs": 2, "min_trials": 3,
             "heads": None}


def sampler(spec: dict, seed: int | None):
    import optuna

    args = {k: v for k, v in spec.items() if k != "name"}
    return getattr(optuna.samplers, SAMPLERS[spec["name"]])(seed=seed, **args)


def pruner(spec: dict, *, multi_objective: bool = False):
    """The Optuna pruner of spec; none where Optuna cannot prune (several objectives) and
    for the `heads` rule, which the engine applies itself."""
    import optuna

    if multi_objective or spec["name"] in ("heads", "none"):
        return optuna.pruners.NopPruner()
    args = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] == "patient":
        wrapped = args.pop("wrapped", None)
        inner = pruner(component("pruner.wrapped", wrapped, PRUNERS)) if wrapped else None
        return optuna.pruners.PatientPruner(inner, **args)
    return getattr(optuna.pruners, PRUNERS[spec["name"]])(**args)


def component(kind: str, spec, names) -> dict:
    """A `sampler:`/`pruner:` entry as a mapping with a known name (a bare name is fine)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or spec.get("name") not in names:
        raise ConfigError(f"{kind}.name must be one of {', '.join(names)}, got {spec!r}")
    return dict(spec)


def check(sampler_spec: dict, pruner_spec: dict) -> None:
    """Build both once: what Optuna would refuse is a ConfigError now."""
    import importlib.util

    need = NEEDS.get(sampler_spec["name"])
    if need and importlib.util.find_spec(need) is None:
        raise ConfigError(f"sampler {sampler_spec['name']} needs the {need} package: "
                          f"pip install {need}")
    if pruner_spec["name"] == "heads":
        head_rule_args(pruner_spec)
        return
    for kind, build in (("sampler", lambda: sampler(sampler_spec, 0)),
                        ("pruner", lambda: pruner(pruner_spec))):
        try:
            build()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{kind} {(sampler_spec if kind == 'sampler' else pruner_spec)}"
                              f": {exc}") from None


def head_rule_args(spec: dict) -> dict:
    """The `heads` pruner's keyword arguments from its spec, checked: known keys, a list of
    head names, values in range (defaults from HEAD_RULE)."""
    known = set(HEAD_RULE)
    args = {k: v for k, v in spec.items() if k != "name"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"pruner heads: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    if "heads" in args:
        watched = args["heads"]
        if not isinstance(watched, list) or not watched \
                or not all(isinstance(h, str) for h in watched):
            raise ConfigError(f"pruner heads: heads must be a list of head names, got "
                              f"{watched!r}")
        args["heads"] = tuple(watched)
    rule = {**HEAD_RULE, **args}
    if not 0 <= rule["percentile"] <= 100 or rule["min_heads"] < 1 or rule["min_trials"] < 1 \
            or rule["warmup_epochs"] < 0:
        raise ConfigError(f"pruner heads: need min_heads >= 1, 0 <= percentile <= 100, "
                          f"warmup_epochs >= 0, min_trials >= 1; got {spec}")
    return args
