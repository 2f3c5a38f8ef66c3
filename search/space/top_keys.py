"""The space file's top-level settings beside its params, read and checked: which trials the
majority guard prunes (`prune_below_majority`), how many keep their model (`keep_models`), and
a multi-objective study's metrics (`objectives`)."""

from __future__ import annotations

from search.errors import ConfigError

MAJORITY_GUARD = {"after_epoch": 2, "margin": 0.03}

MINIMISED = ("params", "train_seconds")  # metrics whose natural direction is down


def guard(spec) -> dict | None:
    """`prune_below_majority`: true (the defaults), false, or {after_epoch, margin}."""
    if spec is False or spec is None:
        return None
    if spec is True:
        return dict(MAJORITY_GUARD)
    if not isinstance(spec, dict) or set(spec) - set(MAJORITY_GUARD):
        raise ConfigError(f"prune_below_majority must be true, false or a mapping with "
                          f"{' and/or '.join(MAJORITY_GUARD)}, got {spec!r}")
    guard = {**MAJORITY_GUARD, **spec}
    after, margin = guard["after_epoch"], guard["margin"]
    if isinstance(after, bool) or not isinstance(after, int) or after < 1:
        raise ConfigError(f"prune_below_majority.after_epoch must be an int >= 1, got {after!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        raise ConfigError(f"prune_below_majority.margin must be a number >= 0, got {margin!r}")
    return {"after_epoch": after, "margin": float(margin)}


def keep(value) -> int | None:
    """`keep_models`: how many of the best trials keep their model (all: `all`)."""
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"keep_models must be an int >= 1 or 'all', got {value!r}")
    return value


def objectives(spec) -> tuple[tuple[str, str], ...]:
    """`objectives: [mean_accuracy:max, params:min]` or a list of heads → (name, direction)."""
    if spec is None:
        return ()
    if not isinstance(spec, list) or len(spec) < 2:
        raise ConfigError("objectives must be a list of at least two metrics, e.g. "
                          "[mean_accuracy:max, params:min] or [gender, age]")
    out = []
    for item in spec:
        name, _, direction = str(item).partition(":")
        direction = direction or ("min" if name in MINIMISED else "max")
        if direction not in ("max", "min"):
            raise ConfigError(f"objectives: direction of {name!r} must be max or min, "
                              f"got {direction!r}")
        out.append((name, direction))
    return tuple(out)
