"""A trial's epochs on the pruners' step axis: each stage counts from its own base, so a
fine-tuning epoch is never compared with a probe epoch.

Training reports its epochs at these steps (`callbacks.ReportEpochs`) and the pruners of
`search.study` read them back, so the rule lives here, below both. No TensorFlow here.
"""

from __future__ import annotations

STAGE_STEPS = {"train": 0, "probe": 0, "fine_tune": 1000}  # a stage's first step - 1


def stage_step(stage: str, epoch: int) -> int:
    """The pruners' step of a stage's 1-based `epoch`. Pruners compare trials at the same
    step, so each stage has a range of its own: the third fine-tuning epoch is step 1003
    whatever the probe's length, compared only with other trials' third fine-tuning epoch,
    never with a probe epoch (a frozen trial's one stage is a probe: heads on frozen
    features, like the probe before fine-tuning)."""
    return STAGE_STEPS[stage] + epoch


def stage_epoch(step: int) -> int:
    """The 1-based epoch within its stage of a stage-aligned step."""
    return step - STAGE_STEPS["fine_tune"] if step > STAGE_STEPS["fine_tune"] else step


def stage_name(step: int) -> str:
    """'epoch 3' or 'fine-tuning epoch 3': a stage-aligned step in words."""
    prefix = "fine-tuning " if step > STAGE_STEPS["fine_tune"] else ""
    return f"{prefix}epoch {stage_epoch(step)}"
