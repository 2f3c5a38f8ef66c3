"""Cyclical learning rates (Smith 2017) and the LR range test that picks their bounds.

A cyclical schedule removes the need to tune one fixed learning rate: the optimizer sweeps
between `base_lr` and `max_lr`, and the range test finds those two bounds from one short run
instead of a grid of trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from search.errors import ConfigError
from search.space.config import CLR_MODES

MODES = CLR_MODES


def check_clr_args(base_lr, max_lr, step_size, mode, gamma) -> None:
    """One line naming the first bad argument of a cyclical schedule (`ConfigError`); the
    schedule checks its own and `search.views.lr_curve` checks a plotted one the same way."""
    if mode not in MODES:
        raise ConfigError(f"mode: unknown mode {mode!r}; known modes: {', '.join(MODES)}")
    if not base_lr > 0:
        raise ConfigError(f"base_lr: must be > 0, got {base_lr!r}")
    if mode == "constant" and not max_lr >= base_lr:
        raise ConfigError(f"max_lr: must be >= base_lr ({base_lr}), got {max_lr!r}")
    if mode != "constant" and not max_lr > base_lr:
        raise ConfigError(
            f"max_lr: must be > base_lr ({base_lr}) for mode {mode!r}, got {max_lr!r}")
    if isinstance(step_size, bool) or not isinstance(step_size, (int, np.integer)) or step_size < 1:
        raise ConfigError(f"step_size: must be an integer >= 1, got {step_size!r}")
    if not 0 < gamma <= 1:
        raise ConfigError(f"gamma: must be in (0, 1], got {gamma!r}")


def clr_value(it: float, base_lr: float, max_lr: float, step_size: int,
              mode: str = "triangular", gamma: float = 1.0) -> float:
    """The cyclical learning rate at iteration `it`, in plain Python (reference and plots)."""
    if mode == "constant":
        return float(base_lr)
    cycle = math.floor(1 + it / (2 * step_size))
    x = abs(it / step_size - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": gamma**it}[mode]
    return base_lr + (max_lr - base_lr) * max(0.0, 1 - x) * scale


def steps_from_epochs(step_size_epochs: float, steps_per_epoch: int) -> int:
    """Half-cycle length in optimizer steps; Smith suggests 2-10 epochs."""
    return max(1, round(step_size_epochs * steps_per_epoch))


@keras.saving.register_keras_serializable(package="search")
class CyclicalLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's cyclical learning rate, evaluated per optimizer step in float32 Keras ops (any
    backend)."""

    def __init__(self, base_lr: float, max_lr: float, step_size: int,
                 mode: str = "triangular", gamma: float = 1.0):
        check_clr_args(base_lr, max_lr, step_size, mode, gamma)
        self.base_lr, self.max_lr = float(base_lr), float(max_lr)
        self.step_size, self.mode, self.gamma = int(step_size), mode, float(gamma)

    def __call__(self, step):
        it = ops.cast(step, "float32")
        base = ops.convert_to_tensor(self.base_lr, "float32")
        if self.mode == "constant":
            return base + 0.0 * it  # keep the shape/dtype of a step-dependent value
        step_size = float(self.step_size)
        cycle = ops.floor(1.0 + it / (2.0 * step_size))
        x = ops.abs(it / step_size - 2.0 * cycle + 1.0)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1.0 / ops.power(2.0, cycle - 1.0)
        else:
            scale = ops.power(ops.convert_to_tensor(self.gamma, "float32"), it)
        amplitude = self.max_lr - self.base_lr
        return base + amplitude * ops.maximum(0.0, 1.0 - x) * scale

    def get_config(self):
        return {"base_lr": self.base_lr, "max_lr": self.max_lr, "step_size": self.step_size,
                "mode": self.mode, "gamma": self.gamma}


@dataclass(frozen=True)
class LRRangeResult:
    """One LR range test: per-step learning rates, raw and smoothed total loss, suggested bounds."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_base_lr: float
    suggested_max_lr: float
    stopped_early: bool


BASE_FRACTION = 4.0  # base_lr = max_lr / 4: Smith (2017, sec. 3.3) suggests 1/3 or 1/4 of max_lr.


def suggest_bounds(lrs, smoothed, min_lr: float, max_lr: float) -> tuple[float, float]:
    """Suggested (base_lr, max_lr) for a cyclical schedule.

    Rule: max_lr is the learning rate at the minimum of the smoothed loss divided by 10 (the
    fastai "lr_min" rule: where the loss bottoms out training is already on the edge of
    diverging, and the EMA lags, so one decade lower is the fastest still-stable rate);
    base_lr = max_lr / 4 (Smith 2017). The first few points (at most 5) are ignored: there the
    smoothed loss is a mean of very few batches. Both values are clipped so that
    min_lr <= base_lr < max_lr <= max_lr of the sweep.
    """
    values = np.asarray(smoothed, dtype=float)
    values[~np.isfinite(values)] = np.nan
    skip = min(len(values) // 10, 5)
    if np.isnan(values[skip:]).all():
        skip = 0
    if np.isnan(values).all():
        peak = min_lr
    else:
        peak = lrs[skip + int(np.nanargmin(values[skip:]))] / 10
    peak = min(max(peak, min_lr * BASE_FRACTION), max_lr)
    return max(peak / BASE_FRACTION, min_lr), peak


def lr_range_test(model, dataset, *, min_lr: float = 1e-6, max_lr: float = 1.0,
                  num_steps: int = 100, beta: float = 0.98,
                  diverge_factor: float = 4.0) -> LRRangeResult:
    """Train on `num_steps` batches with the LR growing exponentially from min_lr to max_lr.

    `model` must be compiled with an optimizer whose learning rate is a plain float; the
    dataset of (x, y) or (x, y, sample_weight) batches is repeated as needed. Stops once the bias-corrected smoothed loss
    exceeds `diverge_factor` x its best value or the loss is not finite. Model weights and
    optimizer state (including the learning rate) are restored afterwards. The suggested
    bounds follow `suggest_bounds`: max_lr = (LR at the smoothed-loss minimum) / 10,
    base_lr = max_lr / 4, clipped into [min_lr, max_lr].
    """
    if not 0 < min_lr < max_lr:
        raise ConfigError(f"min_lr/max_lr: need 0 < min_lr < max_lr, got {min_lr!r}, {max_lr!r}")
    if num_steps < 2:
        raise ConfigError(f"num_steps: must be >= 2, got {num_steps!r}")
    if not 0 <= beta < 1:
        raise ConfigError(f"beta: must be in [0, 1), got {beta!r}")
    if not diverge_factor > 1:
        raise ConfigError(f"diverge_factor: must be > 1, got {diverge_factor!r}")
    optimizer = model.optimizer
    if not isinstance(optimizer.learning_rate, keras.Variable):  # a schedule gives a tensor
        raise ConfigError(
            "learning_rate: the range test needs an optimizer with a float learning rate")
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    weights = model.get_weights()
    opt_state = [v.numpy() for v in optimizer.variables]

    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, False
    batches = _cycle(dataset, num_steps)
    try:
        for i, batch in enumerate(batches):
            lr = min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))
            optimizer.learning_rate.assign(lr)
            x, y, *sample_weight = batch  # class-weighted pipelines add per-sample weights
            loss = float(model.train_on_batch(x, y, sample_weight=(sample_weight or [None])[0],
                                              return_dict=True)["loss"])
            avg = beta * avg + (1 - beta) * loss
            smooth = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(smooth)
            if not math.isfinite(loss) or smooth > diverge_factor * best:
                stopped = True
                break
            best = min(best, smooth)
    finally:
        model.set_weights(weights)
        for var, value in zip(optimizer.variables, opt_state):
            var.assign(value)
        model.reset_metrics()
    base, peak = suggest_bounds(lrs, smoothed, min_lr, max_lr)
    return LRRangeResult(lrs, losses, smoothed, base, peak, stopped)


def _cycle(dataset, count: int):
    """`count` batches of a tf.data pipeline or a Keras PyDataset, starting over as needed."""
    if hasattr(dataset, "repeat"):  # tf.data
        yield from dataset.repeat().take(count)
        return
    done = 0
    while done < count:
        for i in range(len(dataset)):
            if done == count:
                return
            yield dataset[i]
            done += 1
        dataset.on_epoch_end()
