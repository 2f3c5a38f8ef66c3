"""One key of a search space: a fixed value or an Optuna distribution, maybe conditional.

`parse` reads a key's YAML spec (`{type: float, low: .., high: .., log: true, when: {..}}`, a
plain value, or `{choices: [...]}`), `Param.suggest` draws it on an Optuna trial, and `ordered`
puts parents before the keys whose `when` names them. `search.space.space` assembles a space from
these. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from search.errors import ConfigError
from search.space.config import TrialConfig

# Derived keys (search.space.space.resolve): max_lr = base_lr * lr_ratio; family_alpha
# "mobilenet_v2:0.5" sets family and alpha together, so a choice never pairs a family with a
# width it has no ImageNet weights for (MobileNet v1 0.25, MobileNetV2 0.35 and 0.5).
DERIVED = ("lr_ratio", "family_alpha")
CONFIG_KEYS = tuple(f.name for f in fields(TrialConfig))
SPLIT_CHOICES = ("image_size", "convs_per_block")  # list choices, stored by Optuna as 'AxB'


@dataclass(frozen=True)
class Param:
    """One key of the space: a fixed value or an Optuna distribution, maybe conditional."""

    name: str
    value: Any = None  # fixed value when distribution is None
    distribution: Any = None  # optuna.distributions.BaseDistribution
    when: dict[str, tuple] = field(default_factory=dict)

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(chosen.get(parent) in values for parent, values in self.when.items())

    def suggest(self, trial):
        """This key's value drawn on an Optuna trial (a FixedTrial too)."""
        import optuna.distributions as od

        d = self.distribution
        if isinstance(d, od.CategoricalDistribution):
            value = trial.suggest_categorical(self.name, d.choices)
            if self.name in SPLIT_CHOICES and isinstance(value, str):
                return [int(v) for v in value.split("x")]
            return value
        if isinstance(d, od.IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(self.name, d.low, d.high, step=d.step, log=d.log)


def parse(name: str, spec) -> Param:
    """A key and its YAML spec → a Param; mistakes raise a ConfigError naming the key."""
    import optuna.distributions as od

    if name not in CONFIG_KEYS and name not in DERIVED:
        raise ConfigError(f"params.{name}: unknown key; known keys: "
                          f"{', '.join(CONFIG_KEYS + DERIVED)}")
    if not isinstance(spec, dict):
        return Param(name=name, value=spec)
    spec = dict(spec)
    when = spec.pop("when", None) or {}
    if not isinstance(when, dict):
        raise ConfigError(f"params.{name}.when must map a param to a value or list of values")
    when = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}
    if "value" in spec:
        extra = set(spec) - {"value"}
        if extra:
            raise ConfigError(f"params.{name}: 'value' cannot be combined with {sorted(extra)}")
        return Param(name=name, value=spec["value"], when=when)
    kind = spec.pop("type", "categorical" if "choices" in spec else None)
    allowed = {"categorical": {"choices"}, "float": {"low", "high", "step", "log"},
               "int": {"low", "high", "step", "log"}}
    if kind not in allowed:
        raise ConfigError(f"params.{name}.type must be one of float, int, categorical "
                          f"(or give 'value' or 'choices'), got {kind!r}")
    extra = set(spec) - allowed[kind]
    if extra:
        raise ConfigError(f"params.{name}: unknown field(s) {sorted(extra)} for type {kind}")
    try:
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"params.{name}.choices must be a non-empty list")
            dist = od.CategoricalDistribution(choices=[hashable(c) for c in choices])
        else:
            if "low" not in spec or "high" not in spec:
                raise ConfigError(f"params.{name}: type {kind} needs low and high")
            cls = od.FloatDistribution if kind == "float" else od.IntDistribution
            if kind == "int":
                spec.setdefault("step", 1)
            dist = cls(**spec)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"params.{name}: {exc}") from None
    return Param(name=name, distribution=dist, when=when)


def family_alpha(value: str) -> tuple[str, float]:
    """'mobilenet_v2:0.5' → ('mobilenet_v2', 0.5); a ConfigError names what is wrong."""
    from search.space.config import FAMILIES

    family, _, alpha = str(value).partition(":")
    try:
        width = float(alpha)
    except ValueError:
        width = 0.0
    if family not in FAMILIES or width <= 0:
        raise ConfigError(f"family_alpha must be FAMILY:ALPHA with FAMILY one of "
                          f"{', '.join(FAMILIES)} and ALPHA > 0, e.g. mobilenet_v2:0.5; "
                          f"got {value!r}")
    return family, width


def hashable(choice):
    """Optuna choices must be None/bool/int/float/str: lists (image sizes) become 'HxW'."""
    if isinstance(choice, list):
        return "x".join(str(c) for c in choice)
    return choice


def ordered(params: list[Param]) -> tuple[Param, ...]:
    """Parents before children, so a condition always sees its parent's value."""
    by_name = {p.name: p for p in params}
    done: dict[str, Param] = {}

    def visit(p: Param, trail: tuple[str, ...]) -> None:
        if p.name in done:
            return
        if p.name in trail:
            raise ConfigError(f"params.{p.name}: circular 'when' condition via {' -> '.join(trail)}")
        for parent in p.when:
            if parent in by_name:
                visit(by_name[parent], trail + (p.name,))
        done[p.name] = p

    for p in params:
        visit(p, ())
    return tuple(done.values())
