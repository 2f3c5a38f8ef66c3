"""Search spaces: YAML → validated Optuna distributions → a frozen `TrialConfig` per trial.

A space file maps TrialConfig keys onto Optuna's own distribution fields (the same ones as
`optuna.distributions.json_to_distribution`):

    params:
      backbone:   {type: categorical, choices: [separable, pretrained]}
      family:     {type: categorical, choices: [mobilenet_v2, mobilenet], when: {backbone: pretrained}}
      width:      {type: int, low: 16, high: 64, step: 16}
      base_lr:    {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      image_size: 48                      # a plain value pins the key

`when` makes a parameter conditional: it is sampled only when the named parent (sampled
first) has one of the given values; otherwise the TrialConfig default stands and nothing is
suggested. `lr_ratio` is the one derived key: max_lr = base_lr * lr_ratio, so max > base always
holds without a range that depends on another sample. No TensorFlow here.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from search.errors import ConfigError
from search.space import algorithms, top_keys
from search.space.config import OBJECTIVES, TrialConfig
from search.space.param import CONFIG_KEYS, DERIVED, Param, family_alpha, ordered
from search.space.param import parse as parse_param

SAMPLERS = tuple(algorithms.SAMPLERS)
PRUNERS = tuple(algorithms.PRUNERS)
CLR_BOUNDS = ("sample", "lr_find")
TOP_KEYS = ("name", "description", "objective", "objectives", "sampler", "pruner", "clr_bounds",
            "prune_below_majority", "keep_models", "params", "enqueue", "include")
# A trial below the majority-class baseline after this epoch by more than margin is pruned.
KEEP_MODELS = "all"  # every trial keeps its model: the final selection chooses among them all
# Enqueued configs (baselines) are stored on the trial under this user attr, not as params.
FIXED_CONFIG_ATTR = "fixed_config"


@dataclass(frozen=True)
class Space:
    name: str
    params: tuple[Param, ...]
    objective: str = OBJECTIVES[0]
    # Multi-objective mode: (metric, direction) pairs; metric is mean_accuracy,
    # mean_balanced_accuracy, params, train_seconds or a head name (its accuracy).
    objectives: tuple[tuple[str, str], ...] = ()
    sampler: dict = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict = field(default_factory=lambda: {"name": "median"})
    clr_bounds: str = "sample"
    prune_below_majority: dict | None = None  # {after_epoch, margin}; None: no such pruning
    keep_models: int | None = None  # None: keep every trial's model
    enqueue: tuple[dict, ...] = ()
    source: dict = field(default_factory=dict, compare=False)

    def sample(self, trial) -> TrialConfig:
        """Suggest every active parameter on an Optuna trial and return the frozen config.

        Works with `optuna.trial.FixedTrial` too. A trial enqueued with a whole config (a
        baseline) returns that config and suggests nothing.
        """
        fixed = getattr(trial, "user_attrs", {}).get(FIXED_CONFIG_ATTR)
        if fixed is not None:
            return TrialConfig.from_dict(fixed)
        chosen: dict[str, Any] = {}
        for param in self.params:
            if not param.active(chosen):
                continue
            if param.distribution is None:
                chosen[param.name] = copy.deepcopy(param.value)
            else:
                chosen[param.name] = param.suggest(trial)
        return resolve(chosen)

    def pin(self, **values: Any) -> "Space":
        """Fix keys to values (CLI overrides such as --image-size); None values are ignored."""
        pins = {k: v for k, v in values.items() if v is not None}
        for key in pins:
            if key not in CONFIG_KEYS and key not in DERIVED:
                raise ConfigError(f"cannot pin unknown key {key!r}")
        params = [_narrowed(p, pins) for p in self.params if p.name not in pins]
        params += [Param(name=k, value=v) for k, v in pins.items()]
        source = copy.deepcopy(self.source)
        source.setdefault("params", {}).update(pins)
        pinned = replace(self, params=ordered(params), source=source,
                         enqueue=tuple(_pin_enqueued(self.enqueue, pins)))
        if pins:  # checked like a loaded space, before anything is written
            _check_sample(pinned, "the space with " + ", ".join(
                f"{k}={v!r}" for k, v in pins.items()) + " pinned")
        return pinned

    def fingerprint(self) -> str:
        """A short hash of what the space samples, stored on the study to refuse mixing."""
        keys = ("objective", "objectives", "clr_bounds", "params")
        data = {k: self.source.get(k) for k in keys}
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# Pins that change a baseline's budget apply to it; pins of its architecture drop it instead.
BUDGET_KEYS = ("image_size", "epochs", "batch_size", "crop", "seed")
IDENTITY_KEYS = ("backbone", "family")


def _narrowed(param: Param, pins: dict) -> Param:
    """A sampled family_alpha under a pinned family (or alpha): only its matching choices
    (a pin wins over the space, as for any other key)."""
    import optuna.distributions as od

    if param.name != "family_alpha" or not {"family", "alpha"} & set(pins):
        return param
    choices = param.distribution.choices if param.distribution is not None else [param.value]
    kept = [c for c in choices if all(
        pins.get(k, v) == v for k, v in zip(("family", "alpha"), family_alpha(c)))]
    if not kept:
        pinned = ", ".join(f"{k}={pins[k]}" for k in ("family", "alpha") if k in pins)
        raise ConfigError(f"--{pinned.replace('=', ' ')}: none of the space's family_alpha "
                          f"choices ({', '.join(map(str, choices))}) has {pinned}")
    if len(kept) == 1:
        return Param(name=param.name, value=kept[0], when=param.when)
    return Param(name=param.name, distribution=od.CategoricalDistribution(kept),
                 when=param.when)


def _pin_enqueued(entries, pins: dict):
    for entry in entries:
        config = dict(entry["config"])
        if any(k in pins and config.get(k) != pins[k] for k in IDENTITY_KEYS):
            continue
        config.update({k: v for k, v in pins.items() if k in BUDGET_KEYS})
        if "weights" in pins and config.get("backbone") == "pretrained":
            config["weights"] = pins["weights"]
        yield {**entry, "config": TrialConfig.from_dict(config).to_dict()}


def resolve(chosen: dict[str, Any]) -> TrialConfig:
    """Turn sampled values (with derived keys such as lr_ratio) into a TrialConfig."""
    values = dict(chosen)
    pair = values.pop("family_alpha", None)
    if pair is not None:
        values["family"], values["alpha"] = family_alpha(pair)
    ratio = values.pop("lr_ratio", None)
    if ratio is not None:
        values["max_lr"] = values.get("base_lr", TrialConfig.base_lr) * ratio
    return TrialConfig.from_dict(values)


def bundled(name: str = "default") -> Path:
    """spaces/NAME.yaml as shipped with this package. A wheel installs the top-level spaces/
    folder as search/spaces (setup.cfg maps it); a source checkout or an editable install
    still has it next to the package folder. Where neither holds it, the installed location
    is returned and `load` says it does not exist."""
    from importlib.resources import files

    package = Path(str(files("search")))
    found = [folder / f"{name}.yaml" for folder in (package / "spaces", package.parent / "spaces")]
    return next((path for path in found if path.is_file()), found[0])


def load(path: str | Path) -> Space:
    """Read and validate a space YAML file; errors name the file and the key. The file must
    have params: an empty one would otherwise run TrialConfig's defaults as if searched. Only
    `include:`d files (spaces/baselines.yaml) may have none: they bring enqueued configs."""
    space = _read(path)
    if not space.params:
        raise ConfigError(f"{path}: the space has no params; give at least one key under params "
                          f"(see spaces/default.yaml)")
    return space


def _read(path: str | Path) -> Space:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space {path} does not exist (see spaces/ for examples)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse(data, base_dir=path.parent, default_name=path.stem)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse(data: dict, *, base_dir: Path | None = None, default_name: str = "space") -> Space:
    if not isinstance(data, dict):
        raise ConfigError("a search space must be a mapping with a 'params' key")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(TOP_KEYS)}")
    objective = data.get("objective", OBJECTIVES[0])
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    objectives = top_keys.objectives(data.get("objectives"))
    sampler = algorithms.component("sampler", data.get("sampler", {"name": "tpe"}), SAMPLERS)
    pruner = algorithms.component("pruner", data.get("pruner", {"name": "median"}), PRUNERS)
    algorithms.check(sampler, pruner)
    clr_bounds = data.get("clr_bounds", "sample")
    if clr_bounds not in CLR_BOUNDS:
        raise ConfigError(f"clr_bounds must be one of {', '.join(CLR_BOUNDS)}, got {clr_bounds!r}")
    raw_params = data.get("params") or {}
    if not isinstance(raw_params, dict):
        raise ConfigError("params must be a mapping of key: spec")
    params = [parse_param(name, spec) for name, spec in raw_params.items()]
    names = {p.name for p in params}
    for p in params:
        for parent in p.when:
            if parent not in names:
                raise ConfigError(f"params.{p.name}.when names {parent!r}, which is not a param")
    if clr_bounds == "lr_find":
        clash = names & {"base_lr", "max_lr", "lr_ratio"}
        if clash:
            raise ConfigError(f"clr_bounds: lr_find derives the LR bounds; remove "
                              f"{', '.join(sorted(clash))} from params")
    enqueue = list(_enqueued(data, base_dir))
    space = Space(name=str(data.get("name", default_name)), params=ordered(params),
                  objective=objective, objectives=objectives, sampler=sampler, pruner=pruner,
                  clr_bounds=clr_bounds, prune_below_majority=top_keys.guard(data.get(
                      "prune_below_majority", True)),
                  keep_models=top_keys.keep(data.get("keep_models", KEEP_MODELS)),
                  enqueue=tuple(enqueue), source=copy.deepcopy(data))
    _check_sample(space)
    return space


def _enqueued(data: dict, base_dir: Path | None):
    """Whole configs to run first: `enqueue:` entries and those of `include:`d files."""
    for include in _as_list(data.get("include")):
        path = Path(include) if base_dir is None else base_dir / include
        yield from _read(path).enqueue
    for i, entry in enumerate(_as_list(data.get("enqueue"))):
        if not isinstance(entry, dict) or "config" not in entry:
            raise ConfigError(f"enqueue[{i}] must be a mapping with 'name' and 'config'")
        try:
            config = resolve(entry["config"])
        except ConfigError as exc:
            raise ConfigError(f"enqueue[{i}] ({entry.get('name', '?')}): {exc}") from None
        yield {"name": str(entry.get("name", f"enqueued-{i}")), "config": config.to_dict()}


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _check_sample(space: Space, what: str = "the space") -> None:
    """Fail at load time (and when keys are pinned), not in trial 1, if the space's corners
    make invalid configs."""
    import optuna

    for pick in (0, -1):
        values = {}
        for p in space.params:
            if p.distribution is None:
                values[p.name] = p.value
            elif isinstance(p.distribution, optuna.distributions.CategoricalDistribution):
                values[p.name] = p.distribution.choices[pick]
            else:
                values[p.name] = p.distribution.low if pick == 0 else p.distribution.high
        try:
            space.sample(optuna.trial.FixedTrial(values))
        except ConfigError as exc:
            raise ConfigError(f"{what} can produce an invalid config: {exc}") from None
