"""What a space may name of the data: its objectives and the heads rule's heads must be
metrics a trial reports or heads of the table, checked before any trial trains rather than
after the first one."""

from __future__ import annotations

from search.errors import UsageError

METRICS = ("mean_accuracy", "mean_balanced_accuracy", "params", "train_seconds")


def check(space, heads) -> None:
    """UsageError naming what the space's `objectives` or `pruner: heads` names that is not
    there."""
    unknown = [name for name, _ in space.objectives if name not in METRICS and name not in heads]
    if unknown:
        raise UsageError(f"{space.name}: objectives names {', '.join(map(repr, unknown))}, which "
                         f"is neither a metric ({', '.join(METRICS)}) nor a head of the data "
                         f"({', '.join(heads)})")
    watched = space.pruner.get("heads") if space.pruner["name"] == "heads" else None
    unknown = [h for h in watched or () if h not in heads]
    if unknown:
        raise UsageError(f"{space.name}: pruner heads names {', '.join(map(repr, unknown))}, "
                         f"which {'is not a head' if len(unknown) == 1 else 'are not heads'} "
                         f"of the data ({', '.join(heads)})")
