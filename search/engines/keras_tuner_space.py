"""The search space as keras-tuner HyperParameters, and a trial's values back as a config.

The space becomes keras_tuner `HyperParameters` (Choice / Int / Float with log sampling,
`when` as `conditional_scope`); a trial's values turn back into a `TrialConfig` through
`Space.sample`, so conditions, pins and lr_ratio resolve exactly as for Optuna.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import keras_tuner as kt

from search.errors import UsageError
from search.space.config import TrialConfig
from search.space.param import hashable
from search.space.space import Space


@dataclass(frozen=True)
class Codec:
    """How one categorical's choices travel through keras-tuner, which takes only one type of
    str/int/float per Choice: anything else (bools, None, mixed types) goes as JSON text."""

    as_json: bool

    @classmethod
    def for_choices(cls, choices) -> "Codec":
        types = {type(c) for c in choices}
        return cls(as_json=len(types) > 1 or not types <= {str, int, float})

    def encode(self, value):
        value = hashable(value)
        return json.dumps(value) if self.as_json else value

    def decode(self, value):
        return json.loads(value) if self.as_json else value


@dataclass(frozen=True)
class Translation:
    hyperparameters: kt.HyperParameters
    codecs: dict[str, Codec | None]  # every declared key; None for numeric ones


def translate(space: Space) -> Translation:
    """The space as keras_tuner HyperParameters. Fixed keys stay out (Space.sample supplies
    them); a condition on a fixed parent is decided here, once."""
    import optuna.distributions as od

    hp = kt.HyperParameters()
    codecs: dict[str, Codec | None] = {}
    by_name = {p.name: p for p in space.params}
    for param in space.params:  # parents first (Space orders them)
        d = param.distribution
        if d is None:
            continue
        conditions = _conditions(param, by_name, codecs)
        if conditions is None:
            continue  # its fixed parent never matches: Space.sample never suggests it
        with contextlib.ExitStack() as scopes:
            for parent, values in conditions:
                scopes.enter_context(hp.conditional_scope(parent, values))
            sampling = "log" if getattr(d, "log", False) else "linear"
            if isinstance(d, od.CategoricalDistribution):
                codec = codecs[param.name] = Codec.for_choices(d.choices)
                hp.Choice(param.name, [codec.encode(c) for c in d.choices])
            elif isinstance(d, od.IntDistribution):
                codecs[param.name] = None  # with log sampling, keras-tuner's step multiplies
                hp.Int(param.name, d.low, d.high, step=None if d.log else d.step,
                       sampling=sampling)
            else:
                codecs[param.name] = None
                hp.Float(param.name, d.low, d.high, step=d.step, sampling=sampling)
    return Translation(hp, codecs)


def _conditions(param, by_name, codecs) -> list[tuple[str, list]] | None:
    """`when` as (declared parent, encoded values) scopes; None if it can never hold."""
    out = []
    for name, values in param.when.items():
        parent = by_name[name]
        if parent.distribution is None:  # fixed parent: decide now, inherit its conditions
            inherited = _conditions(parent, by_name, codecs)
            if parent.value not in values or inherited is None:
                return None
            out += inherited
        elif name not in codecs:
            return None  # the parent itself is never active
        else:
            codec = codecs[name]
            out.append((name, [codec.encode(v) if codec else v for v in values]))
    return out


def config_from_values(space: Space, translation: Translation, values: dict) -> TrialConfig:
    """A trial's hp values → TrialConfig, through the very code Optuna trials use."""
    import optuna

    codecs = translation.codecs
    params = {k: (codecs[k].decode(v) if codecs[k] else v)
              for k, v in values.items() if k in codecs}
    config = space.sample(optuna.trial.FixedTrial(params))
    if "tuner/epochs" in values:  # Hyperband's budget for this round
        config = config.replace(epochs=int(values["tuner/epochs"]))
    return config


def max_epochs(space: Space) -> int:
    """The largest epochs value the space can produce: Hyperband's max_epochs."""
    param = next((p for p in space.params if p.name == "epochs"), None)
    if param is None:
        return TrialConfig.epochs
    if param.distribution is None:
        return int(param.value)
    d = param.distribution
    return int(max(d.choices) if hasattr(d, "choices") else d.high)


def check_supported(space: Space) -> None:
    """Features of a space that this engine cannot honour fail here, by name."""
    if getattr(space, "objectives", ()):
        raise UsageError("--engine keras-tuner does not support multi-objective spaces "
                         "(objectives:); keras-tuner would sum them into one number. Use "
                         "--engine optuna")
    if space.enqueue:
        names = ", ".join(e["name"] for e in space.enqueue)
        raise UsageError(
            f"--engine keras-tuner does not support enqueued baselines ({names}, from the "
            f"space's enqueue/include): a keras-tuner oracle only proposes points of its own "
            f"space. Pass --no-baselines, or use --engine optuna")


# ---------------------------------------------------------------------------------------------
# The tuner.
