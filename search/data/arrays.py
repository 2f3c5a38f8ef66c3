"""The input pipeline without TensorFlow: numpy batches fed through a Keras `PyDataset`.

On JAX and PyTorch (search.backend) a trial's batches come from here; on TensorFlow from the
tf.data pipeline in search.data.table, whose graph functions cannot call numpy. Both gather a
shuffled batch of uint8 rows, augment it while still uint8 and cast it to float32; the
augmentation here draws the same distributions as search.data.augment (flip with p=0.5, integer
shifts up to shift x side filled with 0, one cut-out rectangle with probability exactly
`cutout`, its area uniform in cutout_area and its aspect ratio log-uniform in [0.3, 3.33]);
tests/test_arrays.py holds the two to the same figures. The feature cache's augmented views
(search.train.features) are made here on every backend.

Randomness. Every batch draws from its own generator, seeded by (seed, epoch, batch index):
fresh augmentation and a fresh order each epoch, and the same draws whatever order the
workers fill batches in, so a trial replays exactly from its seed.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from search.errors import ConfigError

LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))  # aspect ratio h/w, log-uniform in [0.3, 3.33]


def check(shift: float, cutout: float, cutout_area) -> tuple[float, float]:
    """The augmentation arguments, checked (one line naming the bad one); the cutout area."""
    if not 0.0 <= shift < 1.0:
        raise ConfigError(f"augment shift must be in [0, 1), got {shift!r}")
    if not 0.0 <= cutout <= 1.0:
        raise ConfigError(f"augment cutout probability must be in [0, 1], got {cutout!r}")
    try:
        lo, hi = (float(v) for v in cutout_area)
    except (TypeError, ValueError):
        raise ConfigError(
            f"augment cutout_area must be a pair (lo, hi), got {cutout_area!r}") from None
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(
            f"augment cutout_area must satisfy 0 < lo <= hi <= 1, got {cutout_area!r}")
    return lo, hi


def augment(images: np.ndarray, rng: np.random.Generator, *, flip: bool = True,
            shift: float = 0.1, cutout: float = 0.0, cutout_area=(0.02, 0.4)) -> np.ndarray:
    """Augment a batch [B, H, W, C] (a new array; the input is left alone): flip, shift (fill
    0), then cutout (fill 0). With flip=False, shift=0 and cutout=0 the input comes back."""
    area = check(shift, cutout, cutout_area)
    if not flip and shift == 0 and cutout == 0:
        return images
    b, h, w = images.shape[:3]
    rows = np.broadcast_to(np.arange(h), (b, h))
    cols = np.broadcast_to(np.arange(w), (b, w))
    keep = None
    if flip:
        cols = np.where((rng.random(b) < 0.5)[:, None], w - 1 - cols, cols)
    if shift > 0:
        dy = np.round(rng.uniform(-shift, shift, b) * h).astype(np.int64)
        dx = np.round(rng.uniform(-shift, shift, b) * w).astype(np.int64)
        rows, cols = rows - dy[:, None], cols - dx[:, None]
        keep = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        rows, cols = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    batch = np.arange(b)[:, None, None]
    out = images[batch, rows[:, :, None], cols[:, None, :]]  # one gather for flip and shift
    if cutout > 0:
        erase = _cutout_mask(rng, b, h, w, float(cutout), area)
        keep = ~erase if keep is None else keep & ~erase
    if keep is not None:
        out = out * keep[..., None].astype(out.dtype)
    return out


def _cutout_mask(rng, b: int, h: int, w: int, p: float, area) -> np.ndarray:
    """[B, H, W] bool: for each image with probability p, one rectangle (as augment.py)."""
    apply = rng.random(b) < p
    target = rng.uniform(*area, b) * h * w
    aspect = np.exp(rng.uniform(*LOG_ASPECT, b))
    eh = np.clip(np.sqrt(target * aspect), 1.0, h)
    ew = np.clip(target / eh, 1.0, w)
    eh = np.clip(target / ew, 1.0, h)
    w_first = (ew >= w) | ((ew <= eh) & (eh < h))

    def to_px(v, size):
        return np.clip(np.round(v).astype(np.int64), 1, size)

    ew1 = to_px(ew, w)
    eh1 = to_px(target / ew1, h)
    eh2 = to_px(eh, h)
    ew2 = to_px(target / eh2, w)
    eh, ew = np.where(w_first, eh1, eh2), np.where(w_first, ew1, ew2)
    y0 = np.minimum(np.floor(rng.random(b) * (h - eh + 1)).astype(np.int64), h - eh)
    x0 = np.minimum(np.floor(rng.random(b) * (w - ew + 1)).astype(np.int64), w - ew)
    r, c = np.arange(h)[None, :], np.arange(w)[None, :]
    in_rows = (r >= y0[:, None]) & (r < (y0 + eh)[:, None])
    in_cols = (c >= x0[:, None]) & (c < (x0 + ew)[:, None])
    return in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]


class TrainBatches(keras.utils.PyDataset):
    """Shuffled batches (x float32, {head: labels}[, {head: sample weights}]) of `inputs`;
    `transform(x, rng)` augments or picks views per batch. Drops the last partial batch when
    there is a full one, as the tf.data pipeline does."""

    def __init__(self, inputs, labels: dict, *, batch_size: int, seed: int, transform=None,
                 sample_weights: dict | None = None, workers: int = 1):
        super().__init__(workers=workers, use_multiprocessing=False,
                         max_queue_size=4 if workers > 1 else 10)
        self.inputs, self.transform, self.seed = inputs, transform, int(seed)
        self.columns = (labels,) if sample_weights is None else (labels, sample_weights)
        self.batch_size, self.epoch = int(batch_size), 0
        n = len(inputs)
        self.steps = n // self.batch_size if n >= self.batch_size else 1
        self.order = self._shuffled()

    def _shuffled(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.inputs))

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rows = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        x = self.inputs[rows]
        if self.transform is not None:
            x = self.transform(x, np.random.default_rng([self.seed, self.epoch, index, 1]))
        rest = tuple({k: v[rows] for k, v in part.items()} for part in self.columns)
        return (x.astype(np.float32), *rest)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._shuffled()


class EvalBatches(keras.utils.PyDataset):
    """Validation/prediction inputs in order, float32 batches."""

    def __init__(self, inputs, *, batch_size: int):
        super().__init__()
        self.inputs, self.batch_size = inputs, int(batch_size)

    def __len__(self) -> int:
        return max(1, math.ceil(len(self.inputs) / self.batch_size))

    def __getitem__(self, index: int):
        start = index * self.batch_size
        return (self.inputs[start:start + self.batch_size].astype(np.float32),)
